"""POP909 and the Groove MIDI Dataset as sources, read from ../shared/corpora."""

import csv
from pathlib import Path

import numpy as np
import pytest
from helpers import GROOVE, POP909, needs_corpora

from musenet.build import build
from musenet.cli import main
from musenet.corpus import groove, pop909
from musenet.corpus.styles import COLLECTION_STYLES
from musenet.dataset import Dataset
from musenet.errors import MidiError, MuseNetError
from musenet.notes import load_score, read_midi
from musenet.sources import parse_collection, plan_items, split_of
from musenet.vocab import DEFAULT_STYLES

pytestmark = needs_corpora

#: Songs 001 (train, 3 versions), 007 (valid, 1 version) and 028 (test, 1 version).
SONGS = ("001", "007", "028")


@pytest.fixture(scope="module")
def pop_subset(tmp_path_factory) -> Path:
    """A POP909 folder of three songs, linked to the real ones."""
    root = tmp_path_factory.mktemp("pop909")
    (root / "POP909").mkdir()
    for song in SONGS:
        (root / "POP909" / song).symlink_to(POP909 / song)
    return root


@pytest.fixture(scope="module")
def groove_subset(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A Groove folder of the two shortest takes of each split and beat type (12), linked."""
    with open(GROOVE / "info.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen = []
    for split in ("train", "validation", "test"):
        for beat_type in ("beat", "fill"):
            some = [r for r in rows if r["split"] == split and r["beat_type"] == beat_type]
            chosen += sorted(some, key=lambda r: float(r["duration"]))[:2]
    root = tmp_path_factory.mktemp("groove")
    with open(root / "info.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    for row in chosen:
        (root / row["midi_filename"]).parent.mkdir(parents=True, exist_ok=True)
        (root / row["midi_filename"]).symlink_to(GROOVE / row["midi_filename"])
    return root, chosen


# ---- POP909 -----------------------------------------------------------------------------------

def test_track_roles_by_name_then_position():
    assert pop909.track_roles(["MELODY", "BRIDGE", "PIANO"]).tolist() == [0, 1, 2]
    assert pop909.track_roles(["Melody", "CAU", "PIANO", "PIANO"]).tolist() == [0, 1, 2, 2]
    assert pop909.track_roles(["MELOPY", "Grandeur 1", "Grandeur 2"]).tolist() == [0, 1, 2]
    assert pop909.track_roles(["MELODY", "PIANO"]).tolist() == [0, 2]


def test_song_files_and_versions(pop_subset):
    main_files = pop909.song_files(pop_subset)
    assert [(p.name, song) for p, song in main_files] == [("001.mid", "001"), ("007.mid", "007"), ("028.mid", "028")]
    with_versions = pop909.song_files(pop_subset / "POP909", versions=True)
    assert [p.name for p, _ in with_versions][:4] == ["001.mid", "001-v1.mid", "001-v2.mid", "001-v3.mid"]
    assert len(with_versions) == 3 + 3 + 1 + 1
    with pytest.raises(MuseNetError, match="not a POP909 folder"):
        pop909.song_files(GROOVE)


@pytest.mark.parametrize("path", ["001/001.mid", "007/versions/007-v1.mid"])
def test_read_song_keeps_each_notes_role(path):
    table, roles = pop909.read_song(POP909 / path)
    reference = read_midi(POP909 / path)
    for key in ("onset", "duration", "pitch", "velocity", "family"):
        np.testing.assert_array_equal(getattr(table, key), getattr(reference, key))
    score = load_score(POP909 / path)
    assert np.bincount(roles, minlength=3).tolist() == [len(t.notes) for t in score.tracks]
    melody, piano = table.pitch[roles == pop909.MELODY], table.pitch[roles == pop909.PIANO]
    assert np.median(melody) > np.median(piano)  # the sung line sits above the accompaniment


def test_read_song_names_the_file_it_cannot_read():
    with pytest.raises(MidiError, match=r"324-v3\.mid: no notes"):  # the one empty version
        pop909.read_song(POP909 / "324" / "versions" / "324-v3.mid")


def test_read_chords():
    assert pop909.parse_chord("Bb:min7/b7") == (10, "min7", 8)
    assert pop909.parse_chord("C#:maj/3") == (1, "maj", 5)
    assert pop909.parse_chord("F#:sus4(b7)") == (6, "sus4(b7)", 6)
    assert pop909.parse_chord("N") == (-1, "N", -1)
    with pytest.raises(MuseNetError):
        pop909.parse_chord("H:maj")
    chords = pop909.read_chords(POP909 / "001")
    assert chords.root[:5].tolist() == [-1, -1, -1, -1, 11] and chords.quality[4] == "maj"  # N N N N B:maj
    assert chords.start[4] == pytest.approx(2.721993) and chords.end[4] == pytest.approx(4.055323)
    assert (chords.end > chords.start).all() and np.allclose(chords.end[:-1], chords.start[1:])
    assert ((chords.bass == chords.root) | (chords.quality != "N")).all()


def test_read_beats():
    beats = pop909.read_beats(POP909 / "001")
    assert beats.seconds[0] == pytest.approx(0.055333, abs=1e-5)
    assert np.allclose(np.diff(beats.seconds), 2 / 3, atol=0.01)  # 90 beats a minute
    assert np.diff(np.flatnonzero(beats.downbeat)).tolist() == [4] * (beats.downbeat.sum() - 1)
    assert np.diff(np.flatnonzero(beats.short_downbeat)).tolist() == [2] * (beats.short_downbeat.sum() - 1)
    chords = pop909.read_chords(POP909 / "001")  # chords change on beats
    assert np.isclose(chords.start[:, None], beats.seconds[None], atol=1e-3).any(axis=1).mean() > 0.95


# ---- Groove ---------------------------------------------------------------------------------

def test_groove_takes_styles_and_splits():
    takes = groove.takes(GROOVE)
    assert len(takes) == 1150
    assert {t.split for t in takes} == {"train", "valid", "test"}
    assert [sum(t.split == s for t in takes) for s in ("train", "valid", "test")] == [897, 124, 129]
    styles = {t.style for t in takes}
    assert {"drums-rock", "drums-funk", "drums-jazz", "drums-latin", "drums-afrocuban", "drums-pop"} <= styles
    assert all(s.startswith("drums-") and "/" not in s for s in styles) and len(styles) == 18
    assert styles | {pop909.STYLE} <= set(COLLECTION_STYLES)  # each is described in styles.py
    assert groove.style_name("latin/brazilian-baiao") == "drums-latin"
    assert len(groove.takes(GROOVE, ("beat",))) == 503
    with pytest.raises(MuseNetError, match="beat type"):
        groove.takes(GROOVE, ("groove",))
    with pytest.raises(MuseNetError, match="not a Groove"):
        groove.takes(POP909)


def test_read_groove_maps_the_kit_to_general_midi():
    take = next(t for t in groove.takes(GROOVE) if t.id == "drummer7/session3/117")
    raw, mapped = read_midi(take.path), groove.read_groove(take.path)
    assert all((raw.pitch == p).any() for p in groove.GM_PITCH)  # hi-hat edges and tom 3's rim
    assert not np.isin(mapped.pitch, list(groove.GM_PITCH)).any() and mapped.drum.all()
    assert (mapped.pitch == 42).sum() == np.isin(raw.pitch, [22, 42]).sum()
    assert groove.gm_pitches(np.array([22, 26, 58, 36])).tolist() == [42, 46, 43, 36]


# ---- the build --------------------------------------------------------------------------------

def test_collection_sources():
    assert parse_collection("pop909,versions:/data/pop") == ("pop909", ("versions",), "/data/pop")
    assert parse_collection("groove:/g") == ("groove", (), "/g")
    assert parse_collection("music21") is None and parse_collection("/data/midi") is None
    with pytest.raises(MuseNetError, match="unknown option 'fills' for groove"):
        parse_collection("groove,fills:/g")
    items = plan_items(f"groove,fill:{GROOVE}", ["drums-funk"], 3, None)
    assert len(items) == 3 and {i.style for i in items} == {"drums-funk"} and {i.kind for i in items} == {"groove"}


def test_build_pop909_versions_share_their_songs_split(pop_subset, tmp_path, capsys):
    summary = build(f"pop909,versions:{pop_subset}", tmp_path / "pop", workers=1, progress=False)
    assert summary["counts"]["items"] == 8 and summary["counts"]["failed"] == 0
    data = Dataset(tmp_path / "pop", split=None)
    assert data.vocab.styles == DEFAULT_STYLES  # pop is a default style
    splits = {}
    for row in range(len(data)):
        song = Path(data.index["source"][row]).name[:3]
        assert data.style_of(row) == "pop"
        assert data.vocab.style_token("pop") in data.piece(row)[:4]
        splits.setdefault(song, set()).add(int(data.index["split"][row]))
    assert splits == {song: {split_of(f"pop909:{song}")} for song in SONGS} == {"001": {0}, "007": {1}, "028": {2}}
    assert main(["data", "stats", str(tmp_path / "pop")]) in (0, None)
    assert "| pop | " in capsys.readouterr().out


def test_build_groove_keeps_the_authors_split_and_styles(groove_subset, tmp_path, capsys):
    root, rows = groove_subset
    summary = build(f"groove:{root}", tmp_path / "groove", workers=1, progress=False)
    assert summary["counts"]["pieces"] + summary["counts"]["duplicates"] == len(rows) == 12
    data = Dataset(tmp_path / "groove", split=None)
    styles = sorted({groove.style_name(r["style"]) for r in rows})
    assert data.vocab.styles == DEFAULT_STYLES + tuple(styles)  # new styles come last: other ids keep
    expected = {str(root / r["midi_filename"]): r for r in rows}
    for row in range(len(data)):
        info = expected[data.index["source"][row]]
        assert data.style_of(row) == groove.style_name(info["style"])
        assert data.vocab.style_token(data.style_of(row)) in data.piece(row)[:4]
        assert ("train", "valid", "test")[data.index["split"][row]] == groove.SPLIT_NAMES[info["split"]]
    assert data.index["families"].tolist() == [1 << 8] * len(data)  # drums only
    assert main(["data", "stats", str(tmp_path / "groove")]) in (0, None)
    assert f"| {styles[0]} | " in capsys.readouterr().out
    beats = build(f"groove,beat:{root}", tmp_path / "beats", workers=1, progress=False)
    assert beats["counts"]["items"] == 6

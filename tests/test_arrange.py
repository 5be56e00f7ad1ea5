"""Band versions derived from POP909 and the Groove MIDI Dataset (arrange.py), and their build."""

import csv
import json
from collections import Counter

import numpy as np
import pytest
from helpers import GROOVE, POP909, needs_corpora

from musenet import arrange
from musenet.build import build
from musenet.cli import main
from musenet.corpus import groove, pop909
from musenet.dataset import Dataset
from musenet.errors import MuseNetError
from musenet.instruments import DRUMS, FAMILY_ID, PITCH_HIGH, PITCH_LOW
from musenet.notes import NoteTable, write_midi
from musenet.sources import band_options, parse_collection, split_of
from musenet.vocab import DEFAULT_STYLES

pytestmark = needs_corpora

#: 001 (train, 90 BPM), 007 (valid, 136 BPM), 028 (test, 62 BPM).
SONGS = ("001", "007", "028")


@pytest.fixture(scope="module")
def songs() -> dict:
    """Each song's table, roles, chords, beats and its two band versions."""
    grooves = groove.takes(GROOVE, ("beat",))
    out = {}
    for song in SONGS:
        table, roles = pop909.read_song(POP909 / song / f"{song}.mid")
        chords, beats = pop909.read_chords(POP909 / song), pop909.read_beats(POP909 / song)
        bands = arrange.band_versions(table, roles, chords, beats, grooves, song)
        out[song] = (table, roles, chords, beats, bands)
    return out


def _music(table: NoteTable, rows) -> Counter:
    """The notes of rows as a multiset of (onset, pitch class, velocity): what a derivation keeps."""
    return Counter(zip(np.round(table.onset[rows] * 48).astype(int).tolist(), (table.pitch[rows] % 12).tolist(),
                       table.velocity[rows].tolist(), strict=True))


def test_every_part_in_its_range_and_every_band_has_drums_and_bass(songs):
    for *_, bands in songs.values():
        assert len(bands) == 2
        for band in bands:
            assert (band.pitch >= PITCH_LOW[band.family]).all() and (band.pitch <= PITCH_HIGH[band.family]).all()
            assert {FAMILY_ID["drums"], FAMILY_ID["bass"]} <= set(band.family.tolist())
            bass = band.pitch[band.family == FAMILY_ID["bass"]]
            low, high = arrange.BASS_REGISTER
            assert low <= bass.min() and bass.max() <= high
            assert (band.duration > 0).all()


def test_no_note_lost_or_doubled(songs):
    for table, roles, chords, _, bands in songs.values():
        for band in bands:
            assert _music(band, band.family != DRUMS) == _music(table, np.arange(len(table)))
        line = arrange.bass_from_left_hand(table, roles, chords)
        guitar = arrange.chords_for(line, roles, "guitar")
        assert len(guitar) == len(table) and (guitar.onset == table.onset).all()
        taken = guitar.family != FAMILY_ID["piano"]
        assert (roles[taken] == pop909.PIANO).all()  # bass and chords come from the PIANO track only
        assert (guitar.pitch[~taken] == table.pitch[~taken]).all()  # what stays piano is untouched
        assert (guitar.pitch[taken] % 12 == table.pitch[taken] % 12).all()


def test_melody_over_piano_gives_the_melody_to_a_lead_and_keeps_the_piano(songs):
    leads = set()
    for song, (table, roles, *_) in songs.items():
        version = arrange.melody_over_piano(table, roles, song)
        assert _music(version, np.arange(len(version))) == _music(table, np.arange(len(table)))
        lead = version.family != FAMILY_ID["piano"]
        assert len(set(version.family[lead].tolist())) == 1 and lead.sum() == (roles == pop909.MELODY).sum()
        leads.add(int(version.family[lead][0]))
        piano = table.select(np.flatnonzero(roles != pop909.MELODY))
        kept = version.select(np.flatnonzero(~lead))
        assert np.array_equal(np.sort(kept.pitch), np.sort(piano.pitch))  # the accompaniment as it was
        again = arrange.melody_over_piano(table, roles, song)  # the same song, the same lead
        assert np.array_equal(again.family, version.family) and np.array_equal(again.pitch, version.pitch)
    assert leads <= {FAMILY_ID[f] for f in arrange.LEAD_FAMILIES}


def test_bass_below_the_melody_and_one_note_at_a_time(songs):
    for table, roles, chords, _, _ in songs.values():
        band = arrange.lead_from_melody(arrange.bass_from_left_hand(table, roles, chords), roles, "voice")
        bass = np.flatnonzero(band.family == FAMILY_ID["bass"])
        voice = np.flatnonzero(band.family == FAMILY_ID["voice"])
        assert len(bass) > 100 and len(voice) == (roles == pop909.MELODY).sum()
        order = bass[np.argsort(band.onset[bass], kind="stable")]
        assert (band.onset[order][:-1] + band.duration[order][:-1] <= band.onset[order][1:] + 1e-9).all()
        for row in bass:  # every melody note sounding at a bass onset is above it
            sounding = voice[(band.onset[voice] <= band.onset[row])
                             & (band.onset[voice] + band.duration[voice] > band.onset[row])]
            assert (band.pitch[sounding] > band.pitch[row]).all()
        assert (arrange.in_chord(table, bass, chords) != 0).mean() > 0.9  # mostly chord tones


def test_grooves_follow_the_songs_downbeats(songs):
    grooves = groove.takes(GROOVE, ("beat",))
    for song, (_, _, _, beats, bands) in songs.items():
        for number, band in enumerate(bands, 1):
            take = arrange.pick_groove(arrange.song_bpm(beats), 4, grooves, arrange.version_rng(song, number))
            assert take.split == "train" and take.time_signature == "4-4" and take.beat_type == "beat"
            assert abs(np.log(take.bpm / arrange.song_bpm(beats))) < np.log(1.25)
            drums = band.onset[band.family == DRUMS]
            position = arrange.beat_position(beats, band.seconds(drums))
            _, starts = arrange.song_meter(beats)
            starts = starts[(starts >= position.min()) & (starts < position.max() - 4)]
            distance = np.array([np.abs(position - start).min() for start in starts])  # in beats
            assert len(starts) > 20 and (distance <= arrange.EARLY).mean() > 0.8  # (funk pushes some bars)
            assert np.median(distance) * 60 / arrange.song_bpm(beats) < 0.03  # seconds: a drummer's timing
    table, _, _, beats, _ = songs["001"]
    held_out = [t for t in grooves if t.split != "train"]
    assert arrange.groove_under(table, beats, held_out, np.random.default_rng(0)) is table  # never test drums


def test_loop_groove_puts_the_takes_bar_lines_on_the_songs_downbeats(songs):
    """A made-up take (kick on each bar line, hi-hat on each beat, a pickup before the first
    bar) under 007, whose first downbeat is its second beat: every kick lands on a downbeat."""
    table, _, _, beats, _ = songs["007"]
    onset = np.concatenate([[2.5], np.arange(4.0, 36.0)])
    pitch = np.where(onset % 4 == 0, 36, 42)
    take = NoteTable(onset, np.full(len(onset), 0.25), pitch, np.full(len(onset), 90), np.full(len(onset), DRUMS))
    drums = arrange.loop_groove(table, beats, take, 4)
    kicks = drums.seconds(drums.onset[drums.pitch == 36])
    _, starts = arrange.song_meter(beats)
    first = arrange.beat_position(beats, table.seconds(table.onset.min()))
    last = arrange.beat_position(beats, table.seconds((table.onset + table.duration).max()))
    expected = beats.seconds[starts[(starts >= first - 0.5) & (starts < last)]]
    assert len(kicks) == len(expected) > 100 and np.abs(kicks - expected).max() < 1e-6
    hats = (drums.pitch == 42).sum()
    assert 3 * len(expected) - 3 <= hats < 3 * len(expected)  # less the beats beyond 007's one 2-beat bar
    assert drums.seconds(drums.onset).min() >= expected[0] - 1e-6  # the pickup is left out


def test_same_song_same_bands_and_families_spread_over_the_corpus(songs):
    table, roles, chords, beats, bands = songs["007"]
    grooves = groove.takes(GROOVE, ("beat",))
    again = arrange.band_versions(table, roles, chords, beats, grooves, "007")
    for one, two in zip(bands, again, strict=True):
        for key in ("onset", "duration", "pitch", "velocity", "family"):
            assert np.array_equal(getattr(one, key), getattr(two, key))
    assert not np.array_equal(bands[0].family, bands[1].family) or not np.array_equal(bands[0].pitch, bands[1].pitch)
    drawn = [o for song in range(1, 910) for o in arrange.orchestrations(f"{song:03d}")]
    seen = Counter(family for o in drawn for family in o.values())
    for family in ("guitar", "synth", "brass", "winds", "voice", "strings", "piano"):
        assert seen[family] > 0.08 * len(drawn), (family, seen)
    assert all(o["lead"] != o["second"] for o in drawn)
    assert arrange.orchestrations("001") == arrange.orchestrations("001") != arrange.orchestrations("002")


def test_band_options():
    assert band_options(("versions",)) == ((), 0)
    assert band_options(("band",)) == (arrange.PARTS, 2)
    assert band_options(("band=drums+bass", "bands=3")) == (("bass", "drums"), 3)
    assert band_options(("bands=1",)) == (arrange.PARTS, 1)
    assert parse_collection("pop909,band=bass+lead,bands=3:/d") == ("pop909", ("band=bass+lead", "bands=3"), "/d")
    for bad, message in (("band=bass+tuba", "unknown band part 'tuba'"), ("bands=0", "from 1 to 16")):
        with pytest.raises(MuseNetError, match=message):
            band_options((bad,))
    with pytest.raises(MuseNetError, match="'versions' of pop909 takes no value"):
        parse_collection("pop909,versions=2:/d")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict:
    """A POP909 folder of the three songs, a Groove folder of five takes (four train beats
    near their tempos, one test), and a MIDI folder of one small piece: all linked or tiny."""
    root = tmp_path_factory.mktemp("sources")
    (root / "pop" / "POP909").mkdir(parents=True)
    for song in SONGS:
        (root / "pop" / "POP909" / song).symlink_to(POP909 / song)
    with open(GROOVE / "info.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    beats = [r for r in rows if r["beat_type"] == "beat" and r["time_signature"] == "4-4"]
    chosen = [min((r for r in beats if r["split"] == "train"), key=lambda r: abs(int(r["bpm"]) - bpm)
                  + float(r["duration"]) / 1000) for bpm in (62, 90, 100, 136)]
    chosen.append(min((r for r in beats if r["split"] == "test"), key=lambda r: float(r["duration"])))
    (root / "groove").mkdir()
    with open(root / "groove" / "info.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    for row in chosen:
        (root / "groove" / row["midi_filename"]).parent.mkdir(parents=True, exist_ok=True)
        (root / "groove" / row["midi_filename"]).symlink_to(GROOVE / row["midi_filename"])
    (root / "midi" / "folk").mkdir(parents=True)
    scale = np.arange(8.0)
    write_midi(NoteTable(scale, np.ones(8), 60 + np.array([0, 2, 4, 5, 7, 9, 11, 12]), np.full(8, 80),
                         np.zeros(8, np.int64)), root / "midi" / "folk" / "scale.mid")
    return {"pop": root / "pop", "groove": root / "groove", "midi": root / "midi"}


def test_build_several_sources_with_band_versions(sources, tmp_path):
    band = build([str(sources["midi"]), f"pop909,band:{sources['pop']}", f"groove:{sources['groove']}"],
                 tmp_path / "band", workers=1, progress=False)
    assert band["counts"]["pieces"] == 1 + 3 * 3 + 5 and band["counts"]["derived"] == 6
    data = Dataset(tmp_path / "band", split=None)
    styles, extra = data.vocab.styles, data.vocab.styles[len(DEFAULT_STYLES):]  # grown, never reordered
    assert styles[:len(DEFAULT_STYLES)] == DEFAULT_STYLES and extra == tuple(sorted(extra))
    assert "folk" in extra and any(style.startswith("drums-") for style in extra)
    index = data.index
    ids, derived, split = index["piece_id"].tolist(), index["derived"], index["split"]
    for song in SONGS:
        rows = [i for i, s in enumerate(index["source"].tolist()) if f"/{song}/" in s]
        assert [ids[i].partition("#")[2] for i in rows] == ["", "band1", "band2"]
        assert derived[rows].tolist() == [0, 1, 1]
        assert set(split[rows].tolist()) == {split_of(f"pop909:{song}")}
        assert {data.style_of(i) for i in rows} == {"pop"}
    assert derived.sum() == 6 and (derived[[i for i, s in enumerate(ids) if "#" not in s]] == 0).all()
    bands = [i for i in range(len(ids)) if derived[i]]
    assert all(index["families"][i] & (1 << DRUMS) and index["families"][i] & (1 << FAMILY_ID["bass"])
               for i in bands)

    plain = build(f"pop909:{sources['pop']}", tmp_path / "plain", workers=1, progress=False)  # originals as they are
    assert plain["counts"]["pieces"] == 3 and "derived" not in np.load(tmp_path / "plain" / "index.npz").files
    plain_data = Dataset(tmp_path / "plain", split=None)
    for row in range(3):
        same = ids.index(plain_data.index["piece_id"][row])
        assert np.array_equal(plain_data.piece(row), data.piece(same))

    no_drums = build(f"pop909,band=bass+lead,bands=1:{sources['pop']}", tmp_path / "nodrums", workers=1,
                     progress=False)
    assert no_drums["counts"]["pieces"] == 6
    lean = Dataset(tmp_path / "nodrums", split=None)
    assert not any(lean.index["families"][i] & (1 << DRUMS) for i in range(6))
    with_melody = build(f"pop909,bands=1,melody:{sources['pop']}", tmp_path / "melody", workers=1, progress=False)
    assert with_melody["counts"]["pieces"] == 9 and with_melody["counts"]["derived"] == 6
    sung = Dataset(tmp_path / "melody", split=None)
    names = [piece.partition("#")[2] for piece in sung.index["piece_id"].tolist()]
    assert sorted(names) == sorted(["", "band1", "melody"] * 3)
    for row in (i for i, name in enumerate(names) if name == "melody"):
        families = sung.index["families"][row]
        assert families & (1 << FAMILY_ID["piano"])
        assert any(families & (1 << FAMILY_ID[f]) for f in arrange.LEAD_FAMILIES)
        assert not families & ((1 << DRUMS) | (1 << FAMILY_ID["bass"]))
    with pytest.raises(MuseNetError, match="band drums need the Groove MIDI Dataset"):  # no pop/groove/
        build(f"pop909,band:{sources['pop'] / 'POP909'}", tmp_path / "fails", workers=1, progress=False)


def test_a_song_without_annotations_keeps_its_original(sources, tmp_path):
    (tmp_path / "pop" / "POP909" / "100").mkdir(parents=True)
    (tmp_path / "pop" / "POP909" / "100" / "100.mid").symlink_to(POP909 / "100" / "100.mid")
    assert main(["data", "build", "--source", f"pop909,band:{tmp_path / 'pop'}", "--source",
                 f"groove,beat:{sources['groove']}", "--out", str(tmp_path / "out"), "--workers", "1"]) in (0, None)
    summary = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert summary["counts"]["pieces"] == 1 + 5 and summary["counts"]["failed"] == 2  # the song, 5 takes
    assert summary["source"] == [f"pop909,band:{tmp_path / 'pop'}", f"groove,beat:{sources['groove']}"]
    log = (tmp_path / "out" / "failures.log").read_text()
    assert log.count("#band") == 2 and "band version:" in log and "chord_midi.txt" in log

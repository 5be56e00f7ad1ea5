import json
import shutil

import numpy as np
import pytest
from helpers import make_score

import musenet
from musenet import build as build_module
from musenet.augment import (
    Augment,
    drop_families,
    enter_late,
    keep_families,
    reorchestrate,
    scale_volume,
    stretch_time,
    transpose,
    transpose_range,
    unconditioned,
)
from musenet.build import build
from musenet.dataset import Dataset
from musenet.instruments import DRUMS, FAMILY_ID, PITCH_HIGH, PITCH_LOW
from musenet.notes import read_midi, write_midi
from musenet.sequence import side_features, token_seconds
from musenet.sources import split_of
from musenet.vocab import default_vocab, from_text


def write_song(path, seed, drums=True, bars=8):
    rng = np.random.default_rng(seed)
    melody = [(i * 0.5, 0.5, int(rng.integers(60, 80)), 90) for i in range(bars * 8)]
    chords = [(i * 2.0, 2.0, p + int(rng.integers(0, 3)), 70) for i in range(bars * 2) for p in (48, 52, 55)]
    tracks = [{"program": 0, "notes": melody}, {"program": 48, "notes": chords}]
    if drums:
        tracks.append({"is_drum": True, "notes": [(i * 1.0, 0.25, 36 + (i % 2) * 2, 100) for i in range(bars * 4)]})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_midi(read_midi(make_score(tracks, tempos=[(0, 100), (bars * 2, 140)])), path)


@pytest.fixture
def midi_folder(tmp_path):
    root = tmp_path / "midi"
    for i in range(6):
        write_song(root / "Jazz Ballads" / f"song{i}.mid", i)
        write_song(root / "pop" / "sub" / f"tune{i}.mid", 100 + i, drums=False)
    shutil.copy(root / "pop" / "sub" / "tune0.mid", root / "pop" / "copy-of-tune0.mid")
    (root / "pop" / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x09\x00")
    (root / "loose.mid").write_bytes(b"not midi at all")
    return root


def test_folder_build_styles_failures_duplicates(midi_folder, tmp_path):
    summary = build(str(midi_folder), tmp_path / "data", workers=1, progress=False)
    counts = summary["counts"]
    assert counts == {**counts, "items": 15, "pieces": 12, "failed": 2, "duplicates": 1}
    log = (tmp_path / "data" / "failures.log").read_text()
    assert "broken.mid\tcorrupted MIDI" in log and "loose.mid\tnot a MIDI file" in log
    assert "sub/tune0.mid\tduplicate of " in log and log.strip().endswith("copy-of-tune0.mid")
    data = Dataset(tmp_path / "data", split=None)
    assert "jazz-ballads" in data.vocab.styles and "pop" in data.vocab.styles
    styles = {data.style_of(r) for r in range(len(data))}
    assert styles == {"jazz-ballads", "pop"}
    jazz = [r for r in range(len(data)) if data.style_of(r) == "jazz-ballads"]
    assert all(data.index["families"][r] == (1 << FAMILY_ID["piano"]) | (1 << FAMILY_ID["strings"]) | (1 << DRUMS)
               for r in jazz)
    for r in range(len(data)):  # the stored tokens are the encoding of the file, style in front
        source = data.index["source"][r]
        np.testing.assert_array_equal(data.piece(r), musenet.encode(source, style=data.style_of(r), vocab=data.vocab))
    assert json.loads((tmp_path / "data" / "manifest.json").read_text())["counts"]["notes"] == data.index["notes"].sum()
    assert "| jazz-ballads | 6 |" in data.style_table()


def test_rebuild_resumes_from_cache_and_is_deterministic(midi_folder, tmp_path, monkeypatch):
    first = build(str(midi_folder), tmp_path / "data", workers=2, progress=False)
    index_before = dict(np.load(tmp_path / "data" / "index.npz"))

    def must_not_convert(*args, **kwargs):
        raise AssertionError("converted again instead of using the cache")

    monkeypatch.setattr(build_module, "_convert_uncached", must_not_convert)
    second = build(str(midi_folder), tmp_path / "data", workers=1, progress=False)
    assert first["counts"] == second["counts"]
    index_after = dict(np.load(tmp_path / "data" / "index.npz"))
    for key in index_before:
        np.testing.assert_array_equal(index_before[key], index_after[key])


def test_manifest_csv_and_limit(midi_folder, tmp_path):
    manifest = tmp_path / "styles.csv"
    manifest.write_text("path,style\nJazz Ballads/song0.mid,Smooth Jazz\npop/sub/tune1.mid,bach\n")
    build(str(midi_folder), tmp_path / "data", manifest=str(manifest), workers=1, progress=False)
    data = Dataset(tmp_path / "data", split=None)
    by_source = {data.index["source"][r].split("/midi/")[1]: data.style_of(r) for r in range(len(data))}
    assert by_source["Jazz Ballads/song0.mid"] == "smooth-jazz" and by_source["pop/sub/tune1.mid"] == "bach"
    assert by_source["pop/sub/tune2.mid"] == "unknown"
    summary = build(str(midi_folder), tmp_path / "small", limit=3, styles=["pop"], workers=1, progress=False)
    counts = summary["counts"]  # the first 3 files of pop: broken, copy-of-tune0, and tune0 (a duplicate)
    assert (counts["items"], counts["failed"], counts["duplicates"], counts["pieces"]) == (3, 1, 1, 1)


def test_splits_are_stable_disjoint_and_proportioned():
    ids = [f"music21:work{i}" for i in range(5000)]
    splits = np.array([split_of(i) for i in ids])
    assert list(splits) == [split_of(i) for i in ids]
    share = np.bincount(splits, minlength=3) / len(ids)
    assert abs(share[0] - 0.90) < 0.02 and abs(share[1] - 0.05) < 0.01 and abs(share[2] - 0.05) < 0.01


def test_split_views_partition_the_pieces(midi_folder, tmp_path):
    build(str(midi_folder), tmp_path / "data", workers=1, progress=False)
    parts = [set(Dataset(tmp_path / "data", split=s).rows) for s in ("train", "valid", "test")]
    assert sum(map(len, parts)) == len(Dataset(tmp_path / "data", split=None))
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


def test_window_carries_header_and_tempo_in_force(midi_folder, tmp_path):
    build(str(midi_folder), tmp_path / "data", styles=["jazz-ballads"], workers=1, progress=False)
    data = Dataset(tmp_path / "data", split=None)
    vocab = data.vocab
    piece = data.piece(0)
    window = data.window(0, len(piece) - 60, 50)
    text = musenet.to_text(window.tokens, vocab).split()
    assert text[:5] == ["jazz-ballads", "piano", "strings", "drums", "start"]
    assert text[5] == "tempo:143"  # the piece changed from 100 to 140 BPM (bucket 143) before this point
    assert vocab.tables["wait"][window.tokens[5]] == 0 and len(window.tokens) <= 50
    assert window.features["time"][:6].tolist() == [0] * 6
    assert window.features["position"][-1] >= 100  # near the end of the piece
    whole = side_features(piece, vocab, float(data.index["seconds"][0]))["phase"]  # the phase is the piece's own
    body = window.tokens[6:]
    at = next(i for i in range(len(piece)) if np.array_equal(piece[i: i + len(body)], body))
    assert window.features["phase"][6:].tolist() == whole[at: at + len(body)].tolist()
    batch = data.sample(np.random.default_rng(0), batch=3, context=64, augment=Augment(reorchestrate=0.5))
    assert all(v.shape == (3, 65) for v in batch.values())
    assert (batch["tokens"][:, 0] >= vocab.style_offset).all()  # every window starts with its style


def test_side_features_on_a_hand_made_example():
    vocab = default_vocab()
    tokens = from_text("bach piano strings start tempo:120 piano:v80:C4 piano:v80:E4 strings:v80:G4 wait:12 "
                       "piano:v0:C4 piano:v0:E4 piano:v80:D4 wait:24 strings:v0:G4 piano:v0:D4 end")
    f = side_features(tokens, vocab, total_seconds=1.5)
    assert f["time"].tolist() == [0] * 9 + [12] * 4 + [36] * 3
    assert f["chord"].tolist() == [0] * 5 + [1, 2, 3, 0, 0, 0, 1, 0, 0, 0, 0]
    np.testing.assert_allclose(token_seconds(tokens, vocab)[[0, 9, 13]], [0, 0.5, 1.5])
    assert f["position"].tolist()[:9] == [0] * 9 and f["position"][9] == 42  # 0.5 s of 1.5 s -> part 42 of 128
    assert f["countdown"].tolist()[0] == 0 and side_features(tokens, vocab, 30.0)["countdown"][0] == 15
    assert f["phase"].tolist() == [0] * 9 + [12] * 4 + [36] * 3  # the step within a 4-beat bar
    later = side_features(tokens, vocab, 1.5, start_step=40)["phase"]  # a window 40 steps into the piece
    assert later.tolist() == [40] * 9 + [4] * 4 + [28] * 3
    seconds_vocab = default_vocab("seconds")
    assert not side_features(from_text("bach piano start piano:v80:C4 wait:30 piano:v0:C4 end", seconds_vocab),
                             seconds_vocab, 1.0)["phase"].any()


def test_ahead_counts_half_beats_to_the_hints_next_event_from_where_the_next_token_falls():
    vocab = default_vocab()
    # a hint of two events, at steps 12 (E4) and 36 (G4) of the body; a step is 1/12 beat
    tokens = from_text("pop piano strings wait:12 piano:v80:E4 wait:24 piano:v80:G4 start tempo:120 piano:v80:C4 "
                       "wait:12 piano:v0:C4 wait:12 piano:v80:D4 wait:24 piano:v0:D4 end", vocab)
    f = side_features(tokens, vocab, 10.0)
    # header and hint: 0; C4 (next token at 0: E4 12 steps ahead, 1 + 2 half beats); the wait to
    # step 12 and C4's note-off there (E4 due now: 1); the wait to 24 and D4 (G4 a beat ahead: 3);
    # past the hint's last event: 0
    assert f["ahead"].tolist() == [0] * 9 + [3, 1, 1, 3, 3, 0, 0, 0]
    assert not side_features(tokens[[0, 1, 2, *range(7, 17)]], vocab, 10.0)["ahead"].any()  # no hint: 0


def test_held_names_the_note_sounding_longest_and_counts_one_struck_before_the_window():
    vocab = default_vocab()
    # a window that begins with D5 still sounding (its note-off, with no note-on before it)
    tokens = from_text("pop piano strings drums start tempo:120 piano:v80:C4 piano:v80:E4 drums:v80:C2 wait:12 "
                       "strings:v80:G4 wait:24 piano:v0:E4 wait:12 piano:v0:C4 piano:v0:D5 wait:6 strings:v0:G4 end",
                       vocab)
    f = side_features(tokens, vocab, 10.0)
    c4, d5, g4 = 1 + 60, 1 + 74, 1 + FAMILY_ID["strings"] * 128 + 67
    # header: nothing; from the body on, D5 (struck before the window) and C4 sound from the
    # window's start: the lower key first; the drum holds no note; then D5, then the strings' G4
    assert f["held"].tolist() == [0] * 5 + [d5] * 2 + [c4] * 8 + [d5, g4, g4, 0]
    # in quarter seconds (a step is 1/24 s at 120 BPM): C4 0.5, 1.5, 2 s; D5 2 s from the window's start; G4 1.5, 1.75 s
    assert f["held_for"].tolist() == [0] * 5 + [0, 0, 0, 0, 0, 2, 2, 6, 6, 8, 8, 6, 7, 0]


def test_augmentation_keeps_ranges_and_drums():
    vocab = default_vocab()
    table = read_midi(make_score([
        {"program": 0, "notes": [(0, 1, 21, 80), (1, 1, 100, 30)]},
        {"program": 33, "notes": [(0, 2, 40, 120)]},
        {"is_drum": True, "notes": [(0, 0.25, 36, 100), (1, 0.25, 42, 60)]},
    ]))
    tokens = musenet.encode(musenet.notes.to_score(table))
    low, high = transpose_range(tokens, vocab, 6)
    assert (low, high) == (0, 6)  # piano's A0 cannot go down
    t = vocab.tables
    for shift in range(low, high + 1):
        moved = transpose(tokens, vocab, shift)
        is_note = t["family"][moved] >= 0
        fam, pitch = t["family"][moved][is_note], t["pitch"][moved][is_note]
        assert ((pitch >= PITCH_LOW[fam]) & (pitch <= PITCH_HIGH[fam])).all()
        drums_before = tokens[t["family"][tokens] == DRUMS]
        np.testing.assert_array_equal(moved[t["family"][moved] == DRUMS], drums_before)
        piano_before = t["pitch"][tokens][t["family"][tokens] == 0]
        assert sorted(pitch[fam == 0].tolist()) == sorted((piano_before + shift).tolist())
    louder = scale_volume(tokens, vocab, 1.5)
    assert t["velocity"][louder].max() == 127 and (t["velocity"][louder] > 0).sum() == (t["velocity"][tokens] > 0).sum()
    rng = np.random.default_rng(1)
    swapped = reorchestrate(tokens, vocab, rng)
    assert (t["family"][swapped] == DRUMS).sum() == (t["family"][tokens] == DRUMS).sum()
    header = musenet.to_text(swapped).split(" start")[0].split()[1:]
    body_families = {musenet.FAMILIES[f] for f in np.unique(t["family"][swapped]) if f >= 0}
    assert set(header) == body_families and header == sorted(header, key=musenet.FAMILIES.index)


def test_stretch_time_in_seconds_mode():
    vocab = default_vocab("seconds")
    tokens = from_text("unknown piano start piano:v80:C4 wait:100 wait:50 piano:v0:C4 wait:3 piano:v80:D4 wait:1 "
                       "piano:v0:D4 end", vocab)
    waits = vocab.tables["wait"]
    for factor in (0.95, 1.0, 1.05):
        out = stretch_time(tokens, vocab, factor)
        assert waits[out].sum() == round(154 * factor)
        assert (waits[out][waits[out] > 0] <= 100).all()
        notes = out[vocab.tables["family"][out] >= 0]
        np.testing.assert_array_equal(notes, tokens[vocab.tables["family"][tokens] >= 0])
    augmented = Augment(transpose=0, volume=0, stretch=0.05)(tokens, vocab, np.random.default_rng(0))
    assert abs(waits[augmented].sum() - 154) <= 8


def test_keeping_some_families_merges_their_waits_and_keeps_the_clock():
    vocab = default_vocab("beat")
    tokens = from_text("pop piano bass drums start tempo:120 piano:v80:C4 drums:v96:C2 wait:6 drums:v80:D2 "
                       "wait:6 bass:v80:C2 wait:40 wait:20 piano:v0:C4 bass:v0:C2 wait:12 piano:v64:E4 end", vocab)
    kept = keep_families(tokens, vocab, [musenet.FAMILIES.index("piano")])
    assert musenet.to_text(kept, vocab) == ("pop piano start tempo:120 piano:v80:C4 wait:48 wait:24 piano:v0:C4 "
                                            "wait:12 piano:v64:E4 end")
    t = vocab.tables
    assert t["wait"][kept].sum() == t["wait"][tokens].sum()
    rng = np.random.default_rng(0)
    sizes = set()
    for _ in range(40):
        out = drop_families(tokens, vocab, rng)
        header = musenet.to_text(out, vocab).split(" start")[0].split()[1:]
        body = {musenet.FAMILIES[f] for f in np.unique(t["family"][out]) if f >= 0}
        assert 1 <= len(header) <= 2 and body <= set(header) and t["wait"][out].sum() == t["wait"][tokens].sum()
        sizes.add(len(header))
    assert sizes == {1, 2}


def test_a_late_entrance_silences_some_families_until_an_instant_and_keeps_the_clock():
    vocab = default_vocab("beat")
    t = vocab.tables
    tokens = from_text("pop piano bass drums start tempo:120 piano:v80:C4 drums:v96:C2 wait:6 drums:v80:D2 "
                       "wait:6 bass:v80:C2 wait:40 wait:20 piano:v0:C4 bass:v0:C2 wait:12 piano:v64:E4 "
                       "bass:v70:D2 wait:12 piano:v0:E4 bass:v0:D2 wait:12 bass:v70:E2 wait:4 end", vocab)
    notes = t["family"][tokens] >= 0
    rng = np.random.default_rng(0)
    silenced = set()
    for _ in range(40):
        out = enter_late(tokens, vocab, rng)
        assert musenet.to_text(out, vocab).split(" start")[0] == "pop piano bass drums"
        assert t["wait"][out].sum() == t["wait"][tokens].sum()
        count = {f: (t["family"][out] == f).sum() for f in range(len(musenet.FAMILIES))}
        late = {f for f in np.unique(t["family"][tokens[notes]]) if count[f] < (t["family"][tokens] == f).sum()}
        assert len(late) < 3  # (none when the families drawn had not played before the instant)
        silenced |= late
        for family in range(len(musenet.FAMILIES)):  # every other family's notes are all there
            if family not in late:
                assert (t["family"][out] == family).sum() == (t["family"][tokens] == family).sum()
            else:  # a late family comes in with a note-on, and each note-off has its note-on
                mine = out[t["family"][out] == family]
                if len(mine):
                    assert t["velocity"][mine[0]] > 0
                assert (t["velocity"][mine] > 0).sum() >= (t["velocity"][mine] == 0).sum()
    assert silenced == {musenet.FAMILIES.index(f) for f in ("piano", "bass", "drums")}
    assert musenet.to_text(enter_late(from_text("pop piano start piano:v80:C4 wait:6 piano:v0:C4 end", vocab),
                                      vocab, rng), vocab) == "pop piano start piano:v80:C4 wait:6 piano:v0:C4 end"


def test_an_unconditioned_window_loses_style_and_families_and_keeps_the_rest(midi_folder, tmp_path):
    vocab = default_vocab("beat")
    text = "pop piano drums start tempo:120 piano:v80:C4 drums:v96:C2 wait:6 piano:v0:C4 end"
    assert musenet.to_text(unconditioned(from_text(text, vocab), vocab), vocab) == text.split(" ", 3)[3]
    build(str(midi_folder), tmp_path / "data", workers=1, progress=False)
    data = Dataset(tmp_path / "data", split=None)
    still = dict(transpose=0, volume=0, stretch=0)
    bare = Augment(**still, unconditioned=1.0)
    for row in range(len(data)):
        plain = data.window(row, 40, 120, Augment(**still), np.random.default_rng(row))
        window = data.window(row, 40, 120, bare, np.random.default_rng(row))
        style, families = musenet.sequence.read_header(window.tokens, vocab)
        assert style == "unknown" and families == [] and window.tokens[0] == vocab.START
        np.testing.assert_array_equal(window.tokens, unconditioned(plain.tokens, vocab))
        cut = len(plain.tokens) - len(window.tokens)  # the body's features are the same
        for name, values in window.features.items():
            np.testing.assert_array_equal(values[1:], plain.features[name][cut + 1:], err_msg=name)


def test_dropping_families_still_fills_the_window(midi_folder, tmp_path):
    build(str(midi_folder), tmp_path / "data", workers=1, progress=False)
    data = Dataset(tmp_path / "data", split=None)
    for augment in (Augment(drop_families=1.0), Augment(enter_late=1.0)):
        batch = data.sample(np.random.default_rng(0), batch=4, context=256, augment=augment)
        assert (batch["tokens"] == data.vocab.PAD).sum() < 4 * 32


def test_short_pieces_are_packed_into_full_rows(midi_folder, tmp_path):
    build(str(midi_folder), tmp_path / "data", workers=1, progress=False)
    data = Dataset(tmp_path / "data", split=None)
    vocab = data.vocab
    batch = data.sample(np.random.default_rng(3), batch=4, context=1023)
    for row in range(4):
        tokens = batch["tokens"][row]
        assert (tokens == vocab.PAD).sum() < 32  # full but for a sliver too small for another piece
        starts = np.flatnonzero(tokens == vocab.START)
        assert len(starts) >= 2  # several pieces, each with its header
        for s in starts[1:]:  # a packed piece comes whole: style, families, start, at time 0
            style_at = np.flatnonzero(tokens[:s] >= vocab.style_offset).max()
            families = tokens[style_at + 1: s]
            assert len(families) and ((families >= vocab.family_offset) & (families < vocab.tempo_offset)).all()
            assert tokens[style_at - 1] == vocab.END
            assert batch["time"][row, s] == 0 and batch["position"][row, s] == 0
    unpacked = data.sample(np.random.default_rng(3), batch=4, context=1023, pack=False)
    assert (unpacked["tokens"] == vocab.PAD).sum() > 1000


def test_random_window_picks_a_piece_of_the_style(midi_folder, tmp_path):
    build(str(midi_folder), tmp_path / "data", workers=1, progress=False)
    data = Dataset(tmp_path / "data", split=None)
    window, start = data.random_window(np.random.default_rng(1), 40, style="pop")
    assert data.style_of(window.piece) == "pop" and len(window.tokens) <= 40 and start >= 0
    again, _ = data.random_window(np.random.default_rng(1), 40, style="pop")
    assert (again.tokens == window.tokens).all()  # same seed, same window
    with pytest.raises(musenet.MuseNetError, match="unknown style 'rock'"):
        data.random_window(np.random.default_rng(1), 40, style="rock")
    with pytest.raises(musenet.MuseNetError, match="no piece of that style"):
        data.random_window(np.random.default_rng(1), 40, style="unknown")  # the broken loose file only


def test_style_weights_and_ensembles(midi_folder, tmp_path):
    build(str(midi_folder), tmp_path / "data", workers=1, progress=False)
    data = Dataset(tmp_path / "data", split=None)
    jazz = np.array([data.style_of(r) == "jazz-ballads" for r in data.rows])
    plain = data.style_shares()
    assert plain.sum() == pytest.approx(1.0)
    heavy = data.style_shares({"jazz-*": 3.0, "pop": 1.0})
    ratio = (heavy[jazz].sum() / heavy[~jazz].sum()) / (plain[jazz].sum() / plain[~jazz].sum())
    assert ratio == pytest.approx(3.0)
    assert data.ensembles() == {"jazz-ballads": ["piano", "strings", "drums"], "pop": ["piano", "strings"]}

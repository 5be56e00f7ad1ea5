import numpy as np
import pytest
import symusic
from helpers import assert_round_trip, make_score
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import musenet
from musenet.encoding import decode_tokens, encode_notes, instant_rank
from musenet.instruments import FAMILIES, PITCH_RANGE, REPRESENTATIVE_PROGRAM
from musenet.notes import NoteTable, midi_bytes, read_midi
from musenet.sequence import read_header
from musenet.vocab import Vocab, default_vocab

MODES = ["beat", "seconds"]


def all_families_score() -> symusic.Score:
    """Every family, drums, 16ths and triplets, chords, and tempo changes."""
    tracks = []
    for i, name in enumerate(FAMILIES):
        lo, hi = PITCH_RANGE[name]
        mid = (lo + hi) // 2
        if name == "drums":
            notes = [(b / 4, 0.1, p, 100) for b in range(32) for p in ((36, 42) if b % 2 == 0 else (38,))]
            tracks.append({"is_drum": True, "notes": notes})
            continue
        notes = [(k / 3 + i / 4, 1 / 3, mid + (k % 5), 40 + 8 * i) for k in range(24)]  # triplet 8ths
        notes += [(8 + k / 4, 0.25, mid - 3 + (k % 7), 90) for k in range(16)]  # 16ths
        notes += [(13, 2, mid, 70), (13, 2, mid + 4, 70), (13, 2, mid + 7, 70)]  # a chord
        tracks.append({"program": REPRESENTATIVE_PROGRAM[name], "notes": notes})
    return make_score(tracks, tempos=[(0, 96), (4, 132), (9.5, 70), (12, 70.5)])


@pytest.mark.parametrize("mode", MODES)
def test_round_trip_all_families_drums_tempo_changes_triplets(mode):
    vocab = default_vocab(mode)
    table = read_midi(all_families_score())
    tokens = assert_round_trip(table, vocab, style="bach")
    style, families = read_header(tokens, vocab)
    assert style == "bach" and families == list(FAMILIES)
    assert tokens[-1] == vocab.END


def test_beat_mode_tempo_tokens_and_exact_grid():
    score = all_families_score()
    tokens = musenet.encode(score, style="pop")
    text = musenet.to_text(tokens)
    assert text.startswith("pop piano strings winds brass voice harp guitar bass drums synth start tempo:95 ")
    assert "tempo:135" in text and "tempo:71" in text  # changes at beat 4 and 9.5; 70.5 shares 71
    decoded = read_midi(musenet.decode(tokens))
    np.testing.assert_allclose(decoded.tempo_time, [0, 4, 9.5])
    # triplets and 16ths land exactly on the 12-per-beat grid
    original = read_midi(score)
    assert set(np.round(original.onset * 12, 6)) == set(np.round(decoded.onset * 12, 6))


def test_canonical_order_inside_an_instant():
    table = read_midi(make_score([
        {"program": 0, "notes": [(0, 1, 64, 80), (1, 1, 67, 80), (1, 1, 60, 80)]},
        {"program": 40, "notes": [(0, 1, 55, 80), (1, 1, 60, 80)]},
    ]))
    text = musenet.to_text(encode_notes(table, style="bach"))
    assert text == ("bach piano strings start tempo:120 strings:v80:G3 piano:v80:E4 wait:12 "
                    "strings:v0:G3 piano:v0:E4 piano:v80:C4 strings:v80:C4 piano:v80:G4 wait:12 "
                    "piano:v0:C4 strings:v0:C4 piano:v0:G4 end")


def test_a_top_first_vocabulary_orders_an_instant_from_the_highest_pitch_down():
    table = read_midi(make_score([
        {"program": 0, "notes": [(0, 1, 64, 80), (1, 1, 67, 80), (1, 1, 60, 80)]},
        {"program": 40, "notes": [(0, 1, 55, 80), (1, 1, 60, 80)]},
    ]))
    vocab = Vocab(instant_order="top-first")
    tokens = encode_notes(table, vocab, style="bach")
    assert musenet.to_text(tokens) == (
        "bach piano strings start tempo:120 piano:v80:E4 strings:v80:G3 wait:12 "
        "piano:v0:E4 strings:v0:G3 piano:v80:G4 piano:v80:C4 strings:v80:C4 wait:12 "
        "piano:v0:G4 piano:v0:C4 strings:v0:C4 end")
    assert_round_trip(table, vocab)
    rank = instant_rank(vocab)  # the sampler's order inside an instant is the encoding's
    events = tokens[(vocab.tables["family"][tokens] >= 0)]
    assert (np.diff(rank[events[:2]]) > 0).all() and (np.diff(rank[events[2:7]]) > 0).all()


def test_long_gap_is_several_waits():
    table = read_midi(make_score([{"program": 0, "notes": [(0, 0.5, 60, 80), (10, 0.5, 62, 80)]}]))
    text = musenet.to_text(encode_notes(table))
    assert "piano:v0:C4 wait:48 wait:48 wait:18 piano:v80:D4" in text


@pytest.mark.parametrize("mode", MODES)
def test_overlapping_same_key_zero_length_and_many_tracks_of_one_family(mode):
    vocab = default_vocab(mode)
    table = read_midi(make_score([
        {"program": 0, "notes": [(0, 4, 60, 80), (1, 1, 60, 100), (2, 0, 62, 80), (2, 0, 62, 70)]},
        {"program": 1, "notes": [(0, 4, 60, 50), (3, 0.5, 64, 80)]},  # same family, another track
        {"program": 4, "notes": [(3.5, 1, 64, 80)]},
    ]))
    assert_round_trip(table, vocab)
    decoded = decode_tokens(encode_notes(table, vocab), vocab)
    c4 = decoded.pitch == 60
    assert decoded.seconds(decoded.onset[c4]).tolist() == pytest.approx([0, 0.5])  # the re-strike ends the first C4
    assert decoded.seconds(decoded.onset[c4] + decoded.duration[c4]).tolist() == pytest.approx([0.5, 1.0])
    assert (decoded.pitch == 62).sum() == 1  # two strikes of one key at one instant are one note


def test_notes_sounding_at_the_end_are_closed():
    vocab = default_vocab()
    tokens = musenet.from_text("unknown piano start tempo:120 piano:v80:C4 wait:12 piano:v80:E4 wait:6")
    table = decode_tokens(tokens, vocab)
    assert table.duration.tolist() == pytest.approx([1.5, 0.5])
    tokens = musenet.from_text("piano:v80:C4 piano:v0:D4 end piano:v80:G4")  # stray off, text after end
    table = decode_tokens(tokens, vocab)
    assert table.pitch.tolist() == [60] and table.duration[0] == pytest.approx(1 / 12)


@pytest.mark.parametrize("mode", MODES)
def test_encode_is_idempotent_through_midi_bytes(mode):
    vocab = default_vocab(mode)
    tokens = musenet.encode(all_families_score(), time_mode=mode)
    again = musenet.encode(midi_bytes(musenet.decode(tokens, time_mode=mode)), time_mode=mode)
    np.testing.assert_array_equal(tokens, again)
    assert musenet.to_text(tokens, vocab).split()[0] == "unknown"


def test_unknown_style_and_bad_tokens():
    with pytest.raises(musenet.MuseNetError, match="unknown style"):
        musenet.encode(all_families_score(), style="dubstep")
    with pytest.raises(musenet.MuseNetError, match="out of range"):
        musenet.decode([1, 2, 10**6])


def test_out_of_range_pitches_fold_by_octaves_and_stray_drums_drop():
    table = read_midi(make_score([
        {"program": 33, "notes": [(0, 1, 100, 80)]},  # bass range tops at 72
        {"is_drum": True, "notes": [(0, 0.1, 10, 80), (0, 0.1, 36, 80)]},
    ]))
    decoded = decode_tokens(encode_notes(table))
    assert sorted(decoded.pitch.tolist()) == [36, 64]


# ---- property-based: random note tables --------------------------------------------------

@st.composite
def note_tables(draw, max_notes=40):
    n = draw(st.integers(1, max_notes))
    family = np.array(draw(st.lists(st.integers(0, 9), min_size=n, max_size=n)))
    lows = np.array([PITCH_RANGE[FAMILIES[f]][0] for f in family])
    highs = np.array([PITCH_RANGE[FAMILIES[f]][1] for f in family])
    pitch = lows + (np.array(draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n))) % (highs - lows + 1))
    on_grid = draw(st.booleans())
    raw_onset = np.array(draw(st.lists(st.floats(0, 40, allow_nan=False), min_size=n, max_size=n)))
    onset = np.round(raw_onset * 12) / 12 if on_grid else raw_onset
    duration = np.array(draw(st.lists(st.sampled_from([0, 1 / 12, 0.25, 1 / 3, 0.5, 1, 2.75, 6]) | st.floats(0, 8),
                                      min_size=n, max_size=n)))
    velocity = np.array(draw(st.lists(st.integers(1, 127), min_size=n, max_size=n)))
    changes = draw(st.lists(st.tuples(st.floats(0.1, 40), st.floats(20, 320)), max_size=3))
    tempo_time = np.array([0.0] + sorted(t for t, _ in changes))
    tempo_qpm = np.array([draw(st.floats(20, 320))] + [q for _, q in sorted(changes)])
    return NoteTable(onset, duration, pitch, velocity, family, tempo_time, tempo_qpm).sorted()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=note_tables(), mode=st.sampled_from(MODES))
def test_property_round_trip_and_canonical_form(table, mode):
    vocab = default_vocab(mode)
    tokens = assert_round_trip(table, vocab)
    decoded = decode_tokens(tokens, vocab)
    np.testing.assert_array_equal(encode_notes(decoded, vocab), tokens)  # canonical: a fixed point
    assert (musenet.from_text(musenet.to_text(tokens, vocab), vocab) == tokens).all()
    notes = ((tokens >= vocab.note_offset) & (tokens < vocab.style_offset)).sum()
    ons = len(decoded)
    assert ons <= notes <= 2 * ons  # one on and at most one off per note

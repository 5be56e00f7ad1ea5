"""The design study's encodings (benchmarks/design_encodings.py) round-trip real music as they claim."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from design_encodings import Chordwise, Onset, OnsetBPE, Ours, Piece, Remi, fidelity  # noqa: E402

from musenet.encoding import decode_tokens, encode_notes  # noqa: E402
from musenet.instruments import DRUMS  # noqa: E402
from musenet.notes import read_midi  # noqa: E402
from musenet.vocab import Vocab, default_vocab  # noqa: E402


@pytest.fixture(scope="module")
def band_piece() -> Piece:
    """A real pop band arrangement, on our beat grid (as the study's pieces are)."""
    path = Path(__file__).resolve().parents[2] / "shared" / "midi" / "multitrack" / "Funkytown.mid"
    if not path.exists():
        pytest.skip("../shared/midi is not beside this checkout")
    vocab = default_vocab()
    table = decode_tokens(encode_notes(read_midi(path), vocab, "pop"), vocab)
    table = table.select(table.onset < 64)  # 16 bars keep the test fast
    return Piece(table, "pop", "train", table.end_seconds())


def test_fidelity_counts_only_notes_that_come_back(band_piece):
    table = band_piece.table
    n = len(table)
    assert fidelity(table, table) == (n, n)
    late = table.select(np.arange(n))
    late.onset = late.onset + 0.1  # a tenth of a beat late: more than half a grid step
    assert fidelity(table, late)[0] < n // 10
    seconds = table.select(np.arange(n))  # the same notes timed in seconds at 60 BPM
    seconds.onset, seconds.duration = table.seconds(table.onset), table.seconds(table.onset + table.duration)
    seconds.duration -= seconds.onset
    seconds.tempo_time, seconds.tempo_qpm = np.zeros(1), np.full(1, 60.0)
    assert fidelity(table, seconds, absolute_time=True) == (n, n)
    quieter = table.select(np.arange(n))
    quieter.velocity = np.maximum(quieter.velocity // 3, 1)
    found, exact = fidelity(table, quieter)
    assert found == n and exact < n


def test_ours_and_onset_round_trips(band_piece):
    vocab = default_vocab()
    n = len(band_piece.table)
    ours = Ours(vocab)
    assert fidelity(band_piece.table, ours.decode(ours.encode(band_piece))) == (n, n)
    onset = Onset(vocab)
    ids = onset.encode(band_piece)
    assert ids.max() < onset.size and ids[0] == vocab.style_token("pop")
    found, exact = fidelity(band_piece.table, onset.decode(ids))
    assert found == n and 0 < exact < n  # onsets all kept; some durations only to the nearest bucket
    assert not np.isin(ids, np.flatnonzero((vocab.tables["family"] >= 0) & (vocab.tables["velocity"] == 0))).any()
    drums = int((band_piece.table.family == DRUMS).sum())
    assert drums and len(ids) < len(ours.encode(band_piece))  # no note-offs, drums without durations


def test_top_first_puts_each_instants_pitches_in_descending_order_and_round_trips(band_piece):
    vocab = default_vocab()
    n = len(band_piece.table)
    top = Ours(Vocab(styles=vocab.styles, instant_order="top-first"))
    ids, low = top.encode(band_piece), Ours(vocab).encode(band_piece)
    assert fidelity(band_piece.table, top.decode(ids)) == (n, n)
    assert sorted(ids.tolist()) == sorted(low.tolist()) and not np.array_equal(ids, low)  # same tokens, reordered
    t = vocab.tables
    instant = np.cumsum(t["wait"][ids] > 0)
    for kind in (0, 1):  # note-offs, then note-ons, each from the highest pitch down
        ev = np.flatnonzero((t["family"][ids] >= 0) & ((t["velocity"][ids] > 0) == kind))
        same = instant[ev[1:]] == instant[ev[:-1]]
        assert same.sum() > 50 and (t["pitch"][ids[ev[1:]]][same] <= t["pitch"][ids[ev[:-1]]][same]).all()


def test_chordwise_keeps_known_sets_and_loses_unknown_ones(band_piece):
    vocab = default_vocab()
    n = len(band_piece.table)
    every = Chordwise(vocab, chords=100_000)
    every.fit([band_piece])
    found, exact = fidelity(band_piece.table, every.decode(every.encode(band_piece)))
    assert found == n  # every set known: every note comes back (loudness is not encoded)
    few = Chordwise(vocab, chords=5)
    few.fit([band_piece])
    ids = few.encode(band_piece)
    assert (ids == few.unknown).sum() > 0 and ids.max() < few.size
    assert fidelity(band_piece.table, few.decode(ids))[0] < n


def test_bpe_compresses_the_onset_stream_losslessly(band_piece):
    pytest.importorskip("tokenizers")
    vocab = default_vocab()
    bpe = OnsetBPE(vocab, merges=300)
    bpe.fit([band_piece])
    ids = bpe.encode(band_piece)
    onset_ids = Onset(vocab).encode(band_piece)
    assert len(ids) < 0.8 * len(onset_ids) and ids.max() < bpe.size
    back = bpe.decode(ids)
    same = Onset(vocab).decode(onset_ids)
    assert np.array_equal(back.onset, same.onset) and np.array_equal(back.pitch, same.pitch)


def test_remi_round_trip(band_piece):
    pytest.importorskip("miditok")
    remi = Remi(default_vocab())
    ids = remi.encode(band_piece)
    assert ids[0] >= remi.style_offset and ids.max() < remi.size
    found, _ = fidelity(band_piece.table, remi.decode(ids))
    assert found > 0.9 * len(band_piece.table)

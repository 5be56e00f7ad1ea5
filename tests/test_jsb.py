"""The JSB benchmark's side features (benchmarks/jsb.py): what each cell's voice, time and
held count are, and that a window starting mid-chorale reads the same values as the whole."""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from jsb import Vocab, collate, evaluate, evaluate_transposed, side_features, token_log_probs  # noqa: E402

NAMES = ("chord", "time", "phase", "held_for")


def chorale() -> np.ndarray:
    """Six sixteenths of four voices: the soprano moves at step 2, the bass rests from step 4."""
    rows = [[72, 67, 64, 48]] * 2 + [[74, 67, 64, 48]] * 2 + [[74, 67, 64, np.nan]] * 2
    return np.array(rows, np.float64)


def held_by_loop(tokens: np.ndarray) -> np.ndarray:
    """The held count the slow way: per cell, how many steps back its voice had the same token."""
    held = np.zeros(len(tokens), np.int64)
    for index in range(5, len(tokens)):
        held[index] = held[index - 4] + 1 if tokens[index] == tokens[index - 4] else 0
    return held


def test_side_features_name_voice_time_phase_and_held_count():
    tokens = Vocab(40, 80).encode(chorale())
    f = side_features(tokens, 0, len(tokens), NAMES)
    assert f["chord"].tolist() == [0] + [1, 2, 3, 4] * 6
    assert f["time"].tolist() == [0] + [s for s in range(6) for _ in range(4)]
    assert f["phase"].tolist() == f["time"].tolist()
    assert f["held_for"].tolist() == held_by_loop(tokens).tolist()
    assert f["held_for"][1 + 4 * 2] == 0 and f["held_for"][1 + 4 * 3] == 1  # the soprano moved at step 2
    assert f["held_for"][4 + 4 * 4] == 0 and f["held_for"][4 + 4 * 5] == 1  # the bass's rest from step 4


def test_a_window_reads_the_features_of_its_place_in_the_chorale():
    tokens = Vocab(40, 80).encode(chorale())
    whole = side_features(tokens, 0, len(tokens), NAMES)
    part = side_features(tokens, 9, 8, NAMES)
    for name in ("chord", "phase", "held_for"):
        assert part[name].tolist() == whole[name][9:17].tolist()
    assert part["time"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]  # from the window's first sixteenth


def test_collate_pads_features_beside_tokens():
    vocab = Vocab(40, 80)
    long, short = vocab.encode(chorale()), vocab.encode(chorale()[:3])
    sides = [side_features(s, 0, len(s) - 1, ("chord", "held_for")) for s in (long, short)]
    inputs, targets, features = collate([long, short], sides)
    assert inputs.shape == features["chord"].shape == (2, len(long) - 1)
    assert features["chord"][1, len(short) - 1:].eq(0).all() and targets[1, len(short) - 1:].eq(-100).all()
    assert collate([long, short])[2] is None


def test_scoring_reads_every_token_once_and_the_key_mixture_is_a_distribution():
    """Sliding windows score each target once, the first window's exactly as the whole chorale
    would; the mixture over keys is the plain score with one key and, with several, averages
    probabilities that each sum to 1 over the vocabulary."""
    from musenet.model import build_model

    torch.manual_seed(0)
    vocab = Vocab(40, 80)
    model = build_model(dict(context=256, layers=1, heads=2, width=32, dropout=0.0, positions="rotary"), vocab.size)
    song = np.vstack([chorale()] * 4)  # 24 sixteenths, 96 targets
    tokens = vocab.encode(song)
    whole = token_log_probs(model, [tokens], 256, 64)[0]
    windowed = token_log_probs(model, [tokens], 32, 8)[0]
    assert whole.shape == windowed.shape == (len(tokens) - 1,) and np.isfinite(windowed).all()
    assert np.allclose(windowed[:32], whole[:32], atol=1e-5)  # the first window has the whole left context
    assert not np.allclose(windowed[40:], whole[40:], atol=1e-3)  # later ones only the window's
    assert evaluate_transposed(model, [song], vocab, 0, 256, 64) == np.float64(-whole.mean()).item()
    assert abs(evaluate(model, [tokens], 256, 64) + whole.mean()) < 1e-6
    keys = [vocab.encode(song, k) for k in range(-2, 3)]
    each = np.stack(token_log_probs(model, keys, 256, 64))
    mixed = evaluate_transposed(model, [song], vocab, 2, 256, 64)
    assert abs(mixed + np.log(np.exp(each).mean(0)).mean()) < 1e-9
    # the soprano's 74 (its first at cell 8) leaves the vocabulary (40-80) at +7 and +8: from
    # there on those two keys give nothing, and the other 15 still count for 1/17 each
    edge = evaluate_transposed(model, [song], vocab, 8, 256, 64)
    inside = np.exp(np.stack(token_log_probs(model, [vocab.encode(song, k) for k in range(-8, 7)], 256, 64)))
    below = song.copy()
    below[song > 73] = np.nan
    early = np.exp(np.stack(token_log_probs(model, [vocab.encode(below, k) for k in (7, 8)], 256, 64)))[:, :8]
    expected = inside.sum(0) / 17
    expected[:8] += early.sum(0) / 17
    assert abs(edge + np.log(expected).mean()) < 1e-9


def test_the_attention_speed_benchmark_prints_a_row_per_length(capsys):
    """benchmarks/attention_speed.py at a toy size: one table row per window length, every
    cell a measured time."""
    import attention_speed

    attention_speed.main(["--lengths", "16,24", "--span", "8", "--batch", "2", "--repeats", "1", "--threads", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 16 |") or
            line.startswith("| 24 |")]
    assert len(rows) == 2
    assert all(float(cell) > 0 for row in rows for cell in row.strip("|").split("|")[1:])

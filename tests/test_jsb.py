"""The JSB benchmark's side features (benchmarks/jsb.py): what each cell's voice, time and
held count are, and that a window starting mid-chorale reads the same values as the whole."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from jsb import Vocab, collate, side_features  # noqa: E402

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

"""The melody-information estimate's features (benchmarks/melody_information.py): the
whole-array versions against slow loops on random notes, and one real POP909 song."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from melody_information import (  # noqa: E402
    pitch_features,
    sounding_from_before,
    struck_between,
    timing_features,
)

POP909 = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "pop909"


def random_notes(rng: np.random.Generator, count: int = 60):
    onset = np.sort(rng.integers(0, 80, count) / 4.0)  # on a 16th grid, some struck together
    return onset, onset + rng.integers(1, 12, count) / 4.0, rng.integers(36, 84, count)


def test_struck_and_sounding_match_loops():
    rng = np.random.default_rng(0)
    onset, end, pitch = random_notes(rng)
    at = np.sort(rng.integers(0, 90, 40) / 4.0)
    lo, hi = at - 1.0, at
    struck = struck_between(onset, pitch, lo, hi)
    sounding = sounding_from_before(onset, end, pitch, at)
    for row, t in enumerate(at):
        expected_struck = {p % 12 for o, p in zip(onset, pitch, strict=True) if lo[row] <= o < hi[row]}
        expected_sounding = {p % 12 for o, e, p in zip(onset, end, pitch, strict=True) if o < t and e > t}
        assert set(np.flatnonzero(struck[row])) == expected_struck
        assert set(np.flatnonzero(sounding[row])) == expected_sounding


@pytest.mark.skipif(not (POP909 / "POP909" / "001").is_dir() and not (POP909 / "001").is_dir(),
                    reason="../shared/corpora/pop909 is absent")
def test_features_of_a_real_song():
    song = next(p for p in (POP909 / "POP909" / "001" / "001.mid", POP909 / "001" / "001.mid") if p.is_file())
    pitch = pitch_features(song)
    notes = len(pitch["target"])
    assert notes > 100 and all(len(pitch[k]) == notes for k in ("history", "melody", "chord"))
    assert pitch["chord"][:, :12].any(axis=1).mean() > 0.5  # most onsets have an annotated chord
    # the melody features say exactly one upcoming pitch class (or none) for every note
    assert (pitch["melody"][:, -13:].sum(axis=1) == 1).all()
    timing = timing_features(song)
    assert timing["target"].sum() > 0 and len(timing["history"]) == len(timing["target"])
    # the history never sees the sixteenth it predicts: the first row's past is empty
    assert timing["history"][0, :16].sum() == 0

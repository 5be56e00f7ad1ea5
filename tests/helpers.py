"""Shared test helpers: synthetic scores, the round-trip check, the corpora beside the checkout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import symusic

from musenet.encoding import decode_tokens, encode_notes
from musenet.instruments import DRUMS, PITCH_HIGH, PITCH_LOW
from musenet.notes import NoteTable
from musenet.vocab import STEP_SECONDS, STEPS_PER_BEAT, VELOCITIES, Vocab, velocity_bins


def make_score(tracks: list[dict], tempos: list[tuple[float, float]] = ((0, 120),), tpq: int = 480) -> symusic.Score:
    """A symusic Score from plain lists. Each track: program, is_drum, notes=[(beat, beats, pitch, vel)]."""
    score = symusic.Score(tpq)
    score.tempos = symusic.Tempo.from_numpy(
        np.array([round(b * tpq) for b, _ in tempos], np.int32), np.array([round(6e7 / q) for _, q in tempos], np.int32)
    )
    for spec in tracks:
        track = symusic.Track(program=spec.get("program", 0), is_drum=spec.get("is_drum", False))
        notes = np.array(spec["notes"], np.float64).reshape(-1, 4)
        track.notes = symusic.Note.from_numpy(
            np.round(notes[:, 0] * tpq).astype(np.int32), np.round(notes[:, 1] * tpq).astype(np.int32),
            notes[:, 2].astype(np.int8), notes[:, 3].astype(np.int8),
        )
        score.tracks.append(track)
    return score


def times(table: NoteTable, beats: np.ndarray, mode: str) -> np.ndarray:
    """Times in grid steps (floats) of a time mode."""
    if mode == "beat":
        return beats * STEPS_PER_BEAT
    return table.seconds(beats) / STEP_SECONDS


def expected_notes(table: NoteTable, mode: str) -> dict[str, np.ndarray]:
    """What the encoding promises to keep of each note, in grid steps, as the README states the rules."""
    family = table.family.copy()
    pitch = table.pitch.copy()
    drum = family == DRUMS
    low, high = PITCH_LOW[family], PITCH_HIGH[family]
    while ((~drum) & (pitch < low)).any():
        pitch = np.where(~drum & (pitch < low), pitch + 12, pitch)
    while ((~drum) & (pitch > high)).any():
        pitch = np.where(~drum & (pitch > high), pitch - 12, pitch)
    keep = (pitch >= low) & (pitch <= high)
    onset = times(table, table.onset, mode)[keep]
    release = times(table, table.onset + table.duration, mode)[keep]
    velocity = np.array(VELOCITIES)[velocity_bins(table.velocity[keep]) - 1]
    family, pitch = family[keep], pitch[keep]
    step = np.floor(onset + 0.5)
    release_step = np.maximum(np.floor(release + 0.5), step + 1)
    order = np.lexsort((-velocity, -release_step, step, pitch, family))
    family, pitch, onset, release, velocity, step = (a[order] for a in (family, pitch, onset, release, velocity, step))
    first = np.ones(len(step), bool)
    first[1:] = (family[1:] != family[:-1]) | (pitch[1:] != pitch[:-1]) | (step[1:] != step[:-1])
    return {k: v[first] for k, v in dict(family=family, pitch=pitch, onset=onset, release=release,
                                        velocity=velocity, step=step).items()}


def assert_round_trip(table: NoteTable, vocab: Vocab, style: str | None = None) -> np.ndarray:
    """decode(encode(table)) keeps every note: family and pitch exact, onset within half a step,
    release within half a step (or at the next strike of its key, or one step after a zero-length
    onset), velocity the bin's value. Returns the tokens."""
    tokens = encode_notes(table, vocab, style)
    decoded = decode_tokens(tokens, vocab)
    want = expected_notes(table, vocab.time_mode)
    got_onset = times(decoded, decoded.onset, vocab.time_mode)
    got_release = times(decoded, decoded.onset + decoded.duration, vocab.time_mode)
    order = np.lexsort((got_onset, decoded.pitch, decoded.family))
    got = dict(family=decoded.family[order], pitch=decoded.pitch[order], onset=got_onset[order],
               release=got_release[order], velocity=decoded.velocity[order])
    assert len(got["onset"]) == len(want["onset"]), "note count changed"
    np.testing.assert_array_equal(got["family"], want["family"])
    np.testing.assert_array_equal(got["pitch"], want["pitch"])
    np.testing.assert_array_equal(got["velocity"], want["velocity"])
    assert np.all(np.abs(got["onset"] - want["onset"]) <= 0.5 + 1e-6)
    melodic = want["family"] != DRUMS
    same_key_next = np.append((want["family"][1:] == want["family"][:-1]) & (want["pitch"][1:] == want["pitch"][:-1]),
                              False)
    next_step = np.append(want["step"][1:], np.inf)
    close = np.abs(got["release"] - want["release"]) <= 0.5 + 1e-6
    cut_by_restrike = same_key_next & np.isclose(got["release"], next_step)
    min_length = np.isclose(got["release"], want["step"] + 1) & (want["release"] - want["step"] < 1)
    bad = melodic & ~(close | cut_by_restrike | min_length)
    assert not bad.any(), f"{bad.sum()} releases moved more than half a step, e.g. {np.flatnonzero(bad)[:5]}"
    return tokens


#: The published collections beside the checkout (../shared/corpora), for tests that read them.
CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
POP909 = CORPORA / "pop909" / "POP909"
GROOVE = CORPORA / "groove"
needs_corpora = pytest.mark.skipif(
    not (POP909.is_dir() and (GROOVE / "info.csv").is_file()),
    reason="../shared/corpora (POP909 and the Groove MIDI Dataset) is not beside this checkout",
)

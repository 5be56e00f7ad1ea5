"""Bass and harmony: how often a bass note's pitch class is in the chord the rest of the band
sounds at its onset, for generated pop pieces and for real POP909 songs (whose bass is the
piano's lowest voice below C4), the chord estimated the same way for both: the pitch classes
of the other (non-drum) notes sounding at the bass onset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..arrange import BASS_CEILING, lowest_voice
from ..corpus.pop909 import read_song, song_files
from ..instruments import FAMILY_ID
from ..notes import NoteTable
from ..sources import SPLITS, split_of

#: A note of the other parts starting up to a 32nd note after the bass note still counts as
#: sounding at its onset (played parts are rarely struck together to the millisecond).
LATE_BEATS = 1 / 8
MAX_REAL_SONGS = 16


def chord_at(table: NoteTable, chord: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(times, 12) bool: the pitch classes of the rows in `chord` (a mask) sounding at each
    time in beats (struck up to LATE_BEATS after it, and not released by it)."""
    out = np.zeros((len(at), 12), bool)
    for pc in range(12):
        rows = np.flatnonzero(chord & (table.pitch % 12 == pc))
        if len(rows) == 0:
            continue
        order = np.argsort(table.onset[rows], kind="stable")
        onset, end = table.onset[rows][order], (table.onset + table.duration)[rows][order]
        latest_end = np.maximum.accumulate(end)
        i = np.searchsorted(onset, at + LATE_BEATS - 1e-9, side="right") - 1
        out[:, pc] = (i >= 0) & (latest_end[np.clip(i, 0, None)] > at + 1e-9)
    return out


def bass_in_chord(table: NoteTable, bass: np.ndarray) -> dict:
    """Of the bass notes (`bass`, a mask or rows) with some other part sounding, the share
    whose pitch class is in that chord; with the counts."""
    is_bass = np.zeros(len(table), bool)
    is_bass[bass] = True
    chord = chord_at(table, ~is_bass & ~table.drum, table.onset[is_bass])
    heard = chord.any(axis=1)
    inside = chord[np.arange(len(chord)), table.pitch[is_bass] % 12] & heard
    return {"share": float(inside.sum() / heard.sum()) if heard.any() else float("nan"),
            "bass_notes": int(is_bass.sum()), "with_chord": int(heard.sum()), "in_chord": int(inside.sum())}


def generated_bass_in_chord(table: NoteTable) -> dict:
    """`bass_in_chord` with the bass family as the bass."""
    return bass_in_chord(table, table.family == FAMILY_ID["bass"])


def pop909_bass_in_chord(table: NoteTable, roles: np.ndarray) -> dict:
    """`bass_in_chord` of a POP909 song, its bass the piano's lowest voice (`arrange.lowest_voice`)
    where that is below C4 (above it the left hand rests and the lowest note is the tune's)."""
    rows = lowest_voice(table, roles)
    return bass_in_chord(table, rows[table.pitch[rows] < BASS_CEILING])


def held_out_songs(root: str | Path, limit: int = MAX_REAL_SONGS) -> list[tuple[Path, str]]:
    """(MIDI file, song id) of the first `limit` POP909 songs in the test split (as a build
    splits them: by song), in song order."""
    test = SPLITS.index("test")
    return [(path, song) for path, song in song_files(root) if split_of(f"pop909:{song}") == test][:limit]


def pooled(results: list[dict]) -> dict:
    """Bass notes in the chord over all pieces (weighted by notes), the mean per piece, counts."""
    with_chord = sum(r["with_chord"] for r in results)
    shares = [r["share"] for r in results if np.isfinite(r["share"])]
    return {"share": sum(r["in_chord"] for r in results) / with_chord if with_chord else float("nan"),
            "mean_per_piece": float(np.mean(shares)) if shares else float("nan"), "pieces": len(results),
            "pieces_with_bass": len(shares), "bass_notes": sum(r["bass_notes"] for r in results),
            "with_chord": with_chord}


def real_bass_in_chord(root: str | Path, limit: int = MAX_REAL_SONGS) -> dict:
    """`pooled` over held-out POP909 songs (whole songs), with each song's figures."""
    songs = [(song, pop909_bass_in_chord(*read_song(path))) for path, song in held_out_songs(root, limit)]
    return {**pooled([r for _, r in songs]), "songs": {song: r for song, r in songs}}

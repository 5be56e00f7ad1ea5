"""Music statistics of a piece (pitch classes, scale consistency, polyphony, notes per
second, inter-onset intervals, pitch range, empty beats), pooled over pieces and compared
as histograms: what generated music has in common with real music of its style."""

from __future__ import annotations

import math

import numpy as np

from ..instruments import FAMILIES
from ..notes import NoteTable
from ..vocab import NOTE_NAMES

POLYPHONY_STEP = 0.1          # seconds between polyphony samples
POLYPHONY_BINS = 13           # 0..11 notes, and 12 or more
EMPTY_WINDOW_SECONDS = 0.5    # seconds mode has no beats: empty 0.5 s windows instead
IOI_EDGES = np.geomspace(0.02, 8.0, 19)  # 18 log-spaced bins; shorter / longer go in the end bins
MAX_REAL_PER_STYLE = 16       # real pieces per style for the statistics
MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])  # natural minor
HISTOGRAMS = ("pitch_class_counts", "ioi_counts", "polyphony_counts")  # compared by their overlap
SCALARS = ("notes_per_second", "scale_consistency", "mean_polyphony", "median_ioi", "pitch_range",  # by means
           "empty_beat_rate")


def excerpt(table: NoteTable, seconds: float) -> NoteTable:
    """The opening `seconds` of a piece: notes starting before it, cut off at it."""
    limit = float(table.beats(seconds))
    rows = np.flatnonzero(table.onset < limit)
    out = table.select(rows)
    out.duration = np.minimum(out.onset + out.duration, limit) - out.onset
    return out


def best_scale(pitch_class_counts: np.ndarray) -> tuple[float, str]:
    """(fraction of notes in the best-fitting major or natural-minor scale, its name)."""
    total = pitch_class_counts.sum()
    if total == 0:
        return float("nan"), ""
    best, name = -1.0, ""
    for kind, steps in (("major", MAJOR), ("minor", MINOR)):
        for root in range(12):
            share = pitch_class_counts[(steps + root) % 12].sum() / total
            if share > best + 1e-12:
                best, name = float(share), f"{NOTE_NAMES[root]} {kind}"
    return best, name


def music_stats(table: NoteTable, time_mode: str = "beat") -> dict:
    """Statistics of one piece. Histograms are raw counts (pool them over pieces, then
    normalise); drums count for onsets (notes per second, IOIs, empty beats) but not for
    pitch classes, scale, polyphony and pitch range.

    - notes_per_second: notes / the piece's length (0 to the end of its last note);
    - pitch_class_counts (12) and scale_consistency (share of melodic notes in the
      best-fitting major or minor scale);
    - polyphony_counts: melodic notes sounding at the midpoints of 0.1 s steps (bins 0..11, 12+),
      mean_polyphony their mean;
    - ioi_counts: intervals in seconds between successive distinct onsets, in log-spaced
      bins (IOI_EDGES), median_ioi;
    - pitch_range: highest minus lowest melodic pitch (semitones);
    - empty_beat_rate: share of beats (seconds mode: 0.5 s windows) up to the end with no onset."""
    n = len(table)
    melodic = ~table.drum
    start = table.seconds(table.onset) if n else np.zeros(0)
    end = table.seconds(table.onset + table.duration) if n else np.zeros(0)
    length = float(end.max()) if n else 0.0
    pitch_class = np.bincount(table.pitch[melodic] % 12, minlength=12).astype(np.float64)
    scale, key = best_scale(pitch_class)

    samples = max(int(math.ceil(length / POLYPHONY_STEP - 1e-9)), 0)
    grid = (np.arange(samples) + 0.5) * POLYPHONY_STEP
    ons, offs = np.sort(start[melodic]), np.sort(end[melodic])
    sounding = np.searchsorted(ons, grid, side="right") - np.searchsorted(offs, grid, side="right")
    polyphony = np.bincount(np.minimum(sounding, POLYPHONY_BINS - 1), minlength=POLYPHONY_BINS).astype(np.float64)

    instants = np.unique(np.round(start, 3))
    ioi = np.diff(instants)
    ioi_bins = np.clip(np.searchsorted(IOI_EDGES, ioi, side="right") - 1, 0, len(IOI_EDGES) - 2)
    ioi_counts = np.bincount(ioi_bins, minlength=len(IOI_EDGES) - 1).astype(np.float64)

    if time_mode == "beat":
        end_beat = float((table.onset + table.duration).max()) if n else 0.0
        units = int(math.ceil(end_beat - 1e-9))
        occupied = np.unique(np.floor(table.onset + 1e-9).astype(np.int64))
    else:
        units = int(math.ceil(length / EMPTY_WINDOW_SECONDS - 1e-9))
        occupied = np.unique(np.floor(start / EMPTY_WINDOW_SECONDS + 1e-9).astype(np.int64))
    occupied = occupied[(occupied >= 0) & (occupied < units)]
    empty = 1.0 - len(occupied) / units if units else float("nan")

    qpm = table.tempo_qpm[np.clip(np.searchsorted(table.tempo_time, table.onset, side="right") - 1, 0, None)]
    pitches = table.pitch[melodic]
    return {
        "notes": n,
        "seconds": length,
        "notes_per_second": n / length if length > 0 else 0.0,
        "pitch_class_counts": pitch_class,
        "scale_consistency": scale,
        "key": key,
        "polyphony_counts": polyphony,
        "mean_polyphony": float(sounding.mean()) if samples else 0.0,
        "ioi_counts": ioi_counts,
        "median_ioi": float(np.median(ioi)) if len(ioi) else float("nan"),
        "pitch_range": int(pitches.max() - pitches.min()) if len(pitches) else 0,
        "mean_pitch": float(pitches.mean()) if len(pitches) else float("nan"),
        "pitch_std": float(pitches.std()) if len(pitches) else 0.0,
        "empty_beat_rate": empty,
        "family_counts": np.bincount(table.family, minlength=len(FAMILIES)).astype(np.float64),
        "mean_velocity": float(table.velocity.mean()) if n else 0.0,
        "velocity_std": float(table.velocity.std()) if n else 0.0,
        "mean_qpm": float(qpm.mean()) if n else 120.0,
    }


def normalise(counts: np.ndarray) -> np.ndarray:
    """Counts as shares of their total (all zeros when there are none)."""
    total = counts.sum()
    return counts / total if total > 0 else counts * 0.0


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Overlapping area of two histograms: sum of the bin-wise minimum once both are normalised
    (1: identical, 0: disjoint)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.sum() == 0 or b.sum() == 0:
        return float("nan")
    return float(np.minimum(normalise(a), normalise(b)).sum())


def pooled(stats: list[dict]) -> dict:
    """Histograms summed and normalised, scalars averaged (NaNs skipped), over pieces."""
    out = {}
    for name, size in zip(HISTOGRAMS, (12, len(IOI_EDGES) - 1, POLYPHONY_BINS), strict=True):
        out[name] = normalise(np.sum([s[name] for s in stats], axis=0)) if stats else np.zeros(size)
    for name in SCALARS:
        values = np.array([s[name] for s in stats], np.float64)
        out[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    out["pieces"] = len(stats)
    return out


def compare(real: list[dict], generated: list[dict], reference: str) -> dict:
    """Real and generated pieces' statistics side by side: histogram overlaps, pooled scalars
    and histograms, and each piece's own figures. `reference` names the real pieces' split."""
    pooled_real, pooled_generated = pooled(real), pooled(generated)
    per_piece = ("notes", "seconds", "key", *SCALARS)
    return {
        "reference": reference, "real_pieces": pooled_real["pieces"], "generated_pieces": pooled_generated["pieces"],
        "overlap": {name: overlap(pooled_real[name], pooled_generated[name]) for name in HISTOGRAMS},
        "real": {name: pooled_real[name] for name in SCALARS},
        "generated": {name: pooled_generated[name] for name in SCALARS},
        "real_histograms": {name: pooled_real[name] for name in HISTOGRAMS},
        "generated_histograms": {name: pooled_generated[name] for name in HISTOGRAMS},
        "real_per_piece": [{name: x[name] for name in per_piece} for x in real],
        "generated_per_piece": [{name: x[name] for name in per_piece} for x in generated],
    }

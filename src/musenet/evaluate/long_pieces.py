"""The health of long pieces: the longest silence, stuck notes, and how many bars repeat an
earlier bar verbatim (a model that loops), for generated pieces and real ones alike."""

from __future__ import annotations

import numpy as np

from ..notes import NoteTable

STUCK_SECONDS = 10.0          # a note longer than this is "stuck"
BEATS_PER_BAR = 4


def longest_silence(table: NoteTable) -> float:
    """Longest stretch (seconds) with no note sounding, from 0 to the last note's end."""
    if len(table) == 0:
        return 0.0
    start = table.seconds(table.onset)
    end = table.seconds(table.onset + table.duration)
    order = np.argsort(start, kind="stable")
    start, end = start[order], end[order]
    covered = np.concatenate([[0.0], np.maximum.accumulate(end)[:-1]])
    return float(max(np.max(start - covered), 0.0))


def repeated_bar_share(table: NoteTable, beats_per_bar: int = BEATS_PER_BAR) -> tuple[float, int]:
    """(share of non-empty bars that repeat an earlier bar verbatim, non-empty bars). Bars are
    `beats_per_bar` beats of the tempo map; a bar's content is its sorted set of (onset in
    the bar in 1/12 beats, pitch, family)."""
    if len(table) == 0:
        return float("nan"), 0
    bar = np.floor(table.onset / beats_per_bar + 1e-9).astype(np.int64)
    position = np.round((table.onset - bar * beats_per_bar) * 12).astype(np.int64)
    order = np.lexsort((table.family, table.pitch, position, bar))
    bar, position, pitch, family = bar[order], position[order], table.pitch[order], table.family[order]
    cuts = np.flatnonzero(np.diff(bar)) + 1
    seen, repeats, bars = set(), 0, 0
    for rows in np.split(np.arange(len(bar)), cuts):
        content = tuple(sorted(set(zip(position[rows].tolist(), pitch[rows].tolist(), family[rows].tolist(),
                                       strict=True))))
        bars += 1
        repeats += content in seen
        seen.add(content)
    return repeats / bars, bars


def long_piece_health(table: NoteTable) -> dict:
    """Longest silence (s), stuck notes (longer than 10 s) and verbatim bar repetition."""
    seconds = table.seconds(table.onset + table.duration) - table.seconds(table.onset) if len(table) else np.zeros(0)
    share, bars = repeated_bar_share(table)
    end = float(table.seconds(np.array([(table.onset + table.duration).max()]))[0]) if len(table) else 0.0
    return {"seconds": end, "notes": len(table), "longest_silence": longest_silence(table),
            "stuck_notes": int((seconds > STUCK_SECONDS).sum()), "repeated_bar_share": share, "bars": bars}


def health_summary(healths: list[dict]) -> dict:
    """Over pieces: the longest silence, all stuck notes, the mean repeated-bar share."""
    shares = [h["repeated_bar_share"] for h in healths if np.isfinite(h["repeated_bar_share"])]
    return {"longest_silence": max((h["longest_silence"] for h in healths), default=float("nan")),
            "stuck_notes": sum(h["stuck_notes"] for h in healths),
            "repeated_bar_share": float(np.mean(shares)) if shares else float("nan")}

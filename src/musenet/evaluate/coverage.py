"""Instrument coverage: does every family a request names actually play? A fixed grid of
requests (a style and 2-4 families each), one piece per request in strict and in soft mode;
a requested family plays if it has at least MIN_NOTES notes (drums: hits)."""

from __future__ import annotations

import numpy as np

from ..instruments import FAMILIES
from ..notes import NoteTable

MIN_NOTES = 4            # a requested family "plays" with at least this many notes (drums: hits)
DRUM_STYLE_PREFIX = "drums-"
#: The ensembles of the grid, taken in turn: together they name each of the ten families at
#: least twice a round (40 requests: six times or more), drums, bass and guitar most.
FAMILY_SETS: tuple[tuple[str, ...], ...] = (
    ("voice", "piano", "bass", "drums"),
    ("strings", "guitar"),
    ("drums", "bass", "guitar"),
    ("synth", "bass", "drums"),
    ("brass", "winds", "bass"),
    ("piano", "strings"),
    ("voice", "guitar", "bass", "drums"),
    ("winds", "harp"),
    ("synth", "brass", "guitar", "drums"),
    ("voice", "strings", "winds"),
    ("harp", "piano", "bass"),
    ("synth", "brass", "drums"),
)


def band_first(styles: list[str] | tuple[str, ...]) -> list[str]:
    """The styles to ask for (never `unknown`), band styles first: pop, the drum styles, then
    the rest in the order given."""
    styles = [s for s in styles if s != "unknown"]
    rank = {s: 0 if s == "pop" else 1 if s.startswith(DRUM_STYLE_PREFIX) else 2 for s in styles}
    return sorted(styles, key=lambda s: rank[s])  # stable: the given order within a rank


def coverage_grid(styles: list[str] | tuple[str, ...], requests: int = 40) -> list[tuple[str, tuple[str, ...]]]:
    """`requests` (style, families) pairs, the same for the same styles: the i-th takes
    FAMILY_SETS in turn and a style in turn among those that fit it (a drum style only with
    sets that have drums), shifted by one each round so styles and sets mix."""
    styles = band_first(styles)
    grid = []
    for i in range(requests):
        families = FAMILY_SETS[i % len(FAMILY_SETS)]
        fitting = [s for s in styles if "drums" in families or not s.startswith(DRUM_STYLE_PREFIX)] or styles
        grid.append((fitting[(i + i // len(FAMILY_SETS)) % len(fitting)], families))
    return grid


def family_notes(table: NoteTable) -> dict[str, int]:
    """Notes per family (every family, zeros included)."""
    counts = np.bincount(table.family, minlength=len(FAMILIES))
    return {name: int(counts[f]) for f, name in enumerate(FAMILIES)}


def coverage(grid: list[tuple[str, tuple[str, ...]]], tables: list[NoteTable]) -> dict:
    """Share of requested families that play (>= MIN_NOTES notes), overall and per family,
    with each request's note counts of the families it named."""
    played: dict[str, list[bool]] = {name: [] for name in FAMILIES}
    rows = []
    for (style, families), table in zip(grid, tables, strict=True):
        notes = family_notes(table)
        for name in families:
            played[name].append(notes[name] >= MIN_NOTES)
        rows.append({"style": style, "families": list(families), "notes": {f: notes[f] for f in families},
                     "other_notes": sum(notes.values()) - sum(notes[f] for f in families)})
    everything = [p for name in FAMILIES for p in played[name]]
    return {
        "overall": float(np.mean(everything)) if everything else float("nan"),
        "by_family": {name: float(np.mean(p)) if p else float("nan") for name, p in played.items()},
        "median_notes": {name: float(np.median([r["notes"][name] for r in rows if name in r["notes"]]))
                         for name, p in played.items() if p},
        "requested": {name: len(p) for name, p in played.items()},
        "requests": rows,
    }

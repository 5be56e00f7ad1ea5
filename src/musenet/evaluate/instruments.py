"""Instrument adherence: which families to ask for in a style, and the share of generated
notes that keep to them (strict mode masks the rest, so it should be 1; soft mode only names
them in the header, as MuseNet did)."""

from __future__ import annotations

import numpy as np

from ..instruments import FAMILIES
from ..notes import NoteTable


def requested_families(data, rows: np.ndarray) -> list[str]:
    """The families most of these pieces use (header families present in at least half of
    them, at most four, at least the most common one)."""
    bits = data.index["families"][rows]
    share = np.array([((bits >> f) & 1).mean() if len(bits) else 0.0 for f in range(len(FAMILIES))])
    order = np.argsort(-share, kind="stable")
    chosen = [int(f) for f in order[:4] if share[f] >= 0.5] or [int(order[0])]
    return [FAMILIES[f] for f in sorted(chosen)]


def share_in_families(tables: list[NoteTable], families: list[str]) -> tuple[float, int]:
    """(share of the pieces' notes played by `families`, notes in all)."""
    wanted = [FAMILIES.index(f) for f in families]
    total = sum(len(t) for t in tables)
    inside = sum(int(np.isin(t.family, wanted).sum()) for t in tables)
    return (inside / total if total else float("nan")), total


def adherence(strict: list[NoteTable], soft: list[NoteTable], families: list[str]) -> dict:
    """One style's adherence in strict and soft mode, with the notes each share counts."""
    strict_share, strict_notes = share_in_families(strict, families)
    soft_share, soft_notes = share_in_families(soft, families)
    return {"requested": families, "strict": strict_share, "strict_notes": strict_notes,
            "soft": soft_share, "soft_notes": soft_notes, "soft_pieces": len(soft)}


def overall(by_style: dict[str, dict]) -> dict:
    """Strict and soft adherence over all styles (weighted by notes), and `by_style`."""
    out = {}
    for mode in ("strict", "soft"):
        counted = [v for v in by_style.values() if v[f"{mode}_notes"]]
        total = sum(v[f"{mode}_notes"] for v in counted)
        out[mode] = sum(v[mode] * v[f"{mode}_notes"] for v in counted) / total if total else float("nan")
    return {**out, "by_style": by_style}

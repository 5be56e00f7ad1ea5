"""Drums against real grooves: a drum part's hits per bar, how much of it sits on the 16th-note
grid, its kick / snare / hi-hat balance and how steady its groove is from bar to bar, for
generated parts and real Groove MIDI Dataset takes alike, and how their distributions overlap.

Bars are 4 beats from beat 0 (a note table carries no meter; 1,138 of Groove's 1,150 takes
are in 4-4). A hit's 16th is its onset rounded to the nearest 16th note; it is *on the grid*
if, rounded to the token grid (12 steps a beat, what the model sees), it falls on a 16th."""

from __future__ import annotations

import numpy as np

from ..corpus.groove import STYLE_PREFIX, read_groove
from ..notes import NoteTable
from ..vocab import STEPS_PER_BEAT
from .long_pieces import BEATS_PER_BAR
from .music import excerpt, overlap

KICK, SNARE, HIHAT = (35, 36), (37, 38, 40), (42, 44, 46)  # General MIDI drum pitches
VOICES = 4                 # kick, snare, hi-hat, any other drum
SIXTEENTHS = 4 * BEATS_PER_BAR
FIGURES = ("hits_per_bar", "grid_share", "kick_share", "snare_share", "hihat_share", "consistency")
SHARE_EDGES = np.linspace(0.0, 1.0, 11)
#: Histogram bin edges of each figure's per-bar values (the last bin is open above).
EDGES = {"hits_per_bar": np.arange(0.0, 44.0, 4.0), **{name: SHARE_EDGES for name in FIGURES[1:]}}
MAX_REAL_TAKES = 32        # real takes per style at most (evenly spread over the split's list)
MIN_REAL_TAKES = 4         # fewer real takes than this, and a style's overlap is not measurable


def drum_bars(table: NoteTable) -> dict[str, np.ndarray]:
    """Per-bar figures of a table's drums, bars from the first hit's to the last hit's:
    hits, shares of hits on the 16th grid / kick / snare / hi-hat (NaN in an empty bar), and
    `consistency`, for each bar after the first, the Jaccard similarity of its pattern with
    the previous bar's (a pattern: the set of (16th of the bar, voice) hit; NaN if both are
    empty). Also the totals a piece's figures are made of."""
    drums = table.select(table.drum)
    if len(drums) == 0:
        empty = np.zeros(0)
        return {"hits": empty, "consistency": empty, **{f"{n}_share": empty for n in ("grid", "kick", "snare",
                                                                                     "hihat")}, "totals": {}}
    sixteenth = np.round(drums.onset * 4).astype(np.int64)
    on_grid = np.round(drums.onset * STEPS_PER_BEAT).astype(np.int64) % (STEPS_PER_BEAT // 4) == 0
    voice = np.select([np.isin(drums.pitch, KICK), np.isin(drums.pitch, SNARE), np.isin(drums.pitch, HIHAT)],
                      [0, 1, 2], 3)
    bar = sixteenth // SIXTEENTHS
    bar = bar - bar.min()
    bars = int(bar.max()) + 1
    hits = np.bincount(bar, minlength=bars).astype(np.float64)

    def share(mask: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.bincount(bar, weights=mask.astype(np.float64), minlength=bars) / hits

    pattern = np.zeros((bars, VOICES * SIXTEENTHS), bool)
    pattern[bar, voice * SIXTEENTHS + sixteenth % SIXTEENTHS] = True
    both = (pattern[1:] & pattern[:-1]).sum(axis=1)
    either = (pattern[1:] | pattern[:-1]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        consistency = np.where(either > 0, both / either, np.nan)
    totals = {"hits": len(drums), "bars": bars, "grid": int(on_grid.sum()), "kick": int((voice == 0).sum()),
              "snare": int((voice == 1).sum()), "hihat": int((voice == 2).sum())}
    return {"hits": hits, "grid_share": share(on_grid), "kick_share": share(voice == 0),
            "snare_share": share(voice == 1), "hihat_share": share(voice == 2), "consistency": consistency,
            "totals": totals}


def drum_figures(table: NoteTable) -> dict[str, float]:
    """A piece's drum figures: hits per bar (over the bars from its first hit to its last),
    the shares of its hits on the 16th grid, kick, snare, hi-hat, and the mean bar-to-bar
    consistency. NaN for a piece without drums (hits_per_bar 0)."""
    bars = drum_bars(table)
    t = bars["totals"]
    if not t:
        return {"hits_per_bar": 0.0, **{name: float("nan") for name in FIGURES[1:]}}
    pairs = bars["consistency"][np.isfinite(bars["consistency"])]
    return {"hits_per_bar": t["hits"] / t["bars"], "grid_share": t["grid"] / t["hits"],
            "kick_share": t["kick"] / t["hits"], "snare_share": t["snare"] / t["hits"],
            "hihat_share": t["hihat"] / t["hits"], "consistency": float(pairs.mean()) if len(pairs) else float("nan")}


def histograms(tables: list[NoteTable]) -> dict[str, np.ndarray]:
    """Each figure's per-bar values (consistency: per pair of bars), pooled over the pieces,
    counted in EDGES' bins (NaNs left out; values past the last edge in the last bin)."""
    pooled = {name: [] for name in FIGURES}
    for table in tables:
        bars = drum_bars(table)
        pooled["hits_per_bar"].append(bars["hits"])
        for name in FIGURES[1:]:
            pooled[name].append(bars[name])
    out = {}
    for name, edges in EDGES.items():
        values = np.concatenate(pooled[name]) if pooled[name] else np.zeros(0)
        values = values[np.isfinite(values)]
        out[name] = np.bincount(np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2),
                                minlength=len(edges) - 1).astype(np.float64)
    return out


def _means(figures: list[dict]) -> dict[str, float]:
    out = {}
    for name in FIGURES:
        values = np.array([f[name] for f in figures], np.float64)
        out[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return out


def overlaps(a: list[NoteTable], b: list[NoteTable]) -> tuple[dict[str, float], float]:
    """(each figure's overlap of the two sets' per-bar histograms, their mean; NaN unless
    every figure has values on both sides)."""
    hist_a, hist_b = histograms(a), histograms(b)
    each = {name: overlap(hist_a[name], hist_b[name]) for name in FIGURES}
    finite = [v for v in each.values() if np.isfinite(v)]
    return each, float(np.mean(finite)) if len(finite) == len(FIGURES) else float("nan")


def compare_drums(generated: list[NoteTable], real: list[NoteTable]) -> dict:
    """One style's generated drum parts beside real ones: per-piece figures and their means,
    each figure's distribution overlap (`music.overlap` of the per-bar histograms) and the
    mean of those overlaps; and, as the ceiling sampling noise allows, the mean overlap of
    the real takes' two halves (odd and even ones) with each other."""
    made, truth = [drum_figures(t) for t in generated], [drum_figures(t) for t in real]
    each, mean = overlaps(generated, real)
    return {"pieces": len(made), "pieces_with_drums": int(sum(f["hits_per_bar"] > 0 for f in made)),
            "real_pieces": len(truth), "generated": _means(made), "real": _means(truth), "overlap": each,
            "mean_overlap": mean, "real_split_half": overlaps(real[::2], real[1::2])[1],
            "generated_per_piece": made}


def real_takes(beats: list, style: str, seconds: float, limit: int = MAX_REAL_TAKES) -> list[NoteTable]:
    """The opening `seconds` of Groove test-split takes among `beats` (`corpus.groove.takes`
    of the `beat` type, read once by the caller; drums mapped to General MIDI, as a build
    converts them): of a drum style's own Groove style; for any other style (pop, whose band
    versions take their drums from Groove beats of every style) of all styles. At most
    `limit`, evenly spread over info.csv's order."""
    chosen = [t for t in beats if t.split == "test"
              and (t.style == style or not style.startswith(STYLE_PREFIX))]
    if len(chosen) > limit:
        chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, limit).round().astype(int)]
    return [excerpt(read_groove(t.path), seconds) for t in chosen]

"""Does the model play as a band? The four band evaluations in turn, each a stage of its own:
instrument coverage (`coverage`), drums against real grooves (`drums`), bass against the
chord (`harmony`) and the health of continued songs (`continuation`). Needs only a composer:
`run_eval(band=True)` runs it after the other stages, or call `run_band` alone."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import numpy as np

from ..corpus.groove import takes
from ..errors import MuseNetError
from .continuation import CONTINUE_SECONDS, PROMPT_SECONDS, continue_song, folder_prompts, pop909_band_prompts, summary
from .coverage import DRUM_STYLE_PREFIX, coverage, coverage_grid
from .drums import MAX_REAL_TAKES, MIN_REAL_TAKES, compare_drums, real_takes
from .harmony import MAX_REAL_SONGS, generated_bass_in_chord, pooled, real_bass_in_chord

#: What a band style's pieces ask for: pop a band with a singer; drum styles drums alone.
POP_BAND = ("voice", "guitar", "piano", "bass", "drums")
BAND_PROMPTS = 2           # band versions of held-out POP909 songs continued (with --corpora)

Stage = Callable[[str], AbstractContextManager]


def band_styles(styles: list[str]) -> list[str]:
    """The styles whose drums and bass are measured: pop and the drum styles."""
    return [s for s in styles if s == "pop" or s.startswith(DRUM_STYLE_PREFIX)]


def band_stage_count(styles: list[str], corpora, prompts) -> int:
    """How many stages `run_band` reports (for a progress bar)."""
    return 3 + len(band_styles(styles)) + (1 if corpora else 0) + (1 if corpora or prompts else 0)


def check_inputs(corpora, prompts) -> None:
    """One-line errors for a corpora folder without groove/ and pop909/, a prompts path that
    is not a folder."""
    if corpora and not ((Path(corpora) / "groove" / "info.csv").is_file() and (Path(corpora) / "pop909").is_dir()):
        raise MuseNetError(f"{corpora}: not a corpora folder (it needs groove/info.csv and pop909/)")
    if prompts and not Path(prompts).is_dir():
        raise MuseNetError(f"{prompts}: not a folder of MIDI songs to continue")


def run_band(composer, styles: list[str], seconds: float = 30.0, requests: int = 40, pieces: int = 4,
             corpora: str | Path | None = None, prompts: str | Path | None = None, seed: int = 0,
             stage: Stage | None = None, max_prompts: int | None = None, band_prompts: int = BAND_PROMPTS,
             real_limit: int = MAX_REAL_SONGS, prompt_seconds: float = PROMPT_SECONDS,
             continue_seconds: float = CONTINUE_SECONDS, sampling: dict | None = None) -> dict:
    """The band evaluations: `requests` coverage requests over `styles` (one piece of `seconds`
    each, strict and soft), `pieces` strict pieces per band style for drums and bass, real
    Groove takes and POP909 songs from `corpora` (its groove/ and pop909/ folders), and the
    continuation of the songs in `prompts` (at most `max_prompts`) and of `band_prompts`
    held-out POP909 band versions (at most `real_limit` POP909 songs for the bass), each cut
    at `prompt_seconds` and continued for `continue_seconds`; `sampling` (temperature, top_p,
    top_k, nucleus, guidance) goes to every draw. Returns every figure, and each stage's seconds."""
    sampling = sampling or {}
    if requests < 1 or pieces < 1 or seconds <= 0:
        raise MuseNetError("band evaluation: requests and pieces must be at least 1, seconds positive")
    if not [s for s in styles if s != "unknown"]:
        raise MuseNetError("band evaluation: no style to compose in")
    check_inputs(corpora, prompts)
    stage = stage or (lambda label: nullcontext())
    timings: dict[str, float] = {}
    timed = _timer(stage, timings)
    grid = coverage_grid(styles, requests)
    with timed("coverage (strict)"):
        strict = compose_grid(composer, grid, seconds, seed, "strict", **sampling)
    with timed("coverage (soft)"):
        soft = compose_grid(composer, grid, seconds, seed, "soft", **sampling)
    with timed("coverage (strict, no entrances)"):
        alone = compose_grid(composer, grid, seconds, seed, "strict", max_family_silence=0, **sampling)
    generated = {}
    for style in band_styles(styles):
        with timed(f"band pieces ({style})"):
            generated[style] = compose_band(composer, style, seconds, pieces, seed, **sampling)
    real_drums, real_harmony = {}, None
    if corpora:
        with timed("real grooves and songs"):
            beats = takes(Path(corpora) / "groove", ("beat",))
            real_drums = {s: real_takes(beats, s, seconds, MAX_REAL_TAKES) for s in generated}
            real_harmony = real_bass_in_chord(Path(corpora) / "pop909", real_limit)
    continued = {"songs": [], "skipped": []}
    if corpora or prompts:
        with timed("continuations"):
            continued = continue_songs(composer, prompt_list(prompts, corpora, max_prompts, band_prompts), seed,
                                       prompt_seconds, continue_seconds, **sampling)
    return {
        "settings": {"requests": requests, "seconds": seconds, "pieces": pieces, "corpora": str(corpora or ""),
                     "prompts": str(prompts or ""), "prompt_seconds": prompt_seconds,
                     "continue_seconds": continue_seconds},
        "coverage": {"strict": coverage(grid, strict), "soft": coverage(grid, soft),
                     "strict_no_entrances": coverage(grid, alone)},
        "drums": drum_summary(generated, real_drums),
        "harmony": harmony_summary(generated.get("pop", []), real_harmony),
        "continuation": {**continued, **summary(continued["songs"])},
        "timings": timings,
    }


def _timer(stage: Stage, timings: dict[str, float]):
    @contextmanager
    def timed(label: str):
        started = time.time()
        with stage(label):
            yield
        timings[label] = time.time() - started

    return timed


def compose_grid(composer, grid: list[tuple[str, tuple[str, ...]]], seconds: float, seed: int, mode: str,
                 **settings) -> list:
    """One piece per request (seed `seed * 1000 + i` for the i-th, in every mode): note tables."""
    return [composer.generate(style=style, instruments=list(families), seconds=seconds, seed=seed * 1000 + i,
                              instrument_mode=mode, max_tokens=int(seconds * 200) + 100, **settings)[0].table
            for i, (style, families) in enumerate(grid)]


def compose_band(composer, style: str, seconds: float, pieces: int, seed: int, **settings) -> list:
    """`pieces` strict pieces of a band style (pop: POP_BAND; a drum style: drums alone);
    `settings` go to `Composer.generate` (temperature, top_p...)."""
    families = ["drums"] if style.startswith(DRUM_STYLE_PREFIX) else list(POP_BAND)
    return [p.table for p in composer.generate(style=style, instruments=families, seconds=seconds, candidates=pieces,
                                               seed=seed * 1000 + 900, instrument_mode="strict",
                                               max_tokens=int(seconds * 200) + 100, **settings)]


def drum_summary(generated: dict[str, list], real: dict[str, list]) -> dict:
    """Per band style the drum figures beside real takes (none without corpora); the mean over
    styles of each style's mean overlap; the same over the *measurable* styles, those with at
    least MIN_REAL_TAKES real takes (one take's bars say little of a style), beside their
    ceiling, the mean overlap of their real takes' two halves."""
    by_style = {style: compare_drums(tables, real.get(style, [])) for style, tables in generated.items()}

    def mean(values) -> float:
        values = [v for v in values if np.isfinite(v)]
        return float(np.mean(values)) if values else float("nan")

    measurable = [v for v in by_style.values() if v["real_pieces"] >= MIN_REAL_TAKES]
    return {"by_style": by_style, "mean_overlap": mean(v["mean_overlap"] for v in by_style.values()),
            "min_real_takes": MIN_REAL_TAKES, "measurable_styles": len(measurable),
            "mean_overlap_measurable": mean(v["mean_overlap"] for v in measurable),
            "ceiling_measurable": mean(v["real_split_half"] for v in measurable)}


def harmony_summary(pop: list, real: dict | None) -> dict:
    """Bass notes in the chord, generated pop pieces and real POP909 songs, and the gap."""
    made = pooled([generated_bass_in_chord(t) for t in pop])
    truth = real or {"share": float("nan"), "pieces": 0}
    return {"generated": made, "real": truth, "difference": made["share"] - truth["share"]}


def prompt_list(prompts, corpora, max_prompts: int | None, band_prompts: int) -> list[tuple[str, object]]:
    """(name, note table or why it cannot be used) of every song to continue."""
    songs = folder_prompts(prompts, max_prompts) if prompts else []
    return songs + (pop909_band_prompts(corpora, band_prompts) if corpora and band_prompts else [])


def continue_songs(composer, songs: list[tuple[str, object]], seed: int, prompt_seconds: float = PROMPT_SECONDS,
                   continue_seconds: float = CONTINUE_SECONDS, **sampling) -> dict:
    """`continue_song` for each song in pop style (where the model knows it); a song that cannot
    be used (unreadable, too short) is listed with the reason instead."""
    style = "pop" if "pop" in composer.styles else None
    done, skipped = [], []
    for number, (name, table) in enumerate(songs):
        if isinstance(table, str):
            skipped.append({"name": name, "reason": table})
            continue
        try:
            done.append(continue_song(composer, name, table, prompt_seconds, continue_seconds,
                                      seed=seed * 1000 + 800 + number, style=style, **sampling))
        except MuseNetError as err:
            skipped.append({"name": name, "reason": str(err)})
    return {"songs": done, "skipped": skipped}

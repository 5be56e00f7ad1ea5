"""`musenet eval` from end to end: open the model and the data, score held-out pieces, read
real pieces, compose in every style, compare, and write the report. `run_eval` lists the
stages; each is a function of its own."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..composer import Composer
from ..dataset import Dataset
from ..encoding import decode_tokens
from ..errors import MuseNetError
from ..settings import Settings
from ..vocab import default_vocab
from .band import band_stage_count, check_inputs, run_band
from .classifier import piece_features
from .instruments import adherence, overall, requested_families
from .likelihood import WINDOW_OVERLAP, heldout_scores, versus_ngram
from .long_pieces import health_summary, long_piece_health
from .music import HISTOGRAMS, MAX_REAL_PER_STYLE, compare, excerpt, music_stats
from .ranking import DRAWS, KEEP, compare_ranking
from .report import headline, write_report
from .style import MAX_TRAIN_PER_STYLE, style_adherence
from .two_sample import two_sample_test

#: The `Settings` fields `musenet eval --temperature/--top-k/--top-p/--min-p/--nucleus/--guidance` sets for every draw.
SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "min_p", "nucleus", "guidance")

Stage = Callable[[str], AbstractContextManager]


def run_eval(model: str | Path, data: str | Path, out: str | Path | None = None, pieces_per_style: int = 8,
             seconds: float = 30.0, long_pieces: int = 2, long_seconds: float = 240.0, split: str = "test",
             seed: int = 0, max_tokens: int = 200_000, progress: bool = True, device: str | None = None,
             threads: int | None = None, band: bool = False, corpora: str | Path | None = None,
             prompts: str | Path | None = None, band_requests: int = 40, critic_draws: int = DRAWS,
             sampling: dict | None = None) -> dict:
    """Evaluate a model (checkpoint or run directory) on a built dataset; with `out`, write
    the report there (see `write_report`). With `band` (implied by `corpora` or `prompts`),
    also the band stages (`band.run_band`: coverage of `band_requests` requests, drums against
    Groove takes and bass against POP909 from `corpora`, continuations of the songs in
    `prompts`). For a model with a critic, with `critic_draws`, also `ranking.compare_ranking`.
    `sampling` (temperature, top_p, top_k, nucleus, guidance: `Settings` fields) applies to every piece
    composed (the critic's comparison keeps the defaults). Returns every number as a dict."""
    started = time.time()
    check_settings(pieces_per_style, seconds, long_pieces, long_seconds, split)
    sampling = sampling_settings(sampling)
    band = band or bool(corpora) or bool(prompts)
    if band:
        check_inputs(corpora, prompts)
        if band_requests < 1:
            raise MuseNetError("--band-requests must be at least 1")
    composer, train, held = open_inputs(model, data, split, device, threads)
    chosen = Settings(**sampling)
    composer.check(chosen)  # guidance only for a model that learnt it, before any work
    sampling["guidance"] = composer.guided(chosen).guidance  # recorded as drawn
    styles = styles_to_compose(train)
    rng = np.random.default_rng(seed)
    stages = 4 + 2 * len(styles) + (1 if long_pieces else 0)
    stages += band_stage_count(styles, corpora, prompts) if band else 0
    ranking = composer.critic is not None and critic_draws > 0
    stages += len(styles) if ranking else 0
    with progress_stages(stages, progress) as stage:
        with stage("model bits per note"):
            scores = heldout_scores(composer.model, held, composer.model.config.context, composer.device,
                                    max_tokens, overlap=WINDOW_OVERLAP)
        with stage("5-gram baseline"):
            likelihood = versus_ngram(scores, held, train)
        with stage("real pieces"):
            real = read_real_pieces(train, held, styles, seconds, rng)
        generated, instruments = compose_styles(composer, train, styles, pieces_per_style, seconds, seed, stage,
                                                sampling)
        with stage("statistics"):
            stats, style = compare_with_real(real, generated, styles, train.vocab.time_mode, seed)
        long = compose_long_pieces(composer, train, styles, long_pieces, long_seconds, seed, stage, sampling)
        band_report = run_band(composer, styles, seconds, band_requests, pieces_per_style, corpora, prompts, seed,
                               stage, sampling=sampling) if band else None
        ensembles = {s: requested_families(train, rows_of(train, s)) for s in styles}
        critic_report = compare_ranking(composer, real, ensembles, seconds, seed, stage, train.vocab.time_mode,
                                        draws=max(critic_draws, KEEP)) if ranking else None
    report = {
        "model": str(model), "data": str(data), "time_mode": train.vocab.time_mode, "seed": seed,
        "settings": {"pieces_per_style": pieces_per_style, "seconds": seconds, "long_pieces": long_pieces,
                     "long_seconds": long_seconds, "split": split, "max_tokens": max_tokens,
                     "soft_pieces_per_style": soft_pieces(pieces_per_style), "window_overlap": WINDOW_OVERLAP,
                     "sampling": sampling},
        "styles": styles, "likelihood": likelihood, "music_stats": stats, "style_adherence": style,
        "instruments": overall(instruments),
        "long_pieces": {**long, "real_reference": {"pieces": len(real.health), **health_summary(real.health)}},
        "tables": {s: tables[0] for s, tables in generated.items() if tables},  # one example per style
        "music_stats_mean_overlap": {name: _nanmean([v["overlap"][name] for v in stats.values()])
                                     for name in HISTOGRAMS},
    }
    if band_report is not None:
        report["band"] = band_report
    if critic_report is not None:
        report["critic"] = {**critic_report, "trained": composer.critic.trained}
    report["headline"] = headline(report)
    report["eval_seconds"] = time.time() - started
    if out is not None:
        write_report(report, out)
    return report


def sampling_settings(sampling: dict | None) -> dict:
    """Every sampling field the evaluation composes with (the defaults of `Settings` where not
    given), checked as `Settings` checks them; an unknown name is an error."""
    defaults = Settings()
    fields = {name: getattr(defaults, name) for name in SAMPLING_FIELDS}
    unknown = set(sampling or {}) - set(fields)
    if unknown:
        raise MuseNetError(f"unknown sampling setting {sorted(unknown)[0]!r}; use {', '.join(SAMPLING_FIELDS)}")
    fields.update(sampling or {})
    Settings(**fields).check(default_vocab())  # a bad top_p or nucleus is an error here, before any work
    return fields


def check_settings(pieces_per_style: int, seconds: float, long_pieces: int, long_seconds: float, split: str) -> None:
    """One-line errors for counts and lengths out of range and an unknown split."""
    if pieces_per_style < 1 or long_pieces < 0 or seconds <= 0 or long_seconds <= 0:
        raise MuseNetError("--pieces-per-style must be at least 1, --long-pieces at least 0, lengths positive")
    if split not in ("valid", "test"):
        raise MuseNetError(f"--split must be valid or test, not {split!r}")


def open_inputs(model: str | Path, data: str | Path, split: str, device: str | None,
                threads: int | None) -> tuple[Composer, Dataset, Dataset]:
    """(composer, train split, held-out split), refusing a dataset of another vocabulary or
    an empty split."""
    composer = Composer.load(model, device=device, threads=threads)
    train, held = Dataset(data, "train"), Dataset(data, split)
    if composer.vocab != train.vocab:
        raise MuseNetError(f"{data}: the dataset's vocabulary (time mode, styles) differs from the model's")
    if len(held) == 0:
        raise MuseNetError(f"{data}: the {split} split is empty; try --split {'valid' if split == 'test' else 'test'}"
                           " or a bigger build")
    if len(train) == 0:
        raise MuseNetError(f"{data}: the train split is empty")
    return composer, train, held


def styles_to_compose(train: Dataset) -> list[str]:
    """The styles the train split has pieces of ("unknown" only when it is the only one)."""
    styles = [s for s in train.vocab.styles if len(rows_of(train, s))]
    if len(styles) > 1 and "unknown" in styles:
        styles.remove("unknown")
    return styles


@contextmanager
def progress_stages(total: int, progress: bool):
    """A progress bar of `total` stages; yields `stage(label)`, a context that shows the label
    while its stage runs and counts it done after."""
    bar = tqdm(total=total, desc="evaluating", unit="part", disable=not progress, dynamic_ncols=True)

    @contextmanager
    def stage(label: str):
        bar.set_description(label)
        bar.refresh()
        yield
        bar.update()

    try:
        yield stage
    finally:
        bar.close()


@dataclass
class RealPieces:
    """What the evaluation reads from real pieces: the style classifier's train and held-out
    features, statistics of excerpts per style, and the health of whole held-out pieces."""

    train_x: np.ndarray
    train_y: list[str]
    held_x: np.ndarray
    held_y: list[str]
    stats: dict[str, list[dict]]    # per style, of the opening `seconds` of its pieces
    reference: dict[str, str]       # per style, the split those pieces come from
    health: list[dict]              # `long_piece_health` of the whole held-out pieces
    held_tables: list               # the held-out excerpts themselves (held_x's rows)


def read_real_pieces(train: Dataset, held: Dataset, styles: list[str], seconds: float,
                     rng: np.random.Generator) -> RealPieces:
    """The opening `seconds` of real pieces: up to MAX_TRAIN_PER_STYLE train pieces per style
    for the classifier, up to MAX_REAL_PER_STYLE held-out ones (train where a style has none)
    for the statistics."""
    vocab, mode = train.vocab, train.vocab.time_mode
    train_x, train_y = [], []
    for style in styles:
        for row in sample_rows(rows_of(train, style), MAX_TRAIN_PER_STYLE, rng):
            train_x.append(piece_features(excerpt(decode_tokens(train.piece(int(row)), vocab), seconds), mode))
            train_y.append(style)
    stats, reference, held_x, held_y, health, held_tables = {}, {}, [], [], [], []
    for style in styles:
        held_rows = rows_of(held, style)
        source, rows = (held, held_rows) if len(held_rows) else (train, rows_of(train, style))
        stats[style], reference[style] = [], source.split
        for row in sample_rows(rows, MAX_REAL_PER_STYLE, rng):
            whole = decode_tokens(source.piece(int(row)), vocab)
            table = excerpt(whole, seconds)
            stats[style].append(music_stats(table, mode))
            if source is held:
                held_x.append(piece_features(table, mode, stats[style][-1]))
                held_y.append(style)
                held_tables.append(table)
                health.append(long_piece_health(whole))
    return RealPieces(np.array(train_x), train_y, np.array(held_x), held_y, stats, reference, health, held_tables)


def compose_styles(composer: Composer, train: Dataset, styles: list[str], pieces_per_style: int, seconds: float,
                   seed: int, stage: Stage, sampling: dict | None = None) -> tuple[dict, dict]:
    """({style: note tables composed in strict mode}, {style: instrument adherence}): each style
    with the families most of its train pieces use, in strict mode, then in soft mode."""
    generated, instruments = {}, {}
    for number, style in enumerate(styles):
        families = requested_families(train, rows_of(train, style))
        settings = Settings(style=style, instruments=families, seconds=seconds, max_tokens=int(seconds * 200) + 100,
                            **(sampling or {}))
        with stage(f"composing {style} (strict)"):
            strict = composer.generate(settings=replace(settings, candidates=pieces_per_style,
                                                        seed=seed * 1000 + number, instrument_mode="strict"))
        with stage(f"composing {style} (soft)"):
            soft = composer.generate(settings=replace(settings, candidates=soft_pieces(pieces_per_style),
                                                      seed=seed * 1000 + 500 + number, instrument_mode="soft"))
        generated[style] = [p.table for p in strict]
        instruments[style] = adherence(generated[style], [p.table for p in soft], families)
    return generated, instruments


def compare_with_real(real: RealPieces, generated: dict[str, list], styles: list[str], time_mode: str,
                      seed: int) -> tuple[dict, dict]:
    """(music statistics per style, style adherence with the two-sample test of real against
    generated): the generated pieces beside the real held-out ones."""
    stats, generated_x, generated_y = {}, [], []
    for style in styles:
        generated_stats = [music_stats(t, time_mode) for t in generated[style]]
        generated_x += [piece_features(t, time_mode, s) for t, s in zip(generated[style], generated_stats, strict=True)]
        generated_y += [style] * len(generated_stats)
        stats[style] = compare(real.stats[style], generated_stats, real.reference[style])
    style = style_adherence(real.train_x, real.train_y, real.held_x, real.held_y, np.array(generated_x),
                            generated_y, styles, seed)
    style["two_sample"] = two_sample_test(real.held_x, real.held_y, np.array(generated_x), generated_y, seed) \
        if len(real.held_y) else {"accuracy": float("nan"), "pieces": 0, "by_style": {}}
    return stats, style


def compose_long_pieces(composer: Composer, train: Dataset, styles: list[str], count: int, seconds: float, seed: int,
                        stage: Stage, sampling: dict | None = None) -> dict:
    """`count` pieces of `seconds` in the style with the most train pieces, strict mode, and
    their health (longest silence, stuck notes, repeated bars)."""
    long = {"pieces": [], "seconds": seconds}
    if count:
        style = max(styles, key=lambda s: len(rows_of(train, s)))
        families = requested_families(train, rows_of(train, style))
        with stage(f"composing {count} x {seconds:g} s"):
            pieces = composer.generate(settings=Settings(
                style=style, instruments=families, seconds=seconds, candidates=count, seed=seed * 1000 + 999,
                instrument_mode="strict", max_tokens=int(seconds * 200) + 100, **(sampling or {})))
        long["style"], long["instruments"] = style, families
        long["pieces"] = [long_piece_health(p.table) for p in pieces]
        long["tables"] = [p.table for p in pieces]
    return {**long, **health_summary(long["pieces"])}


def soft_pieces(pieces_per_style: int) -> int:
    """Pieces per style composed in soft mode: half as many as in strict mode, at least one."""
    return max(1, math.ceil(pieces_per_style / 2))


def rows_of(data: Dataset, style: str) -> np.ndarray:
    """The index rows of a style's pieces in this split."""
    return data.rows[data.index["style"][data.rows] == data.vocab.styles.index(style)]


def sample_rows(rows: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most `limit` of the rows, drawn without replacement, in ascending order."""
    return np.sort(rng.choice(rows, limit, replace=False)) if len(rows) > limit else rows


def _nanmean(values: list[float]) -> float:
    values = np.array(values, np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

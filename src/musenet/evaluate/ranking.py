"""Does the critic pick more realistic candidates? Per style, `rounds` batches of `draws`
candidates (the style's usual families, strict mode); from each, the first `keep` drawn
(random: the draw order is random) and the `keep` the critic likes best. The two-sample test
(`two_sample.py`, which never saw the critic: logistic regression on music statistics, and
a convolutional net on piano rolls) and the style classifier then judge both sets
against the same real held-out pieces (the style ratio's interval is the Wilson interval of
the generated pieces' rate over the same real accuracy); composing time with and without
ranking is timed on one request (`keep` drawn against `draws` drawn and ranked)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..settings import Settings
from .classifier import piece_features
from .style import style_adherence
from .two_sample import roll_two_sample_test, two_sample_test, wilson

DRAWS, KEEP, ROUNDS = 16, 4, 2


def compare_ranking(composer, real, ensembles: dict[str, list[str]], seconds: float, seed: int, stage,
                    time_mode: str, draws: int = DRAWS, keep: int = KEEP, rounds: int = ROUNDS) -> dict:
    """Two-sample accuracy and style ratio for random and for critic-picked candidates, the
    critic's scores of both, and the time it costs. `ensembles`: each style's families."""
    styles = list(ensembles)
    sets = {"random": ([], [], [], []), "critic": ([], [], [], [])}
    for number, (style, families) in enumerate(ensembles.items()):
        with stage(f"ranking {style}"):
            for round_ in range(rounds):
                drawn = composer.generate(settings=Settings(
                    style=style, instruments=families, seconds=seconds, candidates=draws,
                    seed=seed * 1000 + 700 + number * 10 + round_, max_tokens=int(seconds * 200) + 100))
                ranked = composer.ranked(list(drawn))
                for name, chosen in (("random", drawn[:keep]), ("critic", ranked[:keep])):
                    x, y, scores, tables = sets[name]
                    tables += [p.table for p in chosen]
                    x += [piece_features(p.table, time_mode) for p in chosen]
                    y += [style] * len(chosen)
                    scores += [p.critic for p in chosen]
    result = {"draws": draws, "keep": keep, "rounds": rounds}
    for name, (x, y, scores, tables) in sets.items():
        test = two_sample_test(real.held_x, real.held_y, np.array(x), y, seed) if len(real.held_y) else {}
        rolls = roll_two_sample_test(real.held_tables, real.held_y, tables, y, seconds, seed) \
            if len(real.held_y) else {}
        style = style_adherence(real.train_x, real.train_y, real.held_x, real.held_y, np.array(x), y, styles, seed)
        low, high = wilson(round(style["generated_rate"] * len(y)), len(y))  # the ratio's interval: the rate's
        accuracy = style["real_accuracy"]
        result[name] = {"two_sample": test, "two_sample_rolls": rolls, "style_ratio": style["ratio"], "pieces": len(y),
                        "style_ratio_interval": (low / accuracy, high / accuracy) if accuracy else (float("nan"),) * 2,
                        "generated_rate": style["generated_rate"], "mean_critic": float(np.mean(scores))}
    result["timing"] = time_ranking(composer, styles[0], ensembles[styles[0]], seconds, seed, draws, keep)
    return result


def time_ranking(composer, style: str, families: list[str], seconds: float, seed: int, draws: int,
                 keep: int) -> dict:
    """Seconds to compose `keep` candidates of one request (`plain_seconds`), and to draw
    `draws` and keep the best `keep` (`ranked_seconds`)."""
    settings = Settings(style=style, instruments=families, seconds=seconds, seed=seed,
                        max_tokens=int(seconds * 200) + 100)
    start = time.perf_counter()
    composer.generate(settings=replace(settings, candidates=keep))
    plain = time.perf_counter() - start
    start = time.perf_counter()
    composer.generate(settings=replace(settings, candidates=draws), keep=keep)
    return {"style": style, "seconds": seconds, "plain_seconds": plain, "ranked_seconds": time.perf_counter() - start}

"""A two-sample test: can a classifier tell real pieces from generated ones of the same style
and length? It never sees the model: logistic regression on the pieces' features
(`classifier.piece_features`), or a small convolutional net on their piano rolls
(`roll_two_sample_test`), cross-validated. 0.5 means they cannot be told apart; 1.0 that
every generated piece gives itself away."""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..instruments import DRUMS
from .classifier import DESCRIPTION, classifier

FOLDS = 5


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a proportion."""
    if trials == 0:
        return float("nan"), float("nan")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return centre - half, centre + half


def two_sample_test(real_x: np.ndarray, real_y: list[str], generated_x: np.ndarray, generated_y: list[str],
                    seed: int = 0, judge=None, description: str = DESCRIPTION) -> dict:
    """Accuracy of telling real from generated, overall (with its 95% interval) and per style.
    Each style contributes as many real pieces as generated ones (drawn at random), so chance
    is 0.5; folds are stratified by style and origin. `judge(train_x, train_y, test_x, seed)`
    predicts 1 for generated (default: logistic regression on the rows of `real_x`)."""
    from sklearn.model_selection import StratifiedKFold

    judge = judge or (lambda x, y, test, seed: classifier(seed).fit(x, y).predict(test))
    rng = np.random.default_rng(seed)
    real_y, generated_y = np.asarray(real_y), np.asarray(generated_y)
    keep_real, keep_generated = [], []
    for style in sorted(set(real_y.tolist()) & set(generated_y.tolist())):
        real_rows, generated_rows = np.flatnonzero(real_y == style), np.flatnonzero(generated_y == style)
        n = min(len(real_rows), len(generated_rows))
        keep_real += rng.choice(real_rows, n, replace=False).tolist()
        keep_generated += rng.choice(generated_rows, n, replace=False).tolist()
    pieces = 2 * len(keep_real)
    if len(keep_real) < FOLDS:
        return {"classifier": description, "pieces": pieces, "accuracy": float("nan"),
                "interval": (float("nan"), float("nan")), "by_style": {}}
    x = np.concatenate([real_x[keep_real], generated_x[keep_generated]])
    x = x.astype(np.float64) if x.ndim == 2 else x  # statistics in float64; piano rolls as they are
    is_generated = np.r_[np.zeros(len(keep_real), int), np.ones(len(keep_generated), int)]
    styles = np.r_[real_y[keep_real], generated_y[keep_generated]]
    strata = np.char.add(styles.astype(str), is_generated.astype(str))
    counts = {s: int((strata == s).sum()) for s in set(strata.tolist())}
    # a stratum smaller than the folds is folded in by origin alone
    strata = np.where([counts[s] >= FOLDS for s in strata], strata, is_generated.astype(str))
    split = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        predicted = np.empty(len(x), int)
        for train, test in split.split(np.zeros(len(x)), strata):
            predicted[test] = judge(x[train], is_generated[train], x[test], seed)
    right = predicted == is_generated
    by_style = {}
    for style in sorted(set(styles.tolist())):
        mine = styles == style
        by_style[style] = {"accuracy": float(right[mine].mean()), "pieces": int(mine.sum()),
                           "generated_caught": float(right[mine & (is_generated == 1)].mean())}
    return {"classifier": description, "pieces": pieces, "folds": FOLDS, "accuracy": float(right.mean()),
            "interval": wilson(int(right.sum()), len(right)), "by_style": by_style}


ROLL_FRAMES_PER_SECOND = 4
ROLL_DESCRIPTION = ("a small convolutional net on piano rolls (2 x 128 pitches x 4 frames a second: melodic notes "
                    "sounding, drum hits; two convolutions, max-pooled over time into 8 registers, 40 epochs of Adam)")


def piano_roll(table, seconds: float) -> np.ndarray:
    """(2, 128, frames) float32 of a note table's first `seconds`: melodic notes sounding and
    drum hits, ROLL_FRAMES_PER_SECOND frames a second."""
    frames = max(int(seconds * ROLL_FRAMES_PER_SECOND), 1)
    roll = np.zeros((2, 128, frames), np.float32)
    start = np.floor(table.seconds(table.onset) * ROLL_FRAMES_PER_SECOND).astype(int)
    end = np.ceil(table.seconds(table.onset + table.duration) * ROLL_FRAMES_PER_SECOND).astype(int)
    drum = table.family == DRUMS
    for s, e, pitch, is_drum in zip(start.tolist(), end.tolist(), table.pitch.tolist(), drum.tolist(), strict=True):
        if s < frames:
            roll[int(is_drum), pitch, s: s + 1 if is_drum else max(min(e, frames), s + 1)] = 1.0
    return roll


def roll_judge(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int) -> np.ndarray:
    """Train the piano-roll net on one fold and predict the other (1: generated)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(2, 8, (12, 4), stride=(4, 2)), nn.ReLU(), nn.Conv2d(8, 16, 5, stride=2), nn.ReLU(),
                        nn.AdaptiveMaxPool2d((8, 1)), nn.Flatten(), nn.Linear(16 * 8, 1))  # over time, not register
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y.astype(np.float32))
    for _ in range(40):
        optimiser.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(net(x)[:, 0], y).backward()
        optimiser.step()
    with torch.no_grad():
        return (net(torch.from_numpy(test_x))[:, 0] > 0).numpy().astype(int)


def roll_two_sample_test(real_tables: list, real_y: list[str], generated_tables: list, generated_y: list[str],
                         seconds: float, seed: int = 0) -> dict:
    """`two_sample_test` judged by the piano-roll net instead of statistics."""
    rolls = [np.stack([piano_roll(t, seconds) for t in tables]) if tables else np.zeros((0, 2, 128, 1), np.float32)
             for tables in (real_tables, generated_tables)]
    return two_sample_test(rolls[0], real_y, rolls[1], generated_y, seed, roll_judge, ROLL_DESCRIPTION)

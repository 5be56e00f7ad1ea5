"""A two-sample test: can a classifier tell real pieces from generated ones of the same style
and length? It never sees the model: logistic regression on the pieces' features
(`classifier.piece_features`), cross-validated. 0.5 means they cannot be told apart; 1.0 that
every generated piece gives itself away."""

from __future__ import annotations

import math
import warnings

import numpy as np

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
                    seed: int = 0) -> dict:
    """Accuracy of telling real from generated, overall (with its 95% interval) and per style.
    Each style contributes as many real pieces as generated ones (drawn at random), so chance
    is 0.5; folds are stratified by style and origin."""
    from sklearn.model_selection import StratifiedKFold

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
        return {"classifier": DESCRIPTION, "pieces": pieces, "accuracy": float("nan"),
                "interval": (float("nan"), float("nan")), "by_style": {}}
    x = np.concatenate([real_x[keep_real], generated_x[keep_generated]]).astype(np.float64)
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
        for train, test in split.split(x, strata):
            predicted[test] = classifier(seed).fit(x[train], is_generated[train]).predict(x[test])
    right = predicted == is_generated
    by_style = {}
    for style in sorted(set(styles.tolist())):
        mine = styles == style
        by_style[style] = {"accuracy": float(right[mine].mean()), "pieces": int(mine.sum()),
                           "generated_caught": float(right[mine & (is_generated == 1)].mean())}
    return {"classifier": DESCRIPTION, "pieces": pieces, "folds": FOLDS, "accuracy": float(right.mean()),
            "interval": wilson(int(right.sum()), len(right)), "by_style": by_style}

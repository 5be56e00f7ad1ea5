"""Style adherence: does a piece generated in a style sound like that style to a classifier
trained on real pieces of the train split? Compared with how often it names real held-out
pieces right, as a ratio."""

from __future__ import annotations

from collections import Counter

import numpy as np

from .classifier import DESCRIPTION, classifier, cross_validated_accuracy

MAX_TRAIN_PER_STYLE = 200     # real train pieces per style for the classifier
MIN_HELD_OUT = 30             # fewer real held-out pieces: the real accuracy is cross-validated on train


def style_adherence(train_x: np.ndarray, train_y: list[str], held_x: np.ndarray, held_y: list[str],
                    generated_x: np.ndarray, generated_y: list[str], styles: list[str], seed: int = 0) -> dict:
    """Real held-out accuracy, generated-as-requested rate and their ratio, overall and per
    style (with the styles each style's generated pieces were named as). With fewer than
    MIN_HELD_OUT real held-out pieces, the ratio's real accuracy is 5-fold cross-validation
    on the train pieces (held-out accuracy on a handful of pieces is mostly noise)."""
    if len(set(train_y)) < 2:
        return {"classifier": "none (one style)", "real_accuracy": float("nan"), "generated_rate": float("nan"),
                "ratio": float("nan"), "by_style": {}}
    model = classifier(seed).fit(train_x, train_y)
    held_pred = model.predict(held_x).tolist() if len(held_y) else []
    generated_pred = model.predict(generated_x).tolist() if len(generated_y) else []
    held_ok = np.array(held_pred) == np.array(held_y)
    generated_ok = np.array(generated_pred) == np.array(generated_y)
    held_accuracy = float(held_ok.mean()) if len(held_y) else float("nan")
    cv = cross_validated_accuracy(train_x, train_y, seed=seed)
    use_held = len(held_y) >= MIN_HELD_OUT or not np.isfinite(cv)
    real = held_accuracy if use_held else cv
    rate = float(generated_ok.mean()) if len(generated_y) else float("nan")
    by_style = {}
    for style in styles:
        h = [ok for ok, y in zip(held_ok, held_y, strict=True) if y == style]
        g = [ok for ok, y in zip(generated_ok, generated_y, strict=True) if y == style]
        named = Counter(p for p, y in zip(generated_pred, generated_y, strict=True) if y == style)
        by_style[style] = {"generated_named_as": dict(named.most_common()),
                           "real_accuracy": float(np.mean(h)) if h else float("nan"), "real_pieces": len(h),
                           "generated_rate": float(np.mean(g)) if g else float("nan"), "generated_pieces": len(g),
                           "train_pieces": train_y.count(style)}
    classes = len(set(train_y))
    return {
        "classifier": DESCRIPTION, "features": int(train_x.shape[1]), "train_pieces": len(train_y),
        "classes": classes, "chance": 1 / classes,
        "held_out_accuracy": held_accuracy, "held_out_pieces": len(held_y), "cv_accuracy": cv,
        "real_accuracy": real, "real_accuracy_source": "held-out" if use_held else "5-fold CV on train",
        "generated_rate": rate, "generated_pieces": len(generated_y),
        "ratio": rate / real if real and np.isfinite(real) else float("nan"),
        "by_style": by_style,
    }

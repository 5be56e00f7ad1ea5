"""Telling pieces apart: the features of a piece and a classifier over them (scikit-learn),
with its cross-validated accuracy. The style-adherence test trains it on styles; a test of
real against generated pieces can train it on that difference the same way.

scikit-learn is imported when a classifier is made: it takes a second to load, and the
trainer, which imports this package for its validation loss, needs none of it."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ..notes import NoteTable
from ..vocab import NOTE_NAMES
from .music import music_stats, normalise

REGULARISATION = 1.0          # scikit-learn's C: the inverse strength of the L2 penalty
DESCRIPTION = f"logistic regression (scikit-learn), standardised features, L2 C={REGULARISATION:g}, class-balanced"


def piece_features(table: NoteTable, time_mode: str = "beat", stats: dict | None = None) -> np.ndarray:
    """Features of one piece: pitch-class histogram, the same rotated to the best-fitting key's
    tonic, IOI and polyphony histograms, notes per second (log), scale consistency, mean
    polyphony, pitch range, mean and spread of pitch, velocity, tempo (log BPM, beat mode),
    empty-beat rate, and each family's share and presence. `stats`: the piece's `music_stats`."""
    s = stats or music_stats(table, time_mode)
    pc = normalise(s["pitch_class_counts"])
    root = NOTE_NAMES.index(s["key"].split()[0]) if s["key"] else 0
    if s["key"].endswith("minor"):
        root = (root + 3) % 12  # the relative major's tonic, so both modes line up
    families = normalise(s["family_counts"])
    scalars = [
        math.log1p(s["notes_per_second"]), np.nan_to_num(s["scale_consistency"]), s["mean_polyphony"],
        s["pitch_range"] / 12, np.nan_to_num(s["mean_pitch"], nan=60.0) / 12, s["pitch_std"] / 12,
        s["mean_velocity"] / 127, s["velocity_std"] / 127,
        math.log(s["mean_qpm"]) if time_mode == "beat" else 0.0, np.nan_to_num(s["empty_beat_rate"]),
    ]
    return np.concatenate([pc, np.roll(pc, -root), normalise(s["ioi_counts"]), normalise(s["polyphony_counts"]),
                           np.array(scalars, np.float64), families, (families > 0).astype(np.float64)])


def classifier(seed: int = 0):
    """An unfitted scikit-learn pipeline: features standardised, then multinomial logistic
    regression with an L2 penalty and class-balanced weights (`fit`, `predict`, `predict_proba`)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=REGULARISATION, class_weight="balanced",
                                                              max_iter=5000, random_state=seed))


def cross_validated_accuracy(features: np.ndarray, labels: Sequence[str], folds: int = 5, seed: int = 0) -> float:
    """Share of pieces that `classifier` names right when trained on the other folds (stratified,
    shuffled by `seed`); nan with fewer than two pieces per fold or two labels of two pieces each."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    labels = np.asarray(labels)
    if len(labels) < 2 * folds or sum(n >= 2 for n in Counter(labels.tolist()).values()) < 2:
        return float("nan")  # a fold could be left with one label to learn
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a label with fewer pieces than folds is fine: it is missing from some
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        predicted = cross_val_predict(classifier(seed), np.asarray(features, np.float64), labels, cv=split)
    return float(np.mean(predicted == labels))

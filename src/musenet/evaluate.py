"""`musenet eval`: how good is a model? Likelihood against an n-gram, music statistics,
style and instrument adherence, and the health of four-minute pieces, in one report.

The parts, each usable on its own:

- `KneserNey` / `ngram_bits_per_note`: an interpolated modified Kneser-Ney n-gram (Chen &
  Goodman's three discounts per order, estimated from counts of counts) over token ids,
  counted with numpy (an n-gram is an id built order by order with `np.unique`, so there is no
  per-token Python loop). It is the baseline for the model's held-out bits per note.
- `music_stats`: per-piece statistics of a NoteTable (pitch classes, scale consistency,
  polyphony, notes per second, inter-onset intervals, pitch range, empty beats);
  `overlap` compares two histograms (sum of the minimum of the normalised bins).
- `piece_features` / `StyleClassifier`: multinomial logistic regression (numpy, L2,
  class-balanced) on per-piece features, trained on real pieces only.
- `long_piece_health`: longest silence, stuck notes and verbatim bar repetition.
- `run_eval` does it all for a model and a built dataset and `write_report` writes
  report.md, report.json and PNG plots.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .encoding import decode_tokens
from .errors import MuseNetError
from .files import write_atomic
from .instruments import FAMILIES
from .notes import NoteTable
from .vocab import NOTE_NAMES, TOKEN_KINDS, Vocab

NGRAM_ORDER = 5
SHARED_ORDER = 8              # "seen in train" share: test n-grams of this length that occur in train
STUCK_SECONDS = 10.0          # a note longer than this is "stuck"
POLYPHONY_STEP = 0.1          # seconds between polyphony samples
POLYPHONY_BINS = 13           # 0..11 notes, and 12 or more
EMPTY_WINDOW_SECONDS = 0.5    # seconds mode has no beats: empty 0.5 s windows instead
IOI_EDGES = np.geomspace(0.02, 8.0, 19)  # 18 log-spaced bins; shorter / longer go in the end bins
BEATS_PER_BAR = 4
WINDOW_OVERLAP = 0.5          # pieces longer than the context are scored in half-overlapping windows
MAX_REAL_PER_STYLE = 16       # real pieces per style for the statistics
MAX_TRAIN_PER_STYLE = 200     # real train pieces per style for the classifier
MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])  # natural minor
# Targets: the first three come with the task; the long-piece thresholds are chosen here.
TARGETS = {"ngram_reduction": 0.25, "style_ratio": 0.7, "strict_adherence": 1.0,
           "longest_silence": 6.0, "stuck_notes": 0, "repeated_bar_share": 0.5}


# ---- the n-gram baseline -------------------------------------------------------------------------

class KneserNey:
    """Interpolated modified Kneser-Ney n-gram over token ids 0..vocab_size-1.

    Each piece is padded in front with order-1 `<s>` symbols; the highest order uses raw
    counts, lower orders continuation counts (distinct left extensions; raw counts for
    n-grams that begin with `<s>`, which have no left extension, as KenLM does). At every
    order p(w|h) = (c(hw) - D(c(hw))) / c(h) + gamma(h) p(w|h'), with D taking three values
    (for counts 1, 2, 3+); an unseen context backs off entirely; the unigram level
    interpolates with the uniform distribution, so every token has a probability > 0."""

    def __init__(self, vocab_size: int, order: int = NGRAM_ORDER):
        if order < 1:
            raise MuseNetError("the n-gram order must be at least 1")
        self.vocab_size = vocab_size
        self.order = order
        self.bos = vocab_size          # the padding symbol <s>
        self.base = vocab_size + 1     # ids of a k-gram: prefix id * base + last token

    def _padded(self, pieces: Iterable[np.ndarray]) -> np.ndarray:
        pad = np.full(self.order - 1, self.bos, np.int64)
        parts = []
        for piece in pieces:
            piece = np.asarray(piece, np.int64)
            if len(piece):
                if piece.min() < 0 or piece.max() >= self.vocab_size:
                    raise MuseNetError(f"token id out of range 0..{self.vocab_size - 1}")
                parts += [pad, piece]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _ids(self, sequence: np.ndarray, fit: bool) -> list[np.ndarray | None]:
        """ids[k][i]: the id of the k-gram ending at position i (-1: unknown). Fitting assigns
        ids (sorted unique keys per order); otherwise the fitted keys are looked up."""
        ids: list[np.ndarray | None] = [None, sequence]
        if fit:
            self.keys = [None, None]
        top = self.order if fit else self.order - 1  # scoring only needs the contexts' ids
        for k in range(2, top + 1):
            prev = ids[k - 1]
            key = np.full(len(sequence), -1, np.int64)
            ok = np.zeros(len(sequence), bool)
            ok[1:] = prev[:-1] >= 0
            key[ok] = prev[:-1][ok[1:]] * self.base + sequence[ok]
            out = np.full(len(sequence), -1, np.int64)
            if fit:
                unique, inverse = np.unique(key[ok], return_inverse=True)
                self.keys.append(unique)
                out[ok] = inverse
            else:
                out[ok] = self._lookup(k, key[ok])
            ids.append(out)
        return ids

    def _lookup(self, k: int, keys: np.ndarray) -> np.ndarray:
        table = self.keys[k]
        at = np.searchsorted(table, keys)
        found = at < len(table)
        found[found] = table[at[found]] == keys[found]
        return np.where(found, at, -1)

    @staticmethod
    def _discounts(counts: np.ndarray) -> np.ndarray:
        """D for count 0, 1, 2, 3+ (Chen & Goodman's estimate, kept within (0, c])."""
        n = [int(np.count_nonzero(counts == j)) for j in (1, 2, 3, 4)]
        if min(n) == 0:
            return np.array([0.0, 0.5, 1.0, 1.5])
        y = n[0] / (n[0] + 2 * n[1])
        d = np.array([0.0, 1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2]])
        return np.clip(d, [0.0, 0.05, 0.05, 0.05], [0.0, 1.0, 2.0, 3.0])

    def fit(self, pieces: Iterable[np.ndarray]) -> KneserNey:
        x = self._padded(pieces)
        n = self.order
        ids = self._ids(x, fit=True)
        real = np.flatnonzero(x != self.bos)
        sizes = [0, self.base] + [len(self.keys[k]) for k in range(2, n + 1)]
        self.counts, self.discount = [None], [None]
        self.context_total, self.context_gamma = [None], [None]
        for k in range(1, n + 1):
            grams = ids[k][real]
            raw = np.bincount(grams, minlength=sizes[k])
            if k == n:
                counts = raw
            else:  # continuation counts: distinct (k+1)-grams ending here, per k-gram suffix
                _, first = np.unique(ids[k + 1][real], return_index=True)
                continuation = np.bincount(grams[first], minlength=sizes[k])
                starts_bos = np.zeros(sizes[k], bool)
                starts_bos[grams] = x[real - k + 1] == self.bos
                counts = np.where(starts_bos, raw, continuation)
            discount = self._discounts(counts)
            present = np.flatnonzero(counts > 0)
            c = counts[present]
            if k == 1:
                prefix = np.zeros(len(present), np.int64)
                contexts = 1
            else:
                prefix_of = np.full(sizes[k], -1, np.int64)
                prefix_of[grams] = ids[k - 1][real - 1]
                prefix = prefix_of[present]
                contexts = sizes[k - 1]
            total = np.bincount(prefix, weights=c, minlength=contexts)
            gamma = np.bincount(prefix, weights=discount[np.minimum(c, 3)], minlength=contexts)
            self.counts.append(counts)
            self.discount.append(discount)
            self.context_total.append(total)
            self.context_gamma.append(gamma)
        return self

    def _probabilities(self, contexts: list[np.ndarray | None], words: np.ndarray) -> np.ndarray:
        """p(word | context) for arrays of words; contexts[k] holds the id of each word's
        (k-1)-token context (-1 if never seen) for k = 2..order."""
        p = np.full(len(words), 1.0 / self.vocab_size)
        for k in range(1, self.order + 1):
            if k == 1:
                context = np.zeros(len(words), np.int64)
                gram = words
            else:
                context = contexts[k]
                gram = np.full(len(words), -1, np.int64)
                known = context >= 0
                gram[known] = self._lookup(k, context[known] * self.base + words[known])
            safe_context = np.maximum(context, 0)
            total = np.where(context >= 0, self.context_total[k][safe_context], 0.0)
            count = np.where(gram >= 0, self.counts[k][np.maximum(gram, 0)], 0)
            numerator = count - self.discount[k][np.minimum(count, 3)] + self.context_gamma[k][safe_context] * p
            p = np.where(total > 0, numerator / np.maximum(total, 1e-300), p)
        return p

    def log2_probabilities(self, pieces: Sequence[np.ndarray]) -> list[np.ndarray]:
        """For each piece, log2 p of each of its tokens after the first."""
        pieces = [np.asarray(p, np.int64) for p in pieces]
        y = self._padded(pieces)
        ids = self._ids(y, fit=False)
        is_real = y != self.bos
        previous_bos = np.ones(len(y), bool)
        previous_bos[1:] = y[:-1] == self.bos
        first = is_real & previous_bos
        scored = np.flatnonzero(is_real & ~first)
        contexts = [None, None] + [ids[k - 1][scored - 1] for k in range(2, self.order + 1)]
        logs = np.log2(self._probabilities(contexts, y[scored]))
        owner = np.cumsum(first)[scored] - 1
        lengths = np.bincount(owner, minlength=int(first.sum()))
        split = np.split(logs, np.cumsum(lengths)[:-1]) if len(lengths) else []
        out, used = [], iter(split)
        for piece in pieces:  # empty pieces were not padded in: give them no scores
            out.append(next(used) if len(piece) else np.zeros(0))
        return out

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """p(w | context) for every token w of the vocabulary (sums to 1)."""
        y = np.concatenate([np.full(self.order - 1, self.bos, np.int64), np.asarray(context, np.int64)])
        ids = self._ids(y, fit=False)
        words = np.arange(self.vocab_size)
        contexts = [None, None] + [np.full(self.vocab_size, ids[k - 1][-1]) for k in range(2, self.order + 1)]
        return self._probabilities(contexts, words)


def note_count(tokens: np.ndarray, vocab: Vocab) -> int:
    """Note-on tokens in a sequence."""
    t = vocab.tables
    tokens = np.asarray(tokens, np.int64)
    return int(((t["family"][tokens] >= 0) & (t["velocity"][tokens] > 0)).sum())


def ngram_bits_per_note(train_pieces: Iterable[np.ndarray], eval_pieces: Sequence[np.ndarray], vocab: Vocab,
                        order: int = NGRAM_ORDER, notes: Sequence[int] | None = None) -> dict:
    """Bits per note of a Kneser-Ney n-gram trained on `train_pieces`, on `eval_pieces`: the
    summed -log2 p of every token after each piece's first, over the pieces' notes (`notes`,
    default: their note-on tokens). Returns the total and per-piece bits and notes too."""
    model = KneserNey(vocab.size, order).fit(train_pieces)
    logs = model.log2_probabilities(eval_pieces)
    bits = np.array([-float(x.sum()) for x in logs])
    notes = np.array([note_count(p, vocab) for p in eval_pieces] if notes is None else notes, np.int64)
    scored = np.concatenate([np.zeros(0, np.int64), *(np.asarray(p, np.int64)[1:] for p in eval_pieces)])
    kind_bits = -np.bincount(vocab.kinds[scored], weights=np.concatenate([np.zeros(0), *logs]),
                             minlength=len(TOKEN_KINDS))
    per_note = max(int(notes.sum()), 1)
    return {"bits_per_note": float(bits.sum() / per_note), "bits": bits.tolist(),
            "bits_per_note_by_kind": dict(zip(TOKEN_KINDS, (kind_bits / per_note).tolist(), strict=True)),
            "notes": notes.tolist(), "tokens": int(sum(len(x) for x in logs)), "order": order}


def _ngram_hashes(tokens: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit hash of each run of n consecutive tokens (polynomial, wrapping arithmetic)."""
    tokens = np.asarray(tokens, np.uint64)
    if len(tokens) < n:
        return np.zeros(0, np.uint64)
    powers = np.cumprod(np.full(n, 1_000_003, np.uint64))[::-1]  # wraps mod 2**64, as meant
    return np.lib.stride_tricks.sliding_window_view(tokens, n) @ powers


def shared_ngram_share(train_pieces: Iterable[np.ndarray], eval_pieces: Sequence[np.ndarray],
                       n: int = SHARED_ORDER) -> np.ndarray:
    """For each eval piece, how many of its n-token runs occur somewhere in the train pieces
    (a measure of verbatim reuse, which an n-gram is good at) and how many runs it has: an
    array of shape (pieces, 2)."""
    seen = np.unique(np.concatenate([np.zeros(0, np.uint64), *(_ngram_hashes(p, n) for p in train_pieces)]))
    counts = np.zeros((len(eval_pieces), 2), np.int64)
    for i, piece in enumerate(eval_pieces):  # a binary search in the sorted hashes (np.isin would re-sort them)
        hashes = _ngram_hashes(piece, n)
        found = seen[np.minimum(np.searchsorted(seen, hashes), len(seen) - 1)] == hashes if len(seen) else []
        counts[i] = np.sum(found), len(hashes)
    return counts


# ---- music statistics ----------------------------------------------------------------------------

def beats_at(table: NoteTable, seconds: np.ndarray) -> np.ndarray:
    """Seconds -> beats through the tempo map (the inverse of NoteTable.seconds)."""
    seconds = np.asarray(seconds, np.float64)
    seconds_per_beat = 60.0 / table.tempo_qpm
    start = np.concatenate([[0.0], np.cumsum(np.diff(table.tempo_time) * seconds_per_beat[:-1])])
    i = np.clip(np.searchsorted(start, seconds, side="right") - 1, 0, None)
    return table.tempo_time[i] + (seconds - start[i]) / seconds_per_beat[i]


def excerpt(table: NoteTable, seconds: float) -> NoteTable:
    """The opening `seconds` of a piece: notes starting before it, cut off at it."""
    limit = float(beats_at(table, np.array([seconds]))[0])
    rows = np.flatnonzero(table.onset < limit)
    out = table.select(rows)
    out.duration = np.minimum(out.onset + out.duration, limit) - out.onset
    return out


def best_scale(pitch_class_counts: np.ndarray) -> tuple[float, str]:
    """(fraction of notes in the best-fitting major or natural-minor scale, its name)."""
    total = pitch_class_counts.sum()
    if total == 0:
        return float("nan"), ""
    best, name = -1.0, ""
    for kind, steps in (("major", MAJOR), ("minor", MINOR)):
        for root in range(12):
            share = pitch_class_counts[(steps + root) % 12].sum() / total
            if share > best + 1e-12:
                best, name = float(share), f"{NOTE_NAMES[root]} {kind}"
    return best, name


def music_stats(table: NoteTable, time_mode: str = "beat") -> dict:
    """Statistics of one piece. Histograms are raw counts (pool them over pieces, then
    normalise); drums count for onsets (notes per second, IOIs, empty beats) but not for
    pitch classes, scale, polyphony and pitch range.

    - notes_per_second: notes / the piece's length (0 to the end of its last note);
    - pitch_class_counts (12) and scale_consistency (share of melodic notes in the
      best-fitting major or minor scale);
    - polyphony_counts: melodic notes sounding at the midpoints of 0.1 s steps (bins 0..11, 12+),
      mean_polyphony their mean;
    - ioi_counts: intervals in seconds between successive distinct onsets, in log-spaced
      bins (IOI_EDGES), median_ioi;
    - pitch_range: highest minus lowest melodic pitch (semitones);
    - empty_beat_rate: share of beats (seconds mode: 0.5 s windows) up to the end with no onset."""
    n = len(table)
    melodic = ~table.drum
    start = table.seconds(table.onset) if n else np.zeros(0)
    end = table.seconds(table.onset + table.duration) if n else np.zeros(0)
    length = float(end.max()) if n else 0.0
    pitch_class = np.bincount(table.pitch[melodic] % 12, minlength=12).astype(np.float64)
    scale, key = best_scale(pitch_class)

    samples = max(int(math.ceil(length / POLYPHONY_STEP - 1e-9)), 0)
    grid = (np.arange(samples) + 0.5) * POLYPHONY_STEP
    ons, offs = np.sort(start[melodic]), np.sort(end[melodic])
    sounding = np.searchsorted(ons, grid, side="right") - np.searchsorted(offs, grid, side="right")
    polyphony = np.bincount(np.minimum(sounding, POLYPHONY_BINS - 1), minlength=POLYPHONY_BINS).astype(np.float64)

    instants = np.unique(np.round(start, 3))
    ioi = np.diff(instants)
    ioi_bins = np.clip(np.searchsorted(IOI_EDGES, ioi, side="right") - 1, 0, len(IOI_EDGES) - 2)
    ioi_counts = np.bincount(ioi_bins, minlength=len(IOI_EDGES) - 1).astype(np.float64)

    if time_mode == "beat":
        end_beat = float((table.onset + table.duration).max()) if n else 0.0
        units = int(math.ceil(end_beat - 1e-9))
        occupied = np.unique(np.floor(table.onset + 1e-9).astype(np.int64))
    else:
        units = int(math.ceil(length / EMPTY_WINDOW_SECONDS - 1e-9))
        occupied = np.unique(np.floor(start / EMPTY_WINDOW_SECONDS + 1e-9).astype(np.int64))
    occupied = occupied[(occupied >= 0) & (occupied < units)]
    empty = 1.0 - len(occupied) / units if units else float("nan")

    qpm = table.tempo_qpm[np.clip(np.searchsorted(table.tempo_time, table.onset, side="right") - 1, 0, None)]
    pitches = table.pitch[melodic]
    return {
        "notes": n,
        "seconds": length,
        "notes_per_second": n / length if length > 0 else 0.0,
        "pitch_class_counts": pitch_class,
        "scale_consistency": scale,
        "key": key,
        "polyphony_counts": polyphony,
        "mean_polyphony": float(sounding.mean()) if samples else 0.0,
        "ioi_counts": ioi_counts,
        "median_ioi": float(np.median(ioi)) if len(ioi) else float("nan"),
        "pitch_range": int(pitches.max() - pitches.min()) if len(pitches) else 0,
        "mean_pitch": float(pitches.mean()) if len(pitches) else float("nan"),
        "pitch_std": float(pitches.std()) if len(pitches) else 0.0,
        "empty_beat_rate": empty,
        "family_counts": np.bincount(table.family, minlength=len(FAMILIES)).astype(np.float64),
        "mean_velocity": float(table.velocity.mean()) if n else 0.0,
        "velocity_std": float(table.velocity.std()) if n else 0.0,
        "mean_qpm": float(qpm.mean()) if n else 120.0,
    }


HISTOGRAMS = ("pitch_class_counts", "ioi_counts", "polyphony_counts")
SCALARS = ("notes_per_second", "scale_consistency", "mean_polyphony", "median_ioi", "pitch_range",
           "empty_beat_rate")


def _normalise(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else counts * 0.0


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Overlapping area of two histograms: sum of the bin-wise minimum once both are normalised
    (1: identical, 0: disjoint)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.sum() == 0 or b.sum() == 0:
        return float("nan")
    return float(np.minimum(_normalise(a), _normalise(b)).sum())


def pooled(stats: list[dict]) -> dict:
    """Histograms summed and normalised, scalars averaged (NaNs skipped), over pieces."""
    out = {}
    for name, size in zip(HISTOGRAMS, (12, len(IOI_EDGES) - 1, POLYPHONY_BINS), strict=True):
        out[name] = _normalise(np.sum([s[name] for s in stats], axis=0)) if stats else np.zeros(size)
    for name in SCALARS:
        values = np.array([s[name] for s in stats], np.float64)
        out[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    out["pieces"] = len(stats)
    return out


# ---- the style classifier ------------------------------------------------------------------------

def piece_features(table: NoteTable, time_mode: str = "beat", stats: dict | None = None) -> np.ndarray:
    """Features of one piece for the style classifier: pitch-class histogram, the same
    rotated to the best-fitting key's tonic, IOI and polyphony histograms, notes per second
    (log), scale consistency, mean polyphony, pitch range, mean and spread of pitch, velocity,
    tempo (log BPM, beat mode), empty-beat rate, and each family's share and presence."""
    s = stats or music_stats(table, time_mode)
    pc = _normalise(s["pitch_class_counts"])
    root = NOTE_NAMES.index(s["key"].split()[0]) if s["key"] else 0
    if s["key"].endswith("minor"):
        root = (root + 3) % 12  # the relative major's tonic, so both modes line up
    families = _normalise(s["family_counts"])
    scalars = [
        math.log1p(s["notes_per_second"]), np.nan_to_num(s["scale_consistency"]), s["mean_polyphony"],
        s["pitch_range"] / 12, np.nan_to_num(s["mean_pitch"], nan=60.0) / 12, s["pitch_std"] / 12,
        s["mean_velocity"] / 127, s["velocity_std"] / 127,
        math.log(s["mean_qpm"]) if time_mode == "beat" else 0.0, np.nan_to_num(s["empty_beat_rate"]),
    ]
    return np.concatenate([pc, np.roll(pc, -root), _normalise(s["ioi_counts"]), _normalise(s["polyphony_counts"]),
                           np.array(scalars, np.float64), families, (families > 0).astype(np.float64)])


class StyleClassifier:
    """Multinomial logistic regression on standardised features, with L2 and class-balanced
    weights, fitted by full-batch gradient descent (a convex problem: the result does not
    depend on a seed)."""

    def __init__(self, l2: float = 1e-2, steps: int = 800, learning_rate: float = 0.5):
        self.l2, self.steps, self.learning_rate = l2, steps, learning_rate

    def fit(self, features: np.ndarray, labels: Sequence[str]) -> StyleClassifier:
        x = np.asarray(features, np.float64)
        self.classes = sorted(set(labels))
        y = np.array([self.classes.index(label) for label in labels])
        self.mean = x.mean(axis=0)
        self.scale = np.maximum(x.std(axis=0), 1e-6)
        x = (x - self.mean) / self.scale
        k = len(self.classes)
        frequency = np.bincount(y, minlength=k)
        weight = (len(y) / (k * frequency))[y]
        weight /= weight.sum()
        target = np.eye(k)[y]
        self.weights = np.zeros((x.shape[1], k))
        self.bias = np.zeros(k)
        for _ in range(self.steps):
            error = (self._softmax(x @ self.weights + self.bias) - target) * weight[:, None]
            self.weights -= self.learning_rate * (x.T @ error + self.l2 * self.weights)
            self.bias -= self.learning_rate * error.sum(axis=0)
        return self

    @staticmethod
    def _softmax(z: np.ndarray) -> np.ndarray:
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        x = (np.atleast_2d(np.asarray(features, np.float64)) - self.mean) / self.scale
        return self._softmax(x @ self.weights + self.bias)

    def predict(self, features: np.ndarray) -> list[str]:
        if len(features) == 0:
            return []
        return [self.classes[i] for i in self.predict_proba(features).argmax(axis=1)]


def cross_validated_accuracy(features: np.ndarray, labels: Sequence[str], folds: int = 5, seed: int = 0) -> float:
    """Accuracy of StyleClassifier on held-out folds of (features, labels)."""
    labels = np.array(labels)
    if len(labels) < 2 * folds or len(set(labels)) < 2:
        return float("nan")
    order = np.random.default_rng(seed).permutation(len(labels))
    correct = 0
    for fold in range(folds):
        test = order[fold::folds]
        train = np.setdiff1d(order, test)
        if len(set(labels[train])) < 2:
            continue
        model = StyleClassifier().fit(features[train], labels[train].tolist())
        correct += int((np.array(model.predict(features[test])) == labels[test]).sum())
    return correct / len(labels)


# ---- long pieces ---------------------------------------------------------------------------------

def longest_silence(table: NoteTable) -> float:
    """Longest stretch (seconds) with no note sounding, from 0 to the last note's end."""
    if len(table) == 0:
        return 0.0
    start = table.seconds(table.onset)
    end = table.seconds(table.onset + table.duration)
    order = np.argsort(start, kind="stable")
    start, end = start[order], end[order]
    covered = np.concatenate([[0.0], np.maximum.accumulate(end)[:-1]])
    return float(max(np.max(start - covered), 0.0))


def repeated_bar_share(table: NoteTable, beats_per_bar: int = BEATS_PER_BAR) -> tuple[float, int]:
    """(share of non-empty bars that repeat an earlier bar verbatim, non-empty bars). Bars are
    `beats_per_bar` beats of the tempo map; a bar's content is its sorted set of (onset in
    the bar in 1/12 beats, pitch, family)."""
    if len(table) == 0:
        return float("nan"), 0
    bar = np.floor(table.onset / beats_per_bar + 1e-9).astype(np.int64)
    position = np.round((table.onset - bar * beats_per_bar) * 12).astype(np.int64)
    order = np.lexsort((table.family, table.pitch, position, bar))
    bar, position, pitch, family = bar[order], position[order], table.pitch[order], table.family[order]
    cuts = np.flatnonzero(np.diff(bar)) + 1
    seen, repeats, bars = set(), 0, 0
    for rows in np.split(np.arange(len(bar)), cuts):
        content = tuple(sorted(set(zip(position[rows].tolist(), pitch[rows].tolist(), family[rows].tolist(),
                                       strict=True))))
        bars += 1
        repeats += content in seen
        seen.add(content)
    return repeats / bars, bars


def long_piece_health(table: NoteTable) -> dict:
    """Longest silence (s), stuck notes (longer than 10 s) and verbatim bar repetition."""
    seconds = table.seconds(table.onset + table.duration) - table.seconds(table.onset) if len(table) else np.zeros(0)
    share, bars = repeated_bar_share(table)
    end = float(table.seconds(np.array([(table.onset + table.duration).max()]))[0]) if len(table) else 0.0
    return {"seconds": end, "notes": len(table), "longest_silence": longest_silence(table),
            "stuck_notes": int((seconds > STUCK_SECONDS).sum()), "repeated_bar_share": share, "bars": bars}


# ---- the whole evaluation ------------------------------------------------------------------------

def requested_families(data, style: str, rows: np.ndarray) -> list[str]:
    """The families most of a style's pieces use (header families present in at least half
    of them, at most four, at least the most common one)."""
    bits = data.index["families"][rows]
    share = np.array([((bits >> f) & 1).mean() if len(bits) else 0.0 for f in range(len(FAMILIES))])
    order = np.argsort(-share, kind="stable")
    chosen = [int(f) for f in order[:4] if share[f] >= 0.5] or [int(order[0])]
    return [FAMILIES[f] for f in sorted(chosen)]


def _in_families(tables: list[NoteTable], families: list[str]) -> tuple[float, int]:
    wanted = [FAMILIES.index(f) for f in families]
    total = sum(len(t) for t in tables)
    inside = sum(int(np.isin(t.family, wanted).sum()) for t in tables)
    return (inside / total if total else float("nan")), total


def _rows_of(data, style: str) -> np.ndarray:
    return data.rows[data.index["style"][data.rows] == data.vocab.styles.index(style)]


def _sample_rows(rows: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(rows, limit, replace=False)) if len(rows) > limit else rows


def run_eval(model: str | Path, data: str | Path, out: str | Path | None = None, pieces_per_style: int = 8,
             seconds: float = 30.0, long_pieces: int = 2, long_seconds: float = 240.0, split: str = "test",
             seed: int = 0, max_tokens: int = 200_000, progress: bool = True, device: str | None = None,
             threads: int | None = None) -> dict:
    """Evaluate a model (checkpoint or run directory) on a built dataset; with `out`, write
    the report there (see `write_report`). Returns every number as a dict."""
    from .composer import Composer
    from .dataset import Dataset
    from .train import evaluate

    started = time.time()
    if pieces_per_style < 1 or long_pieces < 0 or seconds <= 0 or long_seconds <= 0:
        raise MuseNetError("--pieces-per-style must be at least 1, --long-pieces at least 0, lengths positive")
    if split not in ("valid", "test"):
        raise MuseNetError(f"--split must be valid or test, not {split!r}")
    composer = Composer.load(model, device=device, threads=threads)
    train_data, held = Dataset(data, "train"), Dataset(data, split)
    vocab = train_data.vocab
    if composer.vocab != vocab:
        raise MuseNetError(f"{data}: the dataset's vocabulary (time mode, styles) differs from the model's")
    if len(held) == 0:
        raise MuseNetError(f"{data}: the {split} split is empty; try --split {'valid' if split == 'test' else 'test'}"
                           " or a bigger build")
    if len(train_data) == 0:
        raise MuseNetError(f"{data}: the train split is empty")
    mode = vocab.time_mode
    rng = np.random.default_rng(seed)
    styles = [s for s in vocab.styles if len(_rows_of(train_data, s))]
    if len(styles) > 1 and "unknown" in styles:
        styles.remove("unknown")
    net = composer.generator.model
    steps = 4 + 2 * len(styles) + (1 if long_pieces else 0)
    bar = tqdm(total=steps, desc="evaluating", unit="part", disable=not progress, dynamic_ncols=True)

    def advance(label: str) -> None:
        bar.set_description(label)
        bar.refresh()

    # 1. likelihood: the model (train.evaluate) and the n-gram on the same pieces and tokens
    advance("model bits per note")
    result = evaluate(net, held, net.config.context, composer.generator.device, max_tokens, overlap=WINDOW_OVERLAP)
    net.eval()  # evaluate leaves the model in training mode
    bar.update()
    advance("5-gram baseline")
    rows = result["rows"]  # the very pieces the model was scored on
    eval_pieces = [held.piece(int(r)) for r in rows]
    notes = [int(held.index["notes"][r]) for r in rows]
    train_pieces = [train_data.piece(int(r)) for r in train_data.rows]  # read once for both baselines
    ngram = ngram_bits_per_note(train_pieces, eval_pieces, vocab, NGRAM_ORDER, notes)
    shared = shared_ngram_share(train_pieces, eval_pieces)
    piece_styles = [held.style_of(int(r)) for r in rows]
    ngram_by_style, shared_by_style = {}, {}
    for style in sorted(set(piece_styles)):
        mine = [i for i, s in enumerate(piece_styles) if s == style]
        ngram_by_style[style] = sum(ngram["bits"][i] for i in mine) / max(sum(notes[i] for i in mine), 1)
        shared_by_style[style] = _share(shared[mine])
    likelihood = {
        "split": split, "pieces": len(rows), "tokens": result["tokens"], "notes": int(sum(notes)),
        "model_bits_per_note": result["bits_per_note"], "ngram_bits_per_note": ngram["bits_per_note"],
        "reduction": 1 - result["bits_per_note"] / ngram["bits_per_note"] if ngram["bits_per_note"] else float("nan"),
        "ngram_order": NGRAM_ORDER, "ngram_train_pieces": len(train_data), "model_valid_loss": result["valid_loss"],
        "shared_order": SHARED_ORDER, "shared_with_train": _share(shared),
        "by_kind": {kind: {"model": result["bits_per_note_by_kind"][kind],
                           "ngram": ngram["bits_per_note_by_kind"][kind]} for kind in TOKEN_KINDS},
        "by_style": {s: {"pieces": piece_styles.count(s),
                         "notes": int(sum(n for n, p in zip(notes, piece_styles, strict=True) if p == s)),
                         "model": result["bits_per_note_by_style"].get(s, float("nan")), "ngram": ngram_by_style[s],
                         "shared_with_train": shared_by_style[s],
                         "reduction": 1 - result["bits_per_note_by_style"].get(s, float("nan")) / ngram_by_style[s]
                         if ngram_by_style[s] else float("nan")}
                     for s in sorted(set(piece_styles))},
    }
    bar.update()

    # 2-3. real pieces: statistics and the style classifier (trained on the train split only)
    advance("real pieces")
    train_x, train_y = [], []
    for style in styles:
        for row in _sample_rows(_rows_of(train_data, style), MAX_TRAIN_PER_STYLE, rng):
            table = excerpt(decode_tokens(train_data.piece(int(row)), vocab), seconds)
            train_x.append(piece_features(table, mode))
            train_y.append(style)
    train_x = np.array(train_x)
    classifier = StyleClassifier().fit(train_x, train_y) if len(set(train_y)) > 1 else None
    real_stats, real_reference, held_x, held_y, real_health = {}, {}, [], [], []
    for style in styles:
        held_rows = _rows_of(held, style)
        reference_rows, reference = (held_rows, split) if len(held_rows) else (_rows_of(train_data, style), "train")
        stats = []
        for row in _sample_rows(reference_rows, MAX_REAL_PER_STYLE, rng):
            source = held if reference == split else train_data
            whole = decode_tokens(source.piece(int(row)), vocab)
            table = excerpt(whole, seconds)
            stats.append(music_stats(table, mode))
            if reference == split:
                held_x.append(piece_features(table, mode, stats[-1]))
                held_y.append(style)
                real_health.append(long_piece_health(whole))
        real_stats[style], real_reference[style] = stats, reference
    held_x = np.array(held_x)
    bar.update()

    # 2-4. generated pieces: strict mode (statistics, style, instruments), then soft mode
    generated, instruments = {}, {}
    soft_count = max(1, math.ceil(pieces_per_style / 2))
    for number, style in enumerate(styles):
        families = requested_families(train_data, style, _rows_of(train_data, style))
        advance(f"composing {style} (strict)")
        strict = composer.generate(style=style, instruments=families, seconds=seconds, candidates=pieces_per_style,
                                   seed=seed * 1000 + number, instrument_mode="strict",
                                   max_tokens=int(seconds * 200) + 100)
        bar.update()
        advance(f"composing {style} (soft)")
        soft = composer.generate(style=style, instruments=families, seconds=seconds, candidates=soft_count,
                                 seed=seed * 1000 + 500 + number, instrument_mode="soft",
                                 max_tokens=int(seconds * 200) + 100)
        bar.update()
        generated[style] = [p.table for p in strict]
        strict_share, strict_notes = _in_families(generated[style], families)
        soft_share, soft_notes = _in_families([p.table for p in soft], families)
        instruments[style] = {"requested": families, "strict": strict_share, "strict_notes": strict_notes,
                              "soft": soft_share, "soft_notes": soft_notes, "soft_pieces": len(soft)}

    advance("statistics")
    stats_report, style_report = {}, {}
    gen_x, gen_y = [], []
    for style in styles:
        gen_stats = [music_stats(t, mode) for t in generated[style]]
        gen_x += [piece_features(t, mode, s) for t, s in zip(generated[style], gen_stats, strict=True)]
        gen_y += [style] * len(gen_stats)
        real, made = pooled(real_stats[style]), pooled(gen_stats)
        stats_report[style] = {
            "reference": real_reference[style], "real_pieces": real["pieces"], "generated_pieces": made["pieces"],
            "overlap": {name: overlap(real[name], made[name]) for name in HISTOGRAMS},
            "real": {name: real[name] for name in SCALARS}, "generated": {name: made[name] for name in SCALARS},
            "real_histograms": {name: real[name] for name in HISTOGRAMS},
            "generated_histograms": {name: made[name] for name in HISTOGRAMS},
            "real_per_piece": [{name: x[name] for name in ("notes", "seconds", "key", *SCALARS)}
                               for x in real_stats[style]],
            "generated_per_piece": [{name: x[name] for name in ("notes", "seconds", "key", *SCALARS)}
                                    for x in gen_stats],
        }
    gen_x = np.array(gen_x)
    style_section = _style_adherence(classifier, train_x, train_y, held_x, held_y, gen_x, gen_y, styles, seed)
    style_report = style_section.pop("by_style")
    bar.update()

    # 5. four-minute health
    long_report = {"pieces": [], "seconds": long_seconds}
    if long_pieces:
        style = max(styles, key=lambda s: len(_rows_of(train_data, s)))
        families = requested_families(train_data, style, _rows_of(train_data, style))
        advance(f"composing {long_pieces} x {long_seconds:g} s")
        pieces = composer.generate(style=style, instruments=families, seconds=long_seconds, candidates=long_pieces,
                                   seed=seed * 1000 + 999, instrument_mode="strict",
                                   max_tokens=int(long_seconds * 200) + 100)
        long_report["style"], long_report["instruments"] = style, families
        long_report["pieces"] = [long_piece_health(p.table) for p in pieces]
        long_report["tables"] = [p.table for p in pieces]
        bar.update()
    healths = long_report["pieces"]
    long_report["longest_silence"] = max((h["longest_silence"] for h in healths), default=float("nan"))
    long_report["stuck_notes"] = sum(h["stuck_notes"] for h in healths)
    shares = [h["repeated_bar_share"] for h in healths if np.isfinite(h["repeated_bar_share"])]
    long_report["repeated_bar_share"] = float(np.mean(shares)) if shares else float("nan")
    real_shares = [h["repeated_bar_share"] for h in real_health if np.isfinite(h["repeated_bar_share"])]
    long_report["real_reference"] = {
        "pieces": len(real_health),
        "longest_silence": max((h["longest_silence"] for h in real_health), default=float("nan")),
        "stuck_notes": sum(h["stuck_notes"] for h in real_health),
        "repeated_bar_share": float(np.mean(real_shares)) if real_shares else float("nan"),
    }
    bar.close()

    strict_total = sum(v["strict_notes"] for v in instruments.values())
    soft_total = sum(v["soft_notes"] for v in instruments.values())
    report = {
        "model": str(model), "data": str(data), "time_mode": mode, "seed": seed,
        "settings": {"pieces_per_style": pieces_per_style, "seconds": seconds, "long_pieces": long_pieces,
                     "long_seconds": long_seconds, "split": split, "max_tokens": max_tokens,
                     "soft_pieces_per_style": soft_count, "window_overlap": WINDOW_OVERLAP},
        "styles": styles,
        "likelihood": likelihood,
        "music_stats": stats_report,
        "style_adherence": {**style_section, "by_style": style_report},
        "instruments": {
            "strict": sum(v["strict"] * v["strict_notes"] for v in instruments.values() if v["strict_notes"])
            / strict_total if strict_total else float("nan"),
            "soft": sum(v["soft"] * v["soft_notes"] for v in instruments.values() if v["soft_notes"])
            / soft_total if soft_total else float("nan"),
            "by_style": instruments,
        },
        "long_pieces": long_report,
        "tables": {style: tables[0] for style, tables in generated.items() if tables},  # one example per style
    }
    report["music_stats_mean_overlap"] = {
        name: _nanmean([v["overlap"][name] for v in stats_report.values()]) for name in HISTOGRAMS}
    report["headline"] = _headline(report)
    report["eval_seconds"] = time.time() - started
    if out is not None:
        write_report(report, out)
    return report


def _share(counts: np.ndarray) -> float:
    """Summed (hits, total) rows as one share (nan when there is nothing to count)."""
    hits, total = np.asarray(counts).reshape(-1, 2).sum(axis=0)
    return float(hits / total) if total else float("nan")


def _nanmean(values: list[float]) -> float:
    values = np.array(values, np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _style_adherence(classifier, train_x, train_y, held_x, held_y, gen_x, gen_y, styles, seed) -> dict:
    """Real held-out accuracy, generated-as-requested rate and their ratio. When fewer than 30
    real held-out pieces exist, the ratio's real accuracy is 5-fold cross-validation on the
    train pieces (held-out accuracy on a handful of pieces is mostly noise)."""
    if classifier is None:
        return {"classifier": "none (one style)", "real_accuracy": float("nan"), "generated_rate": float("nan"),
                "ratio": float("nan"), "by_style": {}}
    held_pred = classifier.predict(held_x) if len(held_y) else []
    gen_pred = classifier.predict(gen_x) if len(gen_y) else []
    held_ok = np.array(held_pred) == np.array(held_y)
    gen_ok = np.array(gen_pred) == np.array(gen_y)
    held_acc = float(held_ok.mean()) if len(held_y) else float("nan")
    cv = cross_validated_accuracy(train_x, train_y, seed=seed)
    use_held = len(held_y) >= 30 or not np.isfinite(cv)
    real = held_acc if use_held else cv
    rate = float(gen_ok.mean()) if len(gen_y) else float("nan")
    by_style = {}
    for style in styles:
        h = [ok for ok, y in zip(held_ok, held_y, strict=True) if y == style]
        g = [ok for ok, y in zip(gen_ok, gen_y, strict=True) if y == style]
        named = Counter(p for p, y in zip(gen_pred, gen_y, strict=True) if y == style)
        by_style[style] = {"generated_named_as": dict(named.most_common()),
                           "real_accuracy": float(np.mean(h)) if h else float("nan"), "real_pieces": len(h),
                           "generated_rate": float(np.mean(g)) if g else float("nan"), "generated_pieces": len(g),
                           "train_pieces": train_y.count(style)}
    return {
        "classifier": "multinomial logistic regression (numpy), L2 0.01, class-balanced",
        "features": int(train_x.shape[1]), "train_pieces": len(train_y), "classes": len(classifier.classes),
        "chance": 1 / len(classifier.classes),
        "held_out_accuracy": held_acc, "held_out_pieces": len(held_y), "cv_accuracy": cv,
        "real_accuracy": real, "real_accuracy_source": "held-out" if use_held else "5-fold CV on train",
        "generated_rate": rate, "generated_pieces": len(gen_y),
        "ratio": rate / real if real and np.isfinite(real) else float("nan"),
        "by_style": by_style,
    }


def _headline(report: dict) -> list[dict]:
    like, style, inst, long = (report[k] for k in ("likelihood", "style_adherence", "instruments", "long_pieces"))
    ratio = style["ratio"]
    rows = [
        ("model bits per note", like["model_bits_per_note"], "", None),
        (f"{like['ngram_order']}-gram Kneser-Ney bits per note", like["ngram_bits_per_note"], "", None),
        ("reduction vs the n-gram", like["reduction"], f">= {TARGETS['ngram_reduction']:.0%}",
         like["reduction"] >= TARGETS["ngram_reduction"] if np.isfinite(like["reduction"]) else None),
        ("style classifier accuracy, real pieces", style["real_accuracy"], "", None),
        ("generated pieces classified as their style", style["generated_rate"], "", None),
        ("style ratio generated / real", ratio, f">= {TARGETS['style_ratio']}",
         ratio >= TARGETS["style_ratio"] if np.isfinite(ratio) else None),
        ("strict instrument adherence", inst["strict"], "= 1.0",
         inst["strict"] >= TARGETS["strict_adherence"] if np.isfinite(inst["strict"]) else None),
        ("soft instrument adherence", inst["soft"], "", None),
    ]
    for name in HISTOGRAMS:
        label = {"pitch_class_counts": "pitch-class", "ioi_counts": "IOI", "polyphony_counts": "polyphony"}[name]
        rows.append((f"{label} overlap, generated vs real (mean over styles)", report["music_stats_mean_overlap"][name],
                     "", None))
    if long["pieces"]:
        rows += [
            (f"longest silence in {len(long['pieces'])} x {long['seconds']:g} s (s)", long["longest_silence"],
             f"<= {TARGETS['longest_silence']:g}", long["longest_silence"] <= TARGETS["longest_silence"]),
            ("stuck notes (> 10 s) in the long pieces", long["stuck_notes"], "0",
             long["stuck_notes"] <= TARGETS["stuck_notes"]),
            ("share of bars repeating an earlier bar", long["repeated_bar_share"],
             f"<= {TARGETS['repeated_bar_share']}", long["repeated_bar_share"] <= TARGETS["repeated_bar_share"]
             if np.isfinite(long["repeated_bar_share"]) else None),
        ]
    return [{"metric": m, "value": v, "target": t, "met": met} for m, v, t, met in rows]


# ---- the report ----------------------------------------------------------------------------------

def _plain(value):
    """JSON-ready: numpy to Python, NaN and infinities to None, tables dropped."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if not isinstance(v, NoteTable) and k != "tables"}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return f"{value:.{digits}f}"


def _pct(value) -> str:
    """A share as a percentage, or n/a."""
    return f"{value:.1%}" if isinstance(value, float) and math.isfinite(value) else "n/a"


def _figure():
    from matplotlib.figure import Figure

    return Figure


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())


def _plot_bits(report: dict, path: Path) -> None:
    by_style = report["likelihood"]["by_style"]
    names = list(by_style)
    fig = _figure()(figsize=(max(6, 1 + 0.9 * len(names)), 4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(names))
    ax.bar(x - 0.2, [by_style[s]["model"] for s in names], 0.4, label="model")
    ax.bar(x + 0.2, [by_style[s]["ngram"] for s in names], 0.4, label=f"{report['likelihood']['ngram_order']}-gram KN")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("bits per note")
    ax.set_title(f"held-out bits per note ({report['likelihood']['split']} split)")
    ax.legend()
    _save(fig, path)


def _plot_style(style: str, stats: dict, path: Path) -> None:
    fig = _figure()(figsize=(15, 4), dpi=100, layout="constrained")
    real, made = stats["real_histograms"], stats["generated_histograms"]
    ioi_labels = [f"{e:.2g}" for e in IOI_EDGES[:-1]]
    panels = (("pitch_class_counts", "pitch class", list(NOTE_NAMES)),
              ("ioi_counts", "inter-onset interval (s, bin start)", ioi_labels),
              ("polyphony_counts", "notes sounding at once", [str(i) for i in range(POLYPHONY_BINS - 1)] + ["12+"]))
    for number, (name, label, ticks) in enumerate(panels, 1):
        ax = fig.add_subplot(1, 3, number)
        x = np.arange(len(ticks))
        ax.bar(x - 0.2, real[name], 0.4, label=f"real ({stats['reference']}, {stats['real_pieces']})")
        ax.bar(x + 0.2, made[name], 0.4, label=f"generated ({stats['generated_pieces']})")
        ax.set_xticks(x, ticks, rotation=90 if name == "ioi_counts" else 0, fontsize=8)
        ax.set_xlabel(label)
        ax.set_title(f"{style}: overlap {_fmt(stats['overlap'][name], 2)}")
        if number == 1:
            ax.set_ylabel("share")
            ax.legend(fontsize=8)
    _save(fig, path)


def _style_file(style: str) -> str:
    return f"stats-{style}.png"


def write_report(report: dict, out: str | Path) -> list[Path]:
    """report.md, report.json and the PNGs (bits per note by style, one histogram figure and one
    generated piece's piano roll per style, piano rolls of the long pieces) in `out`, each file
    written whole or not at all."""
    from .render import pianoroll_png

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    if report["likelihood"]["by_style"]:
        _plot_bits(report, out / "bits-per-note.png")
        images.append(("held-out bits per note by style", "bits-per-note.png"))
    for style, stats in report["music_stats"].items():
        _plot_style(style, stats, out / _style_file(style))
        images.append((f"{style}: real vs generated histograms", _style_file(style)))
    for style, table in report.get("tables", {}).items():
        name = f"roll-{style}.png"
        pianoroll_png(table, out / name, title=f"{style} (generated, strict mode)")
        images.append((f"{style}: a generated piece", name))
    for number, table in enumerate(report["long_pieces"].get("tables", []), 1):
        name = f"long-{number}.png"
        pianoroll_png(table, out / name, title=f"long piece {number} ({report['long_pieces']['style']})")
        images.append((f"long piece {number}", name))
    report["images"] = [name for _, name in images]
    write_atomic(out / "report.json", (json.dumps(_plain(report), indent=2) + "\n").encode())
    write_atomic(out / "report.md", markdown(report, images).encode())
    return [out / "report.md", out / "report.json", *(out / name for _, name in images)]


def markdown(report: dict, images: list[tuple[str, str]] = ()) -> str:
    like, style, inst, long = (report[k] for k in ("likelihood", "style_adherence", "instruments", "long_pieces"))
    settings = report["settings"]
    lines = [
        "# MuseNet evaluation", "",
        f"Model `{report['model']}`, data `{report['data']}` ({report['time_mode']} time), {like['split']} split, "
        f"seed {report['seed']}; {settings['pieces_per_style']} pieces of {settings['seconds']:g} s per style "
        f"(soft mode: {settings['soft_pieces_per_style']}), {settings['long_pieces']} of "
        f"{settings['long_seconds']:g} s; {report.get('eval_seconds', 0):.0f} s to evaluate.", "",
        "| metric | value | target | met? |", "|---|---:|---|---|",
    ]
    for row in report["headline"]:
        met = "" if row["met"] is None else "yes" if row["met"] else "**no**"
        value = f"{row['value']:.1%}" if row["metric"].startswith("reduction") and row["value"] is not None \
            and math.isfinite(row["value"]) else _fmt(row["value"])
        lines.append(f"| {row['metric']} | {value} | {row['target']} | {met} |")

    lines += ["", "## 1. Held-out bits per note", "",
              f"{like['pieces']} pieces of the {like['split']} split ({_fmt(like['tokens'])} tokens, "
              f"{_fmt(like['notes'])} notes): the summed -log2 p of every token after a piece's first, over its notes "
              f"(pieces longer than the model's context in windows that overlap by {WINDOW_OVERLAP:.0%}, each token "
              "scored once). "
              f"The baseline is an interpolated modified Kneser-Ney {like['ngram_order']}-gram fitted on the "
              f"{like['ngram_train_pieces']} train pieces. *Seen in train*: the share of the pieces' runs of "
              f"{like['shared_order']} consecutive tokens that also occur in the train split "
              "(verbatim reuse, which favours the n-gram).", "",
              "| style | pieces | notes | model | n-gram | reduction | seen in train |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, v in like["by_style"].items():
        lines.append(f"| {name} | {v['pieces']} | {_fmt(v['notes'])} | {_fmt(v['model'])} | {_fmt(v['ngram'])} "
                     f"| {_pct(v['reduction'])} | {_pct(v['shared_with_train'])} |")
    lines.append(f"| all | {like['pieces']} | {_fmt(like['notes'])} | {_fmt(like['model_bits_per_note'])} | "
                 f"{_fmt(like['ngram_bits_per_note'])} | {_pct(like['reduction'])} | "
                 f"{_pct(like['shared_with_train'])} |")

    lines += ["", "Where the bits go: each kind of token's share of the bits per note.", "",
              "| token kind | model | n-gram |", "|---|---:|---:|"]
    for kind, v in like.get("by_kind", {}).items():
        lines.append(f"| {kind} | {_fmt(v['model'])} | {_fmt(v['ngram'])} |")

    lines += ["", "## 2. Music statistics, generated vs real", "",
              f"Real pieces: the opening {settings['seconds']:g} s of held-out pieces of the style (at most "
              f"{MAX_REAL_PER_STYLE}; `train` where the split has none). Overlap = sum of the bin-wise minimum of the "
              "two normalised histograms (1 = identical). Scalars are means over pieces, real / generated.", "",
              "| style | real | gen | pitch-class overlap | IOI overlap | polyphony overlap | notes/s "
              "| scale consistency | mean polyphony | median IOI (s) | pitch range | empty-beat rate |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, v in report["music_stats"].items():
        o = v["overlap"]
        pairs = " | ".join(f"{_fmt(v['real'][s], 2)} / {_fmt(v['generated'][s], 2)}" for s in SCALARS)
        lines.append(f"| {name} | {v['real_pieces']} ({v['reference']}) | {v['generated_pieces']} | "
                     f"{_fmt(o['pitch_class_counts'])} | {_fmt(o['ioi_counts'])} | {_fmt(o['polyphony_counts'])} | "
                     f"{pairs} |")

    lines += ["", "## 3. Style adherence", "",
              f"Classifier: {style['classifier']}"
              + (f", {style['features']} features per piece, trained on {style['train_pieces']} real train pieces "
                 f"({style['classes']} styles, chance {style['chance']:.2f}). Accuracy on {style['held_out_pieces']} "
                 f"held-out real pieces {_fmt(style['held_out_accuracy'])}, 5-fold cross-validated on train "
                 f"{_fmt(style['cv_accuracy'])}; the ratio uses the {style['real_accuracy_source']} accuracy."
                 if "features" in style else "."), "",
              "| style | train pieces | real accuracy (n) | generated as this style (n) | generated named as |",
              "|---|---:|---:|---:|---|"]
    for name, v in style["by_style"].items():
        named = ", ".join(f"{s} {n}" for s, n in v["generated_named_as"].items())
        lines.append(f"| {name} | {v['train_pieces']} | {_fmt(v['real_accuracy'], 2)} ({v['real_pieces']}) | "
                     f"{_fmt(v['generated_rate'], 2)} ({v['generated_pieces']}) | {named} |")

    lines += ["", "## 4. Instrument adherence", "",
              "Share of generated notes in the requested families (those most of the style's train pieces use).", "",
              "| style | requested | strict | soft |", "|---|---|---:|---:|"]
    for name, v in inst["by_style"].items():
        lines.append(f"| {name} | {', '.join(v['requested'])} | {_fmt(v['strict'])} | {_fmt(v['soft'])} |")

    lines += ["", "## 5. Four-minute health", ""]
    if long["pieces"]:
        real = long["real_reference"]
        lines += [f"{len(long['pieces'])} pieces of {long['seconds']:g} s, style {long['style']}, "
                  f"{', '.join(long['instruments'])} (strict). Bars are {BEATS_PER_BAR} beats of the tempo map; a bar "
                  "repeats if its (onset, pitch, family) set equals an earlier non-empty bar's. Real reference "
                  f"(whole held-out pieces, {real['pieces']}): longest silence {_fmt(real['longest_silence'], 1)} s, "
                  f"{real['stuck_notes']} stuck notes, repeated-bar share {_fmt(real['repeated_bar_share'], 2)}.", "",
                  "| piece | seconds | notes | longest silence (s) | stuck notes | repeated bars | bars |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for number, h in enumerate(long["pieces"], 1):
            lines.append(f"| {number} | {h['seconds']:.1f} | {h['notes']:,} | {h['longest_silence']:.2f} | "
                         f"{h['stuck_notes']} | {_fmt(h['repeated_bar_share'], 2)} | {h['bars']} |")
    else:
        lines.append("Not run (--long-pieces 0).")

    if images:
        lines += ["", "## Plots", ""] + [f"- [{label}]({name})" for label, name in images]
    return "\n".join(lines) + "\n"

"""The n-gram baseline: an interpolated modified Kneser-Ney n-gram over token ids (Chen &
Goodman's three discounts per order, estimated from counts of counts), counted with numpy:
an n-gram is an id built order by order with `np.unique`, so there is no per-token Python
loop. It is what the model's held-out bits per note are measured against; the share of
test n-grams seen verbatim in train says how much of its score is reuse."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import MuseNetError
from ..vocab import TOKEN_KINDS, Vocab

NGRAM_ORDER = 5
SHARED_ORDER = 8              # "seen in train" share: test n-grams of this length that occur in train


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
    def discounts(counts: np.ndarray) -> np.ndarray:
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
            discount = self.discounts(counts)
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


def seen_share(counts: np.ndarray) -> float:
    """Rows of `shared_ngram_share` summed into one share of runs seen in train (nan: no runs)."""
    hits, total = np.asarray(counts).reshape(-1, 2).sum(axis=0)
    return float(hits / total) if total else float("nan")

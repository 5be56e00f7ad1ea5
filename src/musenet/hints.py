"""Hints: events known to come, read before the music, so the model can write towards them.

MuseNet composed left to right only. To accompany a part or fill a gap, the model has to
know what is coming: the kept part's next notes, or the music after the gap. A hint is those
events (note tokens, with the waits that place them, counted from where the window's body
begins), put in the header between the families and `start`:

    style  families  [hint: wait:48 wait:12 piano:v80:C4 ...]  start  tempo  body ...

The clock, the side features, decoding and the sampler's state skip it (`sequence.hint_mask`);
its tokens get the side features of the time they stand for. Training teaches it with two
transformations of a share of the windows (switchable in the config's `augment`):

- `fill_middle`: the window's tail (16 to 160 tokens, from an instant on) moves into the
  hint; the body stops where the tail began. The model learns to write music that leads
  into given music: infilling, with the right side as the hint.
- `accompany`: the notes of a random proper subset of the named families, for the window's
  first stretch (at most a third of its tokens), go into the hint; the body stays whole.
  The model learns to write the other parts around parts it knows in advance.

When composing (`sample.py`) the hint is built from the fixed plan's events each time the
window is read (`hint_for`), so it always looks ahead from where the window begins.
"""

from __future__ import annotations

import numpy as np

from .augment import trained_augment
from .encoding import with_waits
from .sequence import header_length
from .vocab import Vocab

MAX_TAIL = 160          # the longest tail `fill_middle` moves into the hint
MIN_TAIL = 16
HINT_SHARE = 1 / 3      # the most of a window `accompany` gives its hint


def events_only(tokens: np.ndarray, vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """The note tokens and the steps they sit at (counted from the first token)."""
    t = vocab.tables
    waits = t["wait"][tokens]
    steps = np.cumsum(waits) - waits
    notes = t["family"][tokens] >= 0
    return steps[notes], tokens[notes]


def with_hint(window: np.ndarray, hint: np.ndarray, vocab: Vocab) -> np.ndarray:
    """`window` with `hint` put in its header, just before `start`."""
    start = int(np.argmax(window == vocab.START))
    return np.concatenate([window[:start], hint, window[start:]]).astype(np.int64)


def hint_tokens(steps: np.ndarray, tokens: np.ndarray, vocab: Vocab, budget: int) -> np.ndarray:
    """Events at `steps` (from the body's start, ascending) as a hint of at most `budget`
    tokens: waits from 0, then each event; cut at an instant's end."""
    if not len(tokens) or budget <= 0:
        return np.zeros(0, np.int64)
    hint = with_waits(np.asarray(steps, np.int64), np.asarray(tokens, np.int64), vocab)
    if len(hint) <= budget:
        return hint
    waits = vocab.tables["wait"][hint[:budget]]
    cut = np.flatnonzero(waits > 0)
    return hint[: int(cut[-1])] if len(cut) else np.zeros(0, np.int64)


def fill_middle(window: np.ndarray, vocab: Vocab, rng: np.random.Generator) -> np.ndarray:
    """The window's tail, from a random instant, as the hint; the body ends where it began."""
    head = header_length(window, vocab)
    body = window[head:]
    waits = vocab.tables["wait"][body]
    instants = np.flatnonzero(np.r_[False, waits[:-1] > 0])  # a token right after a wait
    tail = len(body) - instants
    cuts = instants[(tail >= MIN_TAIL) & (tail <= MAX_TAIL) & (instants >= 2 * MIN_TAIL)]
    if not len(cuts):
        return window
    cut = int(rng.choice(cuts))
    steps, events = events_only(body, vocab)
    first = int((vocab.tables["family"][body[:cut]] >= 0).sum())  # the tail's first event
    hint = hint_tokens(steps[first:], events[first:], vocab, len(body))
    return with_hint(np.concatenate([window[:head], body[:cut]]), hint, vocab)


def accompany(window: np.ndarray, vocab: Vocab, rng: np.random.Generator) -> np.ndarray:
    """The notes of a random proper subset of the named families, from the window's start,
    as the hint (at most `HINT_SHARE` of the window); the body stays whole."""
    named = window[(window >= vocab.family_offset) & (window < vocab.tempo_offset)] - vocab.family_offset
    if len(named) < 2:
        return window
    kept = rng.choice(named, int(rng.integers(1, len(named))), replace=False).tolist()
    head = header_length(window, vocab)
    steps, tokens = events_only(window[head:], vocab)
    mine = np.isin(vocab.tables["family"][tokens], kept)
    if not mine.any():
        return window
    hint = hint_tokens(steps[mine], tokens[mine], vocab, int(len(window) * HINT_SHARE))
    return with_hint(window, hint, vocab)


def add_hint(window: np.ndarray, vocab: Vocab, rng: np.random.Generator, fill: float,
             accompaniment: float) -> np.ndarray:
    """With probability `fill` a `fill_middle` hint, else with `accompaniment` an `accompany`
    one, else the window as it is."""
    draw = rng.random()
    if draw < fill:
        return fill_middle(window, vocab, rng)
    if draw < fill + accompaniment:
        return accompany(window, vocab, rng)
    return window


def hint_for(steps: np.ndarray, tokens: np.ndarray, from_step: int, vocab: Vocab, budget: int) -> np.ndarray:
    """The hint for a window whose body begins at grid step `from_step`: the events of
    (`steps`, `tokens`) from there on, re-counted from it, at most `budget` tokens."""
    later = steps >= from_step
    return hint_tokens(steps[later] - from_step, tokens[later], vocab, budget)


def knows_hints(metadata: dict) -> bool:
    """Whether a checkpoint's model learnt hints: its training asked for them (config.json)."""
    augment = trained_augment(metadata)
    return bool(augment.get("fill_middle") or augment.get("accompany"))

"""The kept part as a side channel: accompanying with the kept notes beside the sequence, not in it.

Accompanying a melody by interleaving its notes with the model's (`fixed.py`) costs the
model: with another part's tokens between its own it predicts an accompaniment worse than
alone (MODEL_CARD "Stage 16"). Here the kept melodic parts leave the token sequence, which
then reads as the added families alone, and come back as three side features of every token,
read at the grid step the next token falls at (after the token's own wait):

- `kept_top`: 1 + the pitch class of the highest kept note sounding there, + 12 where a kept
  note starts there (0: none sounds);
- `kept_low`: 1 + the pitch class of the lowest kept note sounding there (0: none);
- `kept_next`: 1 + the pitch class of the highest note of the next kept onset within a beat
  after it (0: none), so the model sees the melody's next note coming.

Their embeddings' bucket 0 is fixed at zero, so a sequence without a channel reads exactly
as it did before the model had them. Training teaches them with `split_kept` on a share of
the windows (the config's `augment = {kept_channel = P}`); composing builds the grid from the
kept notes (`grid_of_table`). Drums never go into the channel (a pitch class of a drum
means nothing): a kept drum part stays in the sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .augment import _ranks, keep_families, trained_augment
from .instruments import DRUMS
from .sequence import KEPT_FEATURES, header_families, header_length, key_events
from .vocab import STEPS_PER_BEAT, Vocab

LOOK_AHEAD = STEPS_PER_BEAT  # kept_next looks this many grid steps ahead (a beat in beat mode)


@dataclass
class KeptGrid:
    """The three features at every grid step from `origin` on (each array: one value a step)."""

    top: np.ndarray
    low: np.ndarray
    next: np.ndarray
    origin: int = 0

    def at(self, steps) -> dict[str, np.ndarray]:
        """The features at grid steps `steps` (0 before the origin and past the grid's end)."""
        index = np.asarray(steps, np.int64) - self.origin
        inside = (index >= 0) & (index < len(self.top))
        where = np.clip(index, 0, len(self.top) - 1)  # a grid is at least one step long
        return {name: np.where(inside, values[where], 0)
                for name, values in zip(KEPT_FEATURES, (self.top, self.low, self.next), strict=True)}

    def columns(self, steps: torch.Tensor) -> dict[str, torch.Tensor]:
        """`at` for the sampler: grid steps (batch,) -> a (batch, 1) column per feature."""
        found = self.at(steps.cpu().numpy())
        return {name: torch.from_numpy(values[:, None]).to(steps.device) for name, values in found.items()}


def kept_grid(on: np.ndarray, off: np.ndarray, pitch: np.ndarray, length: int, origin: int = 0) -> KeptGrid:
    """The grid of kept notes sounding over [on, off) grid steps (from `origin`), `length` steps long."""
    on, off, pitch = (np.asarray(a, np.int64) for a in (on, off, pitch))
    on, off = np.clip(on - origin, 0, length), np.clip(np.maximum(off, on + 1) - origin, 0, length)
    spans = off - on
    sounding = np.repeat(on, spans) + _ranks(spans)  # every step of every note, with its pitch
    top, low = np.full(length, -1, np.int64), np.full(length, 128, np.int64)
    np.maximum.at(top, sounding, np.repeat(pitch, spans))
    np.minimum.at(low, sounding, np.repeat(pitch, spans))
    starts = np.zeros(length + 1, bool)
    starts[on[on < length]] = True
    onset_top = np.full(length + 1, -1, np.int64)
    np.maximum.at(onset_top, on[on < length], pitch[on < length])
    steps = np.arange(length)
    onsets = np.flatnonzero(starts[:length])
    coming = np.searchsorted(onsets, steps, side="right")  # the first kept onset after each step
    nxt = onsets[np.minimum(coming, len(onsets) - 1)] if len(onsets) else steps
    near = (coming < len(onsets)) & (nxt - steps <= LOOK_AHEAD)
    return KeptGrid(np.where(top >= 0, 1 + top % 12 + 12 * starts[:length], 0),
                    np.where(low < 128, 1 + low % 12, 0),
                    np.where(near, 1 + onset_top[nxt] % 12, 0), origin)


def grid_of_table(table, vocab: Vocab) -> KeptGrid:
    """The grid of a NoteTable's melodic notes on the vocabulary's grid steps from the piece's
    start (`encoding.time_steps`, as `encode_notes` places them), to a beat past the last."""
    from .encoding import time_steps

    part = table.select(np.flatnonzero(np.asarray(table.family) != DRUMS))
    on = np.asarray(time_steps(part, part.onset, vocab.time_mode), np.int64)
    off = np.maximum(np.asarray(time_steps(part, part.onset + part.duration, vocab.time_mode), np.int64), on + 1)
    return kept_grid(on, off, part.pitch, int(off.max(initial=0)) + LOOK_AHEAD + 1)


def grid_of_tokens(tokens: np.ndarray, vocab: Vocab, length: int, origin: int = 0) -> KeptGrid:
    """The grid of the melodic notes of a window's body tokens (steps from the body's start +
    `origin`); a note-off with no note-on before it sounded from the start, a note-on with no
    note-off after it to the end."""
    tokens = np.asarray(tokens, np.int64)
    waits = vocab.tables["wait"][tokens]
    step = np.cumsum(waits) - waits + origin
    keys, places, is_on = key_events(tokens, vocab)
    if not len(keys):
        return kept_grid(np.zeros(0), np.zeros(0), np.zeros(0), length, origin)
    same_next = np.r_[keys[1:] == keys[:-1], False]
    at = step[places]
    ends = np.where(same_next, np.r_[at[1:], 0], origin + length)  # the key's next event, or the end
    orphan = np.r_[True, keys[1:] != keys[:-1]] & ~is_on  # struck before the window
    on_steps = np.concatenate([at[is_on], np.full(int(orphan.sum()), origin)])
    off_steps = np.concatenate([ends[is_on], at[orphan]])
    pitches = np.concatenate([keys[is_on] % 128, keys[orphan] % 128])
    return kept_grid(on_steps, off_steps, pitches, length, origin)


def split_kept(window: np.ndarray, vocab: Vocab, rng: np.random.Generator,
               origin: int = 0) -> tuple[np.ndarray, KeptGrid | None]:
    """A window with a random non-empty set of its melodic families taken out of the
    sequence (header and notes; the waits merge, the clock is unchanged) into a `KeptGrid`
    (grid steps from the window's body start + `origin`); at least one named family stays.
    The window unchanged and None where no such split exists."""
    window = np.asarray(window, np.int64)
    named = header_families(window, vocab)
    head = header_length(window, vocab)
    body = window[head:]
    playing = np.unique(vocab.tables["family"][body])
    melodic = [int(f) for f in named if f != DRUMS and f in playing]
    if len(named) < 2 or not melodic:
        return window, None
    size = int(rng.integers(1, min(len(melodic), len(named) - 1) + 1))
    kept = rng.choice(melodic, size, replace=False).tolist()
    waits = vocab.tables["wait"][body]
    length = int(waits.sum()) + 1
    in_kept = np.isin(vocab.tables["family"][body], kept)
    grid = grid_of_tokens(np.where(in_kept | (waits > 0), body, vocab.PAD), vocab, length, origin)
    return keep_families(window, vocab, [int(f) for f in named if f not in kept]), grid


def knows_channel(metadata: dict, features) -> bool:
    """Whether a checkpoint's model reads kept parts beside the sequence: it embeds the kept
    features and its training asked for the channel (config.json)."""
    return bool(trained_augment(metadata).get("kept_channel")) and set(KEPT_FEATURES) <= set(features)

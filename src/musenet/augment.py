"""Augmentation on the fly, on token windows: transposition, volume, timing, re-orchestration,
fewer families, late entrances (and the hints of `hints.py`, which `Dataset.window` adds after these),
and a header without its conditions (`unconditioned`, last of all), which classifier-free
guidance contrasts against when composing (`rules.guide`).

Each is a plain function of (tokens, vocab, amount); `Augment` draws the amounts. Drums are
never transposed or re-orchestrated, and every note stays inside its family's pitch range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .instruments import DRUMS, FAMILIES, PITCH_HIGH, PITCH_LOW
from .sequence import header_families, header_length
from .vocab import Vocab, velocity_bins


def _notes(tokens: np.ndarray, vocab: Vocab):
    t = vocab.tables
    family = t["family"][tokens]
    return family >= 0, family, t["pitch"][tokens], t["velocity"][tokens]


def _rebuild(tokens, vocab, is_note, family, pitch, velocity) -> np.ndarray:
    out = tokens.copy()
    level = np.where(velocity[is_note] > 0, velocity_bins(np.maximum(velocity[is_note], 1)), 0)
    out[is_note] = vocab.note_tokens(family[is_note], pitch[is_note], level)
    return out


def transpose_range(tokens: np.ndarray, vocab: Vocab, limit: int = 6) -> tuple[int, int]:
    """The shifts (low, high) within +-limit that keep every melodic note in its family's range."""
    is_note, family, pitch, _ = _notes(tokens, vocab)
    melodic = is_note & (family != DRUMS)
    if not melodic.any():
        return 0, 0
    low = int((PITCH_LOW[family[melodic]] - pitch[melodic]).max())
    high = int((PITCH_HIGH[family[melodic]] - pitch[melodic]).min())
    return max(low, -limit), min(high, limit)


def transpose(tokens: np.ndarray, vocab: Vocab, shift: int) -> np.ndarray:
    """Move every melodic note by `shift` semitones (drums stay). The caller keeps it in range."""
    is_note, family, pitch, velocity = _notes(tokens, vocab)
    pitch = np.where(family != DRUMS, pitch + shift, pitch)
    return _rebuild(tokens, vocab, is_note, family, pitch, velocity)


def scale_volume(tokens: np.ndarray, vocab: Vocab, factor: float) -> np.ndarray:
    """Multiply every note-on velocity by `factor` (clipped to 1-127, re-binned); note-offs stay."""
    is_note, family, pitch, velocity = _notes(tokens, vocab)
    velocity = np.where(velocity > 0, np.clip(np.round(velocity * factor), 1, 127), 0).astype(np.int64)
    return _rebuild(tokens, vocab, is_note, family, pitch, velocity)


def stretch_time(tokens: np.ndarray, vocab: Vocab, factor: float) -> np.ndarray:
    """Scale every gap by `factor` (seconds mode): waits are re-rounded on the running total so
    no drift builds up, zero waits vanish and long ones split."""
    waits = vocab.tables["wait"][tokens]
    is_wait = waits > 0
    if not is_wait.any():
        return tokens.copy()
    total = np.cumsum(waits[is_wait])
    return _set_waits(tokens, vocab, is_wait, np.diff(np.floor(total * factor + 0.5).astype(np.int64), prepend=0))


def _set_waits(tokens: np.ndarray, vocab: Vocab, is_wait: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The wait tokens at `is_wait` given the lengths `new` in steps: a 0 vanishes, one longer
    than the longest wait token becomes several."""
    pieces = -(-new // vocab.max_wait)  # how many wait tokens each becomes (0 if the gap vanished)
    counts = np.ones(len(tokens), np.int64)
    counts[is_wait] = pieces
    out = np.repeat(tokens, counts)
    # fill the waits: full ones, then the remainder in the last of each group
    starts = np.cumsum(counts) - counts
    wait_starts, wait_counts, wait_new = starts[is_wait], pieces, new
    full = vocab.wait_offset + vocab.max_wait - 1
    keep = wait_counts > 0
    for_fill = np.repeat(wait_starts[keep], wait_counts[keep]) + _ranks(wait_counts[keep])
    out[for_fill] = full
    last = wait_starts[keep] + wait_counts[keep] - 1
    out[last] = vocab.wait_offset + wait_new[keep] - (wait_counts[keep] - 1) * vocab.max_wait - 1
    return out


def keep_families(tokens: np.ndarray, vocab: Vocab, keep) -> np.ndarray:
    """Only the families in `keep` (family numbers): the notes of every other family and its
    header token go, and the waits they separated merge, so the window reads as if those
    families had been the whole ensemble."""
    family = vocab.tables["family"][tokens]
    is_header_family = (tokens >= vocab.family_offset) & (tokens < vocab.tempo_offset)
    family = np.where(is_header_family, tokens - vocab.family_offset, family)
    return _only(tokens, vocab, (family < 0) | np.isin(family, list(keep)))


def _only(tokens: np.ndarray, vocab: Vocab, keep: np.ndarray) -> np.ndarray:
    """The tokens where `keep` holds; waits left with no other token between them merge (the
    clock is unchanged)."""
    tokens = tokens[keep]
    waits = vocab.tables["wait"][tokens]
    is_wait = waits > 0
    if not is_wait.any():
        return tokens.copy()
    run = np.cumsum(~is_wait)[is_wait]               # waits with no other token between share a run
    first = np.r_[True, run[1:] != run[:-1]]
    totals = np.add.reduceat(waits[is_wait], np.flatnonzero(first))
    new = np.zeros(int(is_wait.sum()), np.int64)
    new[first] = totals
    return _set_waits(tokens, vocab, is_wait, new)


def drop_families(tokens: np.ndarray, vocab: Vocab, rng: np.random.Generator) -> np.ndarray:
    """Keep a random non-empty, proper subset of the header's families (every size equally
    likely), so that the model learns that the families named are the ones that play."""
    named = header_families(tokens, vocab)
    if len(named) < 2:
        return tokens.copy()
    size = int(rng.integers(1, len(named)))
    return keep_families(tokens, vocab, rng.choice(named, size, replace=False).tolist())


def enter_late(tokens: np.ndarray, vocab: Vocab, rng: np.random.Generator, length: int | None = None) -> np.ndarray:
    """Silence a random non-empty, proper subset of the header's families until an instant
    between an eighth and five eighths of the way into the body's first `length` tokens: their
    notes before it go, and so do note-offs after it of notes struck before it. The header
    still names them, so the model learns that a named family that has not played will come
    in, and has to write its entrance from the other parts alone (what accompanying asks)."""
    named = header_families(tokens, vocab)
    if len(named) < 2:
        return tokens.copy()
    late = rng.choice(named, int(rng.integers(1, len(named))), replace=False)
    head = header_length(tokens, vocab)
    span = min(len(tokens), length or len(tokens)) - head
    waits = vocab.tables["wait"][tokens]
    instants = np.flatnonzero(waits[head:-1] > 0) + head + 1       # a token right after a wait
    instants = instants[(instants >= head + span // 8) & (instants < head + span * 5 // 8)]
    if not len(instants):
        return tokens.copy()
    cut = int(rng.choice(instants))
    family = vocab.tables["family"][tokens]
    places = np.arange(len(tokens))
    silenced = np.isin(family, late) & (places < cut)
    # a note-off after the cut whose key has no note-on between the cut and it
    key = np.where(np.isin(family, late), family * 128 + vocab.tables["pitch"][tokens], -1)
    is_on = vocab.tables["velocity"][tokens] > 0
    first_on = np.full(len(FAMILIES) * 128, len(tokens))
    ons = np.flatnonzero((key >= 0) & is_on & (places >= cut))
    np.minimum.at(first_on, key[ons], ons)
    orphan = (key >= 0) & ~is_on & (places >= cut) & (places < first_on[np.maximum(key, 0)])
    return _only(tokens, vocab, ~(silenced | orphan))


def unconditioned(tokens: np.ndarray, vocab: Vocab) -> np.ndarray:
    """The window without its header's conditions: the style and family tokens go, `start`,
    the hint and the rest stay (the header a guided draw contrasts against, `rules.guide`)."""
    tokens = np.asarray(tokens, np.int64)
    head_end = header_length(tokens, vocab)
    position = np.arange(len(tokens))
    condition = (position < head_end) & ((tokens >= vocab.style_offset)
                                         | ((tokens >= vocab.family_offset) & (tokens < vocab.tempo_offset)))
    return tokens[~condition]


def trained_augment(metadata: dict) -> dict:
    """The augmentation a checkpoint's model was trained with (its config.json; {} if none)."""
    return (metadata.get("train") or {}).get("augment") or {}


def learnt_unconditioned(metadata: dict) -> bool:
    """Whether a checkpoint's model learnt unconditioned headers (so it can be guided): its
    training asked for them."""
    return bool(trained_augment(metadata).get("unconditioned"))


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0..n-1 for each group of the given sizes, concatenated."""
    return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)


def reorchestrate(tokens: np.ndarray, vocab: Vocab, rng: np.random.Generator) -> np.ndarray:
    """Move each melodic family present to another melodic family not present, when all its
    notes fit the new family's range; the header's family tokens follow."""
    is_note, family, pitch, velocity = _notes(tokens, vocab)
    present = [f for f in np.unique(family[is_note]) if f != DRUMS]
    free = [f for f in range(len(FAMILIES)) if f != DRUMS and f not in present]
    mapping = {}
    for f in rng.permutation(present):
        notes = pitch[is_note & (family == f)]
        fits = [g for g in free if PITCH_LOW[g] <= notes.min() and notes.max() <= PITCH_HIGH[g]]
        if fits:
            g = int(rng.choice(fits))
            mapping[int(f)] = g
            free.remove(g)
            free.append(int(f))
    if not mapping:
        return tokens.copy()
    lookup = np.arange(len(FAMILIES))
    lookup[list(mapping)] = list(mapping.values())
    family = np.where(is_note, lookup[np.maximum(family, 0)], family)
    out = _rebuild(tokens, vocab, is_note, family, pitch, velocity)
    is_header_family = (out >= vocab.family_offset) & (out < vocab.tempo_offset)
    if is_header_family.any():
        where = np.flatnonzero(is_header_family)
        out[where] = np.sort(vocab.family_offset + lookup[out[where] - vocab.family_offset])
    return out


@dataclass
class Augment:
    """Random augmentation of a window; set an amount to 0 to switch that one off."""

    transpose: int = 6           # largest shift in semitones
    volume: float = 0.2          # largest relative change of velocity
    stretch: float = 0.05        # largest relative change of timing (seconds mode only)
    reorchestrate: float = 0.0   # probability of moving melodic parts to other families
    drop_families: float = 0.0   # probability of keeping only some of the named families
    fill_middle: float = 0.0     # probability of a hint of the window's tail (hints.py; a row's first window)
    accompany: float = 0.0       # probability of a hint of some families' notes (hints.py; likewise)
    enter_late: float = 0.0      # probability of some named families coming in only part-way
    unconditioned: float = 0.0   # probability of a header without style and families (Dataset.window, last)
    kept_channel: float = 0.0    # probability of melodic parts read beside the sequence (channel.py)

    def __call__(self, tokens: np.ndarray, vocab: Vocab, rng: np.random.Generator,
                 length: int | None = None) -> np.ndarray:
        """`tokens` augmented; `length`: how many of them the window will keep (`enter_late`
        cuts inside those)."""
        tokens = np.asarray(tokens, np.int64)
        if self.transpose:
            low, high = transpose_range(tokens, vocab, self.transpose)
            if high > low:
                tokens = transpose(tokens, vocab, int(rng.integers(low, high + 1)))
        if self.volume:
            tokens = scale_volume(tokens, vocab, float(rng.uniform(1 - self.volume, 1 + self.volume)))
        if self.stretch and vocab.time_mode == "seconds":
            tokens = stretch_time(tokens, vocab, float(rng.uniform(1 - self.stretch, 1 + self.stretch)))
        if self.drop_families and rng.random() < self.drop_families:
            tokens = drop_families(tokens, vocab, rng)
        if self.reorchestrate and rng.random() < self.reorchestrate:
            tokens = reorchestrate(tokens, vocab, rng)
        if self.enter_late and rng.random() < self.enter_late:
            tokens = enter_late(tokens, vocab, rng, length)
        return tokens

"""The sampler's rules, as small pure functions over a batch of candidates (torch).

- `TokenTables`: per-token facts as tensors (family, key, wait, tempo, ...).
- `DecodeState` and `advance`: what each candidate's next mask and features depend on
  (sounding notes, the clock, the tempo), updated after every token.
- `allowed_tokens`: the mask. Strict instruments (no note-on of a family not asked for);
  grammar (a note-off only for a note sounding since an earlier instant, no re-strike of a
  sounding key or of a drum in its instant, at most `max_polyphony` melodic notes at once, no run of
  waits longer than `max_rest_seconds`, no note held past `max_note_seconds`: no wait may
  carry one past it, and a note that cannot last another step is released next); length
  (no `end` before `earliest_end`, no wait past 110% of the length, `end` forced at 100%).
- `entrances`: strict mode's other half: a requested family silent for
  `max_family_silence` seconds (the first time: 2 s into the new music) is brought in: the
  next token is one of its note-ons, the model choosing which.
- `release_boost`: where a family has one note sounding, the model's probability of that
  family's masked note-offs goes to the sounding note's.
- `sample_tokens`: temperature, mask, top-k, min-p, top-p by inverse transform.
- `next_features`: the side features of the token about to be fed, incrementally; tests pin
  them to `sequence.side_features`.

None of them keeps anything between calls: the state is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .instruments import DRUMS, FAMILIES
from .sequence import (
    AHEAD_BUCKETS,
    AHEAD_STEPS,
    COUNTDOWN_BUCKETS,
    DEFAULT_TEMPO,
    HELD_FOR_BUCKETS,
    HELD_STEP_SECONDS,
    PHASE_STEPS,
    POSITION_PARTS,
    countdown_steps,
    hint_mask,
    position_part,
    seconds_per_step,
    tempo_in_force,
)
from .settings import Settings
from .vocab import Vocab

KEYS = len(FAMILIES) * 128  # a key is family x 128 + pitch


def tracing() -> bool:
    """True while `torch.export` traces `advance` and `next_features` into the compiled
    state update (`kernels.py`): then no Python `if` may read a tensor, and the batch is free."""
    return torch.compiler.is_exporting() or torch.compiler.is_compiling()


class TokenTables:
    """Per-token facts of a vocabulary as tensors, for building masks without Python loops."""

    def __init__(self, vocab: Vocab, device):
        t = vocab.tables
        family = torch.from_numpy(t["family"]).to(device)
        velocity = torch.from_numpy(t["velocity"]).to(device)
        self.vocab = vocab
        self.is_note = family >= 0
        self.is_on = self.is_note & (velocity > 0)
        self.is_off = self.is_note & (velocity == 0)
        self.is_drum = family == DRUMS
        self.family = family.clamp(min=0)
        self.key = torch.where(self.is_note, family * 128 + torch.from_numpy(t["pitch"]).to(device), 0)
        self.wait = torch.from_numpy(t["wait"]).to(device)
        self.tempo = torch.from_numpy(t["tempo"]).to(device).float()
        self.is_tempo = self.tempo > 0
        self.notes = slice(vocab.note_offset, vocab.style_offset)  # the vocabulary's blocks (vocab.py)
        self.waits = slice(vocab.wait_offset, vocab.note_offset)
        self.wait_steps = self.wait[self.waits].double()  # each wait token's steps, ready to scale
        self.note_key = self.key[self.notes]
        self.note_is_on = self.is_on[self.notes]
        # each note token's status column in (releasable keys | strikable keys): one gather makes the notes' mask
        self.note_status = self.note_key + KEYS * self.note_is_on.long()
        # nucleus groups (`sample_tokens` with nucleus "family"): a family's notes (on and off), or the rest
        self.nucleus_group = torch.where(self.is_note, self.family, len(FAMILIES))
        self.off_ids = torch.nonzero(self.is_off)[:, 0]  # note-offs, for the release boost
        self.off_family = self.family[self.off_ids]
        self.melodic_on_ids = torch.nonzero(self.is_on & ~self.is_drum)[:, 0]  # for the harmony lean
        self.melodic_on_class = self.key[self.melodic_on_ids] % 128 % 12
        self.melodic_on_family = self.family[self.melodic_on_ids]
        self.longest_wait = int(self.wait.max())
        self.ids = ids = torch.arange(vocab.size, device=device)
        self.never = (ids == vocab.PAD) | (ids == vocab.START) | (ids >= vocab.style_offset) | (
            (ids >= vocab.family_offset) & (ids < vocab.tempo_offset))
        self.possible = ~self.never
        self._rows: dict[int, torch.Tensor] = {}

    @staticmethod
    def per_family(values: torch.Tensor, family: torch.Tensor) -> torch.Tensor:
        """Sums (batch, families) of `values` (batch, n) by the family (n,) of each column (an
        index_add: at one or four rows several times quicker than a product with a one-hot)."""
        return values.new_zeros(len(values), len(FAMILIES)).index_add_(1, family, values)

    def rows(self, batch: int) -> torch.Tensor:
        """0, 1, ..., batch - 1, made once per batch size."""
        if tracing():  # a batch of any size
            return torch.arange(batch, device=self.key.device)
        if batch not in self._rows:
            self._rows[batch] = torch.arange(batch, device=self.key.device)
        return self._rows[batch]


@dataclass
class DecodeState:
    """What each candidate's mask and features depend on, for a batch of candidates."""

    sounding: torch.Tensor       # (batch, keys) bool: which keys sound
    onset: torch.Tensor          # (batch, keys) float64: when each sounding key was struck
    polyphony: torch.Tensor      # (batch,) melodic notes sounding
    rest_seconds: torch.Tensor   # (batch,) seconds since the last note token
    seconds: torch.Tensor        # (batch,) the clock: seconds before the next token
    window_steps: torch.Tensor   # (batch,) grid steps since the model's window began
    window_seconds: torch.Tensor  # (batch,) float64: the clock where the model's window began
    steps: torch.Tensor          # (batch,) grid steps since the piece began
    instant_ons: torch.Tensor    # (batch,) note-ons so far in the current instant
    instant_drums: torch.Tensor  # (batch, 128) bool: drum keys struck in the current instant
    tempo: torch.Tensor          # (batch,) BPM in force
    finished: torch.Tensor       # (batch,) bool: `end` taken
    family_last: torch.Tensor    # (batch, families) float64: each family's latest note-on (-inf: none)
    earliest_end: float = field(default=0.0)  # `end` is masked before this many seconds
    entries_from: float = field(default=0.0)  # the new music begins here (`entrances` counts from it)
    hint_steps: torch.Tensor | None = field(default=None)  # (batch, events): the window's hinted events (-1: pad)
    _step: tuple | None = field(default=None, repr=False)  # (tempo, seconds per step) last computed

    def step_seconds(self, vocab: Vocab) -> torch.Tensor:
        """(batch,) seconds a grid step lasts at each row's tempo, recomputed only when the
        tempo changes (`advance` replaces the tensor then, never writes into it)."""
        if self._step is None or self._step[0] is not self.tempo:
            self._step = (self.tempo, seconds_per_step(vocab, self.tempo))
        return self._step[1]

    @classmethod
    def new(cls, batch: int, device) -> DecodeState:
        def zeros(dtype, *shape):
            return torch.zeros(batch, *shape, dtype=dtype, device=device)

        return cls(sounding=zeros(torch.bool, KEYS), onset=zeros(torch.float64, KEYS), polyphony=zeros(torch.long),
                   rest_seconds=zeros(torch.float64), seconds=zeros(torch.float64), window_steps=zeros(torch.long),
                   window_seconds=zeros(torch.float64), steps=zeros(torch.long),
                   instant_ons=zeros(torch.long), instant_drums=zeros(torch.bool, 128),
                   tempo=torch.full((batch,), 120.0, dtype=torch.float64, device=device),
                   finished=zeros(torch.bool),
                   family_last=torch.full((batch, len(FAMILIES)), float("-inf"), dtype=torch.float64,
                                          device=device))


def last_of(values: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each distinct value among the rows `where`, the index of its last such row)."""
    rows = np.flatnonzero(where)[::-1]
    distinct, first = np.unique(values[rows], return_index=True)
    return distinct, rows[first]


def opening_state(tokens, batch: int, tables: TokenTables, device) -> DecodeState:
    """The state after `tokens` (a header and a prompt, the same for every candidate): what
    `advance` token by token gives, computed over the whole array at once (a prompt can have
    thousands of tokens). Sums run in token order, so the clock has the same bits."""
    t, vocab = tables.vocab.tables, tables.vocab
    tokens = np.asarray(tokens, np.int64)
    tokens = tokens[~hint_mask(tokens, vocab)]  # a hint sounds nothing and moves no time
    state = DecodeState.new(batch, device)
    if not len(tokens):
        return state
    family, pitch, velocity, wait = t["family"][tokens], t["pitch"][tokens], t["velocity"][tokens], t["wait"][tokens]
    tempo = tempo_in_force(tokens, vocab, DEFAULT_TEMPO).astype(np.float32).astype(np.float64)
    wait_seconds = wait * seconds_per_step(vocab, tempo)
    clock = np.cumsum(wait_seconds)                                   # after each token
    is_note = family >= 0
    on, off = is_note & (velocity > 0), is_note & (velocity == 0)
    melodic = is_note & (family != DRUMS)
    key = np.where(is_note, family * 128 + pitch, 0)
    sounding, onset = np.zeros(KEYS, bool), np.zeros(KEYS)
    keys, last = last_of(key, melodic)                                # each key's last event decides
    sounding[keys], onset[keys] = on[last], clock[last]
    family_last = np.full(len(FAMILIES), -np.inf)
    families, last = last_of(family, on)
    family_last[families] = clock[last]
    notes, waited = np.flatnonzero(is_note), np.flatnonzero(wait > 0)
    after_note = wait_seconds[notes[-1] + 1:] if len(notes) else wait_seconds
    instant = slice(waited[-1] + 1 if len(waited) else 0, None)       # since the last wait
    drums = np.zeros(128, bool)
    drums[pitch[instant][on[instant] & (family[instant] == DRUMS)]] = True

    def rows(values, dtype):
        values = torch.as_tensor(np.asarray(values), dtype=dtype, device=device)
        return values.expand(batch, *values.shape).clone()

    state.sounding, state.onset = rows(sounding, torch.bool), rows(onset, torch.float64)
    state.polyphony = rows(int((on & melodic).sum() - (off & melodic).sum()), torch.long)
    state.rest_seconds = rows(np.cumsum(after_note)[-1] if len(after_note) else 0.0, torch.float64)
    state.seconds, state.tempo = rows(clock[-1], torch.float64), rows(tempo[-1], torch.float64)
    state.steps, state.window_steps = rows(int(wait.sum()), torch.long), rows(int(wait.sum()), torch.long)
    state.instant_ons = rows(int(on[instant].sum()), torch.long)
    state.instant_drums = rows(drums, torch.bool)
    state.finished = rows(bool((tokens == vocab.END).any()), torch.bool)
    state.family_last = rows(family_last, torch.float64)
    return state


def advance(state: DecodeState, token: torch.Tensor, tables: TokenTables) -> None:
    """Update every candidate's state after it took `token` (one per row)."""
    t = tables
    rows = t.rows(token.shape[0])  # each row writes its own entry: a read, a where and a write per table
    key, on, off, drum = t.key[token], t.is_on[token], t.is_off[token], t.is_drum[token]
    melodic_on = on & ~drum
    state.sounding[rows, key] = (state.sounding[rows, key] | melodic_on) & ~off
    state.onset[rows, key] = torch.where(melodic_on, state.seconds, state.onset[rows, key])
    state.polyphony += melodic_on.long() - off.long()
    state.instant_ons += on.long()
    family = t.family[token]
    state.family_last[rows, family] = torch.where(on, state.seconds, state.family_last[rows, family])
    drum_key = key % 128
    state.instant_drums[rows, drum_key] |= on & drum
    steps = t.wait[token]
    waited = steps > 0
    seconds = steps * state.step_seconds(t.vocab)
    state.seconds += seconds
    state.window_steps += steps
    state.steps += steps
    state.rest_seconds = torch.where(t.is_note[token], torch.zeros_like(state.rest_seconds),
                                     state.rest_seconds + seconds)
    state.instant_ons = torch.where(waited, torch.zeros_like(state.instant_ons), state.instant_ons)
    state.instant_drums &= ~waited[:, None]
    if tracing() or bool(t.is_tempo[token].any()):  # a new tensor: `step_seconds` follows it
        state.tempo = torch.where(t.is_tempo[token], t.tempo[token].double(), state.tempo)
    state.finished |= token == t.vocab.END


def instrument_filter(settings: Settings, tables: TokenTables) -> torch.Tensor:
    """Tokens the instrument choice allows (vocab,): in strict mode, no note-on of a family
    that was not asked for; otherwise everything."""
    chosen = chosen_families(settings, tables.is_on.device)
    return torch.ones_like(tables.is_on) if chosen is None else ~tables.is_on | chosen[tables.family]


def chosen_families(settings: Settings, device) -> torch.Tensor | None:
    """The families a strict request names (families,) bool; None in soft mode or for "any"."""
    if settings.instrument_mode != "strict" or settings.instruments in (None, "any"):
        return None
    chosen = torch.zeros(len(FAMILIES), dtype=torch.bool, device=device)
    chosen[[FAMILIES.index(f) for f in settings.instruments]] = True
    return chosen


def requested_families(settings: Settings, device) -> torch.Tensor | None:
    """The families strict mode guarantees (families,) bool, or None where it guarantees
    none (soft mode, "any", no choice, or `max_family_silence` 0)."""
    return chosen_families(settings, device) if settings.max_family_silence else None


FIRST_ENTRY_SECONDS = 2.0  # a requested family that has not played yet enters this far into the new music


def entrances(mask: torch.Tensor, state: DecodeState, settings: Settings, tables: TokenTables,
              requested: torch.Tensor | None) -> torch.Tensor:
    """Narrow `mask` so that no requested family stays silent longer than `max_family_silence`.

    A family is quiet where none of its notes sounds; its silence counts from its latest
    note-on, or for one that has not played from FIRST_ENTRY_SECONDS less `max_family_silence`
    before the new music begins (so it enters 2 s in). While a quiet family could enter
    (the mask allows one of its note-ons), no wait may carry the clock past its deadline; once
    the shortest wait would, the row may take only a note-on of such a family, the model
    choosing which (pitch, volume). Where the mask allows none of its note-ons (polyphony
    full, `end` forced, a kept token due) the row is left as it is."""
    if requested is None:
        return mask
    t = tables
    batch = len(state.seconds)
    playing = state.sounding.view(batch, len(FAMILIES), 128).any(dim=2)
    silence = settings.max_family_silence
    quiet_since = state.family_last.clamp_min(state.entries_from + min(silence, FIRST_ENTRY_SECONDS) - silence)
    step_seconds = state.step_seconds(t.vocab)
    ends = quiet_since + silence                                                      # each family's deadline
    near = requested[None, :] & ~playing & ((state.seconds + t.longest_wait * step_seconds)[:, None] > ends)
    if not bool(near.any()):  # no wait can reach a deadline: nothing to do (most steps)
        return mask
    can_enter = t.per_family((mask & t.is_on[None, :]).to(torch.float32), t.family) > 0  # (batch, families)
    enterable = near & can_enter
    deadline = torch.where(enterable, ends, float("inf")).min(dim=1).values
    due = state.seconds + step_seconds > deadline                                     # the shortest wait passes it
    late = enterable & ((state.seconds + step_seconds)[:, None] > ends)
    entering = mask & t.is_on[None, :] & late[:, t.family]
    mask = mask.clone()
    mask[:, t.waits] &= ~(state.seconds[:, None] + t.wait_steps[None, :] * step_seconds[:, None] > deadline[:, None])
    return torch.where(due[:, None], entering, mask)


def allowed_tokens(state: DecodeState, settings: Settings, tables: TokenTables, allowed_on: torch.Tensor,
                   needs_tempo: bool, own: torch.Tensor | None = None) -> torch.Tensor:
    """Which tokens each candidate may take next (batch, vocab) bool. `own` (batch, keys),
    if given, are the sounding keys the model itself struck (the others are kept notes,
    `fixed.py`): only they count for releases and for how long notes are held."""
    t, vocab = tables, tables.vocab
    if needs_tempo:
        return t.is_tempo[None, :].expand(len(state.seconds), -1).clone()
    own = state.sounding if own is None else own
    mask = (t.possible & allowed_on).expand(len(state.seconds), -1).clone()
    # notes, key by key, then spread over the note tokens once: a note-off only for a note the
    # model holds and struck before this instant; a note-on only for a silent key while fewer
    # than max_polyphony melodic notes sound; a drum once an instant (a drum hit holds no voice)
    full = state.polyphony >= settings.max_polyphony
    strikable = ~state.sounding & ~full[:, None]
    strikable[:, DRUMS * 128: (DRUMS + 1) * 128] = ~state.instant_drums
    releasable = own & (state.onset != state.seconds[:, None])
    mask[:, t.notes] &= torch.cat((releasable, strikable), dim=1).index_select(1, t.note_status)
    # waits: none past max_rest_seconds of rest, 110% of the length, or max_note_seconds of a note
    step_seconds = state.step_seconds(vocab)
    wait_seconds = t.wait_steps[None, :] * step_seconds[:, None]
    target = float(settings.seconds)
    held = torch.where(own, state.seconds[:, None] - state.onset, float("-inf"))  # (batch, keys)
    longest = held.max(dim=1).values                                 # -inf when nothing sounds
    too_long = (state.rest_seconds[:, None] + wait_seconds > settings.max_rest_seconds) | (
        state.seconds[:, None] + wait_seconds > 1.1 * target) | (
        longest[:, None] + wait_seconds > settings.max_note_seconds)
    mask[:, t.waits] &= ~too_long
    releasing = longest + step_seconds > settings.max_note_seconds  # a note cannot last another step
    if bool(releasing.any()):
        overdue = held + step_seconds[:, None] > settings.max_note_seconds  # those notes
        mask[releasing] = (t.is_off[None, :] & overdue[:, t.key])[releasing]
    mask[:, vocab.END] = state.seconds >= state.earliest_end
    due = state.seconds >= target
    if bool(due.any()):  # (most steps skip the rarely needed row assignments)
        mask[due] = False
        mask[due, vocab.END] = True
    stuck = ~mask.any(dim=1)
    if bool(stuck.any()):
        mask[stuck, vocab.END] = True
    if bool(state.finished.any()):
        mask[state.finished] = False
        mask[state.finished, vocab.PAD] = True
    return mask


def release_boost(logits: torch.Tensor, mask: torch.Tensor, tables: TokenTables) -> torch.Tensor:
    """Where a family has one note sounding, give it the family's whole note-off
    probability. The model spreads "release the note now" over the note-offs of many
    pitches; the grammar allows only the sounding note's, so the masked note-offs'
    probability goes to it rather than to every other token. (With several notes sounding
    the masked mass is ambiguous, and moving it thins part music out: left as it is.)"""
    t = tables
    allowed = mask.index_select(1, t.off_ids)  # (batch, note-offs)
    if not bool(allowed.any()):
        return logits
    # only ratios of note-off probabilities count, so a softmax over the note-offs alone serves
    probabilities = torch.softmax(logits.index_select(1, t.off_ids), dim=-1)
    allowed_share = probabilities * allowed
    # three sums by family in one call: (batch, families) each
    kept, lost, count = t.per_family(torch.cat((allowed_share, probabilities - allowed_share,
                                                allowed.to(logits.dtype))), t.off_family).view(3, len(logits), -1)
    single = count == 1
    boost = torch.where(single & (kept > 0), (1 + lost / kept.clamp_min(1e-30)).log(), 0.0)
    return logits.index_add(1, t.off_ids, torch.where(allowed, boost.index_select(1, t.off_family), 0.0))


NUCLEUS_FIRST_LOOK = 128  # the likeliest tokens top-p looks at first (it sorts them all only if it must)


def guide(conditioned: torch.Tensor, unconditioned: torch.Tensor, weight: float) -> torch.Tensor:
    """Classifier-free guidance: the unconditioned logits moved `weight` times the way the
    conditions move them (1: the conditioned logits as they are; above 1: further). Tokens the
    head does not score (-inf) stay -inf."""
    scored = torch.isfinite(conditioned)
    guided = unconditioned + weight * (conditioned - unconditioned)
    return torch.where(scored, guided, conditioned)


def sample_tokens(logits: torch.Tensor, mask: torch.Tensor, settings: Settings, generator: torch.Generator,
                  tables: TokenTables, draw: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row: temperature, the release boost, the mask, top-k, then top-p
    (nucleus) sampling by inverse transform on the sorted probabilities (one uniform draw per
    row, from `generator` or given as `draw` (batch, 1); no sort when top_p is 1).

    With `settings.nucleus` "family" the nucleus is taken within a group: the draw first picks
    a group at the model's own odds (a family's notes, on and off; or the waits, tempo and
    end), then the nucleus of that group's tokens (the rest of the same draw, rescaled). A
    family whose notes together are likely, but each one far below the cut, can then still
    come in. With `settings.min_p` above 0, tokens less likely than min_p x the likeliest one
    (within the group drawn) are cut first, and the nucleus, if any, is taken of the rest."""
    logits = logits.float()
    if settings.temperature != 1.0:
        logits = logits / settings.temperature
    logits = release_boost(logits, mask, tables).masked_fill(~mask, float("-inf"))
    if settings.top_k:
        kth = torch.topk(logits, min(settings.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probabilities = torch.softmax(logits, dim=-1)
    if draw is None:
        draw = torch.rand(len(logits), 1, generator=generator)
    draw = draw.to(logits.device)
    if settings.nucleus == "family" and (settings.top_p < 1.0 or settings.min_p > 0):
        probabilities, draw = _one_group(probabilities, draw, tables.nucleus_group)
    if settings.min_p > 0:  # min-p: nothing below min_p x the likeliest token's probability
        likeliest = probabilities.max(dim=-1, keepdim=True).values
        probabilities = probabilities.masked_fill(probabilities < settings.min_p * likeliest, 0.0)
    if settings.top_p >= 1.0:  # no nucleus to find: inverse transform on the unsorted cumulative sum
        cumulative = probabilities.cumsum(dim=-1)
        index = torch.searchsorted(cumulative, draw * cumulative[:, -1:], right=True)
        return index.clamp_max(logits.shape[-1] - 1)[:, 0]
    if settings.min_p > 0:
        probabilities = probabilities / probabilities.sum(dim=-1, keepdim=True)
    return _nucleus(probabilities, draw, settings.top_p)


def _one_group(probabilities: torch.Tensor, draw: torch.Tensor, group: torch.Tensor):
    """Pick each row's group by inverse transform on the groups' masses: that group's
    probabilities, renormalised, and the draw rescaled to within it."""
    groups = len(FAMILIES) + 1  # TokenTables.nucleus_group: the families, then the rest
    mass = torch.zeros(len(probabilities), groups, dtype=probabilities.dtype, device=probabilities.device)
    mass.scatter_add_(1, group.expand_as(probabilities), probabilities)
    cumulative = mass.cumsum(dim=-1)
    goal = draw * cumulative[:, -1:]
    chosen = torch.searchsorted(cumulative, goal, right=True).clamp_max(groups - 1)
    chosen_mass = mass.gather(1, chosen)
    within = ((goal - (cumulative.gather(1, chosen) - chosen_mass)) / chosen_mass).clamp(0.0, 1.0 - 1e-7)
    inside = probabilities.masked_fill(group[None, :] != chosen, 0.0)
    return inside / chosen_mass, within


def _nucleus(probabilities: torch.Tensor, draw: torch.Tensor, top_p: float) -> torch.Tensor:
    """Top-p by inverse transform on the sorted probabilities. The nucleus nearly always lies
    among the 128 likeliest tokens, so those are found first (`topk`, a partial sort) and the
    whole vocabulary is sorted only where they hold less than top_p: the same tokens either way."""
    ordered, order = torch.topk(probabilities, min(NUCLEUS_FIRST_LOOK, probabilities.shape[-1]), dim=-1)
    if bool((ordered.sum(dim=-1) < top_p).any()):  # a nucleus wider than the first look: sort all
        ordered, order = torch.sort(probabilities, descending=True, dim=-1)
    cumulative = ordered.cumsum(dim=-1)
    # keep the token that crosses p, never one of probability 0 (masked)
    kept = (((cumulative - ordered) < top_p) & (ordered > 0)).sum(dim=-1, keepdim=True)
    total = cumulative.gather(1, kept - 1)
    index = torch.searchsorted(cumulative, draw * total, right=True).clamp_max(kept - 1)
    return order.gather(1, index)[:, 0]


class Draws:
    """The uniform draws of `sample_tokens`, one (batch, 1) a step, taken from `generator` 256
    steps at a time: the very numbers one call a step would give (the CPU generator fills a
    block in the same order), for one call instead of 256."""

    def __init__(self, generator: torch.Generator, batch: int, block: int = 256):
        self.generator, self.batch, self.block = generator, batch, block
        self.drawn, self.used = torch.empty(0, batch, 1), 0

    def next(self) -> torch.Tensor:
        if self.used == len(self.drawn):
            self.drawn, self.used = torch.rand(self.block, self.batch, 1, generator=self.generator), 0
        self.used += 1
        return self.drawn[self.used - 1]


def next_features(token: torch.Tensor, state: DecodeState, tables: TokenTables,
                  total_seconds: float) -> dict[str, torch.Tensor]:
    """The side features of `token`, about to be fed (they describe the time before it):
    the incremental form of `sequence.side_features`."""
    position = position_part(state.seconds, total_seconds).long().clamp(0, POSITION_PARTS - 1)
    countdown = countdown_steps(state.seconds, total_seconds).long().clamp(0, COUNTDOWN_BUCKETS - 1)
    chord = torch.where(tables.is_on[token], state.instant_ons + 1, 0)
    phase = state.steps % PHASE_STEPS if tables.vocab.time_mode == "beat" else torch.zeros_like(state.steps)
    # a note struck before the window counts from where it begins, as `sequence.held_notes` counts it
    onset = torch.maximum(state.onset, state.window_seconds[:, None])
    since, key = torch.where(state.sounding, onset, float("inf")).min(dim=1)  # ties: the lowest key
    sounds = torch.isfinite(since)
    held = torch.where(sounds, key + 1, 0)
    held_for = ((state.seconds - torch.where(sounds, since, state.seconds)) / HELD_STEP_SECONDS + 1e-6).floor()
    held_for = torch.where(sounds, held_for.long().clamp(0, HELD_FOR_BUCKETS - 1), 0)
    none = torch.zeros_like(chord[:, None])  # the sampler's, once the clock moves: `ahead_column`, `channel.py`
    return {"time": state.window_steps[:, None].clone(), "chord": chord[:, None],
            "position": position[:, None], "countdown": countdown[:, None], "phase": phase[:, None],
            "held": held[:, None], "held_for": held_for[:, None], "ahead": none, "kept_top": none.clone(),
            "kept_low": none.clone(), "kept_next": none.clone()}


def ahead_column(hint_steps: torch.Tensor, state: DecodeState, vocab: Vocab) -> torch.Tensor:
    """(batch, 1) `ahead` of the token just fed, from the clock after it (`state.window_steps`)
    and each row's hinted events (`hint_steps`, (batch, events), padded with -1): the
    incremental form of `sequence.ahead_of`."""
    now = state.window_steps[:, None]
    following = torch.where(hint_steps >= now, hint_steps, torch.iinfo(torch.long).max).min(dim=1, keepdim=True)[0]
    found = following != torch.iinfo(torch.long).max
    bucket = 1 + torch.clamp((following - now) // AHEAD_STEPS[vocab.time_mode], max=AHEAD_BUCKETS - 2)
    return torch.where(found, bucket, 0)

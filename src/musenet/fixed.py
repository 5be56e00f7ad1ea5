"""Fixed events: the notes the sampler must keep, for accompanying and infilling.

Continuing, accompanying and infilling are one sampling loop (`Generator.generate`) with
different fixed events. A `FixedPlan` is the kept notes encoded on the grid:

- `opening`: the tokens read before sampling (the header, then every kept token before
  the free span: an infill's left side);
- `steps`, `tokens`: the later kept tokens at their grid steps; inside the span the
  model's waits stop at each, and each takes its place in its instant as the encoding
  orders events there (offs before ons, each by pitch): the model first writes what it
  would put before it (a bass note under a kept melody note), and whatever it draws that
  comes after it stands for it; after the span (`exact`, an infill's right side, waits
  included) they are forced one by one;
- `span`: the grid steps where the model adds notes. It never touches a kept note, and
  lets go of its own at `release`: the span's end, or the right side's first note-on if
  that comes within RING_SECONDS (its notes ring across the seam, as a real piece's do);
- `hint_steps`, `hint_tokens`: for a model that learnt hints (`hints.py`), the kept events
  it reads ahead, each time it reads a window: the kept parts from the window's start (an
  accompaniment) or what follows the span (an infill's right side), at most `hint_budget`
  tokens;
- `channel`: for a model that learnt to read a kept part beside the sequence (`channel.py`),
  the kept melodic parts that are not in the sequence at all, as the side features' grid.

The pieces that come back take the kept notes verbatim from the input (`merge`), so they
are exact (pitch, onset, duration, velocity), whatever the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .channel import KeptGrid, grid_of_table
from .encoding import decode_tokens, encode_notes, instant_rank, time_steps, with_waits
from .errors import MuseNetError
from .instruments import FAMILIES
from .notes import NoteTable
from .rules import KEYS, TokenTables
from .vocab import Vocab


@dataclass
class FixedPlan:
    opening: np.ndarray      # header and the kept tokens before the span
    steps: np.ndarray        # grid step of each later kept token
    tokens: np.ndarray       # the later kept tokens
    exact: np.ndarray        # bool: forced in order, waits included (after the span)
    span: tuple[int, int]    # [start, stop) grid steps where the model adds notes
    kept: NoteTable          # the notes that come back verbatim
    span_beats: tuple[float, float] = (0.0, float("inf"))  # the span asked for, in the input's beats
    hint_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # events read ahead
    hint_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    hint_budget: int = 0     # the longest hint, in tokens (0: no hint)
    release: tuple[int, float] = (0, 0.0)  # where the model lets go of its notes: (grid step, input beats)
    channel: KeptGrid | None = None  # kept notes read beside the sequence (channel.py), not in it
    harmony: np.ndarray | None = None  # (grid steps, 12): the lean towards chord tones (harmoniser.py)


def grid_step(table: NoteTable, seconds: float, vocab: Vocab) -> int:
    """The grid step at `seconds` of a piece with `table`'s tempo map."""
    return int(time_steps(table, table.beats(seconds), vocab.time_mode))


def plan(kept: NoteTable, vocab: Vocab, style: str | None, added: list[str], span_seconds: tuple[float, float],
         right_seconds: float = 0.0, hint_budget: int = 0, hint_after: bool = False,
         beside: NoteTable | None = None) -> FixedPlan:
    """The fixed events for keeping `kept` while the model writes `added` families between
    `span_seconds` (start, stop). Kept tokens before the span start go into the opening; up
    to `right_seconds` of those after the stop are forced exactly (an infill's right side,
    read so that its likelihood can rank the candidates); later ones are left out. With a
    `hint_budget`, the kept events from the span's start (or with `hint_after`, from its stop)
    are the hint. `beside` (melodic notes, on `kept`'s tempo map) are kept too, read beside
    the sequence as the plan's `channel` (channel.py) and never in it."""
    span = (grid_step(kept, span_seconds[0], vocab), grid_step(kept, span_seconds[1], vocab))
    if span[1] <= span[0]:
        raise MuseNetError("the span to compose is empty: its end must come after its start")
    encoded = encode_notes(kept, vocab, style)
    start = int(np.argmax(encoded == vocab.START))
    families = set((encoded[1:start] - vocab.family_offset).tolist()) | {FAMILIES.index(f) for f in added}
    header = [vocab.style_token(style), *(vocab.family_offset + f for f in sorted(families)), vocab.START]
    body = encoded[start + 1: -1]
    wait = vocab.tables["wait"][body]
    step = np.cumsum(wait) - wait  # the grid step each token sits at
    before = (step < span[0]) & ((wait == 0) | (step + wait <= span[0]))
    cut = int(np.argmin(before)) if not before.all() else len(body)  # the opening takes a prefix
    opening = np.concatenate([header, body[:cut]]).astype(np.int64)
    rest, rest_step, rest_wait = body[cut:], step[cut:], wait[cut:]
    inside = (rest_step < span[1]) & (rest_wait == 0)
    right = _right_side(rest[rest_step >= span[1]], rest_step[rest_step >= span[1]], span[1], vocab,
                        grid_step(kept, span_seconds[1] + right_seconds, vocab))
    steps = np.concatenate([rest_step[inside], np.full(len(right), span[1])]).astype(np.int64)
    tokens = np.concatenate([rest[inside], right]).astype(np.int64)
    exact = np.concatenate([np.zeros(int(inside.sum()), bool), np.ones(len(right), bool)])
    is_event = vocab.tables["family"][body] >= 0
    hinted = is_event & (step >= span[1 if hint_after else 0])
    everything = kept if beside is None else NoteTable.joined([kept, beside]).sorted()
    return FixedPlan(opening, steps, tokens, exact, span, everything,
                     (float(kept.beats(span_seconds[0])), float(kept.beats(span_seconds[1]))),
                     step[hinted].astype(np.int64), body[hinted].astype(np.int64), hint_budget,
                     _release(kept, span_seconds[1], min(RING_SECONDS, right_seconds), vocab, span[1]),
                     None if beside is None else grid_of_table(beside, vocab))


#: The model's notes sounding at a span's end ring on until the right side's next note-on if
#: it comes within this many seconds (a real piece's notes ring across the seam too), else
#: they end with the span.
RING_SECONDS = 2.0


def _release(kept: NoteTable, stop: float, within: float, vocab: Vocab, stop_step: int) -> tuple[int, float]:
    """(grid step, beats) where the model lets go of what it holds at the span's end (`stop`
    seconds, `stop_step`): the first kept note-on after it if within `within` seconds, else
    the span's end."""
    onset = kept.seconds(kept.onset)
    later = onset[(onset > stop) & (onset < stop + within)]
    first = float(later.min()) if len(later) else stop
    step = grid_step(kept, first, vocab)
    return (step, float(kept.beats(first))) if step > stop_step else (stop_step, float(kept.beats(stop)))


def _right_side(tokens: np.ndarray, steps: np.ndarray, stop: int, vocab: Vocab, until: int) -> np.ndarray:
    """The kept events from the span's stop up to `until`, with the waits that lead to each
    counted from the stop: the canonical encoding the model would read there."""
    keep = (vocab.tables["wait"][tokens] == 0) & (steps < until)
    return with_waits(steps[keep] - stop, tokens[keep], vocab)


class FixedState:
    """Where each candidate stands in a `FixedPlan`, and the keys the model itself holds."""

    NEVER = 1 << 40  # the grid step of a sentinel after the last fixed token: never due

    def __init__(self, fixed: FixedPlan, batch: int, tables: TokenTables, device):
        self.fixed = fixed
        self.tables = tables
        self.count = len(fixed.tokens)
        self.steps = torch.from_numpy(np.append(fixed.steps, self.NEVER)).to(device)
        self.tokens = torch.from_numpy(np.append(fixed.tokens, tables.vocab.PAD)).to(device)
        self.exact = torch.from_numpy(np.append(fixed.exact, False)).to(device)
        self.next = torch.zeros(batch, dtype=torch.long, device=device)  # next fixed token per row
        self.own = torch.zeros(batch, KEYS, dtype=torch.bool, device=device)  # keys the model holds
        self.rank = torch.from_numpy(instant_rank(tables.vocab)).to(device)  # order inside an instant
        self.due = torch.zeros(batch, dtype=torch.bool, device=device)  # is a kept token next in line
        self.placed = torch.zeros(batch, dtype=torch.bool, device=device)  # ... and may wait for the model's
        self.forced = torch.zeros(batch, dtype=torch.bool, device=device)  # was the last token a kept one
        self.right_logprob = torch.zeros(batch, dtype=torch.float64, device=device)  # the right side's
        self.kept_logprob = torch.zeros(batch, dtype=torch.float64, device=device)   # kept notes in the span

    def rule(self, mask: torch.Tensor, now: torch.Tensor, finished: torch.Tensor) -> torch.Tensor:
        """The mask (from `allowed_tokens` with the model's own keys) with the plan applied,
        for rows at grid step `now` (batch,)."""
        t, vocab = self.tables, self.tables.vocab
        start, stop = self.fixed.span
        base = mask
        pending = self.next < self.count
        next_step = self.steps[self.next]
        mask = mask & ~t.is_tempo[None, :]                              # the kept tempo map rules
        free = (now >= start) & (now < stop)
        mask &= ~(t.is_on[None, :] & ~free[:, None])                    # the model adds notes only in the span
        edge = torch.where(now < start, torch.full_like(now, start), torch.full_like(now, stop))
        limit = torch.where(now < stop, torch.minimum(next_step, edge), next_step)
        is_wait = t.wait[None, :] > 0
        waits_ok = is_wait & (now[:, None] + t.wait[None, :] <= limit[:, None])
        mask &= ~is_wait | waits_ok
        others = mask.clone()
        others[:, vocab.END] = False
        mask |= (~others.any(dim=1) & pending)[:, None] & waits_ok     # a rest rule never blocks the plan
        finish = ~pending & (now >= stop)
        mask[:, vocab.END] = finish
        releasing = (now >= self.fixed.release[0]) & self.own.any(dim=1)         # the span is over: the model lets go
        exact = self.exact[self.next]
        due = pending & ((exact & (now >= stop)) | (next_step == now)) & ~releasing & ~finished
        # inside the span a kept event takes its place in its instant as the encoding orders
        # it (offs before ons, each by pitch), as training read it: the model draws as if
        # nothing were kept, and whatever it draws that comes after the kept event there
        # (a wait, a later event, `end`) stands for "the kept event now" (`settle`)
        placed = due & ~exact & free
        forced = due & ~placed
        if bool(releasing.any()):
            mask[releasing] = (t.is_off[None, :] & self.own[:, t.key])[releasing]
        kept = self.tokens[self.next]
        if bool(placed.any()):
            rows = placed.nonzero()[:, 0]
            mask[rows] = base[rows] & ~t.is_tempo[None, :]
            mask[rows, kept[rows]] = True
        if bool(forced.any()):
            rows = forced.nonzero()[:, 0]
            mask[rows] = False
            mask[rows, kept[rows]] = True
        ending = finish & ~releasing & ~finished
        mask[ending] = False
        mask[ending, vocab.END] = True
        mask[finished] = False
        mask[finished, vocab.PAD] = True
        self.due, self.placed = due, placed
        return mask

    def settle(self, token: torch.Tensor) -> torch.Tensor:
        """The tokens drawn under `rule`'s mask, with those that stand for a kept event taken
        as it: where a kept event waits in the instant, anything the encoding puts after it."""
        kept = self.tokens[self.next]
        before = self.tables.is_note[token] & (self.rank[token] < self.rank[kept])
        return torch.where(self.placed & ~before, kept, token)

    def after(self, token: torch.Tensor, logits: torch.Tensor) -> None:
        """Account for the tokens just taken: the plan moves on where a fixed one was taken,
        the model's own keys follow its own note-ons and note-offs, and the log-probability
        (under the model, before any mask) of the kept tokens adds up: those in the span (how
        well the model's music fits the kept parts) and the right side's."""
        t = self.tables
        self.forced = forced = self.due & (token == self.tokens[self.next])
        if bool(forced.any()):
            exact = self.exact[self.next]
            logp = torch.log_softmax(logits.float(), dim=-1).gather(1, token[:, None])[:, 0].double()
            logp = torch.where(forced, logp, torch.zeros_like(logp))
            self.right_logprob += torch.where(exact, logp, torch.zeros_like(logp))
            self.kept_logprob += torch.where(exact, torch.zeros_like(logp), logp)
        self.next += forced.long()
        rows = torch.arange(len(token), device=token.device)
        mine = ~forced
        on = mine & t.is_on[token] & ~t.is_drum[token]
        off = mine & t.is_off[token]
        self.own[rows[on], t.key[token][on]] = True
        self.own[rows[off], t.key[token][off]] = False


def merge(tokens: np.ndarray, forced: np.ndarray, fixed: FixedPlan, vocab: Vocab) -> NoteTable:
    """The piece a candidate stands for: the model's own notes (its tokens that were not
    forced, on the grid, cut to the span asked for where the grid step overhangs it) and the
    kept notes verbatim, on the input's tempo map."""
    wait = vocab.tables["wait"][tokens]
    own = ~forced | (wait > 0)
    start = int(np.argmax(fixed.opening == vocab.START))
    mine = decode_tokens(np.concatenate([fixed.opening[: start + 1], tokens[own]]), vocab)
    kept = fixed.kept
    if vocab.time_mode == "beat":
        onset, end = mine.onset, mine.onset + mine.duration
    else:  # decoded at a fixed tempo: back to seconds, then onto the input's beats
        onset, end = (kept.beats(mine.seconds(x)) for x in (mine.onset, mine.onset + mine.duration))
    onset = np.clip(onset, *fixed.span_beats)
    end = np.clip(end, fixed.span_beats[0], fixed.release[1])
    mine = NoteTable(onset, end - onset, mine.pitch, mine.velocity, mine.family)
    return NoteTable.joined([kept, mine.select(mine.duration > 0)]).sorted()

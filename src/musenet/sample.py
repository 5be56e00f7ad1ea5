"""Generation: conditioning, instrument and grammar masks, KV-cache sampling, a sliding window.

`generate` writes the header (style, instruments, `start`, tempo), appends the prompt's
tokens unchanged, then samples all candidates together, one token per step, each step
costing one cached forward pass of the batch. Masks keep every candidate valid:
- strict instruments: no note-on of a family that was not asked for;
- grammar: a note-off only for a sounding note, no second note-on for a sounding key,
  at most `max_polyphony` notes at once, no run of waits longer than `max_rest_seconds`,
  no note held longer than `max_note_seconds` (no wait may carry one past it, and a note
  that cannot last another step must be released next);
- releases: where a family has one note sounding, the probability the model gives to that
  family's note-offs of silent notes goes to the sounding note's, so "release it now"
  keeps its weight;
- length: no `end` before 90% of the new music asked for (from the prompt's end to the
  requested length), no wait that jumps past 110% of the length, and `end` forced at 100%.
When the context is full the window slides: the header (with the tempo in force) is kept
and the most recent half of the context is re-read, so pieces can be any length; the
position and countdown embeddings follow the requested length, so the music can close
near it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .dataset import COUNTDOWN_BUCKETS, COUNTDOWN_SECONDS, POSITION_PARTS, side_features, token_seconds
from .encoding import encode_notes
from .errors import MuseNetError
from .instruments import DRUMS, FAMILIES
from .model import FEATURES, MuseNet
from .notes import NoteTable
from .vocab import STEP_SECONDS, STEPS_PER_BEAT, Vocab


@dataclass
class Settings:
    """Everything a generation depends on (saved beside each output)."""

    style: str | None = None
    instruments: list[str] | None = None   # None: any family (strict mode then masks nothing)
    seconds: float = 60.0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.95
    seed: int = 0
    candidates: int = 1
    instrument_mode: str = "strict"        # or "soft": instruments only in the header, as MuseNet
    max_polyphony: int = 24
    max_rest_seconds: float = 6.0
    max_note_seconds: float = 8.0          # no note sounds longer (no stuck notes)
    prompt_notes: int | None = None
    prompt_seconds: float | None = None
    max_tokens: int | None = None          # stop after this many new tokens (a safety cap)

    def check(self, vocab: Vocab) -> None:
        if self.style is not None and self.style not in vocab.styles:
            raise MuseNetError(f"unknown style {self.style!r}; this model knows {', '.join(vocab.styles)}")
        for name in self.instruments or []:
            if name not in FAMILIES:
                raise MuseNetError(f"unknown instrument {name!r}; choose from {', '.join(FAMILIES)}")
        if self.instruments is not None and not self.instruments:
            raise MuseNetError("--instruments needs at least one family")
        if self.instrument_mode not in ("strict", "soft"):
            raise MuseNetError(f"instrument mode must be strict or soft, not {self.instrument_mode!r}")
        if not 1 <= self.seconds <= 3600:
            raise MuseNetError(f"--seconds must be between 1 and 3600, not {self.seconds}")
        if not 0 < self.temperature <= 5:
            raise MuseNetError(f"--temperature must be in (0, 5], not {self.temperature}")
        if not 0 < self.top_p <= 1 or self.top_k < 0:
            raise MuseNetError("--top-p must be in (0, 1] and --top-k at least 0")
        if not 0 < self.max_note_seconds or not 0 < self.max_rest_seconds or self.max_polyphony < 1:
            raise MuseNetError("max_note_seconds and max_rest_seconds must be positive, max_polyphony at least 1")
        if not 1 <= self.candidates <= 64:
            raise MuseNetError(f"--candidates must be between 1 and 64, not {self.candidates}")


def cut_prompt(table: NoteTable, notes: int | None = None, seconds: float | None = None) -> NoteTable:
    """The opening of a piece: its first `notes` notes, or the notes starting before `seconds`."""
    table = table.sorted()
    if notes is not None:
        if notes < 1:
            raise MuseNetError("--prompt-notes must be at least 1")
        return table.select(np.arange(min(notes, len(table))))
    if seconds is not None:
        keep = table.seconds(table.onset) < seconds
        if not keep.any():
            raise MuseNetError(f"the prompt has no note in its first {seconds} s")
        return table.select(np.flatnonzero(keep))
    return table


class _Tables:
    """Per-token facts as tensors, for building masks without Python loops."""

    def __init__(self, vocab: Vocab, device):
        t = vocab.tables
        family = torch.from_numpy(t["family"]).to(device)
        velocity = torch.from_numpy(t["velocity"]).to(device)
        self.is_note = family >= 0
        self.is_on = self.is_note & (velocity > 0)
        self.is_off = self.is_note & (velocity == 0)
        self.is_drum = family == DRUMS
        self.family = family.clamp(min=0)
        self.key = torch.where(self.is_note, family * 128 + torch.from_numpy(t["pitch"]).to(device), 0)
        self.wait = torch.from_numpy(t["wait"]).to(device)
        self.tempo = torch.from_numpy(t["tempo"]).to(device).float()
        self.is_tempo = self.tempo > 0
        ids = torch.arange(vocab.size, device=device)
        self.never = (ids == vocab.PAD) | (ids == vocab.START) | (ids >= vocab.style_offset) | (
            (ids >= vocab.family_offset) & (ids < vocab.tempo_offset))


class _State:
    """What each candidate's mask and features depend on, updated per token for the whole batch."""

    def __init__(self, batch: int, device):
        self.sounding = torch.zeros(batch, len(FAMILIES) * 128, dtype=torch.bool, device=device)
        self.onset = torch.zeros(batch, len(FAMILIES) * 128, dtype=torch.float64, device=device)  # when struck
        self.polyphony = torch.zeros(batch, dtype=torch.long, device=device)
        self.rest_seconds = torch.zeros(batch, device=device, dtype=torch.float64)
        self.seconds = torch.zeros(batch, device=device, dtype=torch.float64)
        self.window_steps = torch.zeros(batch, dtype=torch.long, device=device)
        self.instant_ons = torch.zeros(batch, dtype=torch.long, device=device)
        self.tempo = torch.full((batch,), 120.0, device=device, dtype=torch.float64)
        self.finished = torch.zeros(batch, dtype=torch.bool, device=device)
        self.earliest_end = 0.0  # `end` is masked before this many seconds


class Generator:
    """Samples continuations from a model; `generate` is the whole job."""

    def __init__(self, model: MuseNet, vocab: Vocab, device: str | torch.device = "cpu"):
        if model.config.vocab_size != vocab.size:
            raise MuseNetError("the model and vocabulary do not match")
        self.model = model.eval()
        self.vocab = vocab
        self.device = torch.device(device)
        self.tables = _Tables(vocab, self.device)

    def _seconds_per_step(self, tempo: torch.Tensor) -> torch.Tensor:
        if self.vocab.time_mode == "seconds":
            return torch.full_like(tempo, STEP_SECONDS)
        return 60.0 / (tempo * STEPS_PER_BEAT)

    def header(self, settings: Settings, prompt_families: list[int]) -> list[int]:
        vocab = self.vocab
        families = set(prompt_families)
        families |= {FAMILIES.index(f) for f in settings.instruments} if settings.instruments else set()
        return [vocab.style_token(settings.style), *(vocab.family_offset + f for f in sorted(families)), vocab.START]

    @torch.inference_mode()
    def generate(self, settings: Settings, prompt: NoteTable | None = None, progress: bool = False,
                 on_step: Callable[[float], None] | None = None) -> list[np.ndarray]:
        """Token sequences (header to `end`) of `settings.candidates` pieces.

        `on_step` (off by default), if given, is called after every sampled token with the share
        of the new music composed so far (0 to 1, from the slowest candidate) and once with 1.0
        at the end; an exception it raises stops the generation and propagates (a way to cancel)."""
        settings.check(self.vocab)
        vocab, tables, device = self.vocab, self.tables, self.device
        batch = settings.candidates
        if prompt is not None:
            prompt = cut_prompt(prompt, settings.prompt_notes, settings.prompt_seconds)
            encoded = encode_notes(prompt, vocab, settings.style)
            start = int(np.argmax(encoded == vocab.START))
            prompt_families = (encoded[:start][(encoded[:start] >= vocab.family_offset)
                                               & (encoded[:start] < vocab.tempo_offset)] - vocab.family_offset)
            head = self.header(settings, prompt_families.tolist())
            opening = head + encoded[start + 1: -1].tolist()  # the prompt's tempo token and notes, as they are
        else:
            head = self.header(settings, [])
            opening = list(head)
        needs_tempo = vocab.time_mode == "beat" and prompt is None
        sequences = [list(opening) for _ in range(batch)]

        allowed_on = torch.ones(vocab.size, dtype=torch.bool, device=device)
        if settings.instrument_mode == "strict" and settings.instruments:
            chosen = torch.zeros(len(FAMILIES), dtype=torch.bool, device=device)
            chosen[[FAMILIES.index(f) for f in settings.instruments]] = True
            allowed_on = ~tables.is_on | chosen[tables.family]
        generator = torch.Generator(device="cpu").manual_seed(settings.seed)
        state = _State(batch, device)
        for token in opening:  # the prompt's notes sound, move time and set the tempo
            self._advance(torch.full((batch,), token, device=device), state)
        logits = self._read_window(sequences, state, settings, head)
        target = float(settings.seconds)
        bar = tqdm(total=int(target), unit="s", desc="composing", disable=not progress, dynamic_ncols=True)
        shown = 0
        steps = 0
        begun = float(state.seconds.min().item())  # where the prompt ends
        state.earliest_end = begun + 0.9 * max(target - begun, 0.0)  # 90% of the new music, at least
        while not bool(state.finished.all()) and steps != settings.max_tokens:
            steps += 1
            if self.model.config.context - self._cache.length < 1:
                logits = self._read_window(sequences, state, settings, head)
            mask = self._mask(state, settings, allowed_on, needs_tempo)
            token = self._sample(logits, mask, settings, generator)
            needs_tempo = False
            token = torch.where(state.finished, torch.full_like(token, vocab.PAD), token)
            features = self._features(token, state, target)
            self._advance(token, state)
            for row, value in enumerate(token.tolist()):  # finished rows take pad, to stay in step
                sequences[row].append(value)
            logits = self.model(token[:, None], features, self._cache)[:, -1]
            now = min(state.seconds.min().item(), target)
            if int(now) > shown:
                bar.update(int(now) - shown)
                shown = int(now)
            if on_step is not None:
                on_step(min(max(now - begun, 0.0) / max(target - begun, 1e-9), 1.0))
        bar.close()
        if on_step is not None:
            on_step(1.0)
        return [self._close(seq, state.sounding[row]) for row, seq in enumerate(sequences)]

    def _mask(self, state: _State, settings: Settings, allowed_on: torch.Tensor, needs_tempo: bool) -> torch.Tensor:
        """Which tokens each candidate may take next (batch, vocab)."""
        t, vocab = self.tables, self.vocab
        if needs_tempo:
            return t.is_tempo[None, :].expand(len(state.seconds), -1).clone()
        sounding = state.sounding[:, t.key]                              # (batch, vocab)
        mask = (~t.never & allowed_on)[None, :].repeat(len(state.seconds), 1)
        mask &= ~(t.is_off[None, :] & ~sounding)                         # off only when sounding
        mask &= ~(t.is_on[None, :] & ~t.is_drum[None, :] & sounding)     # no re-strike of a sounding key
        full = state.polyphony >= settings.max_polyphony
        mask &= ~(t.is_on[None, :] & full[:, None])
        step_seconds = self._seconds_per_step(state.tempo)
        wait_seconds = t.wait[None, :] * step_seconds[:, None]
        target = float(settings.seconds)
        held = torch.where(state.sounding, state.seconds[:, None] - state.onset, float("-inf"))  # (batch, keys)
        longest = held.max(dim=1).values                                 # -inf when nothing sounds
        too_long = (state.rest_seconds[:, None] + wait_seconds > settings.max_rest_seconds) | (
            state.seconds[:, None] + wait_seconds > 1.1 * target) | (
            longest[:, None] + wait_seconds > settings.max_note_seconds)
        mask &= ~((t.wait[None, :] > 0) & too_long)
        overdue = held + step_seconds[:, None] > settings.max_note_seconds  # cannot last another step
        releasing = overdue.any(dim=1)
        if bool(releasing.any()):
            mask[releasing] = (t.is_off[None, :] & overdue[:, t.key])[releasing]
        early = state.seconds < state.earliest_end
        mask[:, vocab.END] = ~early
        due = state.seconds >= target
        mask[due] = False
        mask[due, vocab.END] = True
        stuck = ~mask.any(dim=1)
        mask[stuck, vocab.END] = True
        mask[state.finished] = False
        mask[state.finished, vocab.PAD] = True
        return mask

    def _sample(self, logits: torch.Tensor, mask: torch.Tensor, settings: Settings,
                generator: torch.Generator) -> torch.Tensor:
        """One token per row: temperature, the mask, top-k, then top-p (nucleus) sampling by
        inverse transform on the sorted probabilities (one sort, one uniform draw per row; no
        sort when top_p is 1)."""
        logits = self._release(logits.float() / settings.temperature, mask).masked_fill(~mask, float("-inf"))
        if settings.top_k:
            kth = torch.topk(logits, min(settings.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probabilities = torch.softmax(logits, dim=-1)
        draw = torch.rand(len(logits), 1, generator=generator).to(logits.device)
        if settings.top_p >= 1.0:  # no nucleus to find: inverse transform on the unsorted cumulative sum
            cumulative = probabilities.cumsum(dim=-1)
            index = torch.searchsorted(cumulative, draw * cumulative[:, -1:], right=True)
            return index.clamp_max(logits.shape[-1] - 1)[:, 0]
        ordered, order = torch.sort(probabilities, descending=True, dim=-1)
        cumulative = ordered.cumsum(dim=-1)
        # keep the token that crosses p, never one of probability 0 (masked)
        kept = (((cumulative - ordered) < settings.top_p) & (ordered > 0)).sum(dim=-1, keepdim=True)
        total = cumulative.gather(1, kept - 1)
        index = torch.searchsorted(cumulative, draw * total, right=True).clamp_max(kept - 1)
        return order.gather(1, index)[:, 0]

    def _release(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Where a family has one note sounding, give it the family's whole note-off
        probability. The model spreads "release the note now" over the note-offs of many
        pitches; the grammar allows only the sounding note's, so the masked note-offs'
        probability goes to it rather than to every other token. (With several notes sounding
        the masked mass is ambiguous, and moving it thins part music out: left as it is.)"""
        t = self.tables
        allowed = mask & t.is_off[None, :]
        if not bool(allowed.any()):
            return logits
        probabilities = torch.softmax(logits, dim=-1)
        families = len(FAMILIES)
        lost = logits.new_zeros(len(logits), families).index_add_(
            1, t.family, probabilities * (t.is_off[None, :] & ~mask))
        kept = logits.new_zeros(len(logits), families).index_add_(1, t.family, probabilities * allowed)
        single = logits.new_zeros(len(logits), families).index_add_(1, t.family, allowed.to(logits.dtype)) == 1
        boost = torch.where(single & (kept > 0), (1 + lost / kept.clamp_min(1e-30)).log(), 0.0)
        return logits + torch.where(allowed, boost[:, t.family], 0.0)

    def _features(self, token: torch.Tensor, state: _State, total: float) -> dict[str, torch.Tensor]:
        """The side features of the token about to be fed (they describe the time before it)."""
        t = self.tables
        position = (state.seconds / max(total, 1e-6) * POSITION_PARTS).long().clamp(0, POSITION_PARTS - 1)
        countdown = ((total - state.seconds) / COUNTDOWN_SECONDS).long().clamp(0, COUNTDOWN_BUCKETS - 1)
        chord = torch.where(t.is_on[token], state.instant_ons + 1, 0)
        return {"time": state.window_steps[:, None].clone(), "chord": chord[:, None],
                "position": position[:, None], "countdown": countdown[:, None]}

    def _advance(self, token: torch.Tensor, state: _State) -> None:
        """Update every candidate's state after `token`."""
        t, vocab = self.tables, self.vocab
        rows = torch.arange(len(token), device=token.device)
        key = t.key[token]
        melodic_on = t.is_on[token] & ~t.is_drum[token]
        off = t.is_off[token]
        state.sounding[rows[melodic_on], key[melodic_on]] = True
        state.onset[rows[melodic_on], key[melodic_on]] = state.seconds[melodic_on]
        state.sounding[rows[off], key[off]] = False
        state.polyphony += melodic_on.long() - off.long()
        state.instant_ons += t.is_on[token].long()
        steps = t.wait[token]
        waited = steps > 0
        seconds = steps * self._seconds_per_step(state.tempo)
        state.seconds += seconds
        state.window_steps += steps
        state.rest_seconds = torch.where(t.is_note[token], torch.zeros_like(state.rest_seconds),
                                         state.rest_seconds + seconds)
        state.instant_ons = torch.where(waited, torch.zeros_like(state.instant_ons), state.instant_ons)
        state.tempo = torch.where(t.is_tempo[token], t.tempo[token].double(), state.tempo)
        state.finished |= token == vocab.END

    def _read_window(self, sequences: list[list[int]], state: _State, settings: Settings,
                     head: list[int]) -> torch.Tensor:
        """(Re)fill the KV cache from each candidate's header plus its most recent tokens
        (at most half the context, so the next refill is far away); returns the next logits."""
        vocab = self.vocab
        context = self.model.config.context
        keep = max(context // 2 - len(head) - 1, 1) if max(map(len, sequences)) >= context else context
        windows, features = [], []
        for row, sequence in enumerate(sequences):
            tokens = np.array(sequence, np.int64)
            body = tokens[len(head):]
            if len(tokens) >= context:
                body = body[-keep:]
            start_index = len(tokens) - len(body)
            elapsed = token_seconds(tokens, vocab)
            start_seconds = float(elapsed[start_index]) if len(body) else float(elapsed[-1]) if len(tokens) else 0.0
            window_head = list(head)
            tempo = 120.0
            if vocab.time_mode == "beat":
                bpm = vocab.tables["tempo"][tokens[:start_index + 1]]
                if (bpm > 0).any():
                    tempo = float(bpm[bpm > 0][-1])
                    if start_index > len(head):  # the opening tempo token was cut: put the tempo in force back
                        window_head.append(int(tokens[:start_index][bpm[:start_index] > 0][-1]))
            window = np.concatenate([np.array(window_head, np.int64), body])
            windows.append(window)
            features.append(side_features(window, vocab, float(settings.seconds), start_seconds, tempo))
            steps = vocab.tables["wait"][window]
            state.window_steps[row] = int(steps.sum())
        if len({len(w) for w in windows}) > 1:  # all rows take one token per step, pad when finished
            raise MuseNetError("internal error: candidates fell out of step")
        batch = torch.from_numpy(np.stack(windows))
        feats = {name: torch.from_numpy(np.stack([f[name] for f in features])) for name in FEATURES}
        self._cache = self.model.new_cache()
        logits = self.model(batch.to(self.device), {k: v.to(self.device) for k, v in feats.items()}, self._cache)
        return logits[:, -1]

    def _close(self, tokens: list[int], sounding: torch.Tensor) -> np.ndarray:
        """Append a note-off for every note still sounding, then `end`."""
        tokens = [t for t in tokens if t not in (self.vocab.PAD, self.vocab.END)]
        keys = np.flatnonzero(sounding.cpu().numpy())
        offs = self.vocab.note_tokens(keys // 128, keys % 128, np.zeros(len(keys), np.int64))
        return np.concatenate([np.array(tokens, np.int64), offs, [self.vocab.END]])

"""Generation: conditioning, KV-cache sampling of all candidates together, a sliding window.

`Generator.generate` writes the header (style, instruments, `start`), appends the prompt's
tokens (its tempo and notes, as encoded), then samples every candidate together, one token
per step, each step one cached forward pass of the batch. The rules that keep candidates
valid (instrument and grammar masks, releases, length, sampling) are the pure functions of
`rules.py`; the clock and side features follow `sequence.py`.

With `Settings.guidance` other than 1 (classifier-free guidance), every candidate also has an
unconditioned twin: the same tokens under a header without style and families, in a cache
of its own. Each step the draw reads the conditioned logits pushed away from the twin's
(`rules.guide`), so what the style and the named families make likely weighs more. Only a
model that learnt unconditioned headers (augment `unconditioned`) can be guided.

When the context is full the window slides: the header (with the tempo in force) is kept
and the most recent half of the context is re-read, so pieces can be any length; the
position and countdown embeddings follow the requested length, so the music can close
near it. A `Generator` holds only the model and tables: every call keeps its own state, so
one generator (and one `Composer`) can serve several threads at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from .augment import unconditioned
from .choose import Chooser
from .encoding import encode_notes
from .errors import MuseNetError
from .fixed import FixedPlan, FixedState
from .harmoniser import lean_to_chords
from .hints import hint_for, with_hint
from .inference import Decoder
from .instruments import FAMILIES
from .model import ALL_FEATURES, MuseNet
from .notes import NoteTable
from .rules import (
    DecodeState,
    Draws,
    TokenTables,
    advance,
    ahead_column,
    allowed_tokens,
    entrances,
    guide,
    instrument_filter,
    next_features,
    opening_state,
    requested_families,
    sample_tokens,
)
from .sequence import header_families, header_length, hint_mask, side_features, steps_before, window_of
from .settings import Settings, cut_prompt
from .vocab import Vocab


class Generator:
    """Samples continuations from a model; `generate` is the whole job."""

    def __init__(self, model: MuseNet, vocab: Vocab, device: str | torch.device = "cpu", hints: bool = False,
                 guidable: bool = False, beside: bool = False):
        if model.config.vocab_size != vocab.size:
            raise MuseNetError("the model and vocabulary do not match")
        self.hints = hints  # the model learnt to read hints (hints.py): a fixed plan's are given to it
        self.beside = beside  # the model learnt to read kept parts beside the sequence (channel.py)
        self.guidable = guidable  # the model learnt unconditioned headers: `Settings.guidance` may be used
        self.model = model.eval()
        self.decoder = Decoder(self.model)  # the model's forward pass for sampling (inference.py)
        self.vocab = vocab
        self.device = torch.device(device)
        self.tables = TokenTables(vocab, self.device)
        self.update = None  # the compiled state update (kernels.py), once `use_compiled` found or built it
        self.chooser = None  # choose.c, compiled (choose.py), once `use_compiled` found or built it

    def use_compiled(self, build: bool = False) -> bool:
        """Load the compiled decode step and state update (`kernels.py`) this machine has
        built for this model and vocabulary, building them first with `build` (about 20 and
        10 s, once), and the chooser (`choose.py`; built if need be either way, in well
        under a second). True where all three are in use;
        where one cannot be (no compiler, a GPU, an ALiBi model), composing goes on with what
        there is."""
        from . import choose, kernels

        step = self.decoder.use_kernel(build)
        if self.update is None and self.device.type == "cpu":
            self.update = kernels.load_or_build(kernels.update_path(self.tables),
                                                lambda path: kernels.build_update(self.tables, path), build,
                                                "the compiled state update", kernels.CompiledUpdate)
        if self.chooser is None and self.device.type == "cpu":
            # built even when not asked: it takes well under a second (quietly, then, where it fails)
            self.chooser = kernels.load_or_build(choose.library_path(), choose.build_library, True,
                                                 "the compiled chooser", choose.Library, quiet=not build)
        return step and self.update is not None and self.chooser is not None

    def header(self, settings: Settings, prompt_families: list[int]) -> list[int]:
        """Style, the families of the prompt and of the request, `start`."""
        vocab = self.vocab
        families = set(prompt_families)
        if settings.instruments not in (None, "any"):
            families |= {FAMILIES.index(f) for f in settings.instruments}
        return [vocab.style_token(settings.style), *(vocab.family_offset + f for f in sorted(families)), vocab.START]

    def opening(self, settings: Settings, prompt: NoteTable | None) -> list[int]:
        """The tokens every candidate starts from: the header, then the prompt's tempo and
        notes as encoded (nothing more without a prompt)."""
        if prompt is None:
            return self.header(settings, [])
        encoded = encode_notes(cut_prompt(prompt, settings.prompt_notes, settings.prompt_seconds), self.vocab,
                               settings.style)
        start = int(np.argmax(encoded == self.vocab.START))
        return self.header(settings, header_families(encoded, self.vocab).tolist()) + encoded[start + 1: -1].tolist()

    def generate(self, settings: Settings, prompt: NoteTable | None = None, progress: bool = False,
                 on_step: Callable[[float], None] | None = None, lean: np.ndarray | None = None) -> list[np.ndarray]:
        """Token sequences (header to `end`) of `settings.candidates` pieces.

        `on_step` (off by default), if given, is called after every sampled token with the share
        of the new music composed so far (0 to 1, from the slowest candidate) and once with 1.0
        at the end; an exception it raises stops the generation and propagates (a way to cancel).
        `lean` (grid steps from the piece's start, 12), if given, leans the melodic note-ons
        towards chord tones (`harmoniser.lean_to_chords`)."""
        self.check(settings)
        sequences, _, _ = self.run(settings, self.opening(settings, prompt), prompt is not None, None,
                                   progress, on_step, lean)
        return sequences

    def keep(self, settings: Settings, fixed: FixedPlan, progress: bool = False,
             on_step: Callable[[float], None] | None = None) -> list[tuple[np.ndarray, np.ndarray, dict]]:
        """Accompanying and infilling: (tokens, forced, log-probabilities) of each candidate,
        composed around the kept notes of `fixed` (see `fixed.py`); `forced` marks the tokens
        that were kept ones; the log-probabilities (nats) are the model's for the kept tokens
        in the span (`kept`) and for the right side (`right`)."""
        self.check(settings)
        sequences, forced, plan_state = self.run(settings, fixed.opening.tolist(), True, fixed, progress, on_step,
                                                 fixed.harmony)
        kept, right = plan_state.kept_logprob.tolist(), plan_state.right_logprob.tolist()
        return [(seq, forced[row], {"kept": kept[row], "right": right[row]}) for row, seq in enumerate(sequences)]

    def check(self, settings: Settings) -> None:
        """`Settings.check`, and that guidance is asked only of a model that learnt it."""
        settings.check(self.vocab)
        if settings.guidance not in (None, 1.0) and not self.guidable:
            raise MuseNetError("this model never learnt a header without style and instruments, so it cannot be "
                               "guided: leave guidance at 1, or train with augment unconditioned > 0")

    @torch.inference_mode()
    def run(self, settings: Settings, opening: list[int], begun_with_music: bool, fixed: FixedPlan | None,
            progress: bool, on_step: Callable[[float], None] | None, lean: np.ndarray | None = None):
        """The sampling loop: every candidate from `opening`, one cached forward pass of the
        batch per token, under the rules (and the fixed plan, if any; leaning towards chord
        tones by grid step, if `lean`: past its end, no lean)."""
        vocab, tables, device = self.vocab, self.tables, self.device
        sequences = [list(opening) for _ in range(settings.candidates)]
        taken = []  # with a plan: which rows took a forced token, step by step
        needs_tempo = vocab.time_mode == "beat" and not begun_with_music
        allowed_on = instrument_filter(settings, tables)
        requested = requested_families(settings, device)
        generator = torch.Generator(device="cpu").manual_seed(settings.seed)
        draws = Draws(generator, settings.candidates)  # sample_tokens' uniforms, a block at a time
        state = opening_state(opening, settings.candidates, tables, device)  # the prompt sounds, moves time
        plan = None if fixed is None else FixedState(fixed, settings.candidates, tables, device)
        channel = None if fixed is None else fixed.channel
        logits, cache, twin = self.read_window(sequences, state, settings, fixed)
        # the head scores only tokens the request can ever take, pad (finished rows) included;
        # a plan reads the log-probability of every kept token, so it gets the whole head
        rows = torch.nonzero(~tables.never & allowed_on | (tables.ids == vocab.PAD))[:, 0] if plan is None else None
        rows = None if rows is not None and len(rows) == vocab.size else rows
        head = self.decoder.head_for(rows)
        target = float(settings.seconds)
        begun = float(state.seconds.min().item())  # where the prompt ends
        if fixed is None and begun_with_music and begun >= target:
            raise MuseNetError(f"the prompt lasts {begun:.1f} s, and seconds ({target:g}) counts the whole piece, "
                               "prompt included: ask for more seconds, or cut the prompt shorter")
        # with a plan, the plan decides where the piece ends (tempo buckets only approximate its clock)
        rules = settings if plan is None else replace(settings, seconds=1.25 * target + 10)
        state.earliest_end = begun + 0.9 * max(target - begun, 0.0) if plan is None else 0.0
        state.entries_from = begun
        # the mask and the draw in one compiled call (choose.py) where it is loaded: the same rules
        chooser = (Chooser(self.chooser, tables, settings, allowed_on, requested, rows, state)
                   if self.chooser is not None and lean is None and Chooser.covers(settings, plan) else None)
        leaning = None if lean is None or len(lean) == 0 else torch.from_numpy(
            np.concatenate([lean, np.zeros((1, 12), np.float32)])).to(device)
        target_tensor = torch.tensor(target, dtype=torch.float64)
        bar = tqdm(total=int(target), unit="s", desc="composing", disable=not progress, dynamic_ncols=True)
        shown = steps = 0
        while not bool(state.finished.all()) and steps != settings.max_tokens:
            steps += 1
            if self.model.config.context - cache.length < 1:  # the twin's window is shorter: it fits
                logits, cache, twin = self.read_window(sequences, state, settings, fixed)
            conditioned = logits
            if twin is not None:
                logits = guide(conditioned, twin[0], float(settings.guidance))
            if leaning is not None:  # towards the chord tones where the next token falls
                logits = lean_to_chords(logits, leaning[state.steps.clamp(max=len(leaning) - 1)], tables)
            if chooser is not None and not needs_tempo:
                token = chooser(logits, state, draws.next())
            else:
                mask = allowed_tokens(state, rules, tables, allowed_on, needs_tempo,
                                      None if plan is None else plan.own)
                if plan is not None:
                    mask = plan.rule(mask, state.steps, state.finished)
                mask = entrances(mask, state, settings, tables, requested)
                token = sample_tokens(logits, mask, settings, generator, tables, draws.next())
                if plan is not None:
                    token = plan.settle(token)
            needs_tempo = False
            token = torch.where(state.finished, torch.full_like(token, vocab.PAD), token)
            if plan is not None:
                plan.after(token, conditioned)  # the kept tokens' log-probabilities are the model's own
                taken.append(plan.forced.clone())
            if self.update is not None:  # the same update, compiled (kernels.py)
                features = self.update(token, state, target_tensor)
            else:
                features = next_features(token, state, tables, target)
                advance(state, token, tables)
            if channel is not None:  # the kept part where the next token falls (the clock has moved on)
                features |= channel.columns(state.steps)
            if state.hint_steps is not None:  # the hint's next event, from there
                features["ahead"] = ahead_column(state.hint_steps, state, vocab)
                if sequences[0][-1] == vocab.START:  # (every row shares the opening) a tempo here is header
                    features["ahead"] = torch.where(tables.is_tempo[token][:, None], 0, features["ahead"])
            for row, value in enumerate(token.tolist()):  # finished rows take pad, to stay in step
                sequences[row].append(value)
            logits = self.decoder.step(token, features, cache, head, rows)
            if twin is not None:
                twin = (self.decoder.step(token, features, twin[1], head, rows), twin[1])
            now = min(state.seconds.min().item(), target)
            if int(now) > shown:
                bar.update(int(now) - shown)
                shown = int(now)
            if on_step is not None:
                on_step(min(max(now - begun, 0.0) / max(target - begun, 1e-9), 1.0))
        bar.close()
        if on_step is not None:
            on_step(1.0)
        closed = [self.close(seq, state.sounding[row]) for row, seq in enumerate(sequences)]
        if plan is None:
            return closed, None, None
        forced = torch.stack(taken, dim=1).cpu().numpy() if taken else np.zeros((len(sequences), 0), bool)
        flags = []
        for row, sequence in enumerate(sequences):  # the opening, closing note-offs and `end` count as forced
            row_flags = np.concatenate([np.ones(len(opening), bool), forced[row]])
            row_flags = row_flags[np.isin(sequence, (vocab.PAD, vocab.END), invert=True)]
            flags.append(np.concatenate([row_flags, np.ones(len(closed[row]) - len(row_flags), bool)]))
        return closed, flags, plan

    def read_window(self, sequences: list[list[int]], state: DecodeState, settings: Settings,
                    fixed: FixedPlan | None = None):
        """(Re)fill a new KV cache from each candidate's header plus its most recent tokens
        (at most half the context, so the next refill is far away), with the fixed plan's
        hint from where the window begins when the model reads hints. Returns the next
        logits, the cache, and with guidance the unconditioned twin's (logits, cache) (else None)."""
        vocab = self.vocab
        context = self.model.config.context
        reads = fixed is not None and self.hints and len(fixed.hint_tokens) > 0
        budget = min(fixed.hint_budget, context // 3) if reads else 0  # a third of the context at most
        windows, starts = [], []
        for sequence in sequences:
            tokens = np.array(sequence, np.int64)
            head_end = header_length(tokens, vocab)
            start = 0
            if len(tokens) + budget >= context:  # keep half the context: the header, a tempo token, the latest music
                latest = max((context - budget) // 2 - int(np.argmax(tokens == vocab.START)) - 2, 1)
                start = max(len(tokens) - latest - head_end, 0)
            windows.append(window_of(tokens, vocab, head_end, start))
            starts.append(steps_before(tokens, vocab, head_end, start))
        if budget:  # every row reads a hint of the same length, so that all stay in step
            hints = [hint_for(fixed.hint_steps, fixed.hint_tokens, step, vocab, budget) for step in starts]
            shortest = min(len(h) for h in hints)
            windows = [(with_hint(w, h[:shortest], vocab), s) for (w, s), h in zip(windows, hints, strict=True)]
        features = []
        channel = None if fixed is None else fixed.channel
        for row, (window, start_seconds) in enumerate(windows):
            features.append(side_features(window, vocab, float(settings.seconds), start_seconds,
                                          start_step=starts[row], kept=channel))
            body_waits = np.where(hint_mask(window, vocab), 0, vocab.tables["wait"][window])
            state.window_steps[row] = int(body_waits.sum())
            state.window_seconds[row] = start_seconds
            # note-ons go on counting in the body's last instant, from where the window begins (as `chord_index`)
            waited = np.flatnonzero(body_waits > 0)
            state.instant_ons[row] = int(features[-1]["chord"][waited[-1] + 1 if len(waited) else 0:].max(initial=0))
        if len({len(w) for w, _ in windows}) > 1:  # all rows take one token per step, pad when finished
            raise MuseNetError("internal error: candidates fell out of step")
        state.hint_steps = self.hinted_steps(windows, features) if "ahead" in self.model.config.features else None
        logits, cache = self.read(np.stack([w for w, _ in windows]), features)
        if settings.guidance in (None, 1.0):  # (None: the sampler alone reads it as off)
            return logits, cache, None
        # the twins: the same windows without style and families (the body's features are the same)
        bare = [unconditioned(window, vocab) for window, _ in windows]
        bare_features = [side_features(window, vocab, float(settings.seconds), start_seconds, start_step=start,
                                       kept=channel)
                         for window, (_, start_seconds), start in zip(bare, windows, starts, strict=True)]
        return logits, cache, self.read(np.stack(bare), bare_features)

    def hinted_steps(self, windows: list[tuple[np.ndarray, float]], features: list[dict[str, np.ndarray]]):
        """(batch, events) the steps of each window's hinted events (padded with -1), for
        `rules.ahead_column`; None when no window has a hint."""
        events = [f["time"][hint_mask(w, self.vocab) & (self.vocab.tables["family"][w] >= 0)]
                  for (w, _), f in zip(windows, features, strict=True)]
        longest = max(len(e) for e in events)
        if not longest:
            return None
        padded = np.stack([np.pad(e, (0, longest - len(e)), constant_values=-1) for e in events])
        return torch.from_numpy(padded.astype(np.int64)).to(self.device)

    def read(self, windows: np.ndarray, features: list[dict[str, np.ndarray]]):
        """Logits after `windows` (batch, length) read into a new KV cache, and the cache."""
        batch = torch.from_numpy(windows).to(self.device)
        feats = {name: torch.from_numpy(np.stack([f[name] for f in features])).to(self.device)
                 for name in ALL_FEATURES}
        cache = self.model.new_cache()
        return self.decoder.forward(batch, feats, cache), cache

    def close(self, tokens: list[int], sounding: torch.Tensor) -> np.ndarray:
        """Append a note-off for every note still sounding, then `end`."""
        tokens = [t for t in tokens if t not in (self.vocab.PAD, self.vocab.END)]
        keys = np.flatnonzero(sounding.cpu().numpy())
        offs = self.vocab.note_tokens(keys // 128, keys % 128, np.zeros(len(keys), np.int64))
        return np.concatenate([np.array(tokens, np.int64), offs, [self.vocab.END]])

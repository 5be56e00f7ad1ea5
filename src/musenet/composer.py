"""Composing from Python: load a model once, generate pieces, write MIDI (and WAV, PNG).

    from musenet import Composer
    composer = Composer.load()                    # the bundled model, or Composer.load("runs/x")
    pieces = composer.generate(style="irish", instruments=["strings", "guitar"], seconds=60, candidates=2)
    pieces[0].score.dump_midi("tune.mid")

`musenet.compose(...)` does the same in one call.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import symusic
import torch

from .augment import learnt_unconditioned
from .channel import knows_channel
from .checkpoint import load_checkpoint, resolve
from .critic import Critic
from .encoding import decode_tokens
from .errors import MuseNetError
from .files import write_atomic
from .fixed import FixedPlan, merge, plan
from .harmoniser import Harmoniser, beat_lean, check_chords, chord_tones_of, harmony_steps
from .hints import HINT_SHARE, MAX_TAIL, knows_hints
from .instruments import FAMILIES
from .notes import NoteTable, midi_bytes, read_midi, to_score
from .quantize import decoding_precision, quantize_int8
from .sample import Generator
from .settings import DEFAULT_GUIDANCE, DEFAULT_HARMONY, Settings
from .song import beats_per_bar
from .vocab import Vocab, to_text

COMPILED = ("auto", "on", "off")  # Composer.load's choices for the compiled decode step
MAX_BEATS_PER_SECOND = 4.0        # chords over a composed piece are laid out for tempos up to 240 BPM


def bundled_model_path() -> Path | None:
    """The model shipped inside the package, if this install has one."""
    path = Path(str(resources.files("musenet") / "default_model"))
    return path if (path / "model.safetensors").exists() else None


@dataclass
class Piece:
    """One generated piece: its tokens and notes, and the settings it was composed with."""

    tokens: np.ndarray
    table: NoteTable
    vocab: Vocab
    settings: Settings | None = None
    fit: float | None = None  # log-probability (nats) of the kept music given the new (`accompany`, `infill`)
    critic: float | None = None  # the critic's probability that the piece is real music (ranked pieces)

    @property
    def score(self) -> symusic.Score:
        return to_score(self.table)

    @property
    def seconds(self) -> float:
        return self.table.end_seconds()

    @property
    def text(self) -> str:
        return to_text(self.tokens, self.vocab)

    def families(self) -> list[str]:
        return [FAMILIES[f] for f in np.unique(self.table.family)]


class Composer:
    """A loaded model, ready to compose: the one entry point of the CLI, the server and the
    evaluator. It keeps no state between calls, so one Composer serves many threads."""

    def __init__(self, model: torch.nn.Module, vocab: Vocab, device: str | torch.device, model_path: str,
                 metadata: dict, critic: Critic | None = None, harmoniser: Harmoniser | None = None):
        self.sampler = Generator(model, vocab, device, hints=knows_hints(metadata),
                                 guidable=learnt_unconditioned(metadata),
                                 beside=knows_channel(metadata, model.config.features))
        self.model_path = model_path
        self.metadata = metadata  # the checkpoint's config.json: model shape, training, data
        self.critic = critic      # the inner critic saved beside the weights (critic.py), if any
        self.harmoniser = harmoniser  # melody -> chord tones, saved beside the weights (harmoniser.py), if any

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | None = None, threads: int | None = None,
             precision: str = "auto", compiled: str = "auto") -> Composer:
        """A composer for a checkpoint or run directory (the bundled model by default).
        `precision`: "int8" decodes with 8-bit weights on a CPU (`quantize.py`: 2-3x faster per
        token, the next-token distribution within a KL of 0.001 nats of float32's), "float32"
        with the model's weights as they are, "auto" (default) int8 where the CPU computes in
        bfloat16, else float32. The metadata's `precision` says which was taken.
        `compiled` (`kernels.py`, CPU only): "auto" (default) decodes through this machine's
        compiled step and state update where they were built before, "on" builds them first if
        need be (about 30 s, once per model and machine), "off" never uses them."""
        if compiled not in COMPILED:
            raise MuseNetError(f"compiled must be one of {', '.join(COMPILED)}, not {compiled!r}")
        if path is None:
            path = bundled_model_path()
            if path is None:
                raise MuseNetError("this install has no bundled model; pass --model DIR (a checkpoint or run "
                                   "directory from `musenet train`)")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if threads:
            torch.set_num_threads(threads)
        chosen = decoding_precision(precision, torch.device(device))
        model, vocab, metadata = load_checkpoint(path, device)
        if chosen == "int8":
            model = quantize_int8(model)
        metadata = {**metadata, "precision": chosen}
        composer = cls(model, vocab, device, str(path), metadata, Critic.load(resolve(path)),
                       Harmoniser.load(resolve(path)))
        if compiled != "off":
            composer.sampler.use_compiled(build=compiled == "on")
        return composer

    @property
    def model_label(self) -> str:
        """The model's path and the precision it decodes in (and "compiled step" where it
        decodes through one, `kernels.py`), for sidecars."""
        compiled = ", compiled step" if self.sampler.decoder.kernel is not None else ""
        return f"{self.model_path} ({self.metadata.get('precision', 'float32')}{compiled})"

    @property
    def model(self) -> torch.nn.Module:
        return self.sampler.model

    @property
    def vocab(self) -> Vocab:
        return self.sampler.vocab

    @property
    def device(self) -> torch.device:
        return self.sampler.device

    @property
    def styles(self) -> tuple[str, ...]:
        """The styles this model learnt: those of its training data (`ensembles` in its
        config.json), or every style of its vocabulary for a model that does not say."""
        trained = self.metadata.get("ensembles")
        return tuple(s for s in self.vocab.styles if s in trained) if trained else self.vocab.styles

    def generate(self, prompt=None, progress: bool = False, on_step=None, rank: bool = False,
                 keep: int | None = None, chords: list[str] | None = None, harmony: float | None = None,
                 **settings) -> list[Piece]:
        """Pieces for the given settings (see `Settings`: style, instruments, seconds, temperature,
        top_k, top_p, nucleus, guidance, seed, candidates, instrument_mode, prompt_notes, prompt_seconds). `prompt`
        is a MIDI path, bytes, symusic Score or NoteTable. `on_step(share_done)`, off by default,
        reports progress and can cancel by raising (see `Generator.generate`). Or pass a whole
        `settings=Settings(...)`. Without `instruments`, a style gets its usual ensemble
        (`usual_instruments`); `instruments="any"` lets every family play. With `rank` (or
        `keep`), the critic scores every candidate (`Piece.critic`) and they come best first;
        `keep` keeps that many. With `chords` (chord symbols, one a bar of 4 beats, or of the
        prompt file's time signature, from the piece's start, repeated; or an array (beats, 12)
        of chord tones a beat) the melodic parts lean `harmony` (`Composer.harmony`) towards
        them, as accompanying does (a beat-mode model only). Safe to call from several threads
        at once."""
        chosen = settings.pop("settings", None) or Settings(**settings)
        table = None
        if prompt is not None:
            table = prompt if isinstance(prompt, NoteTable) else read_midi(prompt)
        chosen = self.settled(chosen)
        if chosen.instruments is None:
            chosen = replace(chosen, instruments=self.usual_instruments(chosen.style, table))
        if keep is not None and not 1 <= keep <= chosen.candidates:
            raise MuseNetError(f"keep must be from 1 to the number of candidates ({chosen.candidates}), not {keep}")
        check_chords(chords, harmony)
        lean = None
        if chords is not None:
            if self.vocab.time_mode != "beat":
                raise MuseNetError("chords are placed by bars, so they need a model in beat mode; this one reads "
                                   "time in seconds")
            beats = int(np.ceil(chosen.seconds * MAX_BEATS_PER_SECOND)) + 1
            bar = 4.0 if prompt is None or isinstance(prompt, NoteTable) else beats_per_bar(prompt)
            strength = self.harmony(harmony, True)
            lean = strength * beat_lean(chord_tones_of(chords, beats, bar), table, self.vocab) if strength else None
        sequences = self.sampler.generate(chosen, table, progress=progress, on_step=on_step, lean=lean)
        pieces = [Piece(tokens, decode_tokens(tokens, self.vocab), self.vocab, chosen) for tokens in sequences]
        return self.ranked(pieces, keep) if rank or keep is not None else pieces

    def ranked(self, pieces: list[Piece], keep: int | None = None) -> list[Piece]:
        """The pieces best first by the critic (each with its `critic` score), the first `keep`."""
        if self.critic is None:
            raise MuseNetError("this model has no critic to rank candidates with; train one with `musenet critic`")
        seconds = [p.settings.seconds if p.settings else None for p in pieces]
        scores = self.critic.score(self.model, self.vocab, [p.tokens for p in pieces],
                                   None if None in seconds else seconds)
        for piece, score in zip(pieces, scores, strict=True):
            piece.critic = float(score)
        order = sorted(range(len(pieces)), key=lambda i: -scores[i])  # stable: ties keep the drawn order
        return [pieces[i] for i in order][:keep]

    @property
    def reads_hints(self) -> bool:
        """Whether the model learnt hints (`hints.py`): then accompanying reads the kept parts
        ahead, and infilling the music after the span."""
        return self.sampler.hints

    @property
    def reads_beside(self) -> bool:
        """Whether the model learnt to read kept parts beside the sequence (`channel.py`): then
        accompanying keeps the melodic parts out of the sequence and gives them as side features."""
        return self.sampler.beside

    def accompany(self, song, keep: list[str], add: list[str], rank: bool = False, progress: bool = False,
                  on_step=None, hints: bool = True, beside: bool = True, harmony: float | None = None,
                  chords: list[str] | None = None, **settings) -> list[Piece]:
        """Pieces that keep the parts `keep` of `song` (families, track names or numbers;
        `song.parts`) note for note and add the families `add` around them, for the whole
        song (or `seconds`). Other settings as `generate` (style, candidates, seed, ...).
        With `beside` (and a model that reads them so, `reads_beside`) the kept melodic parts
        stay out of the token sequence and the model reads them as side features; the rest
        (drums, or everything otherwise) is met in the sequence as it comes, and with `hints`
        (and a model that reads them) read ahead too. `Piece.fit` is how likely the model
        finds the kept parts in the sequence beside each accompaniment (0 where none is);
        with `rank` the candidates come best first by it. `harmony` (`Composer.harmony`): how
        strongly the added melodic parts lean towards the chord tones at each moment: those
        of `chords` where given (chord symbols, one a bar, repeated: `harmoniser.chord_symbol_tones`;
        or an array (beats, 12) of chord tones a beat of the song), else those the harmoniser
        hears in the kept melodic parts."""
        from .song import parts

        kept, _ = parts(song, keep)
        seconds = settings.pop("seconds", None) or kept.end_seconds()
        chosen = Settings(instruments=list(add), seconds=seconds, **settings)
        chosen = self.settled(chosen)
        kept = kept.select(np.flatnonzero(kept.seconds(kept.onset) < seconds))
        aside = None
        if beside and self.reads_beside and not kept.drum.all():
            aside, kept = kept.select(np.flatnonzero(~kept.drum)), kept.select(np.flatnonzero(kept.drum))
        budget = int(self.model.config.context * HINT_SHARE) if hints else 0  # read if the model learnt to
        fixed = plan(kept, self.vocab, chosen.style, chosen.instruments, (0.0, seconds), hint_budget=budget,
                     beside=aside)
        harmony = self.harmony(harmony, chords is not None)
        melody = fixed.kept.select(np.flatnonzero(~fixed.kept.drum))
        if harmony > 0 and chords is not None:
            beats = int(np.ceil(fixed.kept.beats(seconds))) + 1
            tones = chord_tones_of(chords, beats, beats_per_bar(song))
            fixed = replace(fixed, harmony=harmony * beat_lean(tones, fixed.kept, self.vocab))
        elif harmony > 0 and len(melody):
            fixed = replace(fixed, harmony=harmony * harmony_steps(self.harmoniser, melody, self.vocab))
        return self._pieces(self.sampler.keep(chosen, fixed, progress, on_step), fixed, chosen, rank, "kept")

    def harmony(self, harmony: float | None, chords: bool = False) -> float:
        """The lean towards chord tones an accompaniment takes: `harmony` as given (None:
        DEFAULT_HARMONY with `chords` given or a harmoniser at hand, else 0)."""
        if harmony is None:
            return DEFAULT_HARMONY if chords or self.harmoniser is not None else 0.0
        if harmony < 0:
            raise MuseNetError(f"harmony must be 0 or more, not {harmony:g}")
        if harmony > 0 and not chords and self.harmoniser is None:
            raise MuseNetError("this model has no harmoniser beside it (harmoniser.safetensors), so harmony must "
                               "be 0 (or give chords); fit one with `musenet harmoniser`")
        return float(harmony)

    def infill(self, song, start: float, stop: float, instruments: list[str] | None = None, rank: bool = True,
               right_seconds: float = 8.0, progress: bool = False, on_step=None, hints: bool = True,
               chords: list[str] | None = None, harmony: float | None = None, **settings) -> list[Piece]:
        """Pieces that keep `song` before `start` and from `stop` (seconds) note for note and
        compose the span between anew, for `instruments` (default: the families playing in the
        span). With `hints` (and a model that reads them) the model reads what follows the
        span before composing it. With `rank`, the candidates come best first: by how likely
        the model finds the first `right_seconds` of what follows the span (`Piece.fit`). With
        `chords` (as `generate`'s, one a bar of the song from its start) the new span's melodic
        notes lean `harmony` towards them."""
        table = song if isinstance(song, NoteTable) else read_midi(song)
        total = table.end_seconds()
        if not 0 <= start < stop:
            raise MuseNetError(f"the span {start:g}-{stop:g} s is empty: give 0 <= start < stop")
        if start >= total:
            raise MuseNetError(f"the span starts at {start:g} s, after the song ends ({total:.1f} s)")
        onset = table.seconds(table.onset)
        inside = (onset >= start) & (onset < stop)
        if instruments is None:
            playing = table.family[inside] if inside.any() else table.family
            instruments = [FAMILIES[f] for f in np.unique(playing)]
        chosen = Settings(instruments=list(instruments), seconds=max(total, stop), **settings)
        chosen = self.settled(chosen)
        kept = table.select(np.flatnonzero(~inside))
        budget = MAX_TAIL if hints else 0  # read if the model learnt to
        check_chords(chords, harmony)
        fixed = plan(kept, self.vocab, chosen.style, chosen.instruments, (start, stop), right_seconds, budget, True)
        strength = self.harmony(harmony, True) if chords is not None else 0.0
        if strength > 0:
            beats = int(np.ceil(table.beats(max(total, stop)))) + 1
            tones = chord_tones_of(chords, beats, beats_per_bar(song))
            fixed = replace(fixed, harmony=strength * beat_lean(tones, table, self.vocab))
        return self._pieces(self.sampler.keep(chosen, fixed, progress, on_step), fixed, chosen, rank, "right")

    def _pieces(self, results, fixed: FixedPlan, settings: Settings, rank: bool, fit: str) -> list[Piece]:
        pieces = [Piece(tokens, merge(tokens, forced, fixed, self.vocab), self.vocab, settings, scores[fit])
                  for tokens, forced, scores in results]
        return sorted(pieces, key=lambda p: -p.fit) if rank else pieces

    def check(self, settings: Settings) -> None:
        """`Settings.check` for this model's vocabulary, and a style it learnt: what the CLI and
        the server call before any work, and `generate` before composing."""
        self.sampler.check(settings)
        if settings.style is not None and settings.style not in self.styles:
            raise MuseNetError(f"this model never learnt the style {settings.style!r}; it knows "
                               f"{', '.join(self.styles)}")

    def settled(self, settings: Settings) -> Settings:
        """`check`, then `guided`: the settings a draw runs with (generate, accompany, infill)."""
        self.check(settings)
        return self.guided(settings)

    def guided(self, settings: Settings) -> Settings:
        """`settings` with the guidance decided where left at None: `DEFAULT_GUIDANCE` for a
        model that learnt unconditioned headers, else 1 (off)."""
        if settings.guidance is not None:
            return settings
        return replace(settings, guidance=DEFAULT_GUIDANCE if self.sampler.guidable else 1.0)

    def usual_instruments(self, style: str | None, prompt: NoteTable | None = None) -> list[str] | str:
        """What plays when no instruments are named: a prompt's own families; else the style's
        usual ensemble from the model's training data (`ensembles` in its config.json);
        else (no style, or a model that does not know) "any"."""
        if prompt is not None and len(prompt):
            return [FAMILIES[f] for f in np.unique(prompt.family)]
        ensemble = self.metadata.get("ensembles", {}).get(style or "unknown")
        return list(ensemble) if ensemble else "any"


def write_pieces(pieces: list[Piece], out_dir: str | Path, settings: Settings, model_path: str,
                 prompt: str | None = None, wav: bool = False, png: bool = False,
                 soundfont: str | None = None, stem: str = "piece", task: dict | None = None) -> list[Path]:
    """Write each piece as STEM-N.mid plus a JSON sidecar (every setting as the piece was
    composed with it, instruments resolved; the model, the seed; `task`: what an accompaniment
    kept or an infill replaced, and each infill's `fit`), and optionally STEM-N.wav and
    STEM-N.png. Returns the MIDI paths."""
    out_dir = Path(out_dir)
    written = []
    for number, piece in enumerate(pieces, 1):
        base = out_dir / f"{stem}-{number}"
        write_atomic(base.with_suffix(".mid"), midi_bytes(piece.table))
        sidecar = {
            "settings": asdict(piece.settings or settings), "candidate": number, "prompt": prompt, "model": model_path,
            "seconds": round(piece.seconds, 3), "notes": len(piece.table), "tokens": len(piece.tokens),
            "families": piece.families(),
        }
        if task is not None:
            sidecar["task"] = task
        if piece.fit is not None:
            sidecar["fit"] = round(piece.fit, 3)
        if piece.critic is not None:
            sidecar["critic"] = round(piece.critic, 4)
        write_atomic(base.with_suffix(".json"), (json.dumps(sidecar, indent=2) + "\n").encode())
        if wav or png:
            from . import render

            if wav:
                render.render_wav(piece.table, base.with_suffix(".wav"), soundfont=soundfont)
            if png:
                render.pianoroll_png(piece.table, base.with_suffix(".png"), title=f"{settings.style or ''} "
                                     f"candidate {number}".strip())
        written.append(base.with_suffix(".mid"))
    return written


def compose(model: str | Path | None = None, prompt=None, **settings) -> list[symusic.Score]:
    """One call: load a model (the bundled one by default) and return the pieces as Scores."""
    return [piece.score for piece in Composer.load(model).generate(prompt=prompt, **settings)]

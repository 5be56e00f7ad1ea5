"""A built dataset: token shards (numpy memmap), the index, and training windows.

A window is a random stretch of one piece with that piece's header (style, families,
`start`, and the tempo in force) put back in front, as MuseNet did, plus for every token
the side features the model embeds (`side_features`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .augment import Augment
from .build import SPLITS
from .errors import MuseNetError
from .vocab import STEP_SECONDS, STEPS_PER_BEAT, Vocab

POSITION_PARTS = 128      # the piece is cut into 128 parts; each token knows which it is in
COUNTDOWN_SECONDS = 2.0   # the countdown to the end counts in steps of 2 s ...
COUNTDOWN_BUCKETS = 256   # ... up to 512 s, where it saturates
MIN_PACKED_TOKENS = 32    # room worth filling with another piece after one ends


def token_seconds(tokens: np.ndarray, vocab: Vocab, tempo: float = 120.0) -> np.ndarray:
    """Seconds elapsed before each token (tokens of one instant share it). In beat mode time
    follows the tempo tokens, starting from `tempo` until the first one."""
    waits = vocab.tables["wait"][tokens].astype(np.float64)
    if vocab.time_mode == "seconds":
        step = waits * STEP_SECONDS
    else:
        bpm = vocab.tables["tempo"][tokens].astype(np.float64)
        last = np.maximum.accumulate(np.where(bpm > 0, np.arange(len(bpm)), -1))
        current = np.where(last >= 0, bpm[np.maximum(last, 0)], tempo)
        step = waits * 60.0 / (current * STEPS_PER_BEAT)
    return np.cumsum(step) - step


def side_features(tokens: np.ndarray, vocab: Vocab, total_seconds: float, start_seconds: float = 0.0,
                  tempo: float = 120.0) -> dict[str, np.ndarray]:
    """MuseNet's extra inputs for each token of a window:
    - time: grid steps since the window's first token (notes sounding together share it);
    - chord: 1 + the index of a note-on among the note-ons of its instant (0 for other tokens);
    - position: which 1/128 of the whole piece the token falls in;
    - countdown: time left to the piece's end, in 2-second steps (saturating)."""
    tokens = np.asarray(tokens, np.int64)
    t = vocab.tables
    waits = t["wait"][tokens]
    time = np.cumsum(waits) - waits
    is_on = (t["family"][tokens] >= 0) & (t["velocity"][tokens] > 0)
    instant = np.cumsum(waits > 0)
    ons_before = np.cumsum(is_on) - is_on
    first_of_instant = np.searchsorted(instant, instant, side="left")
    chord = np.where(is_on, ons_before - ons_before[first_of_instant] + 1, 0)
    seconds = start_seconds + token_seconds(tokens, vocab, tempo)
    total = max(total_seconds, 1e-6)
    position = np.clip((seconds / total * POSITION_PARTS).astype(np.int64), 0, POSITION_PARTS - 1)
    countdown = np.clip(((total - seconds) / COUNTDOWN_SECONDS).astype(np.int64), 0, COUNTDOWN_BUCKETS - 1)
    return {"time": time, "chord": chord, "position": position, "countdown": countdown}


@dataclass
class Window:
    tokens: np.ndarray          # int64, header + body
    features: dict[str, np.ndarray]
    piece: int                  # row of the index


class Dataset:
    """Read-only view of a built dataset directory, for one split (or all with split=None)."""

    def __init__(self, path: str | Path, split: str | None = "train"):
        self.path = Path(path)
        try:
            self.vocab = Vocab.load(self.path / "vocab.json")
            self.manifest = json.loads((self.path / "manifest.json").read_text())
            with np.load(self.path / "index.npz") as index:
                self.index = {key: index[key] for key in index.files}
        except (OSError, ValueError, KeyError) as err:
            raise MuseNetError(f"{self.path}: not a built dataset ({err}); run `musenet data build`") from None
        self.shards = [np.memmap(self.path / name, dtype=np.uint16, mode="r") for name in self.manifest["shards"]]
        if split is not None and split not in SPLITS:
            raise MuseNetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        everything = np.ones(len(self.index["length"]), bool)
        self.rows = np.flatnonzero(everything if split is None else self.index["split"] == SPLITS.index(split))
        self.split = split

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def tokens_total(self) -> int:
        return int(self.index["length"][self.rows].sum())

    def piece(self, row: int) -> np.ndarray:
        """The tokens of one piece (index row), as int64."""
        shard, offset, length = (int(self.index[k][row]) for k in ("shard", "offset", "length"))
        return np.asarray(self.shards[shard][offset: offset + length], np.int64)

    def style_of(self, row: int) -> str:
        return self.vocab.styles[int(self.index["style"][row])]

    def window(self, row: int, start: int, length: int, augment: Augment | None = None,
               rng: np.random.Generator | None = None, align: bool = True) -> Window:
        """`length` tokens of piece `row` from body position `start` (with `align`, moved forward
        to the start of the next instant), with the piece's header in front; shorter at a piece's end."""
        tokens = self.piece(row)
        vocab = self.vocab
        head_end = int(np.argmax(tokens == vocab.START)) + 1
        tempo = 120.0
        if vocab.time_mode == "beat" and head_end < len(tokens) and vocab.tables["tempo"][tokens[head_end]] > 0:
            head_end += 1
        body = tokens[head_end:]
        waits = vocab.tables["wait"][body]
        if start > 0 and align:  # begin at an instant: just after a wait
            after_wait = np.flatnonzero(waits[:-1] > 0) + 1
            later = after_wait[after_wait >= start]
            start = int(later[0]) if len(later) else 0
        header = list(tokens[:head_end])
        if vocab.time_mode == "beat":  # the header carries the tempo in force at the window's start
            prefix = tokens[: head_end + start]
            tempo_tokens = prefix[vocab.tables["tempo"][prefix] > 0]
            if len(tempo_tokens) and vocab.tables["tempo"][header[-1]] > 0:
                header[-1] = int(tempo_tokens[-1])
                tempo = float(vocab.tables["tempo"][tempo_tokens[-1]])
        start_seconds = float(token_seconds(tokens[: head_end + start + 1], vocab)[-1]) if start else 0.0
        window = np.concatenate([np.array(header, np.int64), body[start: start + max(length - len(header), 1)]])
        if augment is not None:
            window = augment(window, vocab, rng or np.random.default_rng())[:length]
        total = float(self.index["seconds"][row])
        return Window(window, side_features(window, vocab, total, start_seconds, tempo), row)

    def sample(self, rng: np.random.Generator, batch: int, context: int,
               augment: Augment | None = None, pack: bool = True) -> dict[str, np.ndarray]:
        """A batch of random windows of context+1 tokens (inputs and shifted targets). Pieces
        are drawn in proportion to their length. A window that reaches its piece's `end` is
        followed (with `pack`) by whole further pieces, each with its own header and
        features, until the row is full, so short pieces do not leave it half padding; what
        is left over is `pad` (features 0)."""
        lengths = self.index["length"][self.rows].astype(np.float64)
        weights = lengths / lengths.sum()
        out = {key: np.zeros((batch, context + 1), np.int64) for key in ("tokens", "time", "chord", "position",
                                                                          "countdown")}
        out["tokens"][:] = self.vocab.PAD
        for i in range(batch):
            filled = 0
            while context + 1 - filled >= MIN_PACKED_TOKENS or filled == 0:
                row = int(rng.choice(self.rows, p=weights))
                start = int(rng.integers(0, max(int(self.index["length"][row]) - context // 2, 1))) if not filled else 0
                window = self.window(row, start, context + 1 - filled, augment, rng)
                n = len(window.tokens)
                out["tokens"][i, filled: filled + n] = window.tokens
                for key, values in window.features.items():
                    out[key][i, filled: filled + n] = values
                filled += n
                if not pack or window.tokens[-1] != self.vocab.END:
                    break
        return out

    def style_table(self) -> str:
        """Per-style Markdown table: pieces, notes, tokens, hours, tokens per note."""
        index = self.index
        lines = ["| style | pieces | notes | tokens | hours | tokens/note |", "|---|---:|---:|---:|---:|---:|"]
        groups = [(s, index["style"][self.rows] == i) for i, s in enumerate(self.vocab.styles)]
        groups.append(("**all**", np.ones(len(self.rows), bool)))
        for name, mask in groups:
            rows = self.rows[mask]
            if len(rows) == 0:
                continue
            notes, tokens = int(index["notes"][rows].sum()), int(index["length"][rows].sum())
            hours = float(index["seconds"][rows].sum()) / 3600
            ratio = tokens / max(notes, 1)
            lines.append(f"| {name} | {len(rows):,} | {notes:,} | {tokens:,} | {hours:.1f} | {ratio:.2f} |")
        return "\n".join(lines)

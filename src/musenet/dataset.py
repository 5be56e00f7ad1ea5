"""A built dataset: token shards (numpy memmap), the index, and training windows.

A window is a random stretch of one piece with that piece's header (style, families,
`start`, and the tempo in force) put back in front, as MuseNet did, plus for every token
the side features the model embeds (`side_features`).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .augment import Augment, unconditioned
from .channel import split_kept
from .errors import MuseNetError
from .hints import add_hint
from .instruments import FAMILIES
from .model import ALL_FEATURES
from .sequence import header_length, side_features, steps_before, window_of
from .sources import SPLITS
from .vocab import Vocab

MIN_PACKED_TOKENS = 32    # room worth filling with another piece after one ends


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
               rng: np.random.Generator | None = None, align: bool = True, hint: bool = False) -> Window:
        """`length` tokens of piece `row` from body position `start` (with `align`, moved forward
        to the start of the next instant), with the piece's header in front; shorter at a piece's end.
        With `hint` (and an `augment` that asks for them), maybe a hint in the header (hints.py)."""
        tokens = self.piece(row)
        vocab = self.vocab
        head_end = header_length(tokens, vocab)
        if start > 0 and align:  # begin at an instant: just after a wait
            waits = vocab.tables["wait"][tokens[head_end:]]
            after_wait = np.flatnonzero(waits[:-1] > 0) + 1
            later = after_wait[after_wait >= start]
            start = int(later[0]) if len(later) else 0
        # dropping families shortens a window: read enough that it still fills `length`
        reach = length * 4 if augment is not None and (augment.drop_families or augment.enter_late) else length
        window, start_seconds = window_of(tokens, vocab, head_end, start, reach)
        start_step = steps_before(tokens, vocab, head_end, start)
        kept = None
        if augment is not None:
            rng = rng or np.random.default_rng()
            window = augment(window, vocab, rng, length)
            if augment.kept_channel and rng.random() < augment.kept_channel:  # some parts beside it (channel.py)
                window, kept = split_kept(window, vocab, rng, start_step)
            window = window[:length]
            if hint and kept is None:
                window = add_hint(window, vocab, rng, augment.fill_middle, augment.accompany)[:length]
            if augment.unconditioned and rng.random() < augment.unconditioned:
                window = unconditioned(window, vocab)
        total = float(self.index["seconds"][row])
        return Window(window, side_features(window, vocab, total, start_seconds, start_step=start_step, kept=kept),
                      row)

    def style_shares(self, style_weights: dict[str, float] | None = None) -> np.ndarray:
        """How often each piece of the split is drawn: in proportion to its length, times the
        weight of its style (`style_weights`: style name or shell pattern such as `drums-*` ->
        factor; the first matching key counts, unnamed styles 1). Sums to 1."""
        weights = self.index["length"][self.rows].astype(np.float64)
        if style_weights:
            factor = np.ones(len(self.vocab.styles))
            for number, style in enumerate(self.vocab.styles):
                matched = [value for key, value in style_weights.items() if fnmatch.fnmatchcase(style, key)]
                factor[number] = matched[0] if matched else 1.0
            weights = weights * factor[self.index["style"][self.rows]]
        return weights / weights.sum()

    def sample(self, rng: np.random.Generator, batch: int, context: int,
               augment: Augment | None = None, pack: bool = True,
               shares: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """A batch of random windows of context+1 tokens (inputs and shifted targets). Pieces
        are drawn in proportion to their length (or to `shares`, see `style_shares`). A window
        that reaches its piece's `end` is followed (with `pack`) by whole further pieces, each
        with its own header and
        features, until the row is full, so short pieces do not leave it half padding; what
        is left over is `pad` (features 0)."""
        weights = self.style_shares() if shares is None else shares
        out = {key: np.zeros((batch, context + 1), np.int64) for key in ("tokens", *ALL_FEATURES)}
        out["tokens"][:] = self.vocab.PAD
        for i in range(batch):
            filled = 0
            while context + 1 - filled >= MIN_PACKED_TOKENS or filled == 0:
                row = int(rng.choice(self.rows, p=weights))
                start = int(rng.integers(0, max(int(self.index["length"][row]) - context // 2, 1))) if not filled else 0
                window = self.window(row, start, context + 1 - filled, augment, rng, hint=not filled)
                n = len(window.tokens)
                out["tokens"][i, filled: filled + n] = window.tokens
                for key, values in window.features.items():
                    out[key][i, filled: filled + n] = values
                filled += n
                if not pack or window.tokens[-1] != self.vocab.END:
                    break
        return out

    def ensembles(self, share: float = 0.5) -> dict[str, list[str]]:
        """Each style's usual ensemble: the families named in the header of at least `share`
        of its pieces (the most common family alone where none reaches it). Checkpoints keep
        it, so that composing a style without naming instruments gets its usual ones."""
        bits = self.index["families"][self.rows].astype(np.int64)
        styles = self.index["style"][self.rows]
        ensembles = {}
        for number, style in enumerate(self.vocab.styles):
            mine = bits[styles == number]
            if len(mine) == 0:
                continue
            played = ((mine[:, None] >> np.arange(len(FAMILIES))) & 1).mean(axis=0)
            chosen = np.flatnonzero(played >= share) if (played >= share).any() else [int(played.argmax())]
            ensembles[style] = [FAMILIES[f] for f in chosen]
        return ensembles

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

    def random_window(self, rng: np.random.Generator, length: int,
                      style: str | None = None) -> tuple[Window, int]:
        """A window of `length` tokens from a random piece (of `style`, if given) at a random
        start, and the body position it was asked from (the window begins at the next instant)."""
        rows = self.rows
        if style is not None:
            if style not in self.vocab.styles:
                raise MuseNetError(f"unknown style {style!r}; this dataset has {', '.join(self.vocab.styles)}")
            rows = rows[self.index["style"][rows] == self.vocab.styles.index(style)]
        if len(rows) == 0:
            where = f"the {self.split} split" if self.split else "this dataset"
            raise MuseNetError(f"no piece {'of that style ' if style else ''}in {where}")
        row = int(rng.choice(rows))
        start = int(rng.integers(0, max(int(self.index["length"][row]) - length, 1)))
        return self.window(row, start, length), start

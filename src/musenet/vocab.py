"""The token space: a few named blocks of integer ids, and the text form of tokens.

Layout of ids (each block follows the previous one):

    pad, start, end | family header tokens | tempo buckets (beat mode only)
    | wait:1 .. wait:MAX | note tokens, family by family | styles

Styles come last so that a vocabulary with more styles (a user's own collection) keeps
every other id of the default one.

A note token is family x pitch x volume: for a melodic family, each pitch of its range has
one note-off (`v0`) and one token per velocity bin; drums have onsets only. The vocabulary
is a small frozen dataclass; its JSON (`to_json`) goes beside every dataset and checkpoint.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import MuseNetError
from .instruments import DRUMS, FAMILIES, PITCH_RANGE

VOCAB_VERSION = 1
TIME_MODES = ("beat", "seconds")
#: How the events of one instant are ordered (`encoding.instant_rank`): tempo, note-offs, then
#: note-ons, each kind by pitch, ascending (`low-first`: the bass first; the default and the
#: bundled model's) or descending (`top-first`: the top line, often the melody, first, so the
#: chord under it is written knowing it; README, design study: no clear win yet). A
#: vocabulary file without the key is `low-first` (every file before the choice).
INSTANT_ORDERS = ("low-first", "top-first")

#: Grid of `beat` mode: 12 steps per quarter note holds 16ths (3) and triplet 8ths (4) exactly.
STEPS_PER_BEAT = 12
#: Grid of `seconds` mode: 10 ms per step.
STEP_SECONDS = 0.01
#: Longest single wait: one 4/4 bar in `beat` mode, one second in `seconds` mode.
MAX_WAIT = {"beat": 4 * STEPS_PER_BEAT, "seconds": 100}

#: Velocity bins: a velocity is written as the nearest of these values.
VELOCITIES = (16, 32, 48, 64, 80, 96, 112, 127)
#: What a token does, for breaking losses down (Vocab.kinds): headers and tempos are "other".
TOKEN_KINDS = ("note-on", "note-off", "wait", "other")

#: Tempo buckets (BPM), 6% apart from 30 to 305 and anchored at 120: one token each, beat mode only.
TEMPOS = tuple(sorted({int(round(120 * 1.06**k)) for k in range(-24, 17)}))

#: Styles known to the default vocabulary; a dataset's vocabulary may list others.
DEFAULT_STYLES = (
    "unknown", "bach", "renaissance", "madrigal", "classical-quartet", "german-folk",
    "chinese-folk", "irish", "scottish", "american-fiddle", "pop",
)

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}
_NOTE_RE = re.compile(r"^([A-G][#b]?)(-?\d+)$")


def pitch_name(pitch: int) -> str:
    """MIDI pitch -> scientific name, middle C (60) = C4."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def parse_pitch(name: str) -> int:
    """Scientific pitch name (C4, F#2, Bb3, C-1) -> MIDI pitch."""
    match = _NOTE_RE.match(name)
    if not match:
        raise MuseNetError(f"not a pitch name: {name!r} (expected like C4, F#2, Bb3)")
    letter, octave = match.groups()
    pitch = NOTE_NAMES.index(_FLATS.get(letter, letter)) + 12 * (int(octave) + 1)
    if not 0 <= pitch <= 127:
        raise MuseNetError(f"pitch {name!r} is outside MIDI's 0-127")
    return pitch


@dataclass(frozen=True)
class Vocab:
    """One vocabulary: a time mode and a style list fix every token id; the instant order
    fixes how the events of one instant follow each other."""

    time_mode: str = "beat"
    styles: tuple[str, ...] = DEFAULT_STYLES
    version: int = field(default=VOCAB_VERSION)
    instant_order: str = "low-first"

    def __post_init__(self) -> None:
        if self.time_mode not in TIME_MODES:
            raise MuseNetError(f"unknown time mode {self.time_mode!r}; use beat or seconds")
        if self.instant_order not in INSTANT_ORDERS:
            raise MuseNetError(f"unknown instant order {self.instant_order!r}; use {' or '.join(INSTANT_ORDERS)}")
        if self.version != VOCAB_VERSION:
            raise MuseNetError(f"vocabulary version {self.version} is not supported (this is v{VOCAB_VERSION})")
        taken = {"pad", "start", "end", *FAMILIES}
        for style in self.styles:
            if style in taken or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", style):
                raise MuseNetError(f"bad style name {style!r}: use a-z, 0-9, - and _, and no reserved word")
            taken.add(style)
        if "unknown" not in self.styles:
            object.__setattr__(self, "styles", ("unknown", *self.styles))

    # ---- the blocks, as plain integer offsets --------------------------------------
    PAD, START, END = 0, 1, 2

    @property
    def family_offset(self) -> int:
        return 3

    @property
    def tempo_offset(self) -> int:
        return self.family_offset + len(FAMILIES)

    @property
    def n_tempos(self) -> int:
        return len(TEMPOS) if self.time_mode == "beat" else 0

    @property
    def wait_offset(self) -> int:
        """Id of `wait:1`; `wait:n` is wait_offset + n - 1."""
        return self.tempo_offset + self.n_tempos

    @property
    def max_wait(self) -> int:
        return MAX_WAIT[self.time_mode]

    @property
    def note_offset(self) -> int:
        return self.wait_offset + self.max_wait

    @cached_property
    def family_note_offset(self) -> np.ndarray:
        """First note-token id of each family (int64 array, indexed by family id)."""
        sizes = [self._family_block(f) for f in range(len(FAMILIES))]
        return self.note_offset + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    @staticmethod
    def _family_block(family: int) -> int:
        lo, hi = PITCH_RANGE[FAMILIES[family]]
        per_pitch = len(VELOCITIES) if family == DRUMS else len(VELOCITIES) + 1
        return (hi - lo + 1) * per_pitch

    @cached_property
    def style_offset(self) -> int:
        return self.note_offset + sum(self._family_block(f) for f in range(len(FAMILIES)))

    @property
    def size(self) -> int:
        return self.style_offset + len(self.styles)

    def blocks(self) -> list[tuple[str, int, int]]:
        """The layout as (name, first id, id after the last) rows, in id order; a block may be
        empty (no tempo buckets in seconds mode)."""
        return [
            ("pad, start, end", 0, self.family_offset),
            ("instrument families", self.family_offset, self.tempo_offset),
            ("tempo buckets", self.tempo_offset, self.wait_offset),
            ("waits", self.wait_offset, self.note_offset),
            ("notes (family x pitch x volume)", self.note_offset, self.style_offset),
            ("styles", self.style_offset, self.size),
        ]

    # ---- lookups used by the encoder and decoder ------------------------------------
    def style_token(self, style: str | None) -> int:
        style = style or "unknown"
        if style not in self.styles:
            raise MuseNetError(f"unknown style {style!r}; known: {', '.join(self.styles)}")
        return self.style_offset + self.styles.index(style)

    def step_seconds(self) -> float | None:
        return STEP_SECONDS if self.time_mode == "seconds" else None

    @cached_property
    def tables(self) -> dict[str, np.ndarray]:
        """Per-id attributes: family (-1 if not a note), pitch, velocity (0 = note-off),
        wait steps (0 if not a wait), tempo BPM (0 if not a tempo token)."""
        n = self.size
        family = np.full(n, -1, np.int64)
        pitch = np.zeros(n, np.int64)
        velocity = np.zeros(n, np.int64)
        for f in range(len(FAMILIES)):
            lo, hi = PITCH_RANGE[FAMILIES[f]]
            levels = VELOCITIES if f == DRUMS else (0, *VELOCITIES)
            ids = self.family_note_offset[f] + np.arange((hi - lo + 1) * len(levels))
            family[ids] = f
            pitch[ids] = lo + np.arange(len(ids)) // len(levels)
            velocity[ids] = np.tile(levels, hi - lo + 1)
        wait = np.zeros(n, np.int64)
        wait[self.wait_offset:self.note_offset] = np.arange(1, self.max_wait + 1)
        tempo = np.zeros(n, np.int64)
        tempo[self.tempo_offset:self.wait_offset] = TEMPOS[: self.n_tempos]
        return {"family": family, "pitch": pitch, "velocity": velocity, "wait": wait, "tempo": tempo}

    @cached_property
    def kinds(self) -> np.ndarray:
        """Per-id index into TOKEN_KINDS (note-on, note-off, wait, other)."""
        t = self.tables
        kind = np.full(self.size, 3, np.int64)
        kind[t["wait"] > 0] = 2
        kind[(t["family"] >= 0) & (t["velocity"] == 0)] = 1
        kind[(t["family"] >= 0) & (t["velocity"] > 0)] = 0
        return kind

    def note_tokens(self, family: np.ndarray, pitch: np.ndarray, velocity_bin: np.ndarray) -> np.ndarray:
        """Note-token ids; velocity_bin is 0 for a note-off and 1..len(VELOCITIES) otherwise.
        Drums have no note-off, so their bins count from 1 too."""
        family = np.asarray(family, np.int64)
        lo = np.array([PITCH_RANGE[f][0] for f in FAMILIES], np.int64)[family]
        per_pitch = np.where(family == DRUMS, len(VELOCITIES), len(VELOCITIES) + 1)
        level = np.where(family == DRUMS, velocity_bin - 1, velocity_bin)
        return self.family_note_offset[family] + (pitch - lo) * per_pitch + level

    # ---- names and text ---------------------------------------------------------------
    @cached_property
    def names(self) -> tuple[str, ...]:
        names = ["pad", "start", "end", *FAMILIES]
        names += [f"tempo:{t}" for t in TEMPOS[: self.n_tempos]]
        names += [f"wait:{n}" for n in range(1, self.max_wait + 1)]
        t = self.tables
        for i in range(self.note_offset, self.style_offset):
            names.append(f"{FAMILIES[t['family'][i]]}:v{t['velocity'][i]}:{pitch_name(int(t['pitch'][i]))}")
        names += self.styles
        assert len(names) == self.size
        return tuple(names)

    @cached_property
    def ids(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def token_id(self, word: str) -> int:
        """Id of one word of the text form; velocities snap to their bin, flats are accepted."""
        if word in self.ids:
            return self.ids[word]
        parts = word.split(":")
        if len(parts) == 3 and parts[0] in FAMILIES and parts[1][:1] == "v" and parts[1][1:].isdigit():
            fam = FAMILIES.index(parts[0])
            pitch = parse_pitch(parts[2])
            lo, hi = PITCH_RANGE[parts[0]]
            if not lo <= pitch <= hi:
                raise MuseNetError(f"{word!r}: pitch outside {parts[0]}'s range {pitch_name(lo)}-{pitch_name(hi)}")
            vel = int(parts[1][1:])
            if vel == 0 and fam == DRUMS:
                raise MuseNetError(f"{word!r}: drums have no note-off")
            level = 0 if vel == 0 else int(velocity_bins(np.array([vel]))[0])
            return int(self.note_tokens(np.array([fam]), np.array([pitch]), np.array([level]))[0])
        raise MuseNetError(f"unknown token {word!r}")

    # ---- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "time_mode": self.time_mode,
            **({"instant_order": self.instant_order} if self.instant_order != "low-first" else {}),
            "grid": {"steps_per_beat": STEPS_PER_BEAT} if self.time_mode == "beat" else {"step_seconds": STEP_SECONDS},
            "max_wait": self.max_wait,
            "velocities": list(VELOCITIES),
            "tempos": list(TEMPOS[: self.n_tempos]),
            "styles": list(self.styles),
            "families": [{"name": f, "pitch_range": list(PITCH_RANGE[f])} for f in FAMILIES],
            "size": self.size,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> Vocab:
        vocab = cls(time_mode=data["time_mode"], styles=tuple(data["styles"]), version=data["version"],
                    instant_order=data.get("instant_order", "low-first"))
        if vocab.to_dict() != data:
            raise MuseNetError("vocabulary file does not match this version of musenet (grid, ranges or size differ)")
        return vocab

    def save(self, path: str | Path) -> None:
        from .files import write_atomic

        write_atomic(path, self.to_json().encode())

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError) as err:
            raise MuseNetError(f"{path}: not a readable vocabulary file ({err})") from None


def velocity_bins(velocity: np.ndarray) -> np.ndarray:
    """Velocity (1-127) -> bin 1..len(VELOCITIES), the nearest bin value."""
    edges = (np.array(VELOCITIES[:-1]) + np.array(VELOCITIES[1:])) / 2
    return np.searchsorted(edges, velocity, side="left") + 1


def default_vocab(time_mode: str = "beat") -> Vocab:
    """The vocabulary `musenet.encode` uses for a time mode."""
    return _DEFAULTS.setdefault(time_mode, Vocab(time_mode=time_mode))


_DEFAULTS: dict[str, Vocab] = {}


def to_text(tokens, vocab: Vocab | None = None) -> str:
    """Token ids -> MuseNet's text form, e.g. `bach piano start tempo:96 piano:v80:G4 wait:12 ...`."""
    vocab = vocab or default_vocab()
    tokens = np.asarray(tokens, np.int64)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab.size):
        raise MuseNetError(f"token id out of range 0..{vocab.size - 1}")
    names = vocab.names
    return " ".join(names[t] for t in tokens.tolist())


def from_text(text: str, vocab: Vocab | None = None) -> np.ndarray:
    """MuseNet's text form -> token ids (int64). Raises MuseNetError naming the bad word."""
    vocab = vocab or default_vocab()
    ids = []
    for position, word in enumerate(text.split()):
        try:
            ids.append(vocab.token_id(word))
        except MuseNetError as err:
            raise MuseNetError(f"word {position + 1}: {err}") from None
    return np.array(ids, np.int64)

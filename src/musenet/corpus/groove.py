"""The Groove MIDI Dataset (Gillick et al., ICML 2019; CC BY 4.0, Google Magenta) as a
source: 1,150 takes of 10 drummers on an electronic kit, labelled in `info.csv`.

A take's style is the `style` column's main part (before `/`), prefixed `drums-`
(`funk/purdieshuffle` -> `drums-funk`): these are drum parts alone, and the prefix keeps
them apart from a style of whole bands (POP909's `pop`, a folder named `rock`). The authors'
split is kept exactly (`validation` is our `valid`), so results compare with theirs. Every
time signature is kept (1,138 of the 1,150 takes are 4-4): a note table carries no meter.
The styles' descriptions are in `styles.py`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MuseNetError
from ..notes import NoteTable, read_midi

STYLE_PREFIX = "drums-"
BEAT_TYPES = ("beat", "fill")
SPLIT_NAMES = {"train": "train", "validation": "valid", "test": "test"}

#: The Roland TD-11's pitches with no General MIDI drum (hi-hat edges) or another one (58,
#: tom 3 rim, is GM's vibraslap) -> the GM drum the dataset's authors map them to. Without
#: it 22 (the closed hi-hat's edge, 8% of all notes) would be dropped, being outside the
#: drums' token range, and 26 and 58 would sound as the wrong instruments.
GM_PITCH = {22: 42, 26: 46, 58: 43}


@dataclass(frozen=True)
class Take:
    """One row of info.csv: a MIDI file and its labels."""

    path: Path
    style: str      # our style name, e.g. drums-funk
    split: str      # train, valid or test
    beat_type: str  # beat or fill
    bpm: int
    time_signature: str  # as written, e.g. 4-4
    drummer: str
    id: str         # e.g. drummer1/eval_session/1


def style_name(raw: str) -> str:
    """info.csv's style (`latin/brazilian-baiao`) -> our style token name (`drums-latin`)."""
    main = raw.split("/", 1)[0].strip().lower()
    if not main:
        raise MuseNetError(f"empty Groove style {raw!r}")
    return STYLE_PREFIX + main


def takes(root: str | Path, beat_types: tuple[str, ...] = BEAT_TYPES) -> list[Take]:
    """Every take of `root/info.csv` whose beat_type is in `beat_types` (both by default:
    fills are half the takes, and they are what a drummer plays between sections), in the
    file's order."""
    root = Path(root)
    unknown = set(beat_types) - set(BEAT_TYPES)
    if unknown:
        raise MuseNetError(f"unknown Groove beat type {sorted(unknown)[0]!r}; known: {', '.join(BEAT_TYPES)}")
    try:
        with open(root / "info.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as err:
        raise MuseNetError(f"{root}: not a Groove MIDI Dataset folder (info.csv: {err.strerror or err})") from None
    out = []
    for number, row in enumerate(rows, 2):
        try:
            if row["beat_type"] not in beat_types:
                continue
            out.append(Take(root / row["midi_filename"], style_name(row["style"]), SPLIT_NAMES[row["split"]],
                            row["beat_type"], int(row["bpm"]), row["time_signature"], row["drummer"], row["id"]))
        except (KeyError, ValueError, TypeError) as err:
            raise MuseNetError(f"{root / 'info.csv'}: line {number}: bad or missing field ({err})") from None
    return out


def gm_pitches(pitch: np.ndarray) -> np.ndarray:
    """Roland TD-11 drum pitches -> General MIDI ones (GM_PITCH), as a new array."""
    lookup = np.arange(128)
    lookup[list(GM_PITCH)] = list(GM_PITCH.values())
    return lookup[np.asarray(pitch, np.int64)]


def read_groove(source) -> NoteTable:
    """A Groove MIDI file (path or bytes) -> note table, its drums mapped to General MIDI."""
    table = read_midi(source)
    table.pitch = np.where(table.drum, gm_pitches(table.pitch), table.pitch)
    return table.sorted()  # the new pitches may reorder notes struck together

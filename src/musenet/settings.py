"""What a generation depends on (`Settings`), its one set of limits, and the prompt's cut.

`Settings.check` is the only validation: the CLI, the server and `Composer.generate` all
call it (the server's request model takes its bounds from `LIMITS` too). Its messages name
the setting (`temperature must be ...`), not a command-line flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import MuseNetError
from .instruments import FAMILIES
from .notes import NoteTable
from .vocab import Vocab

#: Inclusive bounds of every numeric setting: one set of limits for the CLI, the API and the server.
LIMITS: dict[str, tuple[float, float]] = {
    "seconds": (1.0, 3600.0),
    "temperature": (0.05, 2.0),
    "top_k": (0, 10_000),
    "top_p": (0.01, 1.0),
    "min_p": (0.0, 1.0),
    "guidance": (0.0, 10.0),
    "seed": (0, 2**63 - 1),
    "candidates": (1, 64),
    "max_polyphony": (1, 128),
    "max_rest_seconds": (0.1, 60.0),
    "max_note_seconds": (0.1, 600.0),
    "max_family_silence": (0.0, 600.0),
    "prompt_notes": (1, 1_000_000),
    "prompt_seconds": (0.1, 3600.0),
    "max_tokens": (1, 10_000_000),
}
INSTRUMENT_MODES = ("strict", "soft")
#: The guidance a model that learnt unconditioned headers composes with when none is asked for
#: (`Composer.guided`; README "Composing": the weight that measured best for the bundled model).
DEFAULT_GUIDANCE = 2.0
#: How strongly an accompaniment leans towards the chord tones the harmoniser hears in the kept
#: parts when none is asked for (`Composer.harmony`; README "Accompanying and infilling").
DEFAULT_HARMONY = 3.0
NUCLEUS_MODES = ("all", "family")


@dataclass
class Settings:
    """Everything a generation depends on (saved beside each output)."""

    style: str | None = None
    # families that may play; "any": every family (strict mode then masks nothing); None: the
    # style's usual ensemble, or the prompt's families (`Composer.generate` decides; the
    # sampler alone reads None as "any")
    instruments: list[str] | str | None = None
    seconds: float = 60.0                  # length of the whole piece, the prompt included
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.95
    min_p: float = 0.0                     # cut tokens below min_p x the likeliest one's probability; 0: off
    nucleus: str = "all"                   # or "family": top-p within the group the draw picks (rules.py)
    # classifier-free guidance on style and families (sample.py); 1: off; None: DEFAULT_GUIDANCE
    # for a model that learnt unconditioned headers, else off (`Composer.guided` decides)
    guidance: float | None = None
    seed: int = 0
    candidates: int = 1
    instrument_mode: str = "strict"        # or "soft": instruments only in the header, as MuseNet
    max_polyphony: int = 24
    max_rest_seconds: float = 6.0
    max_note_seconds: float = 8.0          # no note sounds longer (no stuck notes)
    # strict mode: a requested family silent this long (the first time: 2 s in) plays next; 0: off
    max_family_silence: float = 8.0
    prompt_notes: int | None = None
    prompt_seconds: float | None = None
    max_tokens: int | None = None          # stop after this many new tokens (a safety cap)

    def check(self, vocab: Vocab) -> None:
        """Raise MuseNetError naming the first setting that is out of bounds or unknown."""
        if self.style is not None and self.style not in vocab.styles:
            raise MuseNetError(f"unknown style {self.style!r}; this model knows {', '.join(vocab.styles)}")
        if self.instruments is not None and self.instruments != "any":
            if isinstance(self.instruments, str) or not self.instruments:
                raise MuseNetError("instruments must be a list of at least one family, or \"any\"")
            for name in self.instruments:
                if name not in FAMILIES:
                    raise MuseNetError(f"unknown instrument {name!r}; choose from {', '.join(FAMILIES)}")
        if self.nucleus not in NUCLEUS_MODES:
            raise MuseNetError(f"nucleus must be all or family, not {self.nucleus!r}")
        if self.instrument_mode not in INSTRUMENT_MODES:
            raise MuseNetError(f"instrument_mode must be strict or soft, not {self.instrument_mode!r}")
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if value is None and name in ("prompt_notes", "prompt_seconds", "max_tokens", "guidance"):
                continue
            check_number(name, value, low, high)


def check_number(name: str, value, low: float, high: float) -> None:
    """Raise MuseNetError unless `value` is a real number (not a bool, not NaN) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise MuseNetError(f"{name} must be a number, not {value!r}")
    if math.isnan(value) or not low <= value <= high:
        raise MuseNetError(f"{name} must be between {low:g} and {high:g}, not {value}")


def cut_prompt(table: NoteTable, notes: int | None = None, seconds: float | None = None) -> NoteTable:
    """The opening of a piece: its first `notes` notes, or the notes starting before `seconds`."""
    table = table.sorted()
    if notes is not None:
        if notes < 1:
            raise MuseNetError("prompt_notes must be at least 1")
        return table.select(np.arange(min(notes, len(table))))
    if seconds is not None:
        keep = table.seconds(table.onset) < seconds
        if not keep.any():
            raise MuseNetError(f"the prompt has no note in its first {seconds} s")
        return table.select(np.flatnonzero(keep))
    return table

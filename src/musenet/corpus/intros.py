"""Famous openings to start a piece from: the first bars of well-known works in music21's corpus.

Each intro names its corpus file (and tune number in a multi-tune ABC file), its style and
how many quarter-note beats to keep; `intro_table` reads the work once (cached), keeps the
notes that start inside those beats and cuts any note still sounding at the cut, so the
opening ends cleanly. music21 is needed to read them (`pip install music21`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import MuseNetError
from ..notes import NoteTable


@dataclass(frozen=True)
class Intro:
    """One famous opening: where it is in the corpus and how much of it to keep."""

    id: str
    title: str
    composer: str
    style: str          # the style group it belongs to (a good default style to continue in)
    path: str           # corpus-relative file
    number: int | None  # tune number inside a multi-tune ABC file
    beats: float        # quarter notes to keep from the start
    qpm: float | None = None  # a tempo to play it at, where the corpus gives none that fits


INTROS: tuple[Intro, ...] = (
    Intro("wachet-auf", "Wachet auf, ruft uns die Stimme (chorale, BWV 140)", "J. S. Bach", "bach",
          "bach/bwv140.7.mxl", None, 8),
    Intro("o-haupt", "O Haupt voll Blut und Wunden (St Matthew Passion, BWV 244)", "J. S. Bach", "bach",
          "bach/bwv244.62.mxl", None, 8),
    Intro("mille-regretz", "Mille regretz", "Josquin des Prez", "renaissance", "josquin/milleRegrets.abc", None, 16),
    Intro("ah-dolente", "Ah, dolente partita (madrigals, book 4)", "C. Monteverdi", "madrigal",
          "monteverdi/madrigal.4.1.mxl", None, 16),
    Intro("hunt-quartet", "String quartet K. 458 'The Hunt', first movement", "W. A. Mozart", "classical-quartet",
          "mozart/k458/movement1.mxl", None, 12),
    Intro("haydn-op74", "String quartet op. 74 no. 1, first movement", "J. Haydn", "classical-quartet",
          "haydn/opus74no1/movement1.mxl", None, 8),
    Intro("razumovsky", "String quartet op. 59 no. 1 'Razumovsky', first movement", "L. van Beethoven",
          "classical-quartet", "beethoven/opus59no1/movement1.mxl", None, 16),
    Intro("alle-meine-entchen", "Alle meine Entchen", "German folk song", "german-folk",
          "essenFolksong/kinder0.abc", 149, 8),
    Intro("molihua", "Molihua (Jasmine Flower)", "Chinese folk song", "chinese-folk", "essenFolksong/han1.abc", 243, 8),
    Intro("londonderry-air", "Londonderry Air", "Irish air (O'Neill, 1850)", "irish",
          "oneills1850/0101-0200.abc", 188, 8, qpm=72),
    Intro("drowsy-maggie", "Drowsy Maggie", "Irish reel (O'Neill, 1850)", "irish",
          "oneills1850/1376-1475.abc", 1425, 8),
    Intro("campbells-are-coming", "The Campbells are Coming", "Scottish tune (Aird's Airs)", "scottish",
          "airdsAirs/book1.abc", 21, 12),
    Intro("arkansas-traveller", "Arkansas Traveller", "American fiddle reel (Ryan's Mammoth)", "american-fiddle",
          "ryansMammoth/ArkansasTravellerReel.abc", None, 8),
)
INTRO_BY_ID: dict[str, Intro] = {intro.id: intro for intro in INTROS}


def cut_beats(table: NoteTable, beats: float) -> NoteTable:
    """The notes starting before `beats`, each ending at `beats` at the latest."""
    table = table.sorted()
    rows = np.flatnonzero(table.onset < beats)
    if len(rows) == 0:
        raise MuseNetError(f"no note in the first {beats:g} beats")
    cut = table.select(rows)
    cut.duration = np.minimum(cut.duration, beats - cut.onset)
    return cut


@lru_cache(maxsize=len(INTROS))
def intro_table(intro_id: str) -> NoteTable:
    """The opening's notes (read from music21's corpus once, then cached). MuseNetError with a
    one-line reason for an unknown id or when music21 is missing."""
    intro = INTRO_BY_ID.get(intro_id)
    if intro is None:
        raise MuseNetError(f"unknown intro {intro_id!r}; choose from {', '.join(INTRO_BY_ID)}")
    try:
        import music21  # noqa: F401
    except ImportError:
        raise MuseNetError("intros are read from music21's corpus; pip install music21") from None
    from .music21_corpus import read_work

    _, table = read_work(intro.path, intro.number, intro.style)
    if intro.qpm is not None:
        table.tempo_time, table.tempo_qpm = np.zeros(1), np.full(1, float(intro.qpm))
    return cut_beats(table, intro.beats)

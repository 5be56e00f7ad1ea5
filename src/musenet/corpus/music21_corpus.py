"""music21's bundled corpus as note tables, with one style label per work.

Nine styles, each a group of corpus collections that belong together musically and are
big enough to learn from (`STYLE_GROUPS`; `count_works` gives their sizes). A style also
names the instrument family of parts that say nothing about their instrument (folk tunes
in ABC have no part names) and the tempo of works that give none. In the sung styles
(bach, renaissance, madrigal) music21's instrument names are ignored: they are notation-
program defaults ("Grand Piano", "Tenor Sax" on trecento voices), so a part is what its
name says (Trumpet, Oboe, Timpani, Continuo in some chorales and madrigals) or a voice.

Left out, on purpose:

- music that is not a score: the Roman-numeral analyses (`*.rntxt`: bach/choraleAnalyses,
  monteverdi) and music21's own demos and exercises (demos, theoryExercises, leadSheet);
- test and variant files of the Essen collection (test0, test1, testd, teste, variant0);
- single works or tiny collections of other styles, too few to learn a style from: beach,
  chopin, corelli, cpebach, handel, johnson_j_r, joplin, liliuokalani, schoenberg, schubert,
  schumann_clara, schumann_robert (also its op. 41 quartets: romantic, not classical),
  verdi, weber, webern, nottingham-dataset (2 tunes), bach/bwv846 (a keyboard prelude and
  fugue among the chorales) and mozart/k545 (a piano sonata among the quartets);
- Essen's folkHaydn (Scottish song airs from Haydn's arrangements: sung melodies, not the
  fiddle and pipe tunes of the scottish style) and miscFolk (American fife tunes and
  Northumbrian minstrelsy: neither fits a style here);
- second copies: the Humdrum copies of chorales and of Beethoven op. 18 no. 1 that also
  exist as MusicXML, monteverdi/madrigal.3.1_old, and O'Neill files that transcribe the
  same tune numbers again (0626-0635, 0732-0758_mh, 1116-1135_ml, 1556-1576, 1577-1624,
  1710-1750: each is covered by another file).

One corpus file can hold many works: the ABC collections (Essen, O'Neill, Aird) hold one
tune per `X:` field, and a work is then named `path#number`. The Josquin ABC files are the
exception: their tunes are the voices of one piece, so each file is one work of several
parts. Works are read from the exact corpus file (no fuzzy name search), and music21's
pickle cache is read when present but never written, so parallel readers never race on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import MidiError, MuseNetError
from ..instruments import FAMILIES
from ..notes import TEMPO_LIMITS, NoteTable
from .part_names import family_for_part

DEFAULT_VELOCITY = 80

#: File types that are scores; anything else in the corpus (analyses, ...) is skipped.
SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn", ".abc")

#: ABC files whose tunes are the voices of one piece (read as one work of several parts).
PARTS_AS_TUNES = ("josquin/",)


@dataclass(frozen=True)
class StyleGroup:
    """A style: the corpus collections it is made of and its defaults."""

    name: str
    description: str  # one line
    sources: tuple[str, ...]  # corpus-relative path prefixes ("bach/", "essenFolksong/han")
    default_family: str  # family of a part that names no instrument (instruments.FAMILIES)
    default_qpm: float  # tempo (quarter notes per minute) of a work that gives none
    exclude: tuple[str, ...] = ()  # path prefixes inside `sources` that are left out
    # False where music21's instrument names are notation-program defaults on sung parts
    # ("Grand Piano", "Tenor Sax"): a part's family then comes from its name or the default.
    trust_instruments: bool = True

    def __post_init__(self) -> None:
        if self.default_family not in FAMILIES:
            raise MuseNetError(f"style {self.name}: unknown family {self.default_family!r}")

    def includes(self, path: str) -> bool:
        """Whether a corpus-relative file path belongs to this style."""
        return (
            path.endswith(SCORE_SUFFIXES)
            and path.startswith(self.sources)
            and not (self.exclude and path.startswith(self.exclude))
        )


_GERMAN_FOLK = tuple(
    f"essenFolksong/{name}"
    for name in ("altdeu", "ballad", "boehme", "dva", "erk", "fink", "kinder", "lot", "lux", "zuccal")
)

STYLE_GROUPS: dict[str, StyleGroup] = {
    group.name: group
    for group in (
        StyleGroup(
            "bach", "J. S. Bach's four-part chorales", ("bach/",), "voice", 90.0,
            exclude=("bach/choraleAnalyses/", "bach/bwv846.", "bach/bwv277.krn", "bach/bwv281.krn",
                     "bach/bwv366.krn"),
            trust_instruments=False,
        ),
        StyleGroup(
            "renaissance", "sacred and secular polyphony, 14th-16th century (Palestrina, Josquin, trecento)",
            ("palestrina/", "josquin/", "lusitano/", "luca/", "ciconia/", "trecento/"), "voice", 120.0,
            trust_instruments=False,
        ),
        StyleGroup(
            "madrigal", "Monteverdi's five-voice madrigals (books 3-5)", ("monteverdi/",), "voice", 120.0,
            exclude=("monteverdi/madrigal.3.1_old.",), trust_instruments=False,
        ),
        StyleGroup(
            "classical-quartet", "string quartets of Haydn, Mozart and Beethoven",
            ("haydn/", "mozart/", "beethoven/"), "strings", 120.0,
            exclude=("mozart/k545/", "beethoven/opus18no1/movement1.krn", "beethoven/opus18no1/movement2.krn",
                     "beethoven/opus18no1/movement3.krn", "beethoven/opus18no1/movement4.krn"),
        ),
        StyleGroup(
            "german-folk", "German-language folk songs of the Essen collection (melodies)",
            _GERMAN_FOLK, "voice", 100.0,
        ),
        StyleGroup(
            "chinese-folk", "Han Chinese folk songs of the Essen collection (melodies)",
            ("essenFolksong/han",), "voice", 90.0,
        ),
        StyleGroup(
            "irish", "Irish dance tunes and airs: O'Neill's 1850 and Essen's Irish tunes",
            ("oneills1850/", "essenFolksong/irl"), "strings", 160.0,
            exclude=tuple(
                f"oneills1850/{name}.abc"
                for name in ("0626-0635", "0732-0758_mh", "1116-1135_ml", "1556-1576", "1577-1624", "1710-1750")
            ),
        ),
        StyleGroup(
            "scottish", "Scottish airs and dance tunes from Aird's collection", ("airdsAirs/",), "strings", 120.0,
        ),
        StyleGroup(
            "american-fiddle", "fiddle tunes from Ryan's Mammoth Collection (1883)", ("ryansMammoth/",),
            "strings", 160.0,
        ),
    )
}


# ---- score -> note table ----------------------------------------------------------------

def _velocity(element, fallback: int) -> int:
    """A note's (or chord's) MIDI velocity when the score sets one, else `fallback`."""
    if element.hasVolumeInformation():
        velocity = element.volume.velocity
        if velocity is not None:
            return int(velocity)
    return fallback


def score_to_table(
    score, default_family: str, default_qpm: float, *, use_instruments: bool = True, copy: bool = True
) -> NoteTable:
    """A music21 Score (or a Part, or any stream of notes) -> NoteTable in beats.

    One row per sounding pitch (a chord gives a row per pitch); tied notes are merged
    (`stripTies`: on a copy, unless `copy=False` lets it change the score in place, which is
    faster for a score parsed only to be converted); rests, chord symbols and unpitched
    notes are skipped; grace notes keep zero duration; repeats are not expanded. Velocity is
    the note's `volume.velocity` where set, else 80. Each part's family comes from
    `family_for_part` (given no instrument name when `use_instruments` is False); the tempo
    map from the MetronomeMarks (`default_qpm` from beat 0 until the first). MidiError if
    there is no note."""
    from music21 import chord, harmony, note, stream, tempo

    if copy:
        score = score.stripTies(inPlace=False)
    else:
        score.stripTies(inPlace=True)
    parts = list(score.parts) if isinstance(score, stream.Score) else []
    if not parts:
        parts = [score]
    onsets: list[float] = []
    durations: list[float] = []
    pitches: list[int] = []
    velocities: list[int] = []
    families: list[int] = []
    marks: list[tuple[float, object]] = []  # (offset, MetronomeMark)
    for part in parts:
        instrument = part.getInstrument(returnDefault=False)
        family = family_for_part(
            part.partName if isinstance(part, stream.Part) else None,
            instrument.instrumentName if instrument is not None and use_instruments else None,
            default_family,
        )
        flat = part.flatten()
        for element in flat.notes:
            if isinstance(element, harmony.Harmony):  # chord symbols and Roman numerals: not sounding
                continue
            if isinstance(element, chord.Chord):
                chord_velocity = _velocity(element, DEFAULT_VELOCITY)
                sounding = [(n.pitch, _velocity(n, chord_velocity)) for n in element.notes]
            elif isinstance(element, note.Note):
                sounding = [(element.pitch, _velocity(element, DEFAULT_VELOCITY))]
            else:  # unpitched notes and percussion chords
                continue
            onset = float(flat.elementOffset(element))
            duration = 0.0 if element.duration.isGrace else float(element.duration.quarterLength)
            for pitch, velocity in sounding:
                onsets.append(onset)
                durations.append(duration)
                pitches.append(pitch.midi)
                velocities.append(velocity)
                families.append(family)
        for mark in flat.getElementsByClass(tempo.MetronomeMark):
            marks.append((float(flat.elementOffset(mark)), mark))
    if isinstance(score, stream.Score):  # marks placed on the score itself, outside the parts
        for mark in score.getElementsByClass(tempo.MetronomeMark):
            marks.append((float(score.elementOffset(mark)), mark))
    if not onsets:
        raise MidiError("no notes (only rests, chord symbols or unpitched notes)")
    tempo_time, tempo_qpm = _tempo_map(marks, default_qpm)
    table = NoteTable(
        onset=np.asarray(onsets, np.float64),
        duration=np.maximum(np.asarray(durations, np.float64), 0.0),
        pitch=np.clip(np.asarray(pitches, np.int64), 0, 127),
        velocity=np.clip(np.asarray(velocities, np.int64), 1, 127),
        family=np.asarray(families, np.int64),
        tempo_time=tempo_time,
        tempo_qpm=tempo_qpm,
    )
    return table.sorted()


def _tempo_map(marks: list[tuple[float, object]], default_qpm: float) -> tuple[np.ndarray, np.ndarray]:
    """(beats, BPM) from (offset, MetronomeMark) pairs: the last mark at an offset wins, marks
    without a usable tempo are ignored, repeats of the current tempo are dropped, and
    `default_qpm` holds from beat 0 until the first mark."""
    changes: dict[float, float] = {}
    for offset, mark in sorted(marks, key=lambda pair: pair[0]):
        try:
            qpm = mark.getQuarterBPM()
        except Exception:  # noqa: BLE001 - a mark music21 cannot convert carries no tempo
            qpm = None
        if qpm is not None and TEMPO_LIMITS[0] <= qpm <= TEMPO_LIMITS[1] and offset >= 0:
            changes[offset] = float(qpm)
    if 0.0 not in changes:
        changes[0.0] = float(default_qpm)
    times, qpms = [], []
    for offset in sorted(changes):
        if not qpms or changes[offset] != qpms[-1]:
            times.append(offset)
            qpms.append(changes[offset])
    return np.asarray(times, np.float64), np.asarray(qpms, np.float64)


# ---- the corpus ---------------------------------------------------------------------------

def _check_styles(styles: Iterable[str] | str | None) -> list[str]:
    if styles is None:
        return list(STYLE_GROUPS)
    chosen = [styles] if isinstance(styles, str) else list(styles)
    unknown = [style for style in chosen if style not in STYLE_GROUPS]
    if unknown:
        raise MuseNetError(
            f"unknown music21 corpus style {unknown[0]!r}; known: {', '.join(STYLE_GROUPS)}"
        )
    return chosen


@lru_cache(maxsize=1)
def _corpus_index() -> dict[str, tuple[int, ...]]:
    """Every file of music21's core corpus -> the numbers of the works it holds (empty for a
    file of one work), from music21's metadata cache: no score is parsed."""
    from music21.corpus import corpora

    bundle = corpora.CoreCorpus().metadataBundle
    # The bundle's own iteration indexes a fresh list per item (quadratic: 12 s); read its dict.
    entries = getattr(bundle, "_metadataEntries", None)
    entries = list(entries.values()) if isinstance(entries, dict) else list(bundle)
    numbers: dict[str, set[int]] = {}
    for entry in entries:
        path = Path(entry.sourcePath).as_posix()
        found = numbers.setdefault(path, set())
        if entry.number is not None:
            try:
                found.add(int(entry.number))
            except (TypeError, ValueError):
                pass
    if not numbers:
        raise MuseNetError("music21's corpus metadata is missing; run `python -c 'import music21; "
                           "music21.corpus.cacheMetadata()'` once")
    return {path: tuple(sorted(found)) for path, found in sorted(numbers.items())}


def _style_of_files(styles: list[str]) -> list[tuple[str, str]]:
    out = []
    for path in _corpus_index():
        for style in styles:
            if STYLE_GROUPS[style].includes(path):
                out.append((path, style))
                break
    return sorted(out)


def corpus_files(styles: Iterable[str] | str | None = None) -> list[tuple[str, str]]:
    """(corpus-relative path, style) for every corpus file of the chosen styles (None: all),
    sorted by path. One file can hold many works (see `read_corpus_file`)."""
    return _style_of_files(_check_styles(styles))


def _numbers_of(path: str) -> tuple[int, ...]:
    """The work numbers a file is read as: () for a file read as one work."""
    if path.startswith(PARTS_AS_TUNES):
        return ()
    return _corpus_index().get(path, ())


def corpus_works(styles: Iterable[str] | str | None = None) -> list[tuple[str, int | None, str]]:
    """(path, work number or None, style) for every work of the chosen styles, sorted; a work
    is read alone with `read_work`."""
    out = []
    for path, style in corpus_files(styles):
        numbers = _numbers_of(path)
        out.extend((path, number, style) for number in numbers or (None,))
    return out


def count_works(styles: Iterable[str] | str | None = None) -> dict[str, int]:
    """Works per style, from music21's metadata cache (fast: nothing is parsed)."""
    chosen = _check_styles(styles)
    counts = dict.fromkeys(chosen, 0)
    for path, style in _style_of_files(chosen):
        counts[style] += max(len(_numbers_of(path)), 1)
    return counts


def corpus_path(source_path: str) -> Path:
    """The absolute path of a corpus-relative file; MuseNetError if there is no such file."""
    from music21 import common

    root = Path(common.getCorpusFilePath()).resolve()
    relative = Path(source_path)
    path = (root / relative).resolve()
    if relative.is_absolute() or root not in path.parents or not path.is_file():
        raise MuseNetError(f"{source_path}: no such file in music21's corpus")
    return path


def _parse(source_path: str, number: int | None = None):
    """Parse one corpus file (or one numbered work of it). music21's pickle cache is read
    when present but never written: a build converts each work once (writing the pickle
    would cost a freeze and a thaw per file) and parallel readers must not race on it."""
    from music21 import converter

    return converter.parse(corpus_path(source_path), number=number, storePickle=False)


def _reason(err: Exception) -> str:
    if isinstance(err, MuseNetError):
        return str(err)
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _works_of(parsed, source_path: str) -> list[tuple[str, object]]:
    """(work id, Score) for each work in a parsed file."""
    from music21 import stream

    if not isinstance(parsed, stream.Opus):
        return [(source_path, parsed)]
    if source_path.startswith(PARTS_AS_TUNES):
        return [(source_path, parsed.mergeScores())]
    works, taken = [], set()
    for index, score in enumerate(parsed.scores, start=1):
        number = getattr(score.metadata, "number", None) if score.metadata is not None else None
        label = str(number).strip() if number is not None and str(number).strip() else str(index)
        if label.isdigit():
            label = label.lstrip("0") or "0"  # "X: 0001" is work 1, as music21's metadata has it
        if label in taken:
            label = f"{index}"
        while label in taken:
            label += "'"
        taken.add(label)
        works.append((f"{source_path}#{label}", score))
    return works


def _convert(score, group: StyleGroup) -> NoteTable:
    return score_to_table(
        score, group.default_family, group.default_qpm, use_instruments=group.trust_instruments, copy=False
    )


def _group(style: str) -> StyleGroup:
    _check_styles([style])
    return STYLE_GROUPS[style]


def read_corpus_file(source_path: str, style: str) -> list[tuple[str, NoteTable | str]]:
    """Parse one corpus file once and convert each of its works: (work id, NoteTable), or
    (work id, reason) for a work that cannot be converted. A file that cannot be parsed gives
    [(source_path, reason)]. Work ids are stable: "bach/bwv66.6.mxl", "essenFolksong/han1.abc#12"."""
    group = _group(style)
    try:
        works = _works_of(_parse(source_path), source_path)
    except Exception as err:  # noqa: BLE001 - a bad file is reported, never raised
        return [(source_path, _reason(err))]
    if not works:
        return [(source_path, "no works in the file")]
    out: list[tuple[str, NoteTable | str]] = []
    for work_id, score in works:
        try:
            out.append((work_id, _convert(score, group)))
        except Exception as err:  # noqa: BLE001 - one bad work must not stop the others
            out.append((work_id, _reason(err)))
    return out


def read_work(source_path: str, number: int | None, style: str) -> tuple[str, NoteTable]:
    """One work: the whole file (number None) or its numbered tune -> (work id, NoteTable).
    Raises MuseNetError (MidiError) with a one-line reason if it cannot be converted."""
    from music21 import stream

    group = _group(style)
    work_id = source_path if number is None else f"{source_path}#{number}"
    try:
        parsed = _parse(source_path, number)
        if isinstance(parsed, stream.Opus):
            works = _works_of(parsed, source_path)
            if len(works) != 1:
                raise MuseNetError(f"holds {len(works)} works; give a work number")
            parsed = works[0][1]
        return work_id, _convert(parsed, group)
    except Exception as err:  # noqa: BLE001 - every failure becomes one line naming the work
        raise MidiError(f"{work_id}: {_reason(err)}") from None

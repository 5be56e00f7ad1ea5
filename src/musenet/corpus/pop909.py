"""POP909 (Wang et al., ISMIR 2020; MIT licence) as a source: 909 Chinese pop songs arranged
for piano, style `pop`.

Layout: `POP909/NNN/NNN.mid` (tracks MELODY, BRIDGE, PIANO, all on program 0), other
versions of the same arrangement in `POP909/NNN/versions/NNN-vK.mid`, and per song
`beat_midi.txt` and `chord_midi.txt` (times in seconds of the MIDI file). A song and its
versions are one piece of music, so the split identity is the song number (`song_id`), not
the file. The track roles are returned beside the note table (`read_song`), since a note
table has families, not tracks: a later augmentation can voice the melody for voice or
synth and read the piano's left hand as a bass line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import symusic

from ..errors import MidiError, MuseNetError
from ..notes import NoteTable, load_score, read_midi, source_name

STYLE = "pop"
ROLES = ("melody", "bridge", "piano")
MELODY, BRIDGE, PIANO = range(3)

_SONG_DIR = re.compile(r"^\d{3}$")
#: Track names seen in the collection (with typos: MELOPY, MELDOY, PIANIO) -> role.
_ROLE_PREFIXES = (("MEL", MELODY), ("BRIDGE", BRIDGE), ("CAU", BRIDGE), ("PIAN", PIANO))


def songs_folder(root: str | Path) -> Path:
    """The folder holding the numbered song folders: `root/POP909`, or root itself."""
    root = Path(root)
    for folder in (root / "POP909", root):
        if folder.is_dir() and any(_SONG_DIR.match(p.name) for p in folder.iterdir()):
            return folder
    raise MuseNetError(f"{root}: not a POP909 folder (no POP909/NNN/ song folders)")


def song_files(root: str | Path, versions: bool = False) -> list[tuple[Path, str]]:
    """(MIDI file, song id) for every song, in song order, each main file before its versions.

    Versions are left out by default: they are near-duplicates of the main arrangement (the
    same song re-edited; 225 of the 1,989 are note for note another file of their song), so
    they triple the hours (63 -> 185) without adding a song, and their track names are
    less regular (CAU for BRIDGE, extra or unnamed tracks)."""
    out = []
    for song in sorted(p for p in songs_folder(root).iterdir() if _SONG_DIR.match(p.name) and p.is_dir()):
        main = song / f"{song.name}.mid"
        if main.is_file():
            out.append((main, song.name))
        if versions:
            out.extend((path, song.name) for path in sorted((song / "versions").glob("*.mid")))
    return out


def track_roles(names: list[str]) -> np.ndarray:
    """Role (index into ROLES) of each track by its name: MELODY, BRIDGE (called CAU in many
    versions) or PIANO; a track named otherwise takes the role of its position (first
    melody, second bridge, the rest piano), as in the main files' layout."""
    roles = []
    for position, name in enumerate(names):
        key = name.strip().upper()
        role = next((r for prefix, r in _ROLE_PREFIXES if key.startswith(prefix)), None)
        roles.append(min(position, PIANO) if role is None else role)
    return np.array(roles, np.int64)


def read_song(source) -> tuple[NoteTable, np.ndarray]:
    """A POP909 MIDI file -> (note table, role of each note). The table is the one
    `read_midi` gives for the file (read track by track); the roles follow its rows."""
    name = source_name(source)
    score = load_score(source)
    roles = track_roles([track.name for track in score.tracks])
    tables, note_roles = [], []
    for track, role in zip(score.tracks, roles, strict=True):
        if len(track.notes) == 0:
            continue
        alone = symusic.Score(score.ticks_per_quarter)
        alone.tempos = score.tempos
        alone.tracks.append(track)
        try:
            table = read_midi(alone)
        except MidiError as err:
            raise MidiError(str(err).replace(source_name(alone), name, 1)) from None
        tables.append(table)
        note_roles.append(np.full(len(table), role, np.int64))
    if not tables:
        raise MidiError(f"{name}: no notes")
    whole = NoteTable.joined(tables)
    order = np.lexsort((whole.pitch, whole.family, whole.onset))  # NoteTable.sorted()'s order
    return whole.select(order), np.concatenate(note_roles)[order]


# ---- annotations ---------------------------------------------------------------------------

class Chords(NamedTuple):
    """Chord segments of a song: times in seconds of its MIDI file; root and bass are pitch
    classes (C = 0), -1 for no chord (`N`); quality as written (`maj`, `min7`, `sus4(b7)`)."""

    start: np.ndarray    # float64 seconds
    end: np.ndarray      # float64 seconds
    root: np.ndarray     # int64 pitch class, -1 for N
    quality: np.ndarray  # str, "N" for no chord
    bass: np.ndarray     # int64 pitch class of the lowest note (the root unless inverted), -1 for N


class Beats(NamedTuple):
    """Beats of a song (one row a quarter note of the MIDI file), times in seconds. `downbeat`
    starts a bar of 4 beats (6 in songs in triple time); `short_downbeat` a bar of 2 (or 3):
    `index.xlsx`'s num_beats_per_measure matches the short bar in every song."""

    seconds: np.ndarray         # float64
    downbeat: np.ndarray        # bool, beat_midi.txt's third column
    short_downbeat: np.ndarray  # bool, its second column


_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_DEGREE = {"1": 0, "b2": 1, "2": 2, "#2": 3, "b3": 3, "3": 4, "4": 5, "#4": 6, "b5": 6, "5": 7,
           "#5": 8, "b6": 8, "6": 9, "bb7": 9, "b7": 10, "7": 11}


def pitch_class(name: str) -> int:
    """A note name (C, C#, Eb, Bb) -> pitch class 0-11."""
    if not name or name[0] not in _PITCH_CLASS or any(c not in "#b" for c in name[1:]):
        raise MuseNetError(f"not a note name: {name!r}")
    return (_PITCH_CLASS[name[0]] + name.count("#") - name.count("b")) % 12


def parse_chord(label: str) -> tuple[int, str, int]:
    """`Bb:min7/b7` -> (root 10, quality `min7`, bass 8); `N` -> (-1, `N`, -1)."""
    if label == "N":
        return -1, "N", -1
    root_name, _, rest = label.partition(":")
    quality, _, inversion = rest.partition("/")
    root = pitch_class(root_name)
    if not quality or (inversion and inversion not in _DEGREE):
        raise MuseNetError(f"not a chord label: {label!r}")
    return root, quality, (root + _DEGREE[inversion]) % 12 if inversion else root


def _read_table(path: Path) -> list[list[str]]:
    try:
        return [line.split() for line in path.read_text().splitlines() if line.strip()]
    except OSError as err:
        raise MuseNetError(f"{path}: cannot read ({err.strerror or err})") from None


def read_chords(song_dir: str | Path) -> Chords:
    """A song's `chord_midi.txt` (start, end, label per line) as arrays."""
    path = Path(song_dir) / "chord_midi.txt"
    rows = _read_table(path)
    try:
        parsed = [parse_chord(row[2]) for row in rows]
        times = np.array([[float(row[0]), float(row[1])] for row in rows], np.float64).reshape(-1, 2)
    except (IndexError, ValueError, MuseNetError) as err:
        raise MuseNetError(f"{path}: {err}") from None
    root, quality, bass = zip(*parsed, strict=True) if parsed else ((), (), ())
    return Chords(times[:, 0], times[:, 1], np.array(root, np.int64), np.array(quality, str),
                  np.array(bass, np.int64))


def read_beats(song_dir: str | Path) -> Beats:
    """A song's `beat_midi.txt` (seconds, short-bar flag, bar flag per line) as arrays."""
    path = Path(song_dir) / "beat_midi.txt"
    try:
        table = np.array(_read_table(path), np.float64).reshape(-1, 3)
    except ValueError as err:
        raise MuseNetError(f"{path}: not three numbers a line ({err})") from None
    return Beats(table[:, 0], table[:, 2] == 1, table[:, 1] == 1)

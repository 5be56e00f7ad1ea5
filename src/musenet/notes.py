"""MIDI <-> note table, through symusic (C++), with one-line errors for bad files.

A note table is a handful of numpy arrays, one row per note, with time in beats (quarter
notes) and the file's tempo map kept beside them, so both beat-relative and absolute
(seconds) views of the same notes are one vectorised step away. Durations are sounding
durations: a note released while its track's sustain pedal is down lasts until the pedal
lifts, so pedalled piano needs no pedal tokens and sounds the same when written back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import symusic

from .errors import MidiError
from .files import write_atomic
from .instruments import DRUMS, FAMILIES, PROGRAM_FAMILY, REPRESENTATIVE_PROGRAM

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_SECONDS = 4 * 3600.0
TEMPO_LIMITS = (4.0, 1000.0)  # BPM; outside this a tempo is taken as corrupt
DEFAULT_QPM = 120.0
WRITE_TPQ = 480  # ticks per quarter when writing: divisible by 12, so the beat grid is exact


@dataclass
class NoteTable:
    """Notes as parallel arrays (time in beats) plus the tempo map (beats, BPM)."""

    onset: np.ndarray      # float64, beats from the start
    duration: np.ndarray   # float64, beats
    pitch: np.ndarray      # int64, MIDI pitch 0-127
    velocity: np.ndarray   # int64, 1-127
    family: np.ndarray     # int64, index into instruments.FAMILIES
    tempo_time: np.ndarray = field(default_factory=lambda: np.zeros(1))  # float64 beats, starts at 0
    tempo_qpm: np.ndarray = field(default_factory=lambda: np.full(1, DEFAULT_QPM))

    @property
    def drum(self) -> np.ndarray:
        """True for drum-kit notes (channel 10)."""
        return self.family == DRUMS

    def __len__(self) -> int:
        return len(self.onset)

    def seconds(self, beats: np.ndarray) -> np.ndarray:
        """Beats -> seconds through the tempo map (piecewise linear, vectorised)."""
        beats = np.asarray(beats, np.float64)
        seconds_per_beat = 60.0 / self.tempo_qpm
        start_seconds = np.concatenate([[0.0], np.cumsum(np.diff(self.tempo_time) * seconds_per_beat[:-1])])
        i = np.searchsorted(self.tempo_time, beats, side="right") - 1
        i = np.clip(i, 0, None)
        return start_seconds[i] + (beats - self.tempo_time[i]) * seconds_per_beat[i]

    @staticmethod
    def joined(tables: list[NoteTable]) -> NoteTable:
        """The notes of all the tables, in that order, on the first one's tempo map."""
        return NoteTable(*(np.concatenate([getattr(t, key) for t in tables])
                           for key in ("onset", "duration", "pitch", "velocity", "family")),
                         tempo_time=tables[0].tempo_time, tempo_qpm=tables[0].tempo_qpm)

    def end_seconds(self) -> float:
        """Seconds from the start to the end of the last note (0 with no notes)."""
        if len(self) == 0:
            return 0.0
        return float(self.seconds((self.onset + self.duration).max()))

    def beats(self, seconds) -> np.ndarray:
        """Seconds -> beats through the tempo map (the inverse of `seconds`)."""
        seconds = np.asarray(seconds, np.float64)
        seconds_per_beat = 60.0 / self.tempo_qpm
        start_seconds = np.concatenate([[0.0], np.cumsum(np.diff(self.tempo_time) * seconds_per_beat[:-1])])
        i = np.clip(np.searchsorted(start_seconds, seconds, side="right") - 1, 0, None)
        return self.tempo_time[i] + (seconds - start_seconds[i]) / seconds_per_beat[i]

    def sorted(self) -> NoteTable:
        """The same notes ordered by onset, then family, then pitch."""
        order = np.lexsort((self.pitch, self.family, self.onset))
        return self.select(order)

    def select(self, rows: np.ndarray) -> NoteTable:
        """A table of the given rows (index or mask), same tempo map."""
        return NoteTable(
            self.onset[rows], self.duration[rows], self.pitch[rows], self.velocity[rows],
            self.family[rows], self.tempo_time, self.tempo_qpm,
        )


def source_name(source) -> str:
    """How messages name a MIDI source: its path, or <bytes> or <score>."""
    if isinstance(source, (str, Path)):
        return str(source)
    return "<score>" if isinstance(source, symusic.Score) else "<bytes>"


def _check_header(data: bytes, name: str) -> None:
    """Reject what symusic would misread: not MIDI, format 2, SMPTE division."""
    if len(data) == 0:
        raise MidiError(f"{name}: empty file")
    if len(data) > MAX_FILE_BYTES:
        raise MidiError(f"{name}: file is {len(data)} bytes, over the {MAX_FILE_BYTES}-byte limit")
    if data[:4] != b"MThd" or len(data) < 14:
        raise MidiError(f"{name}: not a MIDI file (no MThd header)")
    midi_format = int.from_bytes(data[8:10], "big")
    division = int.from_bytes(data[12:14], "big")
    if midi_format == 2:
        raise MidiError(f"{name}: MIDI format 2 (independent sequences) is not supported")
    if midi_format > 2:
        raise MidiError(f"{name}: unknown MIDI format {midi_format}")
    if division & 0x8000:
        raise MidiError(f"{name}: SMPTE time division is not supported, only ticks per quarter note")
    if division == 0:
        raise MidiError(f"{name}: zero ticks per quarter note")


def load_score(source) -> symusic.Score:
    """A path, bytes or symusic Score -> a symusic Score in ticks; MidiError if unreadable."""
    name = source_name(source)
    if isinstance(source, symusic.Score):
        return source if str(source.ttype) == "Tick" else source.to("tick")
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise MidiError(f"{name}: file is {size} bytes, over the {MAX_FILE_BYTES}-byte limit")
            data = path.read_bytes()
        except OSError as err:
            raise MidiError(f"{name}: cannot read ({err.strerror or err})") from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        raise MidiError(f"cannot read MIDI from a {type(source).__name__}; give a path, bytes or a symusic.Score")
    _check_header(data, name)
    try:
        return symusic.Score.from_midi(data)
    except Exception as err:  # symusic raises RuntimeError/ValueError with a reason
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MidiError(f"{name}: corrupted MIDI{damaged_track(data)}: {explain_midi_error(reason)}") from None


#: symusic's reasons (first line) -> what they mean, in a musician's words.
_MIDI_REASONS = (
    (r"Invalid chunk length (\d+) \(remaining bytes after header: (\d+)\)",
     "a track says it is {0} bytes long but only {1} bytes follow (the file is cut short or damaged)"),
    (r"Get velocity=(\d+)", "a note has velocity {0}, but MIDI velocities stop at 127 (a damaged byte)"),
    (r"Get pitch=(\d+)", "a note has pitch {0}, but MIDI pitches stop at 127 (a damaged byte)"),
    (r"Get control_value=(\d+)", "a controller is set to {0}, but MIDI values stop at 127 (a damaged byte)"),
    (r"Get control_number=(\d+)", "controller number {0} does not exist: MIDI's stop at 127 (a damaged byte)"),
    (r"Get program=(\d+)", "instrument number {0} does not exist: MIDI's stop at 127 (a damaged byte)"),
    (r"Get pitch_bend=(-?\d+)", "a pitch bend of {0} is outside MIDI's range (a damaged byte)"),
    (r"Unexpected running status", "an event has no status byte and none can be carried over (a damaged byte)"),
    (r"Unexpected EOF in Meta Event", "the file ends inside a meta event (text, tempo or key): it is cut short"),
    (r"Unexpected EOF in (?:MIDI Event|running status)", "the file ends inside a note or controller event: "
     "it is cut short"),
    (r"Unexpected EOF while reading chunk header", "the file ends inside a track header: it is cut short"),
    (r"Unknown or unsupported status byte: (0x[0-9a-fA-F]+)", "an event starts with status byte {0}, which MIDI "
     "files do not use (a damaged byte)"),
    (r"Inva[il]{2}d midi file", "its structure is not that of a MIDI file (damaged)"),
)


def explain_midi_error(reason: str) -> str:
    """symusic's reason for refusing a file, as a sentence (its own words when unknown)."""
    for pattern, sentence in _MIDI_REASONS:
        match = re.search(pattern, reason, re.IGNORECASE)
        if match:
            return sentence.format(*match.groups())
    return f"the MIDI reader stopped: {reason}"


def damaged_track(data: bytes) -> str:
    """Where a MIDI file that symusic refused goes wrong: ' in track N (bytes A-B)' for the
    first track chunk that is cut short or that symusic refuses on its own; '' if none is."""
    header_end = 8 + int.from_bytes(data[4:8], "big")
    position, track = header_end, 1
    while position + 8 <= len(data):
        length = int.from_bytes(data[position + 4: position + 8], "big")
        end = position + 8 + length
        where = f" in track {track} (bytes {position:,}-{min(end, len(data)):,})"
        if data[position: position + 4] != b"MTrk" or end > len(data):
            return where
        alone = data[:10] + (1).to_bytes(2, "big") + data[12:header_end] + data[position:end]
        try:
            symusic.Score.from_midi(alone)
        except Exception:  # noqa: BLE001 - this track alone is refused: it is the damaged one
            return where
        position, track = end, track + 1
    if position >= len(data):
        return ""
    return f" after track {track - 1} (byte {position:,})" if track > 1 else f" after the header (byte {position:,})"


def read_midi(source) -> NoteTable:
    """A MIDI file (path, bytes or symusic Score) -> NoteTable. MidiError with the reason
    if it is not MIDI, is damaged, has no notes, absurd tempos or is too long."""
    name = source_name(source)
    score = load_score(source)
    tpq = score.ticks_per_quarter
    if tpq <= 0:
        raise MidiError(f"{name}: zero ticks per quarter note")
    columns = {key: [] for key in ("time", "duration", "pitch", "velocity", "family")}
    for track in score.tracks:
        notes = track.notes.numpy()
        if len(notes["time"]) == 0:
            continue
        family = DRUMS if track.is_drum else int(PROGRAM_FAMILY[track.program % 128])
        if family != DRUMS and len(track.pedals):
            notes["duration"] = _sustained(notes["time"], notes["duration"], track.pedals.numpy(), tpq)
        for key in ("time", "duration", "pitch", "velocity"):
            columns[key].append(notes[key])
        columns["family"].append(np.full(len(notes["time"]), family, np.int64))
    if not columns["time"]:
        raise MidiError(f"{name}: no notes")
    ticks = np.concatenate(columns["time"]).astype(np.int64)
    duration = np.maximum(np.concatenate(columns["duration"]).astype(np.int64), 0)
    table = NoteTable(
        onset=ticks / tpq,
        duration=duration / tpq,
        pitch=np.concatenate(columns["pitch"]).astype(np.int64),
        velocity=np.clip(np.concatenate(columns["velocity"]).astype(np.int64), 1, 127),
        family=np.concatenate(columns["family"]),
    )
    table.tempo_time, table.tempo_qpm = _tempo_map(score, name)
    if ticks.min() < 0:
        raise MidiError(f"{name}: notes before time zero")
    length = float(table.seconds(np.array([(ticks + duration).max() / tpq]))[0])
    if length > MAX_SECONDS:
        raise MidiError(f"{name}: {length / 3600:.1f} hours long, over the {MAX_SECONDS / 3600:.0f}-hour limit")
    return table.sorted()


#: The longest sustain-pedal press read as one (4 bars of 4/4). Longer ones are mostly
#: controller values left above 64 rather than pedalling: a third of POP909's songs hold
#: CC64 above 64 for up to minutes, which would hold every piano note to the press's end
#: (2.5% of its piano notes over 8 s, some of 230 s, 22 sounding at once in song 028;
#: 0.15% over 8 s with this limit); the real pianists of ../shared/midi press longer 28
#: times in 7,964.
MAX_PEDAL_BEATS = 16


def _sustained(onset: np.ndarray, duration: np.ndarray, pedals: dict, tpq: int) -> np.ndarray:
    """Durations with the sustain pedal applied: a release inside a pedal moves to its end.
    A press longer than MAX_PEDAL_BEATS is not one a player makes (pedalling follows the
    harmony) and is left out."""
    time, length = np.asarray(pedals["time"], np.int64), np.asarray(pedals["duration"], np.int64)
    played = length <= MAX_PEDAL_BEATS * tpq
    if not played.any():
        return duration
    order = np.argsort(time[played], kind="stable")
    start = time[played][order]
    stop = start + length[played][order]
    stop = np.maximum.accumulate(stop)  # overlapping pedals act as one
    release = onset.astype(np.int64) + duration.astype(np.int64)
    i = np.searchsorted(start, release, side="right") - 1
    held = (i >= 0) & (release < stop[np.maximum(i, 0)])
    return np.where(held, stop[np.maximum(i, 0)], release) - onset


def _tempo_map(score: symusic.Score, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Tempo changes as (beats, BPM), starting at beat 0, last event per tick kept."""
    tempos = score.tempos.numpy()
    ticks = np.asarray(tempos["time"], np.int64)
    mspq = np.asarray(tempos["mspq"], np.float64)
    if len(ticks) == 0:
        return np.zeros(1), np.full(1, DEFAULT_QPM)
    if (mspq <= 0).any():
        raise MidiError(f"{name}: absurd tempo (zero microseconds per beat)")
    qpm = 60e6 / mspq
    bad = (qpm < TEMPO_LIMITS[0]) | (qpm > TEMPO_LIMITS[1])
    if bad.any():
        raise MidiError(
            f"{name}: absurd tempo {qpm[bad][0]:.3g} BPM (allowed {TEMPO_LIMITS[0]:g}-{TEMPO_LIMITS[1]:g})"
        )
    order = np.argsort(ticks, kind="stable")
    ticks, qpm = ticks[order], qpm[order]
    last_of_tick = np.append(ticks[1:] != ticks[:-1], True)
    ticks, qpm = ticks[last_of_tick], qpm[last_of_tick]
    if ticks[0] > 0:
        ticks, qpm = np.concatenate([[0], ticks]), np.concatenate([[DEFAULT_QPM], qpm])
    return ticks / score.ticks_per_quarter, qpm


def to_score(table: NoteTable, tpq: int = WRITE_TPQ) -> symusic.Score:
    """NoteTable -> symusic Score: tempo events, one track per family with its
    representative program, drums as a channel-10 track."""
    score = symusic.Score(tpq)
    tempo_ticks = np.round(table.tempo_time * tpq).astype(np.int32)
    mspq = np.round(60e6 / table.tempo_qpm).astype(np.int32)
    score.tempos = symusic.Tempo.from_numpy(tempo_ticks, mspq)
    onset = np.round(table.onset * tpq).astype(np.int64)
    release = np.round((table.onset + table.duration) * tpq).astype(np.int64)
    for family in np.unique(table.family):
        rows = np.flatnonzero(table.family == family)
        rows = rows[np.lexsort((table.pitch[rows], onset[rows]))]
        name = FAMILIES[family]
        track = symusic.Track(name=name, program=REPRESENTATIVE_PROGRAM[name], is_drum=bool(family == DRUMS))
        track.notes = symusic.Note.from_numpy(
            onset[rows].astype(np.int32),
            np.maximum(release[rows] - onset[rows], 1).astype(np.int32),
            table.pitch[rows].astype(np.int8),
            table.velocity[rows].astype(np.int8),
        )
        score.tracks.append(track)
    return score


def midi_bytes(score_or_table) -> bytes:
    """A Score or NoteTable as Standard MIDI File bytes."""
    score = to_score(score_or_table) if isinstance(score_or_table, NoteTable) else score_or_table
    return bytes(score.dumps_midi())


def write_midi(score_or_table, path: str | Path) -> None:
    """Write a Score or NoteTable as a MIDI file, whole or not at all."""
    try:
        write_atomic(path, midi_bytes(score_or_table))
    except OSError as err:
        raise MidiError(f"{path}: cannot write ({err.strerror or err})") from None

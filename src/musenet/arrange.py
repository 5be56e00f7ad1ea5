"""Band arrangements derived from POP909's piano arrangements and the Groove MIDI Dataset.

No training collection has band parts, so a data build can derive them (`pop909,band:DIR`):
each function below is one derivation over a song's note table and the POP909 track role
of each row (`corpus.pop909.read_song`). They keep the rows and their order (a note moves
to another family, an octave, or is shortened; none is added or lost), except
`groove_under`, which appends drums; `band_versions` chains them into whole arrangements.
Everything here is derived, and the build labels it so (index column `derived`).

Measured on all 909 songs (1,818 versions) against the four band songs of
../shared/midi/multitrack (`benchmarks/arrangements.py` prints the full tables):

- bass: 97.1% of its onsets on a tone of the annotated chord (POP909's lowest piano note:
  96.2%, the lowest below C4: 97.4%: all high, the annotations fit the piano closely);
  median pitch 38 (D2), 5-95% 29-47, against medians 36, 37 and 41 (5-95% 30-48) for
  three real basses (a fourth sits at 28); 3.3 onsets a bar (real 3.2-7.6; POP909's
  lowest piano note 8.6, it being the left hand's whole figure);
- notes sounding at once, derived / real: bass 1.00 / 1.03, guitar 2.2 / 1.9, strings
  1.9 / 2.6, synth 1.7 / 2.2, the leads 1.0-1.1 / 1.2-2.5 (one line each here, doubled
  parts there); onsets a bar 5.2-5.8 for guitar, strings and leads (real 2.7-6.6); drums
  19 a bar from real drummers against 9 in the programmed multitrack drums;
- grooves: in 4, the take's tempo is a median 4.8% from the song's (over 20% in 0.5% of
  versions, all ballads under 55 BPM); 96.7% of downbeats have a drum note within a 32nd,
  at a median 11 ms (the drummer's own timing), 80.7% a kick. In 3 there are only 4 train
  takes: 23% off (57% over 20%); a song with none within a factor 2 (1, at 37 BPM) gets
  no drums. Harp is never chosen, and organs are `piano` among the ten families.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .corpus.groove import Take, read_groove
from .corpus.pop909 import BRIDGE, MELODY, PIANO, Beats, Chords
from .instruments import DRUMS, FAMILY_ID, PITCH_RANGE
from .notes import NoteTable

ARRANGE_VERSION = 1  # bump when a derivation changes, so cached band versions are rebuilt
PARTS = ("bass", "chords", "lead", "drums")

BASS_CEILING = 60        # the bass line is read from piano notes below C4
BASS_REGISTER = (28, 55)  # E1-G3, a 4-string bass: the line moves by octaves into it
BASS_TARGET = 38         # the line's median is moved (by whole octaves) nearest D2
HOLD_BEATS = (0.5, 1.0)  # a bass note masks higher left-hand notes for this long (min, max)
CHORD_FLOOR = 48         # chords_for takes piano notes from C3 up to the melody
CHORD_CEILING = 76       # ... and at most E5
RING_ONSETS = 2          # a chord note rings at most until its part's second next onset
#: Where a lead part is moved (whole part, by octaves) to sit comfortably in its family.
LEAD_REGISTER = {"voice": (55, 81), "synth": (55, 91), "winds": (60, 96), "brass": (52, 82),
                 "strings": (55, 91), "guitar": (52, 84), "piano": (55, 91)}
EARLY = 0.125  # a drum note up to a 32nd before a bar line belongs to that bar

#: Orchestration choices and their weights: lead (MELODY), second (BRIDGE), chords.
LEAD_FAMILIES = {"voice": 3, "synth": 3, "winds": 2, "brass": 2}
SECOND_FAMILIES = {"strings": 3, "synth": 2, "winds": 2, "brass": 2, "guitar": 2, "voice": 1}
CHORD_FAMILIES = {"guitar": 5, "strings": 2, "synth": 2, "piano": 1}

#: Pitch classes of each chord quality in chord_midi.txt, from the root.
QUALITY_INTERVALS = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "aug": (0, 4, 8), "sus2": (0, 2, 7),
    "sus4": (0, 5, 7), "maj7": (0, 4, 7, 11), "min7": (0, 3, 7, 10), "7": (0, 4, 7, 10),
    "dim7": (0, 3, 6, 9), "hdim7": (0, 3, 6, 10), "minmaj7": (0, 3, 7, 11), "maj6": (0, 4, 7, 9),
    "min6": (0, 3, 7, 9), "sus4(b7)": (0, 5, 7, 10),
}
_PIANO = FAMILY_ID["piano"]


# ---- time and harmony ---------------------------------------------------------------------

def beat_seconds(beats: Beats, position: np.ndarray) -> np.ndarray:
    """A fractional index into a song's annotated beats -> seconds (linear beyond the ends)."""
    i = np.clip(np.floor(position).astype(np.int64), 0, len(beats.seconds) - 2)
    return beats.seconds[i] + (position - i) * (beats.seconds[i + 1] - beats.seconds[i])


def beat_position(beats: Beats, seconds: np.ndarray) -> np.ndarray:
    """Seconds -> fractional index into the annotated beats (the inverse of `beat_seconds`)."""
    s = beats.seconds
    i = np.clip(np.searchsorted(s, seconds, side="right") - 1, 0, len(s) - 2)
    return i + (np.asarray(seconds, np.float64) - s[i]) / (s[i + 1] - s[i])


def chord_tones(chords: Chords) -> np.ndarray:
    """(segments, 12) bool: the pitch classes of each chord (its quality's, and its bass);
    none for `N` (no chord). An unknown quality counts its root and fifth."""
    tones = np.zeros((len(chords.root), 12), bool)
    for i, (root, quality, bass) in enumerate(zip(chords.root, chords.quality, chords.bass, strict=True)):
        if root < 0:
            continue
        tones[i, [(root + step) % 12 for step in QUALITY_INTERVALS.get(str(quality), (0, 7))]] = True
        tones[i, bass] = True
    return tones


def chord_at(chords: Chords, seconds: np.ndarray) -> np.ndarray:
    """Index of the chord segment sounding at each time, -1 outside every segment or on `N`."""
    if len(chords.start) == 0:
        return np.full(np.shape(seconds), -1)
    i = np.searchsorted(chords.start, seconds, side="right") - 1
    i = np.where((i >= 0) & (seconds < chords.end[np.clip(i, 0, None)]), i, -1)
    return np.where((i >= 0) & (chords.root[np.clip(i, 0, None)] >= 0), i, -1)


def tones_at(chords: Chords, seconds: np.ndarray) -> np.ndarray:
    """(times, 12) bool: the tones of the chord sounding at each time (`chord_tones`); none
    outside every segment or on `N`."""
    at = chord_at(chords, np.asarray(seconds, np.float64))
    if len(chords.root) == 0:
        return np.zeros((len(at), 12), bool)
    return chord_tones(chords)[np.clip(at, 0, None)] & (at >= 0)[:, None]


def in_chord(table: NoteTable, rows: np.ndarray, chords: Chords) -> np.ndarray:
    """For each row: 1 if its pitch class is in the chord sounding at its onset, 0 if not,
    -1 where no chord is annotated (a measure, not a derivation)."""
    if len(chords.root) == 0:
        return np.full(len(rows), -1)
    at = chord_at(chords, table.seconds(table.onset[rows]))
    hit = chord_tones(chords)[np.clip(at, 0, None), table.pitch[rows] % 12]
    return np.where(at < 0, -1, hit.astype(np.int64))


def _first_of_onsets(onset: np.ndarray) -> np.ndarray:
    """For rows sorted by onset: True where a new onset (to a 48th of a beat) starts."""
    key = np.round(onset * 48).astype(np.int64)
    return np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, bool)


def lowest_voice(table: NoteTable, roles: np.ndarray) -> np.ndarray:
    """Rows of the lowest PIANO note at each PIANO onset: POP909's own lowest voice (the
    baseline the derived bass is measured against)."""
    rows = np.flatnonzero(roles == PIANO)
    rows = rows[np.lexsort((table.pitch[rows], table.onset[rows]))]
    return rows[_first_of_onsets(table.onset[rows])]


def _octaves_into(pitch: np.ndarray, low: int, high: int) -> np.ndarray:
    """Each pitch moved by whole octaves into [low, high] (high - low >= 11)."""
    pitch = np.where(pitch > high, pitch - 12 * -(-(pitch - high) // 12), pitch)
    return np.where(pitch < low, pitch + 12 * -(-(low - pitch) // 12), pitch)


def _rung(table: NoteTable, rows: np.ndarray, onsets: int) -> np.ndarray:
    """Durations of `rows` cut where the `onsets`-th next onset among those rows starts."""
    key = np.round(table.onset[rows] * 48).astype(np.int64)
    starts = np.unique(key)
    later = np.searchsorted(starts, key) + onsets
    until = np.where(later < len(starts), starts[np.clip(later, 0, len(starts) - 1)] / 48, np.inf)
    return np.minimum(table.duration[rows], np.maximum(until - table.onset[rows], 1 / 48))


def _with(table: NoteTable, rows: np.ndarray, family: int, pitch: np.ndarray | None = None,
          duration: np.ndarray | None = None) -> NoteTable:
    """A copy of the table with `rows` given to `family` (and new pitches, durations)."""
    out = table.select(np.arange(len(table)))
    out.family[rows] = family
    if pitch is not None:
        out.pitch[rows] = pitch
    if duration is not None:
        out.duration[rows] = duration
    return out


# ---- bass, chords, lead ----------------------------------------------------------------------

def bass_rows(table: NoteTable, roles: np.ndarray, chords: Chords | None = None) -> np.ndarray:
    """Rows (by onset) of the bass line read from the piano's left hand: at each onset of
    PIANO notes below C4 the lowest one, or, where `chords` are given, the lowest one whose
    pitch class is the chord's bass (its root unless inverted); kept only where no lower
    note of the line still sounds, each counted as sounding half a beat to a beat (so the
    rest of a quick left-hand figure over its root stays with the piano)."""
    rows = np.flatnonzero((roles == PIANO) & (table.family == _PIANO) & (table.pitch < BASS_CEILING))
    rows = rows[np.lexsort((table.pitch[rows], table.onset[rows]))]
    if len(rows) == 0:
        return rows
    first = _first_of_onsets(table.onset[rows])
    group = np.cumsum(first) - 1
    chosen = np.flatnonzero(first)
    if chords is not None and len(chords.root):
        at = chord_at(chords, table.seconds(table.onset[rows]))
        is_bass = (at >= 0) & (table.pitch[rows] % 12 == chords.bass[np.clip(at, 0, None)])
        groups_with, where = np.unique(group[is_bass], return_index=True)
        chosen[groups_with] = np.flatnonzero(is_bass)[where]
    line = rows[chosen]
    onset, pitch = table.onset[line], table.pitch[line]
    end = onset + np.clip(table.duration[line], *HOLD_BEATS)
    masked = np.zeros(len(line), bool)
    for lag in range(1, len(line)):
        if (onset[lag:] - onset[:-lag]).min() >= HOLD_BEATS[1]:
            break
        masked[lag:] |= (pitch[:-lag] < pitch[lag:]) & (end[:-lag] > onset[lag:])
    return line[~masked]


def bass_from_left_hand(table: NoteTable, roles: np.ndarray, chords: Chords | None = None) -> NoteTable:
    """The piano's bass line (`bass_rows`) moved to the `bass` family: the whole line moved
    by octaves so its median is nearest D2, stray notes folded into E1-G3, each note
    lasting until the next (a bass plays one note at a time). Taken out of the piano."""
    line = bass_rows(table, roles, chords)
    if len(line) == 0:
        return table
    pitch = table.pitch[line]
    pitch = _octaves_into(pitch + 12 * int(np.round((BASS_TARGET - np.median(pitch)) / 12)), *BASS_REGISTER)
    gap = np.diff(table.onset[line], append=np.inf)
    return _with(table, line, FAMILY_ID["bass"], pitch, np.minimum(table.duration[line], gap))


def _melody_floor(table: NoteTable, roles: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The lowest MELODY pitch sounding at each time (beats); where none sounds, the
    melody's 10th percentile (or C5 if the song has no melody)."""
    rows = np.flatnonzero(roles == MELODY)
    if len(rows) == 0:
        return np.full(len(at), 72)
    rows = rows[np.argsort(table.onset[rows], kind="stable")]
    onset, end, pitch = table.onset[rows], table.onset[rows] + table.duration[rows], table.pitch[rows]
    floor = np.full(len(at), 128)
    for lag in range(4):  # the melody is (nearly) one voice: its last few notes suffice
        i = np.searchsorted(onset, at, side="right") - 1 - lag
        sounding = (i >= 0) & (end[np.clip(i, 0, None)] > at)
        floor = np.where(sounding, np.minimum(floor, pitch[np.clip(i, 0, None)]), floor)
    floor = np.where(floor == 128, int(np.percentile(pitch, 10)), floor)
    return floor


def chords_for(table: NoteTable, roles: np.ndarray, family: str) -> NoteTable:
    """The accompaniment's middle: PIANO notes still on piano from C3 to E5 and below the
    melody sounding over them (the chord tones between the bass and the tune) given to
    `family` (guitar, strings, synth...), same pitch and onset, each ringing at most until
    the part's second next onset (the piano's pedal held up to 7 at once; a band's guitar
    or pad about 2). The rest stays piano."""
    rows = np.flatnonzero((roles == PIANO) & (table.family == _PIANO)
                          & (table.pitch >= CHORD_FLOOR) & (table.pitch <= CHORD_CEILING))
    rows = rows[table.pitch[rows] < _melody_floor(table, roles, table.onset[rows])]
    if len(rows) == 0 or family == "piano":
        return table
    pitch = _octaves_into(table.pitch[rows], *PITCH_RANGE[family])
    return _with(table, rows, FAMILY_ID[family], pitch, _rung(table, rows, RING_ONSETS))


def lead_from_melody(table: NoteTable, roles: np.ndarray, family: str, role: int = MELODY) -> NoteTable:
    """The MELODY notes (or BRIDGE, with role=BRIDGE) given to `family` (voice, synth, winds,
    brass...): the whole part moved by the octaves (-2..2, fewest first) that leave the
    fewest notes outside the family's comfortable register, strays folded into its range,
    each note ending by the part's next onset (a pedalled BRIDGE held up to 6 at once)."""
    rows = np.flatnonzero((roles == role) & (table.family == _PIANO))
    if len(rows) == 0:
        return table
    low, high = LEAD_REGISTER.get(family, PITCH_RANGE[family])
    shifts = np.array([0, -12, 12, -24, 24])
    outside = [int(((table.pitch[rows] + s < low) | (table.pitch[rows] + s > high)).sum()) for s in shifts]
    pitch = _octaves_into(table.pitch[rows] + shifts[int(np.argmin(outside))], *PITCH_RANGE[family])
    return _with(table, rows, FAMILY_ID[family], pitch, _rung(table, rows, 1))


# ---- drums --------------------------------------------------------------------------------

def song_meter(beats: Beats) -> tuple[int, np.ndarray]:
    """(beats per bar for a groove, indices of the beats that start those bars): bars of 4
    from the downbeats, or, in triple time (downbeats 6 apart), bars of 3 from the short ones."""
    downbeats = np.flatnonzero(beats.downbeat)
    spacing = int(np.median(np.diff(downbeats))) if len(downbeats) > 1 else 4
    if spacing % 3 == 0:
        return 3, np.flatnonzero(beats.short_downbeat)
    return 4, downbeats


def song_bpm(beats: Beats) -> float:
    """The song's tempo from its annotated beats (median beat length)."""
    return 60.0 / float(np.median(np.diff(beats.seconds)))


def pick_groove(bpm: float, bar_beats: int, grooves: Sequence[Take], rng: np.random.Generator) -> Take | None:
    """A Groove take for a song: train split, `beat` type, in `bar_beats`-4 time, drawn among
    those within 10% of the tempo (or the 4 nearest, if fewer), never one twice as fast or
    slow (a waltz at a fifth of its speed is no waltz); None if there is none."""
    eligible = [t for t in grooves if t.split == "train" and t.beat_type == "beat"
                and t.time_signature == f"{bar_beats}-4"]
    if not eligible:
        return None
    distance = np.abs(np.log(np.array([t.bpm for t in eligible], np.float64) / bpm))
    near = np.flatnonzero(distance <= np.log(1.1))
    if len(near) < 4:
        near = np.argsort(distance, kind="stable")[:4]
    near = near[distance[near] < np.log(2)]
    return eligible[int(rng.choice(np.sort(near)))] if len(near) else None


def loop_groove(table: NoteTable, beats: Beats, drums: NoteTable, bar_beats: int) -> NoteTable:
    """The drums of a take looped under the song, bar for bar: the take's k-th whole bar (by
    the take's own bar lines: the takes were played to a metronome, and their crash cymbals
    fall on beat 1 of its bars in 161 of the 186 train beats that have three or more) on
    the song's k-th bar from its first downbeat of music (wrapping around), each drum beat
    on the song's annotated beat (so the take follows the song's tempo), notes beyond a
    shorter bar dropped. Returns only the drum notes, in the table's beats."""
    if len(beats.seconds) < 2 or len(drums) == 0:
        return table.select(np.zeros(0, np.int64))
    _, starts = song_meter(beats)
    first = beat_position(beats, table.seconds(table.onset.min()))
    last = beat_position(beats, table.seconds((table.onset + table.duration).max()))
    if len(starts) == 0:
        return table.select(np.zeros(0, np.int64))
    extra = starts[-1] + bar_beats * np.arange(1, max(int(np.ceil((last - starts[-1]) / bar_beats)), 0) + 1)
    starts = np.concatenate([starts, extra]).astype(np.float64)
    length = np.diff(starts, append=starts[-1] + bar_beats)
    keep = (starts >= first - 0.5) & (starts < last)
    starts, length = starts[keep], length[keep]

    bar = np.floor((drums.onset + EARLY) / bar_beats).astype(np.int64)
    offset = drums.onset - bar * bar_beats
    order = np.argsort(bar, kind="stable")
    bar, offset = bar[order], offset[order]
    first_bar = bar[0] + int(offset[0] > 1.0)  # skip a partial first bar
    last_bar = max(bar[-1] - 1, first_bar)  # and the last (often a closing hit)
    groove_bar = first_bar + np.arange(len(starts)) % (last_bar - first_bar + 1)
    lo, hi = np.searchsorted(bar, groove_bar), np.searchsorted(bar, groove_bar, side="right")
    counts = hi - lo
    song_bar = np.repeat(np.arange(len(starts)), counts)
    idx = lo[song_bar] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    fits = offset[idx] < length[song_bar] - EARLY
    song_bar, idx = song_bar[fits], idx[fits]
    position = starts[song_bar] + offset[idx]
    rows = order[idx]
    onset = table.beats(beat_seconds(beats, position))
    end = table.beats(beat_seconds(beats, position + drums.duration[rows]))
    return NoteTable(onset, np.maximum(end - onset, 1e-3), drums.pitch[rows].copy(), drums.velocity[rows].copy(),
                     np.full(len(rows), DRUMS, np.int64), table.tempo_time, table.tempo_qpm)


@lru_cache(maxsize=64)
def _take_notes(path: str) -> NoteTable:
    return read_groove(path)


def groove_under(table: NoteTable, beats: Beats, grooves: Sequence[Take], rng: np.random.Generator) -> NoteTable:
    """The table with a real Groove take under it (`pick_groove`, `loop_groove`): drums from
    the train split's beats only, so no valid or test drumming reaches training. The drum
    rows are appended after the table's own; unchanged if no take fits the song's meter."""
    if len(beats.seconds) < 2:
        return table
    bar_beats, _ = song_meter(beats)
    take = pick_groove(song_bpm(beats), bar_beats, grooves, rng)
    if take is None:
        return table
    drums = loop_groove(table, beats, _take_notes(str(take.path)), bar_beats)
    return NoteTable.joined([table, drums])


# ---- whole arrangements ---------------------------------------------------------------------

def _seed(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def version_rng(song_id: str, number: int) -> np.random.Generator:
    """The generator a song's band version `number` (from 1) draws its groove with."""
    return np.random.default_rng(_seed(f"band:{song_id}#{number}"))


def _draw(rng: np.random.Generator, weights: dict[str, int], count: int, avoid: Sequence[str] = ()) -> list[str]:
    """`count` families by weight, all different while there are enough, none in `avoid`."""
    names = [n for n in weights if n not in avoid] or list(weights)
    p = np.array([weights[n] for n in names], np.float64)
    out: list[str] = []
    while len(out) < count:
        take = min(count - len(out), len(names))
        out += [names[i] for i in rng.choice(len(names), take, replace=False, p=p / p.sum())]
    return out


def orchestrations(song_id: str, count: int = 2) -> list[dict[str, str]]:
    """The families of a song's `count` band versions, drawn from its id alone: lead (the
    MELODY), second (the BRIDGE, never the lead's family) and chords, different in each
    version while there are enough to choose from."""
    rng = np.random.default_rng(_seed(f"band:{song_id}"))
    leads, chords = _draw(rng, LEAD_FAMILIES, count), _draw(rng, CHORD_FAMILIES, count)
    seconds = [_draw(rng, SECOND_FAMILIES, 1, avoid=(lead,))[0] for lead in leads]
    return [{"lead": lead, "second": second, "chords": chord}
            for lead, second, chord in zip(leads, seconds, chords, strict=True)]


def melody_over_piano(table: NoteTable, roles: np.ndarray, song_id: str) -> NoteTable:
    """The MELODY given to a lead family (drawn from the song's id, as `LEAD_FAMILIES` weighs
    them) over the song's own piano accompaniment (BRIDGE and PIANO as they are): a singer
    and a pianist, the case of accompanying a melody (`musenet accompany --keep voice`)."""
    family = _draw(np.random.default_rng(_seed(f"melody:{song_id}")), LEAD_FAMILIES, 1)[0]
    return lead_from_melody(table, roles, family, MELODY).sorted()


def band_versions(table: NoteTable, roles: np.ndarray, chords: Chords | None, beats: Beats | None,
                  grooves: Sequence[Take], song_id: str, count: int = 2,
                  parts: Sequence[str] = PARTS) -> list[NoteTable]:
    """`count` band arrangements of one POP909 song, each with the derivations in `parts`:
    `bass` (bass_from_left_hand), `chords` (chords_for), `lead` (lead_from_melody for the
    MELODY and the BRIDGE), `drums` (groove_under); families from `orchestrations(song_id)`,
    the groove from a generator seeded by the song id and version. Same inputs, same notes."""
    out = []
    for number, orchestra in enumerate(orchestrations(song_id, count), 1):
        band = table
        if "bass" in parts:
            band = bass_from_left_hand(band, roles, chords)
        if "chords" in parts:
            band = chords_for(band, roles, orchestra["chords"])
        if "lead" in parts:
            band = lead_from_melody(band, roles, orchestra["lead"], MELODY)
            band = lead_from_melody(band, roles, orchestra["second"], BRIDGE)
        if "drums" in parts and beats is not None:
            band = groove_under(band, beats, grooves, version_rng(song_id, number))
        out.append(band.sorted())
    return out

"""Note table <-> tokens, in both time modes, with whole-array numpy (no per-note loop).

A piece is: header (style, one token per family present, `start`, and in beat mode the
opening tempo), then events on a time grid, then `end`. Inside one instant the order is
canonical: tempo change, note-offs, then note-ons by ascending pitch (then family); `wait:N`
tokens move time forward between instants.

Rules that make every note table encodable (documented in the README):
- a note lasts at least one grid step (zero-length notes come back one step long);
- a note re-struck while it sounds (same family and pitch) ends where the new one starts;
  two notes struck together on the same key become one (the longer, then the louder);
- a melodic note outside its family's range moves by octaves into it; a drum outside the
  drum range is dropped; drums are onsets only and decode to a short fixed length.
"""

from __future__ import annotations

import numpy as np
import symusic

from .errors import MuseNetError
from .instruments import DRUMS, PITCH_HIGH, PITCH_LOW
from .notes import NoteTable, read_midi, to_score
from .sequence import hint_mask
from .vocab import STEP_SECONDS, STEPS_PER_BEAT, TEMPOS, Vocab, default_vocab, velocity_bins

#: Decoded drum length in grid steps (a 16th note in beat mode, 100 ms in seconds mode).
DRUM_STEPS = {"beat": 3, "seconds": 10}
#: Seconds mode decodes at this tempo so that one tick of a 480-tpq file is exactly 1 ms.
SECONDS_MODE_QPM = 125.0

_KIND_TEMPO, _KIND_OFF, _KIND_ON = 0, 1, 2


def instant_rank(vocab: Vocab) -> np.ndarray:
    """Each token's place among the events of one instant, as `encode_notes` orders them:
    tempo changes, then note-offs, then note-ons, each kind by pitch (ascending, or descending
    in a `top-first` vocabulary), then by family (int64, vocab.size; tokens that are not
    events rank after them all)."""
    t = vocab.tables
    families = int(t["family"].max()) + 1
    kind = np.where(t["tempo"] > 0, _KIND_TEMPO, np.where(t["velocity"] > 0, _KIND_ON, _KIND_OFF))
    pitch = np.maximum(t["pitch"], 0)
    rank = (kind * 128 + (127 - pitch if vocab.instant_order == "top-first" else pitch)) * families \
        + np.maximum(t["family"], 0)
    event = (t["family"] >= 0) | (t["tempo"] > 0)
    return np.where(event, rank, 3 * 128 * families).astype(np.int64)


def in_instant_order(tokens, vocab: Vocab) -> np.ndarray:
    """A sequence with the events of each instant of its body put in the vocabulary's order
    (`instant_rank`); the header, waits and `end` stay where they are. The same sequence
    encoded in the other instant order comes out as `encode_notes` writes it in this one."""
    tokens = np.array(tokens, np.int64).ravel()
    starts = np.flatnonzero(tokens == vocab.START)
    first = int(starts[0]) + 1 if len(starts) else len(tokens)
    body = tokens[first:]
    is_wait = vocab.tables["wait"][body] > 0
    is_event = (vocab.tables["family"][body] >= 0) | (vocab.tables["tempo"][body] > 0)
    instant = np.cumsum(is_wait) - is_wait  # waits close their instant; events and `end` sort by rank in it
    rank = np.where(is_event, instant_rank(vocab)[body], np.iinfo(np.int64).max)
    order = np.lexsort((np.arange(len(body)), rank, instant))
    return np.concatenate([tokens[:first], body[order]])


def _round(x: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(x, np.float64) + 0.5).astype(np.int64)


def time_steps(table: NoteTable, beats: np.ndarray, time_mode: str) -> np.ndarray:
    """Times in beats -> integer grid steps of the time mode."""
    if time_mode == "beat":
        return _round(beats * STEPS_PER_BEAT)
    return _round(table.seconds(beats) / STEP_SECONDS)


def tempo_buckets(qpm: np.ndarray) -> np.ndarray:
    """BPM -> index of the nearest tempo bucket (nearest on a log scale)."""
    log_tempos = np.log(np.array(TEMPOS, np.float64))
    edges = (log_tempos[1:] + log_tempos[:-1]) / 2
    return np.searchsorted(edges, np.log(np.asarray(qpm, np.float64)))


def encode_notes(table: NoteTable, vocab: Vocab | None = None, style: str | None = None) -> np.ndarray:
    """NoteTable -> token ids (int64), header to `end`; within an instant, events go in the
    vocabulary's `instant_rank` order."""
    vocab = vocab or default_vocab()
    style_token = vocab.style_token(style)
    family = np.asarray(table.family, np.int64)
    pitch = np.asarray(table.pitch, np.int64).copy()
    drum = family == DRUMS
    on = time_steps(table, table.onset, vocab.time_mode)
    off = time_steps(table, table.onset + table.duration, vocab.time_mode)

    # Pitch ranges: melodic notes move by octaves into range, drums outside are dropped.
    low, high = PITCH_LOW[family], PITCH_HIGH[family]
    pitch = np.where(~drum & (pitch < low), pitch + 12 * -((pitch - low) // 12), pitch)
    pitch = np.where(~drum & (pitch > high), pitch - 12 * -((high - pitch) // 12), pitch)
    keep = (pitch >= low) & (pitch <= high)
    family, pitch, on, off, drum = family[keep], pitch[keep], on[keep], off[keep], drum[keep]
    velocity_bin = velocity_bins(np.asarray(table.velocity)[keep])
    off = np.maximum(off, on + 1)

    # One note per key and instant (the longest), and a re-struck key ends the sounding note.
    key = family * 128 + pitch
    order = np.lexsort((-velocity_bin, -off, on, key))
    key, on, off, family, pitch, drum, velocity_bin = (
        a[order] for a in (key, on, off, family, pitch, drum, velocity_bin)
    )
    first = np.ones(len(key), bool)
    first[1:] = (key[1:] != key[:-1]) | (on[1:] != on[:-1])
    key, on, off, family, pitch, drum, velocity_bin = (
        a[first] for a in (key, on, off, family, pitch, drum, velocity_bin)
    )
    same_key_next = np.append(key[1:] == key[:-1], False)
    next_on = np.append(on[1:], 0)
    off = np.where(same_key_next, np.minimum(off, next_on), off)

    # Events: note-ons, note-offs (melodic only), tempo changes (beat mode).
    melodic = ~drum
    ev_time = [on, off[melodic]]
    ev_token = [
        vocab.note_tokens(family, pitch, velocity_bin),
        vocab.note_tokens(family[melodic], pitch[melodic], np.zeros(melodic.sum(), np.int64)),
    ]
    header = [style_token, *(vocab.family_offset + np.unique(family)).tolist(), vocab.START]
    if vocab.time_mode == "beat":
        last_time = max(int(ev_time[0].max(initial=0)), int(ev_time[1].max(initial=0)))
        tempo_step, tempo_token = _tempo_events(table, vocab, last_time)
        header.append(int(tempo_token[0]))
        ev_time.append(tempo_step[1:])
        ev_token.append(tempo_token[1:])
    ev_time, ev_token = np.concatenate(ev_time), np.concatenate(ev_token)
    order = np.lexsort((instant_rank(vocab)[ev_token], ev_time))  # by time, then the vocabulary's instant order
    body = with_waits(ev_time[order], ev_token[order], vocab)
    return np.concatenate([np.array(header, np.int64), body, [vocab.END]])


def _tempo_events(table: NoteTable, vocab: Vocab, last_time: int) -> tuple[np.ndarray, np.ndarray]:
    """Tempo tokens at grid steps: the opening one first, then each change of bucket."""
    step = _round(table.tempo_time * STEPS_PER_BEAT)
    bucket = tempo_buckets(table.tempo_qpm)
    last_of_step = np.append(step[1:] != step[:-1], True)
    step, bucket = step[last_of_step], bucket[last_of_step]
    changed = np.ones(len(step), bool)
    changed[1:] = bucket[1:] != bucket[:-1]
    changed[1:] &= step[1:] <= last_time
    step, bucket = step[changed], bucket[changed]
    return step, vocab.tempo_offset + bucket


def with_waits(time: np.ndarray, token: np.ndarray, vocab: Vocab) -> np.ndarray:
    """Interleave event tokens with the `wait` tokens that bring time to each event."""
    gap = np.diff(time, prepend=0)
    n_waits = -(-gap // vocab.max_wait)  # ceil
    position = np.cumsum(n_waits + 1) - 1  # where each event token lands
    out = np.full(int(position[-1]) + 1 if len(position) else 0, vocab.wait_offset + vocab.max_wait - 1, np.int64)
    out[position] = token
    has_wait = n_waits > 0
    remainder = gap[has_wait] - (n_waits[has_wait] - 1) * vocab.max_wait
    out[position[has_wait] - 1] = vocab.wait_offset + remainder - 1
    return out


def tempo_map(tokens: np.ndarray, time: np.ndarray, vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """A beat-mode token stream's tempo map (beats, BPM) from its tempo tokens, given each
    token's grid step `time`: 120 BPM until the first, the last of an instant winning."""
    tempo = vocab.tables["tempo"][tokens]
    is_tempo = tempo > 0
    tempo_step, tempo_qpm = time[is_tempo], tempo[is_tempo].astype(np.float64)
    if len(tempo_step) == 0 or tempo_step[0] > 0:
        tempo_step = np.concatenate([[0], tempo_step])
        tempo_qpm = np.concatenate([[120.0], tempo_qpm])
    last_of_step = np.append(tempo_step[1:] != tempo_step[:-1], True)
    return tempo_step[last_of_step] / STEPS_PER_BEAT, tempo_qpm[last_of_step]


def decode_tokens(tokens, vocab: Vocab | None = None) -> NoteTable:
    """Token ids -> NoteTable. Tolerant: reads up to the first `end`; a note-on is closed
    by the next event on its key or by the end of the piece; stray note-offs are ignored."""
    vocab = vocab or default_vocab()
    tokens = np.asarray(tokens, np.int64).ravel()
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab.size):
        raise MuseNetError(f"token id out of range 0..{vocab.size - 1}")
    ends = np.flatnonzero(tokens == vocab.END)
    if len(ends):
        tokens = tokens[: ends[0]]
    tokens = tokens[~hint_mask(tokens, vocab)]  # a hint is conditioning, not music
    tables = vocab.tables
    wait = tables["wait"][tokens]
    time = np.cumsum(wait) - wait
    end_time = int(wait.sum())

    family = tables["family"][tokens]
    is_note = family >= 0
    family, time_note = family[is_note], time[is_note]
    pitch, velocity = tables["pitch"][tokens][is_note], tables["velocity"][tokens][is_note]
    key = family * 128 + pitch
    order = np.lexsort((np.arange(len(key)), key))  # by key, then position
    same_key_next = np.append(key[order][1:] == key[order][:-1], False)
    release_sorted = np.where(same_key_next, np.append(time_note[order][1:], 0), end_time)
    release = np.empty_like(release_sorted)
    release[order] = release_sorted

    is_on = velocity > 0
    drum = family == DRUMS
    onset = time_note[is_on]
    length = np.where(drum[is_on], DRUM_STEPS[vocab.time_mode], np.maximum(release[is_on] - onset, 1))

    if vocab.time_mode == "beat":
        scale = 1.0 / STEPS_PER_BEAT
        tempo_time, tempo_qpm = tempo_map(tokens, time, vocab)
    else:
        scale = STEP_SECONDS * SECONDS_MODE_QPM / 60.0
        tempo_time, tempo_qpm = np.zeros(1), np.full(1, SECONDS_MODE_QPM)
    table = NoteTable(
        onset=onset * scale,
        duration=length * scale,
        pitch=pitch[is_on],
        velocity=velocity[is_on],
        family=family[is_on],
        tempo_time=tempo_time,
        tempo_qpm=tempo_qpm,
    )
    return table.sorted()


def encode(midi, style: str | None = None, time_mode: str = "beat", vocab: Vocab | None = None) -> np.ndarray:
    """A MIDI file (path, bytes or symusic.Score) -> token ids (int64 numpy array)."""
    vocab = vocab or default_vocab(time_mode)
    if vocab.time_mode != time_mode and time_mode != "beat":
        raise MuseNetError(f"time_mode {time_mode!r} differs from the vocabulary's {vocab.time_mode!r}")
    return encode_notes(read_midi(midi), vocab, style)


def decode(tokens, vocab: Vocab | None = None, time_mode: str | None = None) -> symusic.Score:
    """Token ids -> symusic.Score (one track per family, tempo map from tempo tokens)."""
    vocab = vocab or default_vocab(time_mode or "beat")
    return to_score(decode_tokens(tokens, vocab))

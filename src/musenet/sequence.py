"""What a token sequence means: where its header ends, what time each token falls at, and
the side features the model embeds. Training (dataset.py), composing (sample.py), the data
build and the evaluation all read sequences through these functions.

A sequence is a header (style, one token per family, `start`, and in beat mode the opening
tempo), then events and `wait:N` tokens, then `end`. The header may hold a hint between the
families and `start`: events known to come, with their own waits counted from where the
body begins (`hints.py`); a hint never moves the clock. Time is counted in grid steps (the
waits) and in seconds: a step lasts 10 ms in seconds mode, and 60 / (BPM x 12) s in beat
mode, where BPM follows the tempo tokens (120 before the first one).

The sampler keeps an incremental torch version of the clock and the side features (one
token at a time, for a batch); tests pin it to `side_features` here on whole pieces.
"""

from __future__ import annotations

import numpy as np

from .instruments import DRUMS, FAMILIES
from .vocab import STEP_SECONDS, STEPS_PER_BEAT, Vocab

POSITION_PARTS = 128      # the piece is cut into 128 parts; each token knows which it is in
COUNTDOWN_SECONDS = 2.0   # the countdown to the end counts in steps of 2 s ...
COUNTDOWN_BUCKETS = 256   # ... up to 512 s, where it saturates
DEFAULT_TEMPO = 120.0     # beat mode's tempo before the first tempo token
PHASE_STEPS = 4 * STEPS_PER_BEAT  # the phase feature counts grid steps within a 4-beat bar
HELD_STEP_SECONDS = 0.25  # `held_for` counts in quarter seconds ...
HELD_FOR_BUCKETS = 33     # ... up to 8 s, where it saturates
KEPT_FEATURES = ("kept_top", "kept_low", "kept_next")  # a kept part beside the sequence (channel.py)
AHEAD_STEPS = {"beat": STEPS_PER_BEAT // 2, "seconds": 25}  # `ahead` counts in half beats (0.25 s) ...
AHEAD_BUCKETS = 34        # ... up to 16 beats (8 s), where it saturates; 0: no hinted event ahead


# ---- the header --------------------------------------------------------------------------

def header_length(tokens, vocab: Vocab) -> int:
    """How many tokens the header has: up to `start`, plus the opening tempo in beat mode
    when the token after `start` is one. A sequence without `start` is all header."""
    tokens = np.asarray(tokens, np.int64).ravel()
    starts = np.flatnonzero(tokens == vocab.START)
    if len(starts) == 0:
        return len(tokens)
    end = int(starts[0]) + 1
    if vocab.time_mode == "beat" and end < len(tokens) and vocab.tables["tempo"][tokens[end]] > 0:
        end += 1
    return end


def header_families(tokens, vocab: Vocab) -> np.ndarray:
    """Family ids named in the header (before `start`), ascending, without repeats."""
    tokens = np.asarray(tokens, np.int64).ravel()
    starts = np.flatnonzero(tokens == vocab.START)
    head = tokens[: starts[0]] if len(starts) else tokens
    return np.unique(head[(head >= vocab.family_offset) & (head < vocab.tempo_offset)] - vocab.family_offset)


def read_header(tokens, vocab: Vocab) -> tuple[str, list[str]]:
    """The style and the instrument families named in a token sequence's header."""
    tokens = np.asarray(tokens, np.int64).ravel()
    starts = np.flatnonzero(tokens == vocab.START)
    head = tokens[: starts[0]] if len(starts) else tokens
    styles = head[head >= vocab.style_offset]
    style = vocab.styles[styles[0] - vocab.style_offset] if len(styles) else "unknown"
    return style, [FAMILIES[f] for f in header_families(tokens, vocab)]


def hint_mask(tokens, vocab: Vocab) -> np.ndarray:
    """True for the tokens of the hint: note and wait tokens before the first `start`."""
    tokens = np.asarray(tokens, np.int64).ravel()
    starts = np.flatnonzero(tokens == vocab.START)
    before = np.arange(len(tokens)) < (starts[0] if len(starts) else 0)
    return before & ((vocab.tables["wait"][tokens] > 0) | (vocab.tables["family"][tokens] >= 0))


# ---- the clock ---------------------------------------------------------------------------

def seconds_per_step(vocab: Vocab, tempo):
    """Seconds one grid step lasts at `tempo` BPM: a float, numpy array or torch tensor
    (the same formula for all three, so every part of the program gets the same bits)."""
    if vocab.time_mode == "seconds":
        return tempo * 0.0 + STEP_SECONDS
    return 60.0 / (tempo * STEPS_PER_BEAT)


def tempo_in_force(tokens, vocab: Vocab, tempo: float = DEFAULT_TEMPO) -> np.ndarray:
    """The BPM in force at each token: the last tempo token at or before it, else `tempo`."""
    tokens = np.asarray(tokens, np.int64).ravel()
    bpm = vocab.tables["tempo"][tokens].astype(np.float64)
    last = np.maximum.accumulate(np.where(bpm > 0, np.arange(len(bpm)), -1))
    return np.where(last >= 0, bpm[np.maximum(last, 0)], tempo)


def elapsed_seconds(tokens, vocab: Vocab, tempo: float = DEFAULT_TEMPO, start_seconds: float = 0.0) -> np.ndarray:
    """Seconds before each token and, last, after the final one (length n + 1), from
    `start_seconds`; a running sum in token order, exactly as the sampler keeps it."""
    tokens = np.asarray(tokens, np.int64).ravel()
    waits = np.where(hint_mask(tokens, vocab), 0, vocab.tables["wait"][tokens])
    steps = waits * seconds_per_step(vocab, tempo_in_force(tokens, vocab, tempo))
    return np.cumsum(np.concatenate([[float(start_seconds)], steps]))


def token_seconds(tokens, vocab: Vocab, tempo: float = DEFAULT_TEMPO, start_seconds: float = 0.0) -> np.ndarray:
    """Seconds elapsed before each token (tokens of one instant share it)."""
    return elapsed_seconds(tokens, vocab, tempo, start_seconds)[:-1]


def sequence_seconds(tokens, vocab: Vocab) -> float:
    """How long a token sequence lasts, in seconds (its waits, at the tempo in force)."""
    return float(elapsed_seconds(tokens, vocab)[-1])


# ---- windows and side features -------------------------------------------------------------

def steps_before(tokens, vocab: Vocab, head_end: int, start: int) -> int:
    """Grid steps of a piece's body before body position `start` (a window's `start_step`)."""
    return int(vocab.tables["wait"][np.asarray(tokens)[head_end: head_end + start]].sum())


def window_of(tokens, vocab: Vocab, head_end: int, start: int, length: int | None = None) -> tuple[np.ndarray, float]:
    """A window of a piece: its header (the first `head_end` tokens), with the tempo in force
    at the window's start in place of the opening tempo, then `length` - header tokens of the
    body from body position `start` (all the rest with None). Returns the window and the
    seconds before its first body token."""
    tokens = np.asarray(tokens, np.int64).ravel()
    header = tokens[:head_end].copy()
    first = head_end + start
    if start > 0 and len(header) and vocab.tables["tempo"][header[-1]] > 0:
        prefix = tokens[:first]
        header[-1] = prefix[vocab.tables["tempo"][prefix] > 0][-1]
    start_seconds = float(elapsed_seconds(tokens[:first], vocab)[-1]) if start > 0 else 0.0
    stop = len(tokens) if length is None else first + max(length - len(header), 1)
    return np.concatenate([header, tokens[first:stop]]), start_seconds


def chord_index(tokens, vocab: Vocab) -> np.ndarray:
    """1 + the index of each note-on among the note-ons of its instant; 0 for other tokens."""
    t = vocab.tables
    waits = t["wait"][tokens]
    is_on = (t["family"][tokens] >= 0) & (t["velocity"][tokens] > 0)
    instant = np.cumsum(waits > 0)
    ons_before = np.cumsum(is_on) - is_on
    first_of_instant = np.searchsorted(instant, instant, side="left")
    return np.where(is_on, ons_before - ons_before[first_of_instant] + 1, 0)


def note_keys(tokens, vocab: Vocab) -> np.ndarray:
    """family x 128 + pitch of each melodic note token (on or off); -1 for other tokens and drums."""
    t = vocab.tables
    family = t["family"][tokens]
    return np.where((family >= 0) & (family != DRUMS), family * 128 + t["pitch"][tokens], -1)


def key_events(tokens, vocab: Vocab, first: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The melodic note tokens from place `first` on, ordered by key (`note_keys`), then by
    place: (keys, places, whether each is a note-on). A note's note-off follows its note-on."""
    tokens = np.asarray(tokens, np.int64)
    key = note_keys(tokens, vocab)
    key[:first] = -1
    where = np.flatnonzero(key >= 0)
    order = np.lexsort((where, key[where]))
    places = where[order]
    return key[places], places, vocab.tables["velocity"][tokens[places]] > 0


def held_notes(tokens, vocab: Vocab, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(held, held_for) of each token: 1 + the key (`note_keys`) of the melodic note that has
    sounded longest before it (0: none; ties: the lowest key), and for how long, in
    HELD_STEP_SECONDS (saturating). A note sounds from the token after its note-on to its
    note-off; a note-off in the body with no note-on before it is a note struck before the
    window, counted from the window's first body token. Header and hint tokens: 0."""
    tokens = np.asarray(tokens, np.int64)
    n = len(tokens)
    held, since = np.zeros(n, np.int64), np.zeros(n)
    starts = np.flatnonzero(tokens == vocab.START)
    if not len(starts):
        return held, held.copy()
    first = int(starts[0]) + 1
    keys, places, is_on = key_events(tokens, vocab, first)
    same_next = np.r_[keys[1:] == keys[:-1], False]
    until = np.where(same_next, np.r_[places[1:], 0], n - 1)  # the key's next event (its note-off), or the end
    first_of_key = np.r_[True, keys[1:] != keys[:-1]]
    orphan = first_of_key & ~is_on  # released in the window, struck before it
    begin = np.concatenate([places[is_on] + 1, np.full(int(orphan.sum()), first)])
    end = np.concatenate([until[is_on], places[orphan]])
    note_key = np.concatenate([keys[is_on], keys[orphan]])
    onset = np.concatenate([seconds[places[is_on]], np.full(int(orphan.sum()), seconds[min(first, n - 1)])])
    for i in np.lexsort((note_key, onset))[::-1]:  # the longest-sounding note is painted last
        held[begin[i]: end[i] + 1] = note_key[i] + 1
        since[begin[i]: end[i] + 1] = onset[i]
    held_for = np.floor((seconds - since) / HELD_STEP_SECONDS + 1e-6).astype(np.int64)
    return held, np.where(held > 0, np.clip(held_for, 0, HELD_FOR_BUCKETS - 1), 0)


def ahead_of(time: np.ndarray, event_steps: np.ndarray, vocab: Vocab) -> np.ndarray:
    """The `ahead` bucket at each `time` (grid steps from the window's start): 1 + how many
    AHEAD_STEPS it is to the first hinted event at or after it (`event_steps`, ascending),
    saturating; 0 where no hinted event lies ahead."""
    step = AHEAD_STEPS[vocab.time_mode]
    following = np.searchsorted(event_steps, time, side="left")
    ahead = event_steps[np.minimum(following, len(event_steps) - 1)] - time if len(event_steps) else time * 0
    return np.where(following < len(event_steps), 1 + np.minimum(ahead // step, AHEAD_BUCKETS - 2), 0)


def position_part(seconds, total_seconds: float):
    """Which 1/128 of a piece of `total_seconds` each time falls in (numpy or torch)."""
    return seconds / at_least(total_seconds, 1e-6) * POSITION_PARTS


def countdown_steps(seconds, total_seconds: float):
    """Time left to the piece's end in countdown steps (numpy or torch, before bucketing)."""
    return (at_least(total_seconds, 1e-6) - seconds) / COUNTDOWN_SECONDS


def at_least(value, floor: float):
    """max(value, floor) for a number or a 0-d tensor (the compiled rules pass tensors)."""
    return value.clamp_min(floor) if hasattr(value, "clamp_min") else max(value, floor)


def side_features(tokens, vocab: Vocab, total_seconds: float, start_seconds: float = 0.0,
                  tempo: float = DEFAULT_TEMPO, start_step: int = 0, kept=None) -> dict[str, np.ndarray]:
    """MuseNet's extra inputs for each token of a window:
    - time: grid steps since the window's first token (notes sounding together share it);
    - chord: 1 + the index of a note-on among the note-ons of its instant (0 for other tokens);
    - position: which 1/128 of the whole piece the token falls in;
    - countdown: time left to the piece's end, in 2-second steps (saturating);
    - phase: in beat mode, the grid step within a 4-beat bar, counted from the piece's start
      (`start_step`: the body's steps before the window); 0 in seconds mode;
    - held, held_for: the melodic note sounding longest so far and how long (`held_notes`), so
      that a note held for seconds is not forgotten;
    - ahead: how far the hint's next event is from where the next token falls (`ahead_of`),
      so that the music can lead into given music after a gap, or meet a kept part's next
      note; 0 for header and hint tokens, and with no hinted event ahead;
    - kept_top, kept_low, kept_next: the kept part of a side channel (`channel.KeptGrid`,
      `kept`, on the piece's grid steps) at the step the next token falls at; 0 without one,
      and for header and hint tokens.
    A hint's tokens get the features of the body's time they stand for (at the opening tempo)."""
    tokens = np.asarray(tokens, np.int64)
    waits = vocab.tables["wait"][tokens]
    hint = hint_mask(tokens, vocab)
    body_waits = np.where(hint, 0, waits)
    time = np.cumsum(body_waits) - body_waits
    seconds = token_seconds(tokens, vocab, tempo, start_seconds)
    if not hint.any():
        chord = chord_index(tokens, vocab)
    else:
        hint_waits = np.where(hint, waits, 0)
        hint_time = np.cumsum(hint_waits) - hint_waits
        time = np.where(hint, hint_time, time)
        start = int(np.flatnonzero(tokens == vocab.START)[0])  # the body's first instant is its own
        opening_tempo = tempo_in_force(tokens[: start + 2], vocab, tempo)[-1]
        seconds = np.where(hint, start_seconds + hint_time * seconds_per_step(vocab, opening_tempo), seconds)
        chord = np.concatenate([chord_index(tokens[:start], vocab), chord_index(tokens[start:], vocab)])
    position = np.clip(position_part(seconds, total_seconds).astype(np.int64), 0, POSITION_PARTS - 1)
    countdown = np.clip(countdown_steps(seconds, total_seconds).astype(np.int64), 0, COUNTDOWN_BUCKETS - 1)
    phase = (start_step + time) % PHASE_STEPS if vocab.time_mode == "beat" else np.zeros_like(time)
    held, held_for = held_notes(tokens, vocab, seconds)
    body = np.arange(len(tokens)) >= header_length(tokens, vocab)
    events = hint & (vocab.tables["family"][tokens] >= 0)
    ahead = np.where(body, ahead_of(time + body_waits, np.sort(time[events]), vocab), 0)  # where the next token falls
    features = {"time": time, "chord": chord, "position": position, "countdown": countdown, "phase": phase,
                "held": held, "held_for": held_for, "ahead": ahead}
    if kept is None:
        return features | {name: np.zeros(len(tokens), np.int64) for name in KEPT_FEATURES}
    channel = kept.at(np.where(body, start_step + time + body_waits, -1))
    return features | {name: np.where(body, values, 0) for name, values in channel.items()}

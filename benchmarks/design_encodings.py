"""What MuseNet's encodings are worth (issue #17, part 1), as a table.

    python benchmarks/design_encodings.py --data data/design --minutes 3 --seeds 0,1,2 --out OUT

Every encoding turns the same pieces, those of a built beat-mode dataset decoded back to
note tables (so all start from one quantised version of the music), into token streams:

- `ours-beat`, `ours-seconds`: our tokens (instrument + pitch + volume note-ons and
  note-offs, `wait:N` in 12ths of a beat or in 10 ms steps, tempo tokens in beat mode);
- `ours-beat-top`: ours in beat mode with the events of an instant in descending pitch
  (the top line, often the melody, first; the bass last) instead of ascending;
- `ours-beat+factors`: the same tokens, the model with `note_factors` (a note token's
  embedding and output row share pitch, family and loudness vectors), as our stages train;
- `chordwise`: one token per instant for the whole set of notes sounding from it on
  (family, pitch, struck now or held on), the `--chords` commonest sets of the training
  split and an unknown-set token for the rest; no loudness; waits and tempo as ours;
- `onset`: our note-on tokens, each followed by a duration token (the nearest of
  DURATIONS grid steps; drums have none); no note-offs; waits and tempo as ours;
- `onset-bpe`: the onset stream compressed by byte-pair encoding (Hugging Face
  `tokenizers`, `--merges` merges learned on the training split, words ending at each wait);
- `remi`: MidiTok's REMI with programs (bar, position, program, pitch, velocity,
  duration and tempo tokens), 12 positions a beat like our grid.

Every stream starts with the piece's style token (ours: with the rest of our header). Each
encoding then trains the same plain model shape (`--size`; learned positions and no side
features, which are defined on our tokens only) from scratch for the same wall-clock budget
(`--minutes` of training steps on this machine; encoding and scoring not counted), on random
windows of the training streams, and is scored on the whole valid split (sliding windows,
stride half the context). Figures: **bits per second of music** (the held-out pieces' total
code length over their length in seconds, which compares across tokenizations), bits per
note, vocabulary size, tokens per note and per second of music, training tokens per second,
round-trip fidelity (the share of held-out notes that come back with their family and pitch
at an onset within half a grid step, 1/24 beat; and exactly: duration within half a step or
5% too, drums aside, and the same loudness bin; compared in beats, seconds mode through the
piece's tempo map), and composing time per second of music (batch 1 with a KV cache, plain
sampling: milliseconds per token times tokens per second of music).

With `--melody-use DIR` (a folder with pop909/), our encodings are also asked how much the
model reads a melody when it predicts the accompaniment, on `--songs` held-out POP909 test
songs (their first 30 s after the melody enters; the melody as `voice`, bridge and piano as
`piano`, as `musenet accompany --keep voice` sees them): bits per accompaniment note token
beside the song's own melody and beside another test song's melody (moved to start at the
same time), and **melody use**, 1 - the first over the second. The build should hold POP909's
melody versions (`pop909,melody:DIR`) so that a melody over a piano is music the model knows.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from design import clock, rate, shape, study_arguments

from musenet.dataset import Dataset
from musenet.encoding import DRUM_STEPS, decode_tokens, encode_notes, tempo_buckets, tempo_map, with_waits
from musenet.evaluate.harmony import held_out_songs
from musenet.evaluate.keep import melody_and_accompaniment
from musenet.files import write_atomic
from musenet.instruments import DRUMS, FAMILY_ID
from musenet.model import build_model
from musenet.notes import NoteTable, read_midi, to_score
from musenet.sources import SPLITS
from musenet.train import param_groups, use_bf16
from musenet.vocab import STEPS_PER_BEAT, VELOCITIES, Vocab, velocity_bins

ENCODINGS = ("ours-beat", "ours-beat-top", "ours-beat+factors", "ours-seconds", "chordwise", "onset", "onset-bpe",
             "remi")
#: Duration buckets of the onset encodings, in grid steps (12 a beat): 1/12 beat to 16 beats.
DURATIONS = np.array([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192])
BPE_BASE = 0x4E00          # base token i is the character BPE_BASE + i (CJK block: no spaces, no folding)
TOLERANCE = 0.5 / STEPS_PER_BEAT + 1e-9  # beats: half a grid step


@dataclass
class Piece:
    table: NoteTable
    style: str
    split: str
    seconds: float


def load_pieces(path: str) -> tuple[list[Piece], Vocab]:
    """Every piece of a built beat-mode dataset as a note table (empty ones left out)."""
    data = Dataset(path, split=None)
    if data.vocab.time_mode != "beat":
        raise SystemExit(f"{path}: build it in beat mode (the encodings start from the beat grid)")
    pieces = []
    for row in data.rows:
        table = decode_tokens(data.piece(row), data.vocab)
        if len(table):
            pieces.append(Piece(table, data.style_of(row), SPLITS[int(data.index["split"][row])], table.end_seconds()))
    return pieces, data.vocab


def grid_notes(table: NoteTable) -> dict[str, np.ndarray]:
    """A table's notes on the beat grid, ordered by onset, family, pitch: onset and end steps,
    family, pitch and loudness bin (1..8)."""
    table = table.sorted()
    on = np.floor(table.onset * STEPS_PER_BEAT + 0.5).astype(np.int64)
    length = np.maximum(np.floor(table.duration * STEPS_PER_BEAT + 0.5).astype(np.int64), 1)
    return {"on": on, "off": on + length, "family": table.family.astype(np.int64),
            "pitch": table.pitch.astype(np.int64), "loudness": velocity_bins(table.velocity)}


def tempo_events(table: NoteTable, vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """(grid step, tempo token) of each tempo change, the opening tempo at step 0 included."""
    steps = np.floor(table.tempo_time * STEPS_PER_BEAT + 0.5).astype(np.int64)
    return steps, vocab.tempo_offset + tempo_buckets(table.tempo_qpm)


def stream_times(ids: np.ndarray, vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """(grid step of each token, the ids with those past our vocabulary read as `pad`), for
    streams that share our waits and tempo tokens."""
    ours = np.where(ids < vocab.size, ids, vocab.PAD)
    wait = vocab.tables["wait"][ours]
    return np.cumsum(wait) - wait, ours


def upto_end(ids, end: int) -> np.ndarray:
    ids = np.asarray(ids, np.int64)
    ends = np.flatnonzero(ids == end)
    return ids[: ends[0]] if len(ends) else ids


def from_grid(onset, length, pitch, velocity, family, tempo: tuple[np.ndarray, np.ndarray]) -> NoteTable:
    """A note table from grid-step onsets and lengths and a tempo map."""
    return NoteTable(np.asarray(onset, np.float64) / STEPS_PER_BEAT, np.asarray(length, np.float64) / STEPS_PER_BEAT,
                     np.asarray(pitch, np.int64), np.asarray(velocity, np.int64), np.asarray(family, np.int64),
                     tempo_time=tempo[0], tempo_qpm=tempo[1]).sorted()


class Ours:
    """Our own tokens in one time mode and instant order."""

    def __init__(self, vocab: Vocab):
        self.vocab, self.size = vocab, vocab.size

    def fit(self, pieces: list[Piece]) -> None:
        pass

    def encode(self, piece: Piece) -> np.ndarray:
        return encode_notes(piece.table, self.vocab, piece.style)

    def decode(self, ids) -> NoteTable:
        return decode_tokens(ids, self.vocab)


class Onset:
    """Note-ons with a duration token after each (drums: none); no note-offs."""

    def __init__(self, vocab: Vocab):
        self.vocab, self.size = vocab, vocab.size + len(DURATIONS)

    def fit(self, pieces: list[Piece]) -> None:
        pass

    def encode(self, piece: Piece) -> np.ndarray:
        v, n = self.vocab, grid_notes(piece.table)
        log_steps = np.log(DURATIONS)
        bucket = np.abs(np.log(n["off"] - n["on"])[:, None] - log_steps[None, :]).argmin(axis=1)
        note = np.stack([v.note_tokens(n["family"], n["pitch"], n["loudness"]), v.size + bucket], axis=1)
        keep = np.stack([np.ones(len(bucket), bool), n["family"] != DRUMS], axis=1)
        tempo_step, tempo_token = tempo_events(piece.table, v)
        time = np.concatenate([tempo_step, np.repeat(n["on"], 2)[keep.ravel()]])
        token = np.concatenate([tempo_token, note.ravel()[keep.ravel()]])
        order = np.argsort(time, kind="stable")  # tempo first within an instant, notes as sorted
        body = with_waits(time[order], token[order], v)
        return np.concatenate([[v.style_token(piece.style)], body, [v.END]])

    def decode(self, ids) -> NoteTable:
        v = self.vocab
        ids = upto_end(ids, v.END)
        time, ours = stream_times(ids, v)
        family, velocity = v.tables["family"][ours], v.tables["velocity"][ours]
        is_on = (family >= 0) & (velocity > 0)
        following = np.append(ids[1:], -1)
        has_duration = following >= v.size
        length = np.where(has_duration, DURATIONS[np.clip(following - v.size, 0, len(DURATIONS) - 1)],
                          DRUM_STEPS["beat"])
        return from_grid(time[is_on], length[is_on], v.tables["pitch"][ours][is_on], velocity[is_on],
                         family[is_on], tempo_map(ours, time, v))


class Chordwise:
    """One token per instant for the set of notes sounding from it (struck or held)."""

    def __init__(self, vocab: Vocab, chords: int):
        self.vocab, self.chords = vocab, chords
        self.style_offset = vocab.note_offset  # ids below are ours: pad, start, end, families, tempos, waits
        self.unknown = self.style_offset + len(vocab.styles)
        self.sets: list[tuple] = []
        self.ids: dict[tuple, int] = {}
        self.size = self.unknown + 1

    @staticmethod
    def instants(piece: Piece) -> tuple[np.ndarray, list[tuple]]:
        """(grid step of every instant where a note starts or ends, the set sounding from it as a
        sorted tuple of (family * 128 + pitch) * 2 + struck codes)."""
        n = grid_notes(piece.table)
        steps = np.unique(np.concatenate([n["on"], n["off"]]))
        first, last = np.searchsorted(steps, n["on"]), np.searchsorted(steps, n["off"])
        counts = last - first
        instant = np.repeat(first, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        struck = np.zeros(len(instant), np.int64)
        struck[np.cumsum(counts) - counts] = 1  # a note's first instant is its onset
        code = (np.repeat(n["family"] * 128 + n["pitch"], counts)) * 2 + struck
        order = np.lexsort((code, instant))
        bounds = np.searchsorted(instant[order], np.arange(len(steps) + 1))
        codes = code[order].tolist()
        return steps, [tuple(codes[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def fit(self, pieces: list[Piece]) -> None:
        counts = Counter(s for p in pieces if p.split == "train" for s in self.instants(p)[1])
        self.sets = [s for s, _ in counts.most_common(self.chords)]
        self.ids = {s: self.unknown + 1 + i for i, s in enumerate(self.sets)}
        self.size = self.unknown + 1 + len(self.sets)

    def encode(self, piece: Piece) -> np.ndarray:
        v = self.vocab
        steps, sets = self.instants(piece)
        tempo_step, tempo_token = tempo_events(piece.table, v)
        chord = np.array([self.ids.get(s, self.unknown) for s in sets], np.int64)
        time = np.concatenate([tempo_step, steps])
        order = np.argsort(time, kind="stable")
        body = with_waits(time[order], np.concatenate([tempo_token, chord])[order], v)
        return np.concatenate([[self.style_offset + v.styles.index(piece.style)], body, [v.END]])

    def decode(self, ids) -> NoteTable:
        v = self.vocab
        ids = upto_end(ids, v.END)
        time, ours = stream_times(np.where(ids < v.note_offset, ids, v.PAD), v)
        sounding: dict[int, int] = {}  # key -> onset step
        notes = []
        for step, token in zip(time.tolist(), ids.tolist(), strict=True):
            if token < self.unknown:
                continue
            chord = self.sets[token - self.unknown - 1] if token > self.unknown else ()
            held = {code // 2 for code in chord if code % 2 == 0}
            for key in [k for k in sounding if k not in held]:
                notes.append((sounding.pop(key), step, key))
            for code in chord:
                if code % 2:
                    sounding[code // 2] = step
        end = int(time[-1]) if len(time) else 0
        notes += [(on, end, key) for key, on in sounding.items()]
        on, off, key = np.array(notes, np.int64).reshape(-1, 3).T
        velocity = np.full(len(on), VELOCITIES[4])
        return from_grid(on, np.maximum(off - on, 1), key % 128, velocity, key // 128, tempo_map(ours, time, v))


class OnsetBPE:
    """The onset stream compressed by byte-pair encoding (Hugging Face `tokenizers`)."""

    def __init__(self, vocab: Vocab, merges: int):
        self.onset, self.merges = Onset(vocab), merges
        self.tokenizer = None
        self.size = self.onset.size

    def text(self, ids: np.ndarray) -> str:
        """Base ids as characters, a space after every wait (BPE merges within these words)."""
        waits = (self.onset.vocab.tables["wait"][np.where(ids < self.onset.vocab.size, ids, 0)] > 0)
        chars = [chr(BPE_BASE + i) + (" " if w else "") for i, w in zip(ids.tolist(), waits.tolist(), strict=True)]
        return "".join(chars)

    def fit(self, pieces: list[Piece]) -> None:
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        texts = [self.text(self.onset.encode(p)) for p in pieces if p.split == "train"]
        alphabet = sorted(set("".join(texts)) - {" "})
        self.tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        self.tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + 1 + self.merges, special_tokens=["<unk>"],
                                      initial_alphabet=alphabet, show_progress=False)
        self.tokenizer.train_from_iterator(texts, trainer)
        self.size = self.tokenizer.get_vocab_size()

    def encode(self, piece: Piece) -> np.ndarray:
        return np.array(self.tokenizer.encode(self.text(self.onset.encode(piece))).ids, np.int64)

    def decode(self, ids) -> NoteTable:
        pieces = [self.tokenizer.id_to_token(int(i)) for i in ids]
        base = [ord(c) - BPE_BASE for p in pieces if p and p != "<unk>" for c in p]
        return self.onset.decode(np.array(base, np.int64))


class Remi:
    """MidiTok's REMI with programs, a style token in front."""

    def __init__(self, vocab: Vocab):
        from miditok import REMI, TokenizerConfig

        config = TokenizerConfig(use_programs=True, use_tempos=True, num_tempos=32, tempo_range=(40, 250),
                                 num_velocities=len(VELOCITIES), beat_res={(0, 4): STEPS_PER_BEAT, (4, 12): 4})
        self.tokenizer, self.styles = REMI(config), vocab.styles
        self.style_offset = len(self.tokenizer)
        self.size = self.style_offset + len(self.styles)

    def fit(self, pieces: list[Piece]) -> None:
        pass

    def encode(self, piece: Piece) -> np.ndarray:
        tokens = self.tokenizer.encode(to_score(piece.table))
        ids = tokens.ids if hasattr(tokens, "ids") else [i for seq in tokens for i in seq.ids]
        return np.array([self.style_offset + self.styles.index(piece.style), *ids], np.int64)

    def decode(self, ids) -> NoteTable:
        ids = [int(i) for i in ids if i < self.style_offset]
        return read_midi(self.tokenizer.decode(ids))


def make_encoding(name: str, vocab: Vocab, args) -> Ours | Onset | Chordwise | OnsetBPE | Remi:
    styles = tuple(s for s in vocab.styles if s != "unknown")
    if name in ("ours-beat", "ours-beat+factors"):
        return Ours(Vocab("beat", styles, instant_order="low-first"))
    if name == "ours-beat-top":
        return Ours(Vocab("beat", styles, instant_order="top-first"))
    if name == "ours-seconds":
        return Ours(Vocab("seconds", styles, instant_order="low-first"))
    if name == "chordwise":
        return Chordwise(vocab, args.chords)
    if name == "onset":
        return Onset(vocab)
    if name == "onset-bpe":
        return OnsetBPE(vocab, args.merges)
    if name == "remi":
        return Remi(vocab)
    raise SystemExit(f"unknown encoding {name!r}; use some of {', '.join(ENCODINGS)}")


def fidelity(original: NoteTable, decoded: NoteTable, absolute_time: bool = False) -> tuple[int, int]:
    """(notes of `original` back in `decoded` with family and pitch at an onset within half a
    grid step (1/24 beat); those back exactly: duration within half a step or 5% too, drums
    aside, and the same loudness bin). Compared in the original's beats; with `absolute_time`
    the decoded times are seconds and go through the original's tempo map first."""
    if len(decoded) == 0:
        return 0, 0
    d_on, d_end = decoded.onset, decoded.onset + decoded.duration
    if absolute_time:
        d_on, d_end = original.beats(decoded.seconds(d_on)), original.beats(decoded.seconds(d_end))
    key = (original.family * 128 + original.pitch).astype(np.int64)
    d_key = (decoded.family * 128 + decoded.pitch).astype(np.int64)
    span = max(original.onset.max(initial=0.0), d_on.max(initial=0.0)) + 10.0
    place = d_key * span + d_on
    order = np.argsort(place)
    place = place[order]
    target = key * span + original.onset
    right = np.clip(np.searchsorted(place, target), 0, len(place) - 1)
    left = np.clip(right - 1, 0, len(place) - 1)
    nearest = np.where(np.abs(place[left] - target) < np.abs(place[right] - target), left, right)
    found = np.abs(place[nearest] - target) <= TOLERANCE
    match = order[nearest]
    length = original.duration
    close = np.abs((d_end - d_on)[match] - length) <= np.maximum(TOLERANCE, 0.05 * length)
    same_length = (original.family == DRUMS) | close
    exact = found & same_length & (velocity_bins(decoded.velocity)[match] == velocity_bins(original.velocity))
    return int(found.sum()), int(exact.sum())


def encode_all(name: str, pieces: list[Piece], vocab: Vocab, args) -> dict:
    """Fit an encoding on the training split; its streams and fixed figures."""
    began = time.perf_counter()
    encoding = make_encoding(name, vocab, args)
    encoding.fit(pieces)
    streams = {split: [] for split in SPLITS}
    for piece in pieces:
        streams[piece.split].append(encoding.encode(piece))
    valid = [p for p in pieces if p.split == "valid"]
    notes = sum(len(p.table) for p in valid)
    absolute = name == "ours-seconds"
    back = np.array([fidelity(p.table, encoding.decode(s), absolute)
                     for p, s in zip(valid, streams["valid"], strict=True)])
    tokens = sum(len(s) for s in streams["valid"])
    seconds = sum(p.seconds for p in valid)
    print(f"{name}: vocabulary {encoding.size:,}, {tokens / notes:.2f} tokens a note, encoded in "
          f"{time.perf_counter() - began:.0f} s", flush=True)
    return {"size": encoding.size, "streams": streams, "encoding": encoding, "vocab": getattr(encoding, "vocab", None),
            "notes": notes, "seconds": seconds,
            "tokens_per_note": tokens / notes, "tokens_per_second": tokens / seconds,
            "onset_kept": back[:, 0].sum() / notes, "exact_kept": back[:, 1].sum() / notes}


def windows(streams: list[np.ndarray], context: int) -> list[tuple[np.ndarray, int]]:
    """Sliding windows (context + 1 tokens, stride context / 2) over each stream, with the
    index of the first target each scores (the ones before were scored by the last window)."""
    stride, out = context // 2, []
    for s in streams:
        begin = 0
        while True:
            out.append((s[begin: begin + context + 1], 0 if begin == 0 else context - stride))
            if begin + context + 1 >= len(s):
                break
            begin += stride
    return out


@torch.no_grad()
def token_nats(model, streams: list[np.ndarray], batch: int = 16) -> list[np.ndarray]:
    """Nats of each stream's tokens after the first (aligned with stream[1:]), each scored
    once in sliding windows."""
    context = model.config.context
    model.eval()
    per_stream = [windows([s], context) for s in streams]
    rows = [row for stream in per_stream for row in stream]
    owner = np.repeat(np.arange(len(streams)), [len(stream) for stream in per_stream])
    parts: list[list[np.ndarray]] = [[] for _ in streams]
    for i in range(0, len(rows), batch):
        chunk = rows[i: i + batch]
        width = max(len(w) for w, _ in chunk)
        x = np.zeros((len(chunk), width), np.int64)
        y = np.full((len(chunk), width - 1), -1, np.int64)
        for r, (w, first) in enumerate(chunk):
            x[r, : len(w)] = w
            y[r, first: len(w) - 1] = w[first + 1:]
        logits = model(torch.from_numpy(x[:, :-1]))
        nats = F.cross_entropy(logits.float().transpose(1, 2), torch.from_numpy(y), ignore_index=-1,
                               reduction="none").numpy()
        for r, (w, first) in enumerate(chunk):
            parts[owner[i + r]].append(nats[r, first: len(w) - 1])
    return [np.concatenate(p) for p in parts]


def code_length(model, streams: list[np.ndarray], batch: int = 16) -> tuple[float, int]:
    """(total nats of the streams' tokens after the first, tokens scored)."""
    nats = token_nats(model, streams, batch)
    return float(sum(n.sum() for n in nats)), sum(len(n) for n in nats)


def melody_songs(root: str, songs: int) -> list[tuple[NoteTable, NoteTable, NoteTable]]:
    """(melody, accompaniment, another song's melody moved to start with this one's and cut
    at the accompaniment's end) of the first `songs` held-out POP909 test songs."""
    pairs = [melody_and_accompaniment(path, 30.0) for path, _ in held_out_songs(Path(root) / "pop909", songs)]
    pairs = [(m, a) for m, a in pairs if len(m) and len(a)]
    out = []
    for i, (melody, accompaniment) in enumerate(pairs):
        other = pairs[(i + 1) % len(pairs)][0]
        moved = other.select(np.arange(len(other)))
        moved.onset = moved.onset + (melody.onset.min() - other.onset.min())
        end = float((accompaniment.onset + accompaniment.duration).max())
        out.append((melody, accompaniment, moved.select(np.flatnonzero(moved.onset < end))))
    return out


def melody_use(model, encoding: Ours, songs: list[tuple[NoteTable, NoteTable, NoteTable]]) -> dict:
    """Bits per accompaniment note token (`piano`, on and off) beside the song's own melody
    and beside another song's; melody use = 1 - own / other."""
    vocab, piano = encoding.vocab, FAMILY_ID["piano"]
    own, other = [], []
    for melody, accompaniment, wrong in songs:
        for tables, out in (([melody, accompaniment], own), ([wrong, accompaniment], other)):
            stream = encode_notes(NoteTable.joined(tables).sorted(), vocab, "pop")
            nats = token_nats(model, [stream])[0]
            out.append(float(nats[vocab.tables["family"][stream[1:]] == piano].sum()) / math.log(2))
    notes = sum(len(a) for _, a, _ in songs)
    return {"accompaniment_bits_own_melody": sum(own) / notes, "accompaniment_bits_other_melody": sum(other) / notes,
            "melody_use": 1 - sum(own) / sum(other)}


@torch.no_grad()
def ms_per_token(model, first: int, tokens: int = 200, warmup: int = 16) -> float:
    """Batch-1 sampling with a KV cache: milliseconds a token."""
    model.eval()
    tokens = min(tokens, model.config.context - warmup - 1)
    cache, token = model.new_cache(), torch.tensor([[first]])
    for i in range(warmup + tokens):
        if i == warmup:
            began = time.perf_counter()
        probs = torch.softmax(model(token, cache=cache)[:, -1].float(), dim=-1)
        token = torch.multinomial(probs, 1)
    return (time.perf_counter() - began) * 1000 / tokens


def run(name: str, encoded: dict, args, seed: int) -> dict:
    """Train the plain model on one encoding's streams for the budget; score it."""
    torch.manual_seed(seed)
    size = encoded["size"]
    factors = name.endswith("+factors")
    model = build_model(shape(args.size), size, dropout=0.0, side_features=False, note_factors=factors)
    if factors:
        model.set_note_factors(encoded["vocab"])
    context = model.config.context
    flat = np.concatenate(encoded["streams"]["train"])
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=args.lr, betas=(0.9, 0.95))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(args.precision, torch.device("cpu")))
    rng = np.random.default_rng(seed)
    budget, spent, step, tokens = args.minutes * 60.0, 0.0, 0, 0
    model.train()
    while spent < budget:
        began = clock(args)
        for group in optimizer.param_groups:
            group["lr"] = rate(step, spent / budget, args.lr, args.lr / 10, 50)
        starts = rng.integers(0, len(flat) - context - 1, args.batch)
        batch = torch.from_numpy(np.stack([flat[s: s + context + 1] for s in starts]))
        with autocast:
            logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, size), batch[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step, tokens = step + 1, tokens + batch.shape[0] * context
        spent += clock(args) - began
    nats, scored = code_length(model, encoded["streams"]["valid"])
    bits = nats / math.log(2)
    composer = model.fold_note_factors() if factors else model  # as an exported model composes
    ms = ms_per_token(composer, int(encoded["streams"]["valid"][0][0]))
    use = melody_use(model, encoded["encoding"], args.melody_songs) \
        if args.melody_songs and isinstance(encoded["encoding"], Ours) else {}
    return {**use, "encoding": name, "seed": seed, "steps": step, "train_tokens_per_second": tokens / spent,
            "valid_loss": nats / scored, "bits_per_second": bits / encoded["seconds"],
            "bits_per_note": bits / encoded["notes"], "ms_per_token": ms,
            "compose_seconds_per_second": ms / 1000 * encoded["tokens_per_second"],
            **{k: encoded[k] for k in ("size", "tokens_per_note", "tokens_per_second", "onset_kept", "exact_kept")}}


def compose(runs: list[dict]) -> str:
    """The best run's composing seconds per second of music ("n/a" where not timed)."""
    times = [r["compose_seconds_per_second"] for r in runs if r.get("compose_seconds_per_second") is not None]
    return f"{min(times):.3f}" if times else "n/a"


def table(results: list[dict]) -> str:
    """Each encoding's fixed figures, and the mean (min-max) over seeds of the trained ones."""
    lines = ["| encoding | seeds | vocabulary | tokens / note | tokens / s of music | notes back (onset) "
             "| notes back (exact) | train tokens/s | valid nats/token | **bits / s of music** | bits / note "
             "| compose s / s of music (best run) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in dict.fromkeys(r["encoding"] for r in results):
        mine = [r for r in results if r["encoding"] == name]
        first = mine[0]

        def spread(key: str, digits: int, mine=mine) -> str:
            values = np.array([r[key] for r in mine], float)
            return f"{values.mean():,.{digits}f} ({values.min():,.{digits}f}-{values.max():,.{digits}f})"
        lines.append(f"| {name} | {len(mine)} | {first['size']:,} | {first['tokens_per_note']:.2f} "
                     f"| {first['tokens_per_second']:.1f} | {first['onset_kept']:.1%} | {first['exact_kept']:.1%} "
                     f"| {spread('train_tokens_per_second', 0)} | {spread('valid_loss', 3)} "
                     f"| **{spread('bits_per_second', 1)}** | {spread('bits_per_note', 2)} "
                     f"| {compose(mine)} |")
    used = [r for r in results if "melody_use" in r]
    if used:
        lines += ["", "| encoding | seeds | accompaniment bits per note (on and off), own melody "
                  "| ... beside another song's melody | **melody use** |", "|---|---:|---:|---:|---:|"]
        for name in dict.fromkeys(r["encoding"] for r in used):
            mine = [r for r in used if r["encoding"] == name]

            def spread(key: str, digits: int, mine=mine) -> str:
                values = np.array([r[key] for r in mine], float)
                return f"{values.mean():,.{digits}f} ({values.min():,.{digits}f}-{values.max():,.{digits}f})"
            lines.append(f"| {name} | {len(mine)} | {spread('accompaniment_bits_own_melody', 3)} "
                         f"| {spread('accompaniment_bits_other_melody', 3)} | **{spread('melody_use', 4)}** |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="a built beat-mode dataset (`musenet data build`)")
    parser.add_argument("--encodings", default=",".join(ENCODINGS), help=f"some of {', '.join(ENCODINGS)}")
    parser.add_argument("--chords", type=int, default=8000, help="chordwise: the commonest sets kept as tokens")
    parser.add_argument("--merges", type=int, default=4000, help="onset-bpe: merges learned")
    parser.add_argument("--melody-use", metavar="DIR", help="a folder with pop909/: also measure how much our "
                        "encodings' models read a melody (held-out test songs)")
    parser.add_argument("--songs", type=int, default=16, help="--melody-use: test songs (default 16)")
    args, out = study_arguments(parser)
    args.melody_songs = melody_songs(args.melody_use, args.songs) if args.melody_use else None
    pieces, vocab = load_pieces(args.data)
    print(f"{len(pieces)} pieces ({sum(p.split == 'valid' for p in pieces)} valid)", flush=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["encoding"], r["seed"]) for r in results}  # a rerun goes on where a killed one stopped
    seeds = [int(s) for s in args.seeds.split(",")]
    for name in args.encodings.split(","):
        if all((name, seed) in done for seed in seeds):
            continue
        encoded = encode_all(name, pieces, vocab, args)
        for seed in seeds:
            if (name, seed) in done:
                continue
            results.append(run(name, encoded, args, seed))
            write_atomic(results_path, (json.dumps(results, indent=2) + "\n").encode())
            print(f"{name} seed {seed}: {results[-1]['bits_per_second']:.1f} bits per second", flush=True)
    print(f"\n{args.size} model, {args.minutes:g} min of training per encoding and seed on this machine\n")
    print(table(results))


if __name__ == "__main__":
    main()

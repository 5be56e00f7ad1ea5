"""What a melody tells about its accompaniment: an estimate for issue #16's accompaniment target.

    python benchmarks/melody_information.py --corpora ../shared/corpora [--songs N] [--epochs 6]

Issue #16 asks that a POP909 accompaniment cost at least 15% fewer bits per note given its
melody than alone. How much can a melody tell? Small networks (`Predictor`, two hidden layers)
are fitted on POP909's train-split songs and scored on its test split (the split a build
uses, by song), each predicting one part of an accompaniment note from a fixed set of
features, with and without the melody's (and, as a bound on what harmony can tell, POP909's
annotated chord):

- **pitch**: the MIDI pitch of each accompaniment note (notes in onset, then pitch order), from
  the accompaniment's own recent notes (pitch classes struck in each of the 4 beats before
  it, sounding at its onset, struck with it below it; the previous note's pitch and the gap
  to it); + the melody (its pitch class sounding at the onset, those struck in the beat
  before, the beat from the onset and the beat after, its next note's); + the chord
  annotated at the onset (its tones);
- **timing**: whether an accompaniment note starts at each 16th note of the song, from the
  accompaniment's onsets on the 16 sixteenths before and the place in the 4-beat bar; + the
  melody's onsets from 8 sixteenths before to 8 after.

Bits are per accompaniment note (timing: the bits of every sixteenth, divided by the notes).
The gains bound what reading the melody can save on these parts of a note, for models that
see these features; compare them with what the bundled model spends on an accompaniment note
alone (`benchmarks/keep.py`, "alone": about 6.9 bits, pitch, velocity, timing and note-offs
together).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musenet.arrange import tones_at
from musenet.corpus.pop909 import MELODY, read_chords, read_song, song_files
from musenet.evaluate.harmony import chord_at as sounding_at
from musenet.sources import SPLITS, split_of

BEATS_BACK = 4        # beats of the accompaniment's past, one multi-hot each
SIXTEENTHS_BACK = 16  # the timing model's past
MELODY_AROUND = 8     # the timing model's melody onsets, each side
GAPS = np.array([1e-6, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0])  # beats since the previous accompaniment note


def class_counts(pitch: np.ndarray) -> np.ndarray:
    """(len(pitch) + 1, 12): how many of the first i notes have each pitch class."""
    counts = np.zeros((len(pitch) + 1, 12), np.int64)
    counts[1:] = np.cumsum(np.eye(12, dtype=np.int64)[pitch % 12], axis=0)
    return counts


def struck_between(onset: np.ndarray, pitch: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(len(lo), 12) bool: pitch classes of the notes (sorted by onset) struck in [lo, hi)."""
    counts = class_counts(pitch)
    return (counts[np.searchsorted(onset, hi - 1e-6)] - counts[np.searchsorted(onset, lo - 1e-6)]) > 0


def sounding_from_before(onset: np.ndarray, end: np.ndarray, pitch: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(len(at), 12) bool: pitch classes of the notes (sorted by onset) struck before each
    time and still sounding at it."""
    out = np.zeros((len(at), 12), bool)
    for pc in range(12):
        mine = pitch % 12 == pc
        if mine.any():
            latest_end = np.maximum.accumulate(end[mine])
            i = np.searchsorted(onset[mine], at - 1e-6) - 1
            out[:, pc] = (i >= 0) & (latest_end[np.clip(i, 0, None)] > at + 1e-6)
    return out


def one_hot(index: np.ndarray, size: int) -> np.ndarray:
    return np.eye(size, dtype=np.float32)[index]


def pitch_features(path: Path) -> dict[str, np.ndarray] | None:
    """Per accompaniment note of one song: each feature set, and the note's pitch."""
    table, roles = read_song(path)
    rows, tune = np.flatnonzero(roles != MELODY), np.flatnonzero(roles == MELODY)
    if len(rows) < 2 or len(tune) == 0:
        return None
    rows = rows[np.lexsort((table.pitch[rows], table.onset[rows]))]
    tune = tune[np.argsort(table.onset[tune], kind="stable")]
    onset, pitch, end = table.onset[rows], table.pitch[rows], (table.onset + table.duration)[rows]
    counts = class_counts(pitch)
    first_struck_with = np.searchsorted(onset, onset - 1e-6)
    below = (counts[np.arange(len(rows))] - counts[first_struck_with]) > 0  # struck with it, lower
    previous = np.r_[128, pitch[:-1]]  # 128: none
    gap = np.r_[len(GAPS) + 1, np.searchsorted(GAPS, np.diff(onset))]
    history = np.concatenate([*(struck_between(onset, pitch, onset - 1 - k, onset - k) for k in range(BEATS_BACK)),
                              sounding_from_before(onset, end, pitch, onset), below,
                              one_hot(previous, 129), one_hot(gap, len(GAPS) + 2)], axis=1)

    m_onset, m_pitch = table.onset[tune], table.pitch[tune]
    m_sounding = sounding_at(table, roles == MELODY, onset)
    after = np.searchsorted(m_onset, onset + 1e-6)
    upcoming = np.where(after < len(tune), m_pitch[np.minimum(after, len(tune) - 1)] % 12, 12)
    melody = np.concatenate([m_sounding, ~m_sounding.any(axis=1, keepdims=True),
                             *(struck_between(m_onset, m_pitch, onset + lo, onset + lo + 1) for lo in (-1, 0, 1)),
                             one_hot(upcoming, 13)], axis=1)

    chords = read_chords(path.parent)
    tones = tones_at(chords, table.seconds(onset))
    chord = np.concatenate([tones, ~tones.any(axis=1, keepdims=True)], axis=1)
    return {"history": history, "melody": melody, "chord": chord, "target": pitch.astype(np.int64),
            "notes": np.array([len(rows)])}


def timing_features(path: Path) -> dict[str, np.ndarray] | None:
    """Per sixteenth note of one song: each feature set, and whether an accompaniment note
    starts there (with the song's accompaniment notes, to divide by)."""
    table, roles = read_song(path)
    sixteenth = np.round(table.onset * 4).astype(np.int64)
    steps = int(sixteenth.max()) + 1
    mine = np.bincount(sixteenth[roles != MELODY], minlength=steps) > 0
    tune = np.bincount(sixteenth[roles == MELODY], minlength=steps) > 0
    if not mine.any() or not tune.any():
        return None
    pad = np.zeros(max(SIXTEENTHS_BACK, MELODY_AROUND), bool)
    mine_padded, tune_padded = np.r_[pad, mine, pad], np.r_[pad, tune, pad]
    at = np.arange(steps) + len(pad)
    history = np.stack([mine_padded[at - k] for k in range(1, SIXTEENTHS_BACK + 1)], axis=1)
    melody = np.stack([tune_padded[at + k] for k in range(-MELODY_AROUND, MELODY_AROUND + 1)], axis=1)
    history = np.concatenate([history, one_hot(np.arange(steps) % 16, 16)], axis=1)
    return {"history": history.astype(np.float32), "melody": melody.astype(np.float32),
            "target": mine.astype(np.int64), "notes": np.array([int((roles != MELODY).sum())])}


class Predictor(nn.Module):
    def __init__(self, inputs: int, outputs: int, width: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(inputs, width), nn.GELU(), nn.Dropout(0.2), nn.Linear(width, width),
                                 nn.GELU(), nn.Dropout(0.2), nn.Linear(width, outputs))

    def forward(self, x):
        return self.net(x)


def fit_and_score(train: dict, test: dict, sets: tuple[str, ...], outputs: int, epochs: int, seed: int) -> float:
    """Total test bits of the target under a Predictor fitted on `train` with the feature
    `sets`; the best epoch's (an optimistic pick, the same for every row)."""
    torch.manual_seed(seed)
    x_train = torch.from_numpy(np.concatenate([train[s] for s in sets], axis=1).astype(np.float32))
    x_test = torch.from_numpy(np.concatenate([test[s] for s in sets], axis=1).astype(np.float32))
    y_train, y_test = torch.from_numpy(train["target"]), torch.from_numpy(test["target"])
    model = Predictor(x_train.shape[1], outputs)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.01)
    best = float("inf")
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(y_train)).split(1024):
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            best = min(best, F.cross_entropy(model(x_test), y_test, reduction="sum").item() / np.log(2))
    return best


def gather(songs: list[Path], read) -> dict[str, np.ndarray]:
    parts = [f for f in map(read, songs) if f is not None]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", required=True, help="a folder with pop909/ (e.g. ../shared/corpora)")
    parser.add_argument("--songs", type=int, default=None, help="read only the first N songs (a quick look)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    split = {"train": [], "test": []}
    for path, song in song_files(Path(args.corpora) / "pop909")[: args.songs]:
        name = SPLITS[split_of(f"pop909:{song}")]
        if name in split:
            split[name].append(path)
    pitch = {name: gather(paths, pitch_features) for name, paths in split.items()}
    timing = {name: gather(paths, timing_features) for name, paths in split.items()}
    print(f"POP909: {len(split['train'])} train songs ({pitch['train']['notes'].sum():,} accompaniment notes), "
          f"{len(split['test'])} test songs ({pitch['test']['notes'].sum():,}); "
          f"read in {time.perf_counter() - began:.0f} s\n")
    print("| part of an accompaniment note | features | test bits per note | saved by the melody (or chord) |")
    print("|---|---|---:|---:|")
    rows = [("pitch", pitch, ("history",), 128), ("pitch", pitch, ("history", "melody"), 128),
            ("pitch", pitch, ("history", "melody", "chord"), 128), ("pitch", pitch, ("history", "chord"), 128),
            ("timing", timing, ("history",), 2), ("timing", timing, ("history", "melody"), 2)]
    alone = {}
    for part, data, sets, outputs in rows:
        bits = fit_and_score(data["train"], data["test"], sets, outputs, args.epochs, args.seed)
        per_note = bits / data["test"]["notes"].sum()  # each part over the notes of its own songs
        alone.setdefault(part, per_note)
        saved = alone[part] - per_note
        label = {"history": "its own recent notes", "melody": "+ melody", "chord": "+ annotated chord"}
        print(f"| {part} | {' '.join(label[s] for s in sets)} | {per_note:.3f} | "
              f"{'' if sets == ('history',) else f'{saved:.3f} ({saved / alone[part]:.1%})'} |", flush=True)
    print(f"\n{time.perf_counter() - began:.0f} s in all")


if __name__ == "__main__":
    main()

"""A harmoniser: which pitch classes the chord under a melody holds, beat by beat.

Accompanying a melody, the model hears it well enough to follow its rhythm but chooses its
pitches with little regard for the harmony the melody implies (issue #16: 48% of its
onsets fall in POP909's annotated chord, 88% of the real accompaniments'). A melody says
more about its chord than about any one accompaniment note, so a small network learns that
relation on its own: for each beat of a melody it gives the probability that each pitch
class is in the chord there (`Harmoniser.chord_tones`), and the sampler leans the added
parts' pitches towards those (`lean_to_chords`), keeping how often and which family plays as
the model has it. The same lean serves chords the user gives as symbols (`chord_symbol_tones`),
when accompanying and when composing (`musenet generate --chords`).

The network reads, for each beat, the melody's pitch classes sounding in the beats around it
(`CONTEXT_BEATS` each side; each note counts by how much of the beat it fills) and the
melody's pitch-class profile over the whole piece (its key). It is equivariant under
transposition by construction: the logit of pitch class r comes from the same network reading
the features rolled so that r is at C. It is fitted (`fit`, `musenet harmoniser`) on POP909's
train-split songs, against the chords annotated there (MIT licence; the weights ship beside
the model as `harmoniser.safetensors`, 0.5 MB).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors
from torch import nn

from .errors import MuseNetError
from .files import write_atomic
from .instruments import DRUMS
from .notes import NoteTable

HARMONISER_FILE = "harmoniser.safetensors"
CONTEXT_BEATS = 8                    # beats read each side of the one harmonised
BLOCKS = 2 * CONTEXT_BEATS + 3       # a pitch-class vector per beat read, the profile, the onsets
FLOOR = 0.02                         # the least probability a pitch class is given (log of 0 is -inf)


def beat_occupancy(table: NoteTable, beats: int) -> tuple[np.ndarray, np.ndarray]:
    """((beats, 12), (beats, 12)) of a table's melodic notes: how much of each beat
    [b, b + 1) each pitch class sounds (0 to 1), and which pitch classes start in it."""
    melodic = table.family != DRUMS
    onset, end, pc = table.onset[melodic], (table.onset + table.duration)[melodic], table.pitch[melodic] % 12
    first = np.clip(np.floor(onset).astype(np.int64), 0, beats)
    last = np.clip(np.ceil(end).astype(np.int64), first + 1, beats)  # one past the last beat touched
    spans = np.maximum(last - first, 0)
    note = np.repeat(np.arange(len(onset)), spans)
    beat = np.repeat(first, spans) + (np.arange(spans.sum()) - np.repeat(np.cumsum(spans) - spans, spans))
    overlap = np.minimum(end[note], beat + 1) - np.maximum(onset[note], beat)
    sounding = np.zeros((beats, 12))
    np.add.at(sounding, (beat, pc[note]), np.clip(overlap, 0, 1))
    struck = np.zeros((beats, 12))
    inside = first < beats
    struck[first[inside], pc[inside]] = 1.0
    return np.minimum(sounding, 1.0), struck


def melody_features(table: NoteTable, beats: int | None = None) -> np.ndarray:
    """(beats, BLOCKS, 12) float32: for each beat of `table`'s melodic notes, the pitch
    classes sounding in each beat from CONTEXT_BEATS before it to CONTEXT_BEATS after, the
    piece's pitch-class profile (scaled to a maximum of 1), and those struck in the beat."""
    if beats is None:
        beats = int(np.ceil((table.onset + table.duration).max(initial=0.0)))
    sounding, struck = beat_occupancy(table, beats)
    padded = np.concatenate([np.zeros((CONTEXT_BEATS, 12)), sounding, np.zeros((CONTEXT_BEATS, 12))])
    around = np.stack([padded[k: k + beats] for k in range(2 * CONTEXT_BEATS + 1)], axis=1)
    profile = sounding.sum(axis=0)
    profile = profile / max(profile.max(), 1e-9)
    return np.concatenate([around, np.broadcast_to(profile, (beats, 1, 12)), struck[:, None]], axis=1).astype(
        np.float32)


class Harmoniser(nn.Module):
    """For each beat's features (batch, BLOCKS, 12): a logit per pitch class that it is in the chord."""

    def __init__(self, hidden: int = 256):
        super().__init__()
        self.hidden = hidden
        self.net = nn.Sequential(nn.Linear(BLOCKS * 12, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, 1))
        roll = (torch.arange(12)[None, :] + torch.arange(12)[:, None]) % 12  # roll[r, j] = (j + r) % 12
        self.register_buffer("roll", roll, persistent=False)
        self.trained: dict = {}  # how it was fitted and scored (`fit`), kept in the file's metadata

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        rolled = features[:, :, self.roll]                  # (batch, blocks, 12 roots, 12): r moved to C
        rolled = rolled.permute(0, 2, 1, 3).flatten(2)     # (batch, 12 roots, blocks * 12)
        return self.net(rolled)[..., 0]

    @torch.inference_mode()
    def chord_tones(self, table: NoteTable, beats: int | None = None) -> np.ndarray:
        """(beats, 12): the probability that each pitch class is in the chord at each beat of
        `table`'s melodic notes."""
        features = torch.from_numpy(melody_features(table, beats))
        return torch.sigmoid(self(features)).numpy()

    def save(self, directory: str | Path, trained: dict | None = None) -> Path:
        path = Path(directory) / HARMONISER_FILE
        metadata = {"hidden": str(self.hidden), "trained": json.dumps(trained or {})}
        write_atomic(path, save_tensors({k: v.contiguous() for k, v in self.state_dict().items()}, metadata))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Harmoniser | None:
        """The harmoniser saved in a model directory, or None if it has none."""
        path = Path(directory) / HARMONISER_FILE
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), "pt") as f:
                metadata = f.metadata() or {}
            harmoniser = cls(int(metadata.get("hidden", 256)))
            harmoniser.load_state_dict(load_file(str(path)))
        except (OSError, ValueError, RuntimeError, SafetensorError) as error:
            raise MuseNetError(f"{path}: not a harmoniser file ({error})") from None
        harmoniser.trained = json.loads(metadata.get("trained", "{}"))
        return harmoniser.eval()


def song_examples(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """A POP909 song's (features, chord tones) for every beat whose middle has an annotated
    chord, the melody alone read (None if it has no melody or no chords)."""
    from .arrange import tones_at
    from .corpus.pop909 import MELODY, read_chords, read_song

    table, roles = read_song(path)
    chords = read_chords(path.parent)
    if not (roles == MELODY).any() or len(chords.root) == 0:
        return None
    melody = table.select(np.flatnonzero(roles == MELODY))
    beats = int(np.ceil((table.onset + table.duration).max()))
    tones = tones_at(chords, table.seconds(np.arange(beats) + 0.5))
    annotated = tones.any(axis=1)  # an annotated chord has tones; N and gaps none
    return melody_features(melody, beats)[annotated], tones[annotated]


def pop909_examples(root: str | Path, split: str, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Every beat of the POP909 songs of one split (as a build splits them, by song)."""
    from tqdm import tqdm

    from .corpus.pop909 import song_files
    from .sources import SPLITS, split_of

    songs = [path for path, song in song_files(root) if split_of(f"pop909:{song}") == SPLITS.index(split)]
    features, tones = [], []
    for path in tqdm(songs, desc=f"reading {split} songs", unit="song", disable=not progress, dynamic_ncols=True):
        found = song_examples(path)
        if found is not None:
            features.append(found[0])
            tones.append(found[1])
    if not features:
        raise MuseNetError(f"{root}: no POP909 songs with melody and chords in the {split} split")
    return np.concatenate(features), np.concatenate(tones).astype(np.float32)


def scores(harmoniser: Harmoniser, features: np.ndarray, tones: np.ndarray) -> dict:
    """Bits per pitch class (binary cross-entropy), the share of beats whose three likeliest
    pitch classes are all chord tones, and the mean probability given to chord tones and to
    the others."""
    with torch.inference_mode():
        logits = harmoniser(torch.from_numpy(features))
        target = torch.from_numpy(tones)
        bits = float(F.binary_cross_entropy_with_logits(logits, target)) / np.log(2)
        p = torch.sigmoid(logits).numpy()
    top3 = np.argsort(-p, axis=1)[:, :3]
    return {"bits_per_class": bits, "top3_all_tones": float(tones[np.arange(len(p))[:, None], top3].all(axis=1).mean()),
            "p_tones": float(p[tones > 0].mean()), "p_others": float(p[tones == 0].mean()), "beats": len(p)}


def fit(corpora: str | Path, epochs: int = 6, seed: int = 0, progress: bool = True) -> tuple[Harmoniser, dict]:
    """A harmoniser fitted on POP909's train split (under `corpora`), scored on its
    validation and test splits."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    root = Path(corpora) / "pop909" if (Path(corpora) / "pop909").is_dir() else Path(corpora)
    x, y = pop909_examples(root, "train", progress)
    held = {split: pop909_examples(root, split, progress) for split in ("valid", "test")}
    harmoniser = Harmoniser()
    optimiser = torch.optim.AdamW(harmoniser.parameters(), lr=1e-3, weight_decay=0.01)
    steps = epochs * int(np.ceil(len(x) / 256))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=steps)
    started = time.time()
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for first in range(0, len(x), 256):
            batch = order[first: first + 256]
            logits = harmoniser(torch.from_numpy(x[batch]))
            loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(y[batch]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    harmoniser.eval()
    trained = {"train_beats": len(x), "epochs": epochs, "seed": seed, "seconds": round(time.time() - started, 1),
               **{split: scores(harmoniser, *data) for split, data in held.items()}}
    harmoniser.trained = trained
    return harmoniser, trained


def beat_lean(tones: np.ndarray, table: NoteTable | None, vocab) -> np.ndarray:
    """(grid steps, 12): the lean at every grid step of a piece (`encoding.time_steps`; in
    seconds mode on `table`'s tempo map, which beat mode does not need) from chord tones a
    beat (beats, 12: probabilities, or bool), to a beat past the last: the log of each pitch
    class's probability (at least FLOOR); none (0) on a beat without a chord (all zero)."""
    from .encoding import time_steps
    from .vocab import STEP_SECONDS, STEPS_PER_BEAT

    tones = np.asarray(tones, np.float64)
    beats = len(tones)
    lean = np.where(tones.any(axis=1, keepdims=True), np.log(np.clip(tones, FLOOR, 1.0)), 0.0)
    length = int(time_steps(table, np.array(float(beats)), vocab.time_mode)) + STEPS_PER_BEAT
    if vocab.time_mode == "beat":
        beat_of_step = np.arange(length) // STEPS_PER_BEAT
    else:
        beat_of_step = np.floor(table.beats(np.arange(length) * STEP_SECONDS)).astype(np.int64)
    return lean[np.clip(beat_of_step, 0, beats - 1)].astype(np.float32)


def harmony_steps(harmoniser: Harmoniser, melody: NoteTable, vocab) -> np.ndarray:
    """`beat_lean` of the chord tones the harmoniser hears in `melody`, a beat past its end."""
    beats = int(np.ceil((melody.onset + melody.duration).max(initial=0.0))) + 1
    return beat_lean(harmoniser.chord_tones(melody, beats), melody, vocab)


def lean_to_chords(logits: torch.Tensor, bias: torch.Tensor, tables) -> torch.Tensor:
    """Logits (batch, vocab) with each melodic note-on moved by `bias` (batch, 12) of its
    pitch class, each family's note-ons then scaled back to the probability they had
    together: the lean changes which pitches a family plays, never how often it plays."""
    ids, pitch_class, family = tables.melodic_on_ids, tables.melodic_on_class, tables.melodic_on_family
    before = logits.index_select(1, ids).float()
    after = before + bias.index_select(1, pitch_class)
    top = before.max(dim=1, keepdim=True).values
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # tokens the head does not score: -inf
    mass_before = tables.per_family(torch.exp(before - top), family)
    mass_after = tables.per_family(torch.exp(after - top), family)
    restore = (mass_before.clamp_min(1e-30).log() - mass_after.clamp_min(1e-30).log()).index_select(1, family)
    return logits.index_copy(1, ids, (after + restore).to(logits.dtype))


LEAD_SHEET = (("°", "dim"), ("mmaj7", "mM7"), ("minmaj7", "mM7"), ("maj9", "M9"), ("maj11", "M11"),
              ("maj13", "M13"))  # lead-sheet spellings music21 writes otherwise


def chord_list(text: str) -> list[str]:
    """Chord symbols written as a user writes them: separated by spaces, commas or bar lines
    (`"C G | Am F"`)."""
    return [symbol for symbol in re.split(r"[\s,|]+", text) if symbol]


def chord_symbol_tones(symbol: str) -> np.ndarray:
    """(12,) bool: the pitch classes of a chord symbol as lead sheets write it (`C`, `Am`,
    `C-7`, `F#m7`, `Bbmaj7`, `Cmaj9`, `D/F#`, read by music21); none for `N` or `-` (no chord)."""
    if symbol in ("N", "-"):
        return np.zeros(12, bool)
    from music21 import harmony

    root = re.match(r"^([A-G])([#b]?)(.*)$", symbol.strip())
    if root is None:
        raise MuseNetError(f"unknown chord symbol {symbol!r}: it must begin with a root note A-G (write e.g. C, Am, "
                           "F#m7, Bbmaj7, D/F#, or N for none)")
    letter, accidental, rest = root.groups()
    kind, slash, bass = rest.partition("/")
    if kind.startswith("-"):  # C-7: minor, as jazz writes it (music21 reads "-" as a flat)
        kind = "m" + kind[1:]
    for written, meant in LEAD_SHEET:
        kind = kind.replace(written, meant)
    bass = re.sub(r"^([A-G])b", r"\1-", bass)  # music21 writes flats as "-"
    figure = letter + ("-" if accidental == "b" else accidental) + kind + (slash + bass if slash else "")
    try:
        classes = harmony.ChordSymbol(figure).pitchClasses
    except Exception as error:  # music21 raises several kinds for a figure it cannot read
        raise MuseNetError(f"unknown chord symbol {symbol!r} (write e.g. C, Am, F#m7, Bbmaj7, D/F#, or N for "
                           f"none): {error}") from None
    if not classes:
        raise MuseNetError(f"unknown chord symbol {symbol!r}")
    tones = np.zeros(12, bool)
    tones[classes] = True
    return tones


def symbols_by_beat(symbols: list[str], beats: int, bar_beats: float = 4.0) -> np.ndarray:
    """(beats, 12) bool: the tones of chord symbols given one a bar (`bar_beats` quarter-note
    beats), repeated as long as need be; a beat takes the chord of the bar it starts in."""
    if not symbols:
        raise MuseNetError("give at least one chord symbol")
    tones = np.stack([chord_symbol_tones(s) for s in symbols])
    bar = np.floor(np.arange(beats) / bar_beats + 1e-9).astype(np.int64)
    return tones[bar % len(symbols)]


def check_chords(chords, harmony: float | None) -> None:
    """Before any work: every chord symbol read (a bad one is a one-line error), and a lean
    asked for with no chords to lean towards refused."""
    if chords is None:
        if harmony:
            raise MuseNetError("harmony leans towards chords: give them (--chords, or chords=) to lean towards")
    elif not len(chords) or isinstance(chords[0], str):
        symbols_by_beat(list(chords), 1)


def chord_tones_of(chords, beats: int, bar_beats: float = 4.0) -> np.ndarray:
    """(beats, 12): chord symbols given one a bar (`symbols_by_beat`), or chord tones a beat
    given as an array (beats, 12) already, as they are."""
    if not len(chords) or isinstance(chords[0], str):
        return symbols_by_beat(list(chords), beats, bar_beats)
    tones = np.asarray(chords, np.float64)
    if tones.ndim != 2 or tones.shape[1] != 12:
        raise MuseNetError(f"chords: give chord symbols or an array (beats, 12), not shape {tones.shape}")
    return tones


"""Held notes: does a model remember the notes it holds? (The held-note side features, MODEL_CARD.md stage 14.)

    python benchmarks/held_notes.py --model OLD --model NEW --data data/band \
        --prompts ../shared/midi/multitrack --corpora ../shared/corpora [--seeds 3] [--per-style 2]

Two tables, every model measured in the same run:

- **Note-offs on real music**: held-out test pieces of every style of a built dataset (the
  first `--tokens` tokens of up to `--per-style` pieces a style): the bits each model spends
  on a melodic note's note-off, by how long the note had sounded. A model that forgets a note
  it holds spends many bits on its note-off when it comes, and, composing, rarely draws it.
- **Continuations**: `musenet eval`'s continuation prompts (the MIDI songs of `--prompts` and
  band versions of 3 held-out POP909 songs), each cut after 20 s and continued for 30 s in
  pop style with the song's families, `--seeds` times: the share of the new notes (drums
  aside) held 4 s or longer (`evaluate.continuation`'s long-held share) and held to the
  sampler's cap (`Settings.max_note_seconds`, 8 s), and the mean notes sounding at once,
  against the songs' own next 30 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from musenet.composer import Composer
from musenet.dataset import Dataset
from musenet.evaluate.band import prompt_list
from musenet.evaluate.continuation import CONTINUE_SECONDS, PROMPT_SECONDS, window_figures
from musenet.evaluate.keep import token_bits
from musenet.evaluate.music import excerpt
from musenet.instruments import FAMILIES
from musenet.sequence import header_length, note_keys, token_seconds
from musenet.settings import Settings

HELD_BINS = (0.0, 1.0, 2.0, 4.0, 8.0, np.inf)  # seconds a note had sounded when its note-off came
CAP = Settings().max_note_seconds


def note_off_ages(tokens: np.ndarray, vocab) -> np.ndarray:
    """For each token of a whole piece: how long the note a melodic note-off releases had
    sounded (seconds); NaN for other tokens."""
    seconds = token_seconds(tokens, vocab)
    key = note_keys(tokens, vocab)
    key[: header_length(tokens, vocab)] = -1
    where = np.flatnonzero(key >= 0)
    order = np.lexsort((where, key[where]))
    keys, places = key[where][order], where[order]
    is_off = vocab.tables["velocity"][tokens[places]] == 0
    released = is_off & np.r_[False, keys[1:] == keys[:-1]]  # the key's previous event is its note-on
    ages = np.full(len(tokens), np.nan)
    ages[places[released]] = seconds[places[released]] - seconds[places[np.flatnonzero(released) - 1]]
    return ages


def test_pieces(data: Dataset, per_style: int, tokens: int) -> list[np.ndarray]:
    """The first `tokens` tokens of up to `per_style` test pieces of each style."""
    chosen, count = [], {}
    for row in data.rows:
        style = data.style_of(row)
        if count.get(style, 0) < per_style:
            chosen.append(data.piece(row)[:tokens])
            count[style] = count.get(style, 0) + 1
    return chosen


def note_off_bits(composer: Composer, pieces: list[np.ndarray]) -> list[tuple[float, int]]:
    """(mean bits, note-offs) of the note-offs in each of HELD_BINS."""
    sums, counts = np.zeros(len(HELD_BINS) - 1), np.zeros(len(HELD_BINS) - 1, np.int64)
    for tokens in pieces:
        bits = token_bits(composer.model, composer.vocab, tokens, composer.device)
        ages = note_off_ages(tokens, composer.vocab)[1:]  # aligned with the bits
        known = np.isfinite(ages)
        bins = np.digitize(ages[known], HELD_BINS[1:-1])
        np.add.at(sums, bins, bits[known])
        np.add.at(counts, bins, 1)
    return [(s / max(c, 1), int(c)) for s, c in zip(sums, counts, strict=True)]


def continuations(composer: Composer, songs: list, seeds: int) -> dict:
    """Long-held and capped shares and notes at once of every song's continuation, pooled."""
    notes = long_held = capped = 0
    polyphony, real_polyphony, real_long = [], [], []
    start, end = PROMPT_SECONDS, PROMPT_SECONDS + CONTINUE_SECONDS
    for seed in range(seeds):
        for number, (_name, table) in enumerate(songs):
            prompt = excerpt(table, PROMPT_SECONDS)
            families = [FAMILIES[f] for f in np.unique(prompt.family)]
            piece = composer.generate(prompt=prompt, seconds=end, instruments=families, style="pop",
                                      seed=seed * 1000 + number, instrument_mode="strict",
                                      max_tokens=int(CONTINUE_SECONDS * 200) + 100)[0].table
            onset = piece.seconds(piece.onset)
            held = (piece.seconds(piece.onset + piece.duration) - onset)[~piece.drum & (onset >= start) & (onset < end)]
            notes, long_held, capped = notes + len(held), long_held + int((held >= 4).sum()), capped + int(
                (held >= CAP - 0.1).sum())
            polyphony.append(window_figures(piece, start, end, families)["mean_polyphony"])
            if seed == 0:
                real = window_figures(table, start, end, families)
                real_polyphony.append(real["mean_polyphony"])
                real_long.append((real["long_note_share"], real["notes"]))
    real_notes = sum(n for _, n in real_long)
    return {"notes": notes, "long": long_held / max(notes, 1), "capped": capped / max(notes, 1),
            "polyphony": float(np.mean(polyphony)), "real_polyphony": float(np.mean(real_polyphony)),
            "real_long": sum(s * n for s, n in real_long if np.isfinite(s)) / max(real_notes, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", help="a checkpoint or run directory (repeat to compare; "
                        "default: the bundled model)")
    parser.add_argument("--data", required=True, help="a built dataset (its test split gives the real pieces)")
    parser.add_argument("--prompts", help="a folder of MIDI songs to continue (e.g. ../shared/midi/multitrack)")
    parser.add_argument("--corpora", help="a folder with pop909/ and groove/ (band versions of held-out songs)")
    parser.add_argument("--per-style", type=int, default=2, help="test pieces a style (default 2)")
    parser.add_argument("--tokens", type=int, default=2000, help="of each test piece (default 2,000)")
    parser.add_argument("--seeds", type=int, default=3, help="continuations of each song (default 3)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    songs = [(n, t) for n, t in prompt_list(args.prompts, args.corpora, None, 3 if args.corpora else 0)
             if not isinstance(t, str)]
    data = Dataset(args.data, "test")
    pieces = test_pieces(data, args.per_style, args.tokens)
    rows = []
    for path in args.model or [None]:
        composer = Composer.load(path)
        rows.append((composer.model_path, note_off_bits(composer, pieces),
                     continuations(composer, songs, args.seeds) if songs else None))
    print(f"{len(pieces)} test pieces of {args.data}; {len(songs)} songs continued {args.seeds} times each; "
          f"{time.perf_counter() - began:.0f} s\n")
    labels = [f"{lo:g}-{hi:g} s" if np.isfinite(hi) else f">= {lo:g} s"
              for lo, hi in zip(HELD_BINS[:-1], HELD_BINS[1:], strict=True)]
    print("| bits per note-off, by how long the note sounded | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    for path, bits, _ in rows:
        print(f"| {path} | " + " | ".join(f"{b:.2f}" for b, _ in bits) + " |")
    print("| (note-offs) | " + " | ".join(f"{c}" for _, c in rows[0][1]) + " |\n")
    if songs:
        print(f"| continuations ({CONTINUE_SECONDS:g} s after {PROMPT_SECONDS:g} s of each song) | notes | "
              f"held >= 4 s | held to the {CAP:g} s cap | notes at once |\n|---|---:|---:|---:|---:|")
        for path, _, c in rows:
            print(f"| {path} | {c['notes']} | {c['long']:.3f} | {c['capped']:.3f} | {c['polyphony']:.2f} |")
        real = rows[0][2]
        print(f"| the songs' own next {CONTINUE_SECONDS:g} s | | {real['real_long']:.3f} | | "
              f"{real['real_polyphony']:.2f} |")


if __name__ == "__main__":
    main()

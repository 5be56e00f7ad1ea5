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
  pop style with the song's families, `--seeds` times (`evaluate.continuation.continue_song`,
  as `musenet eval` continues them): new notes (drums aside) a continuation, the share held
  4 s or longer and held to the sampler's cap (`Settings.max_note_seconds`, 8 s), and the
  mean notes sounding at once, against the songs' own next 30 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from musenet.composer import Composer
from musenet.dataset import Dataset
from musenet.evaluate.band import prompt_list
from musenet.evaluate.continuation import CONTINUE_SECONDS, PROMPT_SECONDS, continue_song
from musenet.evaluate.keep import token_bits
from musenet.sequence import header_length, key_events, token_seconds
from musenet.settings import NUCLEUS_MODES, Settings

HELD_BINS = (0.0, 1.0, 2.0, 4.0, 8.0, np.inf)  # seconds a note had sounded when its note-off came
CAP = Settings().max_note_seconds


def note_off_ages(tokens: np.ndarray, vocab) -> np.ndarray:
    """For each token of a whole piece: how long the note a melodic note-off releases had
    sounded (seconds); NaN for other tokens."""
    seconds = token_seconds(tokens, vocab)
    keys, places, is_on = key_events(tokens, vocab, header_length(tokens, vocab))
    released = ~is_on & np.r_[False, keys[1:] == keys[:-1]]  # the key's previous event is its note-on
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


def continuations(composer: Composer, songs: list, seeds: int, **settings) -> dict:
    """`continue_song` for every song `seeds` times: notes a continuation, long-held and
    capped shares (pooled over notes) and notes at once, generated and (once) real."""
    made, real = [], []
    for seed in range(seeds):
        for number, (name, table) in enumerate(songs):
            song = continue_song(composer, name, table, seed=seed * 1000 + number, style="pop", **settings)
            made.append(song["generated"])
            if seed == 0:
                real.append(song["real"])

    def pooled(figures: list[dict]) -> dict:
        notes = sum(f["notes"] for f in figures)
        share = {name: sum(f[name] * f["notes"] for f in figures if f["notes"]) / max(notes, 1)
                 for name in ("long_note_share", "capped_note_share")}
        return {"notes": notes / max(len(figures), 1), **share,
                "polyphony": float(np.mean([f["mean_polyphony"] for f in figures]))}

    return {"generated": pooled(made), "real": pooled(real)}


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
    parser.add_argument("--nucleus", choices=NUCLEUS_MODES, default=None,
                        help="the continuations' nucleus: over every token or within the family drawn (default: "
                        "generate's)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="the continuations' classifier-free guidance (default: generate's)")
    parser.add_argument("--top-p", type=float, default=None,
                        help="the continuations' nucleus (default: Settings' 0.95; 1: the whole distribution)")
    parser.add_argument("--min-p", type=float, default=None,
                        help="the continuations' min-p cut (default: Settings' 0, off)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    nucleus = {"nucleus": args.nucleus} if args.nucleus else {}
    if args.guidance is not None:
        nucleus["guidance"] = args.guidance
    if args.top_p is not None:
        nucleus["top_p"] = args.top_p
    if args.min_p is not None:
        nucleus["min_p"] = args.min_p
    began = time.perf_counter()
    songs = [(n, t) for n, t in prompt_list(args.prompts, args.corpora, None, 3 if args.corpora else 0)
             if not isinstance(t, str)]
    data = Dataset(args.data, "test")
    pieces = test_pieces(data, args.per_style, args.tokens)
    rows = []
    for path in args.model or [None]:
        composer = Composer.load(path)
        rows.append((composer.model_path, note_off_bits(composer, pieces),
                     continuations(composer, songs, args.seeds, **nucleus) if songs else None))
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
        print(f"| continuations ({CONTINUE_SECONDS:g} s after {PROMPT_SECONDS:g} s of each song) | notes a "
              f"continuation | held >= 4 s | held to the {CAP:g} s cap | notes at once |\n|---|---:|---:|---:|---:|")
        for path, _, c in rows:
            made = c["generated"]
            print(f"| {path} | {made['notes']:.0f} | {made['long_note_share']:.3f} | {made['capped_note_share']:.3f} "
                  f"| {made['polyphony']:.2f} |")
        real = rows[0][2]["real"]
        print(f"| the songs' own next {CONTINUE_SECONDS:g} s | {real['notes']:.0f} | {real['long_note_share']:.3f} | "
              f"{real['capped_note_share']:.3f} | {real['polyphony']:.2f} |")

if __name__ == "__main__":
    main()

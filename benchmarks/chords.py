"""Composing over chords: how many notes keep to the chords asked for, and how many notes a piece has.

    python benchmarks/chords.py [--model DIR] [--style pop] [--instruments piano,bass] [--chords 'C G Am F']
                                [--harmony 0 1 3] [--seeds 3] [--candidates 4] [--seconds 30]

For each lean strength (`musenet generate --chords ... --harmony S`; 0: the chords are not
given at all), composes `--seeds` x `--candidates` pieces and prints the share of their
melodic notes whose pitch class is in the chord of their bar (chords one a bar of 4 beats,
from the piece's start, repeated) and the notes a piece, so that a lean that keeps to the
chords by thinning the music out would show.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from musenet.composer import Composer
from musenet.harmoniser import symbols_by_beat


def in_chords(table, tones: np.ndarray) -> tuple[int, int]:
    """(melodic notes in their beat's chord, melodic notes) of a piece."""
    melodic = table.select(np.flatnonzero(~table.drum))
    beat = np.clip(np.floor(melodic.onset).astype(np.int64), 0, len(tones) - 1)
    return int(tones[beat, melodic.pitch % 12].sum()), len(melodic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a checkpoint or model directory (default: the bundled model)")
    parser.add_argument("--style", default="pop")
    parser.add_argument("--instruments", default="piano,bass")
    parser.add_argument("--chords", default="C G Am F", help="chord symbols, one a bar (default 'C G Am F')")
    parser.add_argument("--harmony", type=float, nargs="+", default=[0.0, 1.0, 3.0], metavar="S")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    composer = Composer.load(args.model)
    symbols = args.chords.split()
    tones = symbols_by_beat(symbols, int(args.seconds * 4) + 1)  # tempos up to 240 BPM
    print(f"model {composer.model_path}; {args.style}, {args.instruments}, {args.seconds:g} s; chords "
          f"{args.chords!r} a bar; {args.seeds} seeds x {args.candidates} candidates\n")
    print("| harmony | melodic notes in the bar's chord | notes a piece (mean) | notes a piece (median) | s |")
    print("|---:|---:|---:|---:|---:|")
    for strength in args.harmony:
        began = time.perf_counter()
        hits = counts = 0
        notes = []
        for seed in range(args.seeds):
            pieces = composer.generate(style=args.style, instruments=args.instruments.split(","), seconds=args.seconds,
                                       candidates=args.candidates, seed=seed,
                                       chords=symbols if strength > 0 else None, harmony=strength or None)
            for piece in pieces:
                hit, count = in_chords(piece.table, tones)
                hits, counts = hits + hit, counts + count
                notes.append(len(piece.table))
        label = f"{strength:g}" if strength > 0 else "0 (no chords given)"
        print(f"| {label} | {hits / max(counts, 1):.3f} ({hits} of {counts}) | {np.mean(notes):.1f} | "
              f"{np.median(notes):.0f} | {time.perf_counter() - began:.0f} |")


if __name__ == "__main__":
    main()

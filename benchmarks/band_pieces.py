"""Drums against real grooves and bass against real POP909 songs, with enough pieces to tell
models apart (issue #14).

    python benchmarks/band_pieces.py --model src/musenet/default_model --model runs/band-phase \
        --corpora ../shared/corpora [--pieces 8] [--seconds 30]

`musenet eval --band` composes 3 pieces a style and averages the drum overlap over every band
style, among them styles with one or no Groove test take, whose overlap says little (one
real take's bars against three pieces') or nothing. This script composes `--pieces` strict
pieces of each band style that has at least `evaluate.drums.MIN_REAL_TAKES` Groove
test-split beat takes (pop: a band over takes of every style; the styles `musenet eval`'s
target row averages), with `musenet eval`'s requests and seeds, and prints per style and
model the six figures' mean overlap with the real takes (`evaluate.band.drum_summary`), the
hits on the 16th grid generated / real, and the *ceiling*: the real takes' odd halves
against their even halves, what two samples of real drumming of the style overlap by. Every
model is measured in the same run, on the same real takes. Then, of the same pop pieces, the
share of bass notes whose pitch class is in the chord the other parts sound
(`evaluate.harmony`), against held-out POP909 songs' (their bass the piano's lowest voice).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from musenet.composer import Composer
from musenet.corpus.groove import takes
from musenet.evaluate.band import band_styles, compose_band, drum_summary
from musenet.evaluate.drums import MAX_REAL_TAKES, MIN_REAL_TAKES, real_takes
from musenet.evaluate.harmony import MAX_REAL_SONGS, generated_bass_in_chord, pooled, real_bass_in_chord
from musenet.settings import NUCLEUS_MODES


def measurable_styles(styles: list[str], beats: list, seconds: float) -> dict[str, list]:
    """The band styles among `styles` with at least MIN_REAL_TAKES real test takes: their takes."""
    real = {style: real_takes(beats, style, seconds, MAX_REAL_TAKES) for style in band_styles(styles)}
    return {style: tables for style, tables in real.items() if len(tables) >= MIN_REAL_TAKES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="a model directory (repeat to compare)")
    parser.add_argument("--corpora", required=True, help="a folder with groove/ (e.g. ../shared/corpora)")
    parser.add_argument("--pieces", type=int, default=8, help="strict pieces per style (default 8)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each piece (default 30)")
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: generate's)")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling (default: generate's)")
    parser.add_argument("--min-p", type=float, default=None, help="min-p cut (default: generate's)")
    parser.add_argument("--nucleus", choices=NUCLEUS_MODES, default=None,
                        help="one nucleus over every token, or within the family drawn (default: generate's)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance (default: generate's; needs a model that learnt it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    beats = takes(Path(args.corpora) / "groove", ("beat",))
    settings = {k: v for k, v in (("temperature", args.temperature), ("top_p", args.top_p), ("min_p", args.min_p),
                                  ("nucleus", args.nucleus), ("guidance", args.guidance))
                if v is not None}
    results, bass, real = {}, {}, None
    for path in args.model:
        started = time.time()
        composer = Composer.load(path)
        if real is None:
            real = measurable_styles(composer.styles, beats, args.seconds)
        pieces = {style: compose_band(composer, style, args.seconds, args.pieces, args.seed, **settings)
                  for style in real}
        results[path] = drum_summary(pieces, real)
        bass[path] = pooled([generated_bass_in_chord(t) for t in pieces.get("pop", [])])
        print(f"{path}: {time.time() - started:.0f} s", flush=True)
    print(f"\n{args.pieces} pieces of {args.seconds:g} s per style, styles with >= {MIN_REAL_TAKES} "
          f"Groove test takes; mean overlap of six figures (generated vs real), hits on the 16th grid "
          f"generated / real\n")
    names = list(results)
    print("| style | real takes | ceiling (real halves) | " + " | ".join(f"{n}: overlap | {n}: grid" for n in names)
          + " |")
    print("|---|---:|---:|" + "---:|---:|" * len(names))
    for style, tables in real.items():
        cells = []
        for name in names:
            r = results[name]["by_style"][style]
            cells += [f"{r['mean_overlap']:.3f}", f"{r['generated']['grid_share']:.2f} / {r['real']['grid_share']:.2f}"]
        ceiling = results[names[0]]["by_style"][style]["real_split_half"]
        print(f"| {style} | {len(tables)} | {ceiling:.3f} | " + " | ".join(cells) + " |")
    means = [f"{results[n]['mean_overlap_measurable']:.3f} | " for n in names]
    print(f"| mean | | {results[names[0]]['ceiling_measurable']:.3f} | " + " | ".join(means) + "|")
    truth = real_bass_in_chord(Path(args.corpora) / "pop909", MAX_REAL_SONGS)
    print(f"\nbass notes in the chord, {args.pieces} pop pieces per model; real: {truth['pieces']} held-out POP909 "
          f"songs {truth['share']:.3f}\n")
    print("| model | bass notes | in the chord | gap to real (points) |\n|---|---:|---:|---:|")
    for name, b in bass.items():
        print(f"| {name} | {b['bass_notes']} | {b['share']:.3f} | {100 * (b['share'] - truth['share']):+.1f} |")


if __name__ == "__main__":
    main()

"""Accompanying and infilling on held-out music: the figures of issue #16, as tables.

    python benchmarks/keep.py --model DIR --data data/band --corpora ../shared/corpora --out OUT

A model that reads hints (`hints.py`) is measured both ways: with hints (the kept parts, or
what follows the span, read ahead) and as the baseline, constrained decoding (kept notes
forced into the sequence as they come; for infilling, the right side forced after the span).
A model that reads a kept part beside the sequence (`channel.py`) is measured that way too
(the melody as side features of the accompaniment's own tokens, not in the sequence).

- Accompaniment (POP909 test songs, melody as voice, bridge and piano as the accompaniment):
  bits per accompaniment note given the melody (read ahead as a hint: every token but the
  melody's own notes; as it comes: by the chain rule), and its note tokens only, against
  the accompaniment alone; the same as a sampler draws it (each prediction renormalised
  over what the sampler may write there, `keep.sampler_masks`, so that probability the
  model spends on the melody's own notes does not count against it); the share of onsets
  in POP909's annotated chord, real against
  composed (the melody kept, piano composed: `Composer.accompany`), with no lean towards
  chord tones and with the lean (`--harmony`) towards the harmoniser's chords and, as a
  reference, towards the annotated chords themselves.
- Infilling (test pieces of every style of a built dataset, a span of 6 s from 10 s): bits per
  note of the real middle given the left side, and given both sides (the right side as a
  hint); composed middles' seams (longest silence within 2 s of a seam against the real
  piece's, stuck notes, kept notes unchanged); piano rolls of four pieces, real and infilled
  each way, from 5 s before the span to 5 s after.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from musenet.composer import Composer
from musenet.dataset import Dataset
from musenet.encoding import decode_tokens
from musenet.evaluate import keep
from musenet.render import pianoroll_png
from musenet.sequence import sequence_seconds
from musenet.settings import DEFAULT_HARMONY

SPAN = (10.0, 16.0)


def test_pieces(data: Dataset, per_style: int) -> list[tuple]:
    """(note table, style) of up to `per_style` test pieces of each style that last 26 s or more."""
    chosen, count = [], {}
    for row in data.rows:
        style = data.style_of(row)
        if count.get(style, 0) >= per_style:
            continue
        tokens = data.piece(row)
        if sequence_seconds(tokens, data.vocab) < SPAN[1] + 10:
            continue
        chosen.append((decode_tokens(tokens, data.vocab), style))
        count[style] = count.get(style, 0) + 1
    return chosen


def excerpt(table, start: float, stop: float):
    onset = table.seconds(table.onset)
    return table.select(np.flatnonzero((onset >= start) & (onset < stop)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a checkpoint or run directory (default: the bundled model)")
    parser.add_argument("--data", required=True, help="a built dataset (its test split gives the infill pieces)")
    parser.add_argument("--corpora", required=True, help="a folder with pop909/ (e.g. ../shared/corpora)")
    parser.add_argument("--songs", type=int, default=8, help="held-out POP909 songs (default 8)")
    parser.add_argument("--seconds", type=float, default=30.0, help="of each song after the melody enters")
    parser.add_argument("--per-style", type=int, default=2, help="infill pieces per style (default 2)")
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--harmony", type=float, nargs="*", default=[DEFAULT_HARMONY], metavar="S",
                        help=f"lean strengths to compose with, besides none (default {DEFAULT_HARMONY:g})")
    parser.add_argument("--out", required=True, help="folder for figures.json and the piano rolls")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    composer = Composer.load(args.model)
    model, vocab, device = composer.model, composer.vocab, composer.device
    root = Path(args.corpora) / "pop909"
    style = "pop" if "pop" in composer.styles else None
    began = time.perf_counter()
    hints, beside = composer.reads_hints, composer.reads_beside
    ways = (True, False) if hints else (False,)  # with hints, and the baseline: kept notes met as they come
    name = {True: "hints", False: "constrained"}
    bits = keep.accompaniment_bits(model, vocab, root, args.songs, device, args.seconds, style, hints=hints,
                                   beside=beside)
    def composed(**how):
        return keep.accompaniment_chords(composer, root, args.songs, args.seconds, args.candidates, style, **how)

    chords = {"beside": composed(harmony=0.0)} if beside else {}
    chords |= {name[w]: composed(hints=w, beside=False, harmony=0.0) for w in ways}
    usual = "beside" if beside else name[ways[0]]  # how `musenet accompany` reads the melody by default
    for strength in args.harmony:
        if strength > 0 and composer.harmoniser is not None:
            chords[f"{usual}, harmoniser's chords, harmony {strength:g}"] = composed(harmony=strength)
    for strength in args.harmony:
        if strength > 0:
            chords[f"{usual}, the annotated chords given, harmony {strength:g}"] = composed(harmony=strength,
                                                                                            annotated=True)
    pieces = [(t, s) for t, s in test_pieces(Dataset(args.data, "test"), args.per_style) if s in composer.styles]
    middle = keep.infill_bits(model, vocab, pieces, SPAN, device, hints=hints)
    seams = {name[w]: keep.infill_seams(composer, pieces, SPAN, args.candidates, hints=w) for w in ways}
    for number, (table, piece_style) in enumerate(pieces[:4], 1):
        window = (SPAN[0] - 5, SPAN[1] + 5)
        pianoroll_png(excerpt(table, *window), out / f"infill-{number}-real.png", f"{piece_style}: real, {window}")
        for way in ways:
            made = composer.infill(table, *SPAN, candidates=1, style=piece_style, hints=way)[0].table
            pianoroll_png(excerpt(made, *window), out / f"infill-{number}-{name[way]}.png",
                          f"{piece_style}: {SPAN[0]:g}-{SPAN[1]:g} s composed ({name[way]})")
    figures = {"model": composer.model_path, "reads_hints": hints, "reads_beside": beside, "accompaniment_bits": bits,
               "accompaniment_chords": chords, "infill_bits": middle, "infill_seams": seams,
               "seconds": round(time.perf_counter() - began, 1)}
    (out / "figures.json").write_text(json.dumps(figures, indent=2, default=float) + "\n")
    print(f"model {composer.model_path} (reads hints: {hints}, a kept part beside: {beside}); {bits['notes']} "
          f"accompaniment notes of {len(bits['songs'])} POP909 test songs; {len(pieces)} test pieces for infilling; "
          f"{figures['seconds']:.0f} s\n")
    print("| accompaniment, bits per note | given the melody | alone | reduction |\n|---|---:|---:|---:|")
    if beside:
        print(f"| melody beside the sequence (side features): all tokens | {bits['beside']:.3f} | "
              f"{bits['alone']:.3f} | {bits['beside_reduction']:.1%} |")
        print(f"| melody beside the sequence: its note tokens | {bits['notes_beside']:.3f} | "
              f"{bits['notes_alone']:.3f} | {bits['notes_beside_reduction']:.1%} |")
        print(f"| as a sampler draws it, melody beside the sequence | {bits['sampled_beside']:.3f} | "
              f"{bits['sampled_alone']:.3f} | {bits['sampled_beside_reduction']:.1%} |")
    if hints:
        print(f"| melody read ahead (hint): all tokens but the melody's | {bits['hinted']:.3f} | {bits['alone']:.3f} "
              f"| {bits['hinted_reduction']:.1%} |")
        print(f"| melody read ahead (hint): its note tokens | {bits['notes_hinted']:.3f} | {bits['notes_alone']:.3f} "
              f"| {bits['notes_hinted_reduction']:.1%} |")
    print(f"| melody as it comes (chain rule) | {bits['given_melody']:.3f} | {bits['alone']:.3f} | "
          f"{bits['reduction']:.1%} |")
    print(f"| melody as it comes: its note tokens | {bits['notes_given_melody']:.3f} | {bits['notes_alone']:.3f} | "
          f"{bits['notes_reduction']:.1%} |")
    if hints:
        print(f"| as a sampler draws it, melody read ahead (hint) | {bits['sampled_hinted']:.3f} | "
              f"{bits['sampled_alone']:.3f} | {bits['sampled_hinted_reduction']:.1%} |")
    print(f"| as a sampler draws it, melody as it comes | {bits['sampled_given_melody']:.3f} | "
          f"{bits['sampled_alone']:.3f} | {bits['sampled_reduction']:.1%} |\n")
    print("(As a sampler draws it: each prediction renormalised over what the sampler may write there, "
          "evaluate/keep.py `sampler_masks`: the accompaniment's family, waits that stop at the next "
          "melody event; the melody's own tokens, given, not scored.)\n")
    first = next(iter(chords.values()))
    print("| onsets in the annotated chord | share | onsets | onsets a piece |\n|---|---:|---:|---:|")
    print(f"| real accompaniment | {first['real']:.3f} | {first['real_onsets']} | "
          f"{first['real_onsets'] / max(first['songs'], 1):.0f} |")
    for way, figure in chords.items():
        print(f"| composed, melody kept ({way}) | {figure['composed']:.3f} | {figure['composed_onsets']} | "
              f"{figure['composed_onsets'] / max(figure['composed_pieces'], 1):.0f} |")
    print("\n(harmony: how strongly the composed piano leans towards chord tones, `musenet accompany --harmony`;"
          " rows without it lean not at all. The annotated chords are a reference: what the lean does when the "
          "chords are known; a user gives them with --chords.)")
    print(f"\nmelody kept exactly in every composed piece: {all(c['kept_exact'] for c in chords.values())}\n")
    print("| infilling | value |\n|---|---:|")
    print(f"| bits per note of the real middle given the left side | {middle['given_left']:.3f} "
          f"({middle['notes']} notes) |")
    if hints:
        print(f"| ... given both sides (the right side as a hint) | {middle['given_both']:.3f} "
              f"({middle['reduction']:.1%} lower) |")
    for way, figure in seams.items():
        rows = figure["pieces"]
        print(f"| {way}: composed middles | {len(rows)} |")
        print(f"| {way}: kept notes unchanged | {sum(r['kept_exact'] for r in rows)} of {len(rows)} |")
        print(f"| {way}: model notes sounding past the span | {figure['stuck']} |")
        print(f"| {way}: seams with a longer silence than the real piece's (within 2 s) | "
              f"{figure['silence_longer_than_real']} of {len(rows)} |")
        print(f"| {way}: longest silence at a seam, composed / real (mean s) | "
              f"{np.mean([r['silence_composed'] for r in rows]):.2f} / "
              f"{np.mean([r['silence_real'] for r in rows]):.2f} |")

if __name__ == "__main__":
    main()

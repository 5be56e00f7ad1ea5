"""How many of the families asked for the model plays by itself, by nucleus and guidance (issue #14).

    python benchmarks/nucleus.py --data data/band [--model DIR] [--nucleus all --nucleus family] [--top-p 0.95]
        [--guidance 1 --guidance 2]

Composes `musenet eval`'s 40-request coverage grid (a style and 2-4 families each, 30 s, the
same seeds) in strict mode without entrances (`max_family_silence` 0: the model alone decides
whether a family plays) once per nucleus and guidance weight, and prints the share of requested families that
played at least 4 notes, per family and over all, and the notes composed. With one nucleus
over every token, a family that has not played yet gets each of its note-ons far below the
cut even where the model gives them together a few percent (README, "The bundled model's
report"); `nucleus = "family"` (`rules.sample_tokens`) draws the family first at the model's
own odds. Classifier-free guidance (`--guidance`, `rules.guide`, a model trained with
unconditioned headers) weighs what the header's style and families make likely more.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from musenet.composer import Composer
from musenet.dataset import Dataset
from musenet.evaluate.band import compose_grid
from musenet.evaluate.coverage import coverage, coverage_grid
from musenet.evaluate.run import styles_to_compose
from musenet.instruments import FAMILIES
from musenet.settings import NUCLEUS_MODES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a model directory (default: the bundled model)")
    parser.add_argument("--data", required=True, help="a built dataset (its styles make the grid, as in musenet eval)")
    parser.add_argument("--nucleus", action="append", choices=NUCLEUS_MODES, help="repeat to compare "
                        "(default: all, then family)")
    parser.add_argument("--guidance", action="append", type=float, help="repeat to compare (default: 1, off)")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    composer = Composer.load(args.model)
    grid = coverage_grid(styles_to_compose(Dataset(args.data, "train")), args.requests)
    rows = []
    for nucleus, guidance in itertools.product(args.nucleus or ["all", "family"], args.guidance or [1.0]):
        started = time.time()
        tables = compose_grid(composer, grid, 30.0, args.seed, "strict", max_family_silence=0, nucleus=nucleus,
                              top_p=args.top_p, guidance=guidance)
        rows.append((nucleus, guidance, coverage(grid, tables), sum(len(t) for t in tables), time.time() - started))
    print(f"model {composer.model_path}; {len(grid)} requests of 30 s, strict without entrances, top-p {args.top_p}\n")
    print("| nucleus | guidance | all families | " + " | ".join(FAMILIES) + " | notes | seconds |")
    print("|---|---:|---:|" + "---:|" * len(FAMILIES) + "---:|---:|")
    for nucleus, guidance, cov, notes, seconds in rows:
        shares = [cov["by_family"][f] for f in FAMILIES]
        print(f"| {nucleus} | {guidance:g} | {cov['overall']:.1%} | " + " | ".join(f"{s:.0%}" for s in shares)
              + f" | {notes:,} | {seconds:.0f} |")


if __name__ == "__main__":
    main()

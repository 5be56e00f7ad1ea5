"""How many seconds of music a context of N tokens holds, per style group of built datasets.

    python benchmarks/context_fit.py data/band [DIR ...] [--context 512 1024 2048]

For each dataset and style group (pop: POP909 and its band versions apart; drums-*; each other
style), the median tokens per second of its pieces, and the median seconds that the first N
tokens of the pieces longer than N cover (openings are often sparser than the rest)."""

from __future__ import annotations

import argparse

import numpy as np

from musenet.dataset import Dataset
from musenet.sequence import sequence_seconds


def groups(data: Dataset) -> dict[str, np.ndarray]:
    """Row indices by group: drum styles together, POP909's band versions apart."""
    style = np.array([data.vocab.styles[s] for s in data.index["style"]])
    derived = data.index["derived"].astype(bool) if "derived" in data.index else np.zeros(len(style), bool)
    label = np.where(np.char.startswith(style, "drums-"), "drums-*", style).astype(object)
    label[derived] = "pop (band versions)"
    return {name: np.flatnonzero(label == name) for name in sorted(set(label))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("datasets", nargs="+", metavar="DIR")
    parser.add_argument("--context", type=int, nargs="+", default=[512, 1024, 2048])
    args = parser.parse_args()
    print("| dataset | group | pieces | tokens/s (median) | " + " | ".join(f"{n} tokens: s at median rate / "
                                                                          "s of openings" for n in args.context) + " |")
    print("|---|---|---:|---:|" + "---:|" * len(args.context))
    for folder in args.datasets:
        data = Dataset(folder, split=None)
        length, seconds = data.index["length"], data.index["seconds"].astype(np.float64)
        for name, rows in groups(data).items():
            rate = float(np.median(length[rows] / np.maximum(seconds[rows], 1e-9)))
            cells = []
            for n in args.context:
                longer = rows[length[rows] > n]
                opening = np.median([sequence_seconds(data.piece(r)[:n], data.vocab) for r in longer]) if len(
                    longer) else float("nan")
                cells.append(f"{n / rate:.0f} / {opening:.0f}")
            print(f"| {folder} | {name} | {len(rows):,} | {rate:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""The evaluation's pictures: bits per note by style, and each style's histograms."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..files import write_atomic
from ..vocab import NOTE_NAMES
from .music import IOI_EDGES, POLYPHONY_BINS


def _figure(**options):
    from matplotlib.figure import Figure

    return Figure(dpi=100, layout="constrained", **options)


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())


def plot_bits(report: dict, path: Path) -> None:
    """Bars of the model's and the n-gram's held-out bits per note, per style."""
    by_style = report["likelihood"]["by_style"]
    names = list(by_style)
    fig = _figure(figsize=(max(6, 1 + 0.9 * len(names)), 4))
    ax = fig.add_subplot()
    x = np.arange(len(names))
    ax.bar(x - 0.2, [by_style[s]["model"] for s in names], 0.4, label="model")
    ax.bar(x + 0.2, [by_style[s]["ngram"] for s in names], 0.4, label=f"{report['likelihood']['ngram_order']}-gram KN")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("bits per note")
    ax.set_title(f"held-out bits per note ({report['likelihood']['split']} split)")
    ax.legend()
    _save(fig, path)


def plot_style(style: str, stats: dict, path: Path) -> None:
    """One style's real and generated histograms side by side (pitch class, IOI, polyphony)."""
    fig = _figure(figsize=(15, 4))
    real, made = stats["real_histograms"], stats["generated_histograms"]
    ioi_labels = [f"{e:.2g}" for e in IOI_EDGES[:-1]]
    panels = (("pitch_class_counts", "pitch class", list(NOTE_NAMES)),
              ("ioi_counts", "inter-onset interval (s, bin start)", ioi_labels),
              ("polyphony_counts", "notes sounding at once", [str(i) for i in range(POLYPHONY_BINS - 1)] + ["12+"]))
    for number, (name, label, ticks) in enumerate(panels, 1):
        ax = fig.add_subplot(1, 3, number)
        x = np.arange(len(ticks))
        ax.bar(x - 0.2, real[name], 0.4, label=f"real ({stats['reference']}, {stats['real_pieces']})")
        ax.bar(x + 0.2, made[name], 0.4, label=f"generated ({stats['generated_pieces']})")
        ax.set_xticks(x, ticks, rotation=90 if name == "ioi_counts" else 0, fontsize=8)
        ax.set_xlabel(label)
        ax.set_title(f"{style}: overlap {stats['overlap'][name]:.2f}")
        if number == 1:
            ax.set_ylabel("share")
            ax.legend(fontsize=8)
    _save(fig, path)

"""The evaluation's report: the headline table against the targets, report.md section by
section, report.json, and the PNG plots (matplotlib, imported when a plot is drawn)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

from ..files import write_atomic
from ..notes import NoteTable
from ..vocab import NOTE_NAMES
from .likelihood import WINDOW_OVERLAP
from .long_pieces import BEATS_PER_BAR
from .music import HISTOGRAMS, IOI_EDGES, MAX_REAL_PER_STYLE, POLYPHONY_BINS, SCALARS

# Targets: the first three come with the task; the long-piece thresholds are chosen here.
TARGETS = {"ngram_reduction": 0.25, "style_ratio": 0.7, "strict_adherence": 1.0,
           "longest_silence": 6.0, "stuck_notes": 0, "repeated_bar_share": 0.5}


def headline(report: dict) -> list[dict]:
    """The summary table: {metric, value, target, met} rows (met is None where there is no target)."""
    like, style, inst, long = (report[k] for k in ("likelihood", "style_adherence", "instruments", "long_pieces"))
    ratio = style["ratio"]
    rows = [
        ("model bits per note", like["model_bits_per_note"], "", None),
        (f"{like['ngram_order']}-gram Kneser-Ney bits per note", like["ngram_bits_per_note"], "", None),
        ("reduction vs the n-gram", like["reduction"], f">= {TARGETS['ngram_reduction']:.0%}",
         like["reduction"] >= TARGETS["ngram_reduction"] if np.isfinite(like["reduction"]) else None),
        ("style classifier accuracy, real pieces", style["real_accuracy"], "", None),
        ("generated pieces classified as their style", style["generated_rate"], "", None),
        ("style ratio generated / real", ratio, f">= {TARGETS['style_ratio']}",
         ratio >= TARGETS["style_ratio"] if np.isfinite(ratio) else None),
        ("strict instrument adherence", inst["strict"], "= 1.0",
         inst["strict"] >= TARGETS["strict_adherence"] if np.isfinite(inst["strict"]) else None),
        ("soft instrument adherence", inst["soft"], "", None),
    ]
    for name in HISTOGRAMS:
        label = {"pitch_class_counts": "pitch-class", "ioi_counts": "IOI", "polyphony_counts": "polyphony"}[name]
        rows.append((f"{label} overlap, generated vs real (mean over styles)", report["music_stats_mean_overlap"][name],
                     "", None))
    if long["pieces"]:
        rows += [
            (f"longest silence in {len(long['pieces'])} x {long['seconds']:g} s (s)", long["longest_silence"],
             f"<= {TARGETS['longest_silence']:g}", long["longest_silence"] <= TARGETS["longest_silence"]),
            ("stuck notes (> 10 s) in the long pieces", long["stuck_notes"], "0",
             long["stuck_notes"] <= TARGETS["stuck_notes"]),
            ("share of bars repeating an earlier bar", long["repeated_bar_share"],
             f"<= {TARGETS['repeated_bar_share']}", long["repeated_bar_share"] <= TARGETS["repeated_bar_share"]
             if np.isfinite(long["repeated_bar_share"]) else None),
        ]
    return [{"metric": m, "value": v, "target": t, "met": met} for m, v, t, met in rows]


# ---- report.json and report.md ----------------------------------------------------------------

def write_report(report: dict, out: str | Path) -> list[Path]:
    """report.md, report.json and the PNGs (bits per note by style, one histogram figure and one
    generated piece's piano roll per style, piano rolls of the long pieces) in `out`, each file
    written whole or not at all."""
    from ..render import pianoroll_png

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    if report["likelihood"]["by_style"]:
        plot_bits(report, out / "bits-per-note.png")
        images.append(("held-out bits per note by style", "bits-per-note.png"))
    for style, stats in report["music_stats"].items():
        plot_style(style, stats, out / f"stats-{style}.png")
        images.append((f"{style}: real vs generated histograms", f"stats-{style}.png"))
    for style, table in report.get("tables", {}).items():
        name = f"roll-{style}.png"
        pianoroll_png(table, out / name, title=f"{style} (generated, strict mode)")
        images.append((f"{style}: a generated piece", name))
    for number, table in enumerate(report["long_pieces"].get("tables", []), 1):
        name = f"long-{number}.png"
        pianoroll_png(table, out / name, title=f"long piece {number} ({report['long_pieces']['style']})")
        images.append((f"long piece {number}", name))
    report["images"] = [name for _, name in images]
    write_atomic(out / "report.json", (json.dumps(plain(report), indent=2) + "\n").encode())
    write_atomic(out / "report.md", markdown(report, images).encode())
    return [out / "report.md", out / "report.json", *(out / name for _, name in images)]


def plain(value):
    """JSON-ready: numpy to Python, NaN and infinities to None, note tables dropped."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items() if not isinstance(v, NoteTable) and k != "tables"}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return f"{value:.{digits}f}"


def _pct(value) -> str:
    """A share as a percentage, or n/a."""
    return f"{value:.1%}" if isinstance(value, float) and math.isfinite(value) else "n/a"


def markdown(report: dict, images: list[tuple[str, str]] = ()) -> str:
    """report.md: the headline table, then one section per question, then links to the plots."""
    lines = _summary_lines(report)
    for section in (_likelihood_lines, _statistics_lines, _style_lines, _instrument_lines, _long_piece_lines):
        lines += ["", *section(report)]
    if images:
        lines += ["", "## Plots", ""] + [f"- [{label}]({name})" for label, name in images]
    return "\n".join(lines) + "\n"


def _summary_lines(report: dict) -> list[str]:
    like, settings = report["likelihood"], report["settings"]
    lines = [
        "# MuseNet evaluation", "",
        f"Model `{report['model']}`, data `{report['data']}` ({report['time_mode']} time), {like['split']} split, "
        f"seed {report['seed']}; {settings['pieces_per_style']} pieces of {settings['seconds']:g} s per style "
        f"(soft mode: {settings['soft_pieces_per_style']}), {settings['long_pieces']} of "
        f"{settings['long_seconds']:g} s; {report.get('eval_seconds', 0):.0f} s to evaluate.", "",
        "| metric | value | target | met? |", "|---|---:|---|---|",
    ]
    for row in report["headline"]:
        met = "" if row["met"] is None else "yes" if row["met"] else "**no**"
        value = f"{row['value']:.1%}" if row["metric"].startswith("reduction") and row["value"] is not None \
            and math.isfinite(row["value"]) else _fmt(row["value"])
        lines.append(f"| {row['metric']} | {value} | {row['target']} | {met} |")
    return lines


def _likelihood_lines(report: dict) -> list[str]:
    like = report["likelihood"]
    lines = ["## 1. Held-out bits per note", "",
             f"{like['pieces']} pieces of the {like['split']} split ({_fmt(like['tokens'])} tokens, "
             f"{_fmt(like['notes'])} notes): the summed -log2 p of every token after a piece's first, over its notes "
             f"(pieces longer than the model's context in windows that overlap by {WINDOW_OVERLAP:.0%}, each token "
             "scored once). "
             f"The baseline is an interpolated modified Kneser-Ney {like['ngram_order']}-gram fitted on the "
             f"{like['ngram_train_pieces']} train pieces. *Seen in train*: the share of the pieces' runs of "
             f"{like['shared_order']} consecutive tokens that also occur in the train split "
             "(verbatim reuse, which favours the n-gram).", "",
             "| style | pieces | notes | model | n-gram | reduction | seen in train |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, v in like["by_style"].items():
        lines.append(f"| {name} | {v['pieces']} | {_fmt(v['notes'])} | {_fmt(v['model'])} | {_fmt(v['ngram'])} "
                     f"| {_pct(v['reduction'])} | {_pct(v['shared_with_train'])} |")
    lines.append(f"| all | {like['pieces']} | {_fmt(like['notes'])} | {_fmt(like['model_bits_per_note'])} | "
                 f"{_fmt(like['ngram_bits_per_note'])} | {_pct(like['reduction'])} | "
                 f"{_pct(like['shared_with_train'])} |")
    lines += ["", "Where the bits go: each kind of token's share of the bits per note.", "",
              "| token kind | model | n-gram |", "|---|---:|---:|"]
    for kind, v in like.get("by_kind", {}).items():
        lines.append(f"| {kind} | {_fmt(v['model'])} | {_fmt(v['ngram'])} |")
    return lines


def _statistics_lines(report: dict) -> list[str]:
    lines = ["## 2. Music statistics, generated vs real", "",
             f"Real pieces: the opening {report['settings']['seconds']:g} s of held-out pieces of the style (at most "
             f"{MAX_REAL_PER_STYLE}; `train` where the split has none). Overlap = sum of the bin-wise minimum of the "
             "two normalised histograms (1 = identical). Scalars are means over pieces, real / generated.", "",
             "| style | real | gen | pitch-class overlap | IOI overlap | polyphony overlap | notes/s "
             "| scale consistency | mean polyphony | median IOI (s) | pitch range | empty-beat rate |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, v in report["music_stats"].items():
        o = v["overlap"]
        pairs = " | ".join(f"{_fmt(v['real'][s], 2)} / {_fmt(v['generated'][s], 2)}" for s in SCALARS)
        lines.append(f"| {name} | {v['real_pieces']} ({v['reference']}) | {v['generated_pieces']} | "
                     f"{_fmt(o['pitch_class_counts'])} | {_fmt(o['ioi_counts'])} | {_fmt(o['polyphony_counts'])} | "
                     f"{pairs} |")
    return lines


def _style_lines(report: dict) -> list[str]:
    style = report["style_adherence"]
    lines = ["## 3. Style adherence", "",
             f"Classifier: {style['classifier']}"
             + (f", {style['features']} features per piece, trained on {style['train_pieces']} real train pieces "
                f"({style['classes']} styles, chance {style['chance']:.2f}). Accuracy on {style['held_out_pieces']} "
                f"held-out real pieces {_fmt(style['held_out_accuracy'])}, 5-fold cross-validated on train "
                f"{_fmt(style['cv_accuracy'])}; the ratio uses the {style['real_accuracy_source']} accuracy."
                if "features" in style else "."), "",
             "| style | train pieces | real accuracy (n) | generated as this style (n) | generated named as |",
             "|---|---:|---:|---:|---|"]
    for name, v in style["by_style"].items():
        named = ", ".join(f"{s} {n}" for s, n in v["generated_named_as"].items())
        lines.append(f"| {name} | {v['train_pieces']} | {_fmt(v['real_accuracy'], 2)} ({v['real_pieces']}) | "
                     f"{_fmt(v['generated_rate'], 2)} ({v['generated_pieces']}) | {named} |")
    return lines


def _instrument_lines(report: dict) -> list[str]:
    lines = ["## 4. Instrument adherence", "",
             "Share of generated notes in the requested families (those most of the style's train pieces use).", "",
             "| style | requested | strict | soft |", "|---|---|---:|---:|"]
    for name, v in report["instruments"]["by_style"].items():
        lines.append(f"| {name} | {', '.join(v['requested'])} | {_fmt(v['strict'])} | {_fmt(v['soft'])} |")
    return lines


def _long_piece_lines(report: dict) -> list[str]:
    long = report["long_pieces"]
    if not long["pieces"]:
        return ["## 5. Four-minute health", "", "Not run (--long-pieces 0)."]
    real = long["real_reference"]
    lines = ["## 5. Four-minute health", "",
             f"{len(long['pieces'])} pieces of {long['seconds']:g} s, style {long['style']}, "
             f"{', '.join(long['instruments'])} (strict). Bars are {BEATS_PER_BAR} beats of the tempo map; a bar "
             "repeats if its (onset, pitch, family) set equals an earlier non-empty bar's. Real reference "
             f"(whole held-out pieces, {real['pieces']}): longest silence {_fmt(real['longest_silence'], 1)} s, "
             f"{real['stuck_notes']} stuck notes, repeated-bar share {_fmt(real['repeated_bar_share'], 2)}.", "",
             "| piece | seconds | notes | longest silence (s) | stuck notes | repeated bars | bars |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for number, h in enumerate(long["pieces"], 1):
        lines.append(f"| {number} | {h['seconds']:.1f} | {h['notes']:,} | {h['longest_silence']:.2f} | "
                     f"{h['stuck_notes']} | {_fmt(h['repeated_bar_share'], 2)} | {h['bars']} |")
    return lines


# ---- plots -----------------------------------------------------------------------------------------

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
        ax.set_title(f"{style}: overlap {_fmt(stats['overlap'][name], 2)}")
        if number == 1:
            ax.set_ylabel("share")
            ax.legend(fontsize=8)
    _save(fig, path)

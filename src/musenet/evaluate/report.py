"""The evaluation's report: the headline table against the targets, report.md section by
section, report.json, and the PNG plots (matplotlib, imported when a plot is drawn)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..files import write_atomic
from ..notes import NoteTable
from .likelihood import WINDOW_OVERLAP
from .long_pieces import BEATS_PER_BAR
from .music import HISTOGRAMS, MAX_REAL_PER_STYLE, SCALARS
from .plots import plot_bits, plot_style

# Targets: the first three come with the task; the long-piece thresholds are chosen here.
TARGETS = {"ngram_reduction": 0.25, "style_ratio": 0.7, "strict_adherence": 1.0,
           "longest_silence": 6.0, "stuck_notes": 0, "repeated_bar_share": 0.5}
# The band stages' targets (from the issue): coverage, drums, bass, continuations.
BAND_TARGETS = {"coverage": 0.95, "family_coverage": 0.9, "drum_overlap": 0.8, "bass_in_chord_points": 0.10,
                "continuation_ratio": 0.25, "families_playing": 0.9}
BAND_FAMILIES = ("drums", "bass", "guitar", "synth", "brass", "winds")  # each >= family_coverage
#: "Within 25% of real" when the real figure is 0 (or near it): within 25% of this instead.
CONTINUATION_FLOORS = {"tempo_changes_per_minute": 1.0, "long_note_share": 0.01, "mean_polyphony": 1.0}
CONTINUATION_LABELS = {"tempo_changes_per_minute": "tempo changes per minute",
                       "long_note_share": "share of notes held >= 4 s", "mean_polyphony": "mean notes sounding at once"}


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
        ("two-sample test: real told from generated (0.5: indistinguishable)",
         style.get("two_sample", {}).get("accuracy", float("nan")), "", None),
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
    if "band" in report:
        rows += band_headline(report["band"])
    if "critic" in report:
        rows += critic_headline(report["critic"])
    return [{"metric": m, "value": v, "target": t, "met": met} for m, v, t, met in rows]


def critic_headline(critic: dict) -> list[tuple]:
    """The critic's rows: its held-out accuracy, and the two-sample test and style ratio of
    random against critic-picked candidates (target: 5 points lower, a ratio as high)."""
    random, picked = critic["random"], critic["critic"]
    drop = random["two_sample"].get("accuracy", float("nan")) - picked["two_sample"].get("accuracy", float("nan"))
    held = (critic.get("trained") or {}).get("held_out", {}).get("accuracy", float("nan"))
    label = f"best {critic['keep']} of {critic['draws']}"
    return [
        ("critic accuracy, held-out openings vs fresh generations", held, "", None),
        ("two-sample test, random candidates", random["two_sample"].get("accuracy", float("nan")), "", None),
        (f"two-sample test, the critic's {label}", picked["two_sample"].get("accuracy", float("nan")),
         ">= 0.05 below random", drop >= 0.05 if _finite(drop) else None),
        (f"two-sample test by a piano-roll net, the critic's {label}",
         picked.get("two_sample_rolls", {}).get("accuracy", float("nan")),
         f"random: {_fmt(random.get('two_sample_rolls', {}).get('accuracy', float('nan')))}", None),
        (f"style ratio, the critic's {label}", picked["style_ratio"], f">= random's ({_fmt(random['style_ratio'])})",
         picked["style_ratio"] >= random["style_ratio"]
         if _finite(picked["style_ratio"]) and _finite(random["style_ratio"]) else None),
    ]


def _finite(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)


def within(generated: float, real: float, share: float, floor: float) -> bool | None:
    """Whether a generated figure is within `share` of the real one (of `floor` where the real
    one is smaller); None where either is missing."""
    if not (_finite(generated) and _finite(real)):
        return None
    return abs(generated - real) <= share * max(abs(real), floor)


def band_headline(band: dict) -> list[tuple]:
    """The band stages' rows of the summary table: (metric, value, target, met)."""
    strict, soft = band["coverage"]["strict"], band["coverage"]["soft"]
    family_values = {f: strict["by_family"][f] for f in BAND_FAMILIES if _finite(strict["by_family"][f])}
    weakest = min(family_values, key=family_values.get) if family_values else None
    drums, harmony, cont = band["drums"], band["harmony"], band["continuation"]
    gap = harmony["difference"]
    rows = [
        ("instrument coverage, strict (requested families that play)", strict["overall"],
         f">= {BAND_TARGETS['coverage']:.0%}",
         strict["overall"] >= BAND_TARGETS["coverage"] if _finite(strict["overall"]) else None),
        ("instrument coverage, soft", soft["overall"], "", None),
        ("instrument coverage, strict without entrances (the model alone)",
         band["coverage"]["strict_no_entrances"]["overall"], "", None),
        (f"lowest strict coverage of {', '.join(BAND_FAMILIES)} ({weakest or 'none asked'})",
         family_values.get(weakest, float("nan")), f">= {BAND_TARGETS['family_coverage']:.0%} each",
         family_values[weakest] >= BAND_TARGETS["family_coverage"] if weakest else None),
        ("drum figures' overlap with real grooves (mean over all band styles)", drums["mean_overlap"], "", None),
        (f"the same over the {drums['measurable_styles']} styles with >= {drums['min_real_takes']} real takes "
         f"(their real halves' overlap: {_fmt(drums['ceiling_measurable'])})", drums["mean_overlap_measurable"],
         f">= {BAND_TARGETS['drum_overlap']}", drums["mean_overlap_measurable"] >= BAND_TARGETS["drum_overlap"]
         if _finite(drums["mean_overlap_measurable"]) else None),
        ("bass notes in the chord, generated pop", harmony["generated"]["share"],
         f"within {BAND_TARGETS['bass_in_chord_points'] * 100:.0f} points of real ({_fmt(harmony['real']['share'])})",
         abs(gap) <= BAND_TARGETS["bass_in_chord_points"] if _finite(gap) else None),
    ]
    share = BAND_TARGETS["continuation_ratio"]
    for name, label in CONTINUATION_LABELS.items():
        made, real = cont["generated"][name], cont["real"][name]
        rows.append((f"continuations: {label}", made, f"real {_fmt(real)} ± {share:.0%}",
                     within(made, real, share, CONTINUATION_FLOORS[name])))
    playing = cont["generated"]["all_families_playing"]
    rows.append(("continuations with every prompt family in the last 10 s", playing,
                 f">= {BAND_TARGETS['families_playing']:.0%}",
                 playing >= BAND_TARGETS["families_playing"] if _finite(playing) else None))
    return rows


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
    if "band" in report:
        lines += ["", *_band_lines(report["band"])]
    if "critic" in report:
        lines += ["", *_critic_lines(report["critic"])]
    if images:
        lines += ["", "## Plots", ""] + [f"- [{label}]({name})" for label, name in images]
    return "\n".join(lines) + "\n"


def _sampling_text(settings: dict) -> str:
    """How the pieces were drawn (reports written before the option have no record: the defaults)."""
    sampling = settings.get("sampling")
    if not sampling:
        return ""
    top_k = f", top-k {sampling['top_k']}" if sampling["top_k"] else ""
    guidance = sampling.get("guidance", 1.0)
    guided = f", guidance {guidance:g}" if guidance != 1.0 else ""
    min_p = f", min-p {sampling['min_p']:g}" if sampling.get("min_p") else ""
    return (f" Drawn at temperature {sampling['temperature']:g}, top-p {sampling['top_p']:g}{min_p}{top_k}{guided}, "
            f"nucleus over {'each family' if sampling['nucleus'] == 'family' else 'every token'}.")


def _summary_lines(report: dict) -> list[str]:
    like, settings = report["likelihood"], report["settings"]
    lines = [
        "# MuseNet evaluation", "",
        f"Model `{report['model']}`, data `{report['data']}` ({report['time_mode']} time), {like['split']} split, "
        f"seed {report['seed']}; {settings['pieces_per_style']} pieces of {settings['seconds']:g} s per style "
        f"(soft mode: {settings['soft_pieces_per_style']}), {settings['long_pieces']} of "
        f"{settings['long_seconds']:g} s; {report.get('eval_seconds', 0):.0f} s to evaluate.{_sampling_text(settings)}",
        "", "| metric | value | target | met? |", "|---|---:|---|---|",
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
    return lines + ["", *_two_sample_lines(style.get("two_sample"))]


def _two_sample_lines(test: dict | None) -> list[str]:
    if not test or not test.get("by_style"):
        return []
    low, high = test["interval"]
    lines = ["### Real or generated?", "",
             f"A classifier that never saw the model ({test['classifier']}, the same features) trained to tell "
             f"held-out real pieces from generated ones of the same style and length, {test['folds']}-fold "
             f"cross-validated on {test['pieces']} pieces (as many real as generated per style): accuracy "
             f"{_fmt(test['accuracy'])} (95% interval {_fmt(low)}-{_fmt(high)}); 0.5 means they cannot be told apart.",
             "", "| style | pieces | accuracy | generated caught |", "|---|---:|---:|---:|"]
    for name, v in test["by_style"].items():
        lines.append(f"| {name} | {v['pieces']} | {_fmt(v['accuracy'], 2)} | {_fmt(v['generated_caught'], 2)} |")
    return lines


def accuracy_drop(critic: dict) -> tuple[float, float, float]:
    """Random's two-sample accuracy less the critic-picked one's, with a 95% interval (normal
    approximation for two proportions, each over its own pieces)."""
    a, b = critic["random"]["two_sample"], critic["critic"]["two_sample"]
    if not (_finite(a.get("accuracy")) and _finite(b.get("accuracy"))):
        return float("nan"), float("nan"), float("nan")
    p, q = a["accuracy"], b["accuracy"]
    spread = 1.96 * math.sqrt(p * (1 - p) / a["pieces"] + q * (1 - q) / b["pieces"])
    return p - q, p - q - spread, p - q + spread


def ratio_gain(critic: dict) -> tuple[float, float, float]:
    """The critic-picked style ratio less random's, with a 95% interval (the two named-as-
    their-style rates as independent proportions, over the same real accuracy)."""
    a, b = critic["random"], critic["critic"]
    if not all(_finite(v.get("generated_rate")) and _finite(v.get("style_ratio")) and v["style_ratio"] > 0
               for v in (a, b)):
        return float("nan"), float("nan"), float("nan")
    real = a["generated_rate"] / a["style_ratio"]
    p, q = b["generated_rate"], a["generated_rate"]
    spread = 1.96 * math.sqrt(p * (1 - p) / b["pieces"] + q * (1 - q) / a["pieces"]) / real
    gain = b["style_ratio"] - a["style_ratio"]
    return gain, gain - spread, gain + spread


def _critic_lines(critic: dict) -> list[str]:
    """Section 7: the critic's held-out accuracy by style; random against critic-picked."""
    trained, timing = critic.get("trained") or {}, critic["timing"]
    held, pieces = trained.get("held_out", {}), trained.get("train_pieces", {})
    drop, low, high = accuracy_drop(critic)
    gain, gain_low, gain_high = ratio_gain(critic)
    lines = ["## 7. The inner critic", "",
             f"Trained on {pieces.get('real')} real and {pieces.get('generated')} generated openings of "
             f"{trained.get('window')} tokens (train pieces against the model's own generations with the same style, "
             f"families and length, {trained.get('per_style')} a style); held out: {held.get('pieces')} openings of "
             f"the valid split against fresh generations, accuracy {_fmt(held.get('accuracy'))}. Per style, "
             f"{critic['rounds']} x {critic['draws']} candidates: the first {critic['keep']} drawn of each batch "
             f"(random) against the critic's best {critic['keep']}, each set judged by the two-sample test against "
             f"the same real held-out pieces. The critic's pick is {_fmt(drop)} less often told from real music "
             f"(95% interval {_fmt(low)} to {_fmt(high)}); its style ratio is {_fmt(gain)} higher "
             f"({_fmt(gain_low)} to {_fmt(gain_high)}).", "",
             "| | generated pieces | two-sample accuracy, statistics (95% interval) | two-sample accuracy, piano-roll "
             "net | style ratio (95% interval) | mean critic score |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in ("random", "critic"):
        v = critic[name]
        test, rolls = v["two_sample"], v.get("two_sample_rolls") or {}
        low, high = test.get("interval", (float("nan"), float("nan")))
        roll_low, roll_high = rolls.get("interval", (float("nan"), float("nan")))
        ratio_low, ratio_high = v.get("style_ratio_interval", (float("nan"), float("nan")))
        lines.append(f"| {name} | {v['pieces']} | {_fmt(test.get('accuracy'))} ({_fmt(low)}-{_fmt(high)}) | "
                     f"{_fmt(rolls.get('accuracy'))} ({_fmt(roll_low)}-{_fmt(roll_high)}) | "
                     f"{_fmt(v['style_ratio'])} ({_fmt(ratio_low)}-{_fmt(ratio_high)}) | {_fmt(v['mean_critic'])} |")
    lines += ["", f"Composing time, {timing['style']}, {timing['seconds']:g} s: {critic['keep']} candidates "
              f"{timing['plain_seconds']:.1f} s; {critic['draws']} drawn and the best {critic['keep']} kept "
              f"{timing['ranked_seconds']:.1f} s.", "",
              "| style | critic accuracy (held out) | two-sample, random | two-sample, critic |",
              "|---|---:|---:|---:|"]
    random_by, picked_by = critic["random"]["two_sample"].get("by_style", {}), critic["critic"]["two_sample"].get(
        "by_style", {})
    for style in sorted(set(held.get("by_style", {})) | set(random_by)):
        lines.append(f"| {style} | {_fmt(held.get('by_style', {}).get(style), 2)} | "
                     f"{_fmt(random_by.get(style, {}).get('accuracy'), 2)} | "
                     f"{_fmt(picked_by.get(style, {}).get('accuracy'), 2)} |")
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


def _pair(band_side: dict, real_side: dict, name: str, digits: int = 2) -> str:
    return f"{_fmt(band_side[name], digits)} / {_fmt(real_side[name], digits)}"


def _band_lines(band: dict) -> list[str]:
    """Section 6: coverage, drums, bass in the chord, continuations, each with its targets."""
    lines = ["## 6. Playing as a band", "",
             f"Stage times: {', '.join(f'{k} {v:.1f} s' for k, v in band['timings'].items())}.", ""]
    for part in (_coverage_lines, _drum_lines, _harmony_lines, _continuation_lines):
        lines += part(band, band["settings"])
    return lines


def _coverage_lines(band: dict, settings: dict) -> list[str]:
    from .coverage import MIN_NOTES

    strict, soft = band["coverage"]["strict"], band["coverage"]["soft"]
    alone = band["coverage"]["strict_no_entrances"]
    silent = sum(any(n < MIN_NOTES for n in r["notes"].values()) for r in strict["requests"])
    lines = ["### Instrument coverage", "",
             f"{settings['requests']} requests (a style and 2-4 families each, a fixed grid), one piece of "
             f"{settings['seconds']:g} s each in strict mode, in strict mode without entrances "
             "(`max_family_silence` 0: the model alone decides whether a family plays) and in soft mode, the same "
             f"seeds; a requested family plays if it has at least {MIN_NOTES} notes (drums: hits). Strict mode brings "
             "in a requested family silent for 8 s (2 s in the first time), so its figure is the guarantee's; the "
             "other two are the model's own. Median notes of a requested family show how much more than the "
             f"entrances it plays. Requests with a silent family (strict): {silent}. "
             f"Target: {BAND_TARGETS['coverage']:.0%} overall in strict mode, {BAND_TARGETS['family_coverage']:.0%} "
             f"for each of {', '.join(BAND_FAMILIES)}.", "",
             "| family | requested | strict | strict, no entrances | soft | median notes, strict / no entrances "
             "| target |", "|---|---:|---:|---:|---:|---:|---|"]
    for name, count in strict["requested"].items():
        target = f">= {BAND_TARGETS['family_coverage']:.0%}" if name in BAND_FAMILIES else ""
        medians = f"{_fmt(strict['median_notes'].get(name), 1)} / {_fmt(alone['median_notes'].get(name), 1)}"
        lines.append(f"| {name} | {count} | {_pct(strict['by_family'][name])} | {_pct(alone['by_family'][name])} "
                     f"| {_pct(soft['by_family'][name])} | {medians} | {target} |")
    lines.append(f"| all | {sum(strict['requested'].values())} | {_pct(strict['overall'])} | "
                 f"{_pct(alone['overall'])} | {_pct(soft['overall'])} | | >= {BAND_TARGETS['coverage']:.0%} |")
    return lines


def _drum_lines(band: dict, settings: dict) -> list[str]:
    from .drums import FIGURES as DRUM_FIGURES

    drums = band["drums"]["by_style"]
    lines = ["", "### Drums against real grooves", "",
              f"Band styles' pieces (strict, {settings['pieces']} a style; pop as a band with drums, a drum style "
              "drums alone) beside the opening of Groove test-split `beat` takes of the style (pop: of every style). "
              "Per piece, means generated / real: hits per 4-beat bar; share of hits on the 16th grid (token grid, "
              "12 steps a beat); kick (35-36), snare (37, 38, 40), hi-hat (42, 44, 46) shares; consistency, the mean "
              "Jaccard similarity of consecutive bars' (16th, voice) patterns. Overlap: of each figure's per-bar "
              "histograms, generated vs real; the real takes' odd vs even halves give the ceiling sampling noise "
              f"allows. Target: mean overlap >= {BAND_TARGETS['drum_overlap']}.", ""]
    if drums:
        lines += ["| style | pieces (with drums) | real takes | " + " | ".join(DRUM_FIGURES) + " |",
                  "|---|---:|---:|" + "---:|" * len(DRUM_FIGURES)]
        for style, v in drums.items():
            lines.append(f"| {style} | {v['pieces']} ({v['pieces_with_drums']}) | {v['real_pieces']} | "
                         + " | ".join(_pair(v["generated"], v["real"], f) for f in DRUM_FIGURES) + " |")
        lines += ["", "| style | " + " | ".join(f"{f} overlap" for f in DRUM_FIGURES)
                  + " | mean overlap | real halves' overlap |", "|---|" + "---:|" * (len(DRUM_FIGURES) + 2)]
        for style, v in drums.items():
            lines.append(f"| {style} | " + " | ".join(_fmt(v["overlap"][f]) for f in DRUM_FIGURES)
                         + f" | {_fmt(v['mean_overlap'])} | {_fmt(v['real_split_half'])} |")
    else:
        lines.append("No band style (pop, drums-*) among the styles composed.")
    return lines


def _harmony_lines(band: dict, settings: dict) -> list[str]:
    harmony = band["harmony"]
    made, real = harmony["generated"], harmony["real"]
    lines = ["", "### Bass in the chord", "",
              "Share of bass notes whose pitch class sounds in the other parts (drums aside) at the bass note's "
              "onset (struck up to a 32nd after it), of the bass notes with any other part sounding. Generated: the "
              "bass family of the pop pieces above; real: held-out POP909 songs, the bass the piano's lowest voice "
              f"below C4. Target: within {BAND_TARGETS['bass_in_chord_points'] * 100:.0f} points of real.", "",
              "| source | pieces (with bass) | bass notes | with a chord | in the chord |", "|---|---:|---:|---:|---:|",
              f"| generated pop | {made['pieces']} ({made['pieces_with_bass']}) | {made['bass_notes']} | "
              f"{made['with_chord']} | {_pct(made['share'])} |"]
    if real.get("pieces"):
        lines.append(f"| POP909 test songs | {real['pieces']} ({real['pieces_with_bass']}) | {real['bass_notes']} | "
                     f"{real['with_chord']} | {_pct(real['share'])} |")
    return lines


def _continuation_lines(band: dict, settings: dict) -> list[str]:
    cont = band["continuation"]
    lines = ["", "### Continuations", "",
              f"Each song cut at {settings['prompt_seconds']:g} s and continued for {settings['continue_seconds']:g} s "
              "(strict mode, the prompt's families), beside the song's own next "
              f"{settings['continue_seconds']:g} s; generated / real. Tempo changes: tempo map entries moving the "
              "tempo 3% or more, per minute; held >= 4 s and notes at once (sampled every 0.1 s) leave drums aside; "
              "at the end: prompt families striking a note in the last 10 s. Target: the first three within "
              f"{BAND_TARGETS['continuation_ratio']:.0%} of real, every family at the end in >= "
              f"{BAND_TARGETS['families_playing']:.0%} of songs.", ""]
    if cont["songs"]:
        lines += ["| song | families | tempo changes / min | held >= 4 s | notes at once | families at the end |",
                  "|---|---|---:|---:|---:|---:|"]
        for song in cont["songs"]:
            made, real = song["generated"], song["real"]
            ends = [f"{sum(side['families_playing_last'].values())}/{len(song['families'])}" for side in (made, real)]
            lines.append(f"| {song['name']} | {', '.join(song['families'])} | "
                         f"{_pair(made, real, 'tempo_changes_per_minute')} | {_pair(made, real, 'long_note_share', 3)} "
                         f"| {_pair(made, real, 'mean_polyphony')} | {ends[0]} / {ends[1]} |")
        made, real = cont["generated"], cont["real"]
        lines.append(f"| mean | | {_pair(made, real, 'tempo_changes_per_minute')} | "
                     f"{_pair(made, real, 'long_note_share', 3)} | {_pair(made, real, 'mean_polyphony')} | "
                     f"{_pct(made['all_families_playing'])} / {_pct(real['all_families_playing'])} all |")
    else:
        lines.append("No song continued (give --prompts DIR or --corpora DIR).")
    lines += [f"- skipped {s['name']}: {s['reason']}" for s in cont["skipped"]]
    return lines

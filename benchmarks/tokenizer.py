"""Compare musenet's tokenizer with MidiTok's REMI on the same MIDI files.

For every *.mid / *.midi file under DIR (parsed once with symusic) it measures, for each tokenizer:

- tokens per note (sequence length / number of notes in the input Score),
- speed in notes per second, timed from the already-parsed Score (parsing excluded), best of
  --repeat passes over the whole file set, after one warm-up call,
- speed including parsing (symusic.Score.from_midi on the file's bytes + encode), same method.

Files that symusic cannot parse, that have no notes, or that musenet rejects (MidiError) are
listed as skipped and left out of all totals.

MidiTok: REMI with programs (drums included as program -1), one token stream, velocities;
everything else at MidiTok's defaults. Needs the bench extra: pip install -e '.[bench]'.

Run:  python benchmarks/tokenizer.py ../shared/midi [--repeat 3] [--time-mode beat|seconds] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version
from pathlib import Path

import miditok
import symusic

import musenet


def find_midi(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".mid", ".midi") and p.is_file())


def remi_tokenizer() -> miditok.REMI:
    config = miditok.TokenizerConfig(
        use_programs=True,
        one_token_stream_for_programs=True,
        use_velocities=True,
        programs=list(range(-1, 128)),  # MidiTok's default, stated here: -1 = drums, so drums are kept
    )
    return miditok.REMI(config)


def count_remi(result) -> int:
    seqs = result if isinstance(result, list) else [result]
    return sum(len(seq.ids) for seq in seqs)


def load(paths: list[Path], root: Path, time_mode: str):
    """(name, bytes, Score) for files both tokenizers can take, and (name, reason) for the rest."""
    files, skipped = [], []
    for path in paths:
        name = str(path.relative_to(root))
        data = path.read_bytes()
        try:
            score = symusic.Score.from_midi(data)
        except Exception as err:  # symusic raises plain RuntimeError/ValueError on damaged files
            skipped.append((name, f"symusic: {err}"))
            continue
        if score.note_num() == 0:
            skipped.append((name, "no notes"))
            continue
        try:
            musenet.encode(score, time_mode=time_mode)
        except musenet.MidiError as err:
            skipped.append((name, f"musenet: {err}"))
            continue
        files.append((name, data, score))
    return files, skipped


def best_time(fn, items, repeat: int) -> float:
    """Best wall time of `repeat` passes of fn over all items, after one warm-up call."""
    fn(items[0])
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return best


def markdown(header: list[str], rows: list[list]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def measure(count, files, repeat: int) -> dict:
    """Token counts per file and speed of `count` (Score -> number of tokens) over all files."""
    scores = [score for _, _, score in files]
    notes = sum(score.note_num() for score in scores)
    tokens = [count(score) for score in scores]
    seconds = best_time(count, scores, repeat)
    seconds_parse = best_time(lambda item: count(symusic.Score.from_midi(item[1])), files, repeat)
    return {
        "notes": notes,
        "tokens": sum(tokens),
        "tokens_per_note": sum(tokens) / notes,
        "seconds": seconds,
        "notes_per_second": notes / seconds,
        "seconds_with_parse": seconds_parse,
        "notes_per_second_with_parse": notes / seconds_parse,
        "per_file_tokens": tokens,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="folder searched recursively for *.mid / *.midi")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; the best is kept (default 3)")
    parser.add_argument("--time-mode", choices=["beat", "seconds"], default="beat", help="musenet time mode")
    parser.add_argument("--json", type=Path, help="also write the summary numbers to this JSON file")
    args = parser.parse_args(argv)

    files, skipped = load(find_midi(args.dir), args.dir, args.time_mode)
    if not files:
        raise SystemExit(f"no usable MIDI files under {args.dir}")
    remi = remi_tokenizer()
    ours = measure(lambda score: len(musenet.encode(score, time_mode=args.time_mode)), files, args.repeat)
    theirs = measure(lambda score: count_remi(remi.encode(score)), files, args.repeat)
    summary = {f"musenet ({args.time_mode})": ours, "MidiTok REMI": theirs}
    ratio = ours["notes_per_second"] / theirs["notes_per_second"]
    ratio_parse = ours["notes_per_second_with_parse"] / theirs["notes_per_second_with_parse"]

    per_file = []
    for i, (name, _, score) in enumerate(files):
        n = score.note_num()
        per_file.append([name, n] + [f"{s['per_file_tokens'][i] / n:.2f}" for s in summary.values()])
    print(markdown(["file", "notes"] + [f"{label} tokens/note" for label in summary], per_file))
    print()
    rows = [
        [label, s["notes"], f"{s['notes_per_second']:,.0f}", f"{s['tokens_per_note']:.2f}", f"{r:.2f}x",
         f"{s['notes_per_second_with_parse']:,.0f}", f"{rp:.2f}x"]
        for (label, s), r, rp in zip(summary.items(), (ratio, 1.0), (ratio_parse, 1.0), strict=True)
    ]
    header = ["tokenizer", "notes", "notes/s", "tokens/note", "speed ours/MidiTok", "notes/s incl. parse",
              "speed incl. parse"]
    print(markdown(header, rows))
    versions = f"miditok {version('miditok')}, symusic {version('symusic')}"
    print(f"\n{len(files)} files, best of {args.repeat} passes; {versions}")
    for name, reason in skipped:
        print(f"skipped: {name}: {reason}")

    if args.json:
        for s in summary.values():
            del s["per_file_tokens"]
        report = {
            "dir": str(args.dir),
            "time_mode": args.time_mode,
            "repeat": args.repeat,
            "files": len(files),
            "skipped": [{"file": name, "reason": reason} for name, reason in skipped],
            "tokenizers": summary,
            "speed_ratio_ours_over_miditok": ratio,
            "speed_ratio_ours_over_miditok_with_parse": ratio_parse,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""What MuseNet's embeddings and position schemes are worth (issue #17, part 2), as a table.

    python benchmarks/design.py --data data/band --minutes 10 --seeds 0,1,2 --out OUT

Every variant trains the same model shape (`--size`, default `study`) on the same built
dataset, from scratch, for the same wall-clock budget on this machine (`--minutes` of training
steps; evaluation not counted), with the same batches (the seed draws them), AdamW (but for
`muon`) and a warm-up + cosine learning rate driven by the share of the budget spent. Then each
is scored on the valid split (`--eval-tokens`, whole pieces, the styles in turn):

- `ours`: learned positions and all four side features (time, chord, position, countdown);
- `no-time`, `no-chord`, `no-position`, `no-countdown`: one side feature off;
- `no-features`: all four off;
- `rotary`, `alibi`: rotary positions, or ALiBi's distance penalties, instead of learned ones;
- `relative`: ours plus Music Transformer's relative attention (Huang et al., 2019) over
  distances up to the whole 256-token window (`relative_span`), beside the learned positions;
- `time-heads`: ours with two heads that rotate queries and keys by the time feature, a
  relative position in time (the bundled model's choice);
- `phase`: ours plus the grid step within a 4-beat bar since the piece began (where in the
  beat and the bar each token falls; without it a window that starts mid-piece does not know);
- `muon`: ours trained with Muon for the blocks' matrices and AdamW for the rest
  (`train.MuonAdamW`) instead of AdamW for everything.

Figures per variant, mean and spread (min-max) over the seeds: valid loss (nats per token),
bits per note, bits per second of music, training tokens per second, steps. All variants
share one encoding, so bits per note and per second rank them alike here; the encodings
(part 1) compare on bits per second.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from musenet.dataset import Dataset
from musenet.evaluate.likelihood import heldout_scores, to_tensors, token_losses
from musenet.files import write_atomic
from musenet.model import FEATURES, SIZES, build_model
from musenet.train import make_optimizer, use_bf16

VARIANTS = {
    "ours": {},
    **{f"no-{name}": {"side_features": [f for f in FEATURES if f != name]} for name in FEATURES},
    "no-features": {"side_features": False},
    "rotary": {"positions": "rotary"},
    "alibi": {"positions": "alibi"},
    "relative": {"relative_span": 256},
    "time-heads": {"time_heads": 2},
    "phase": {"side_features": [*FEATURES, "phase"]},
    "muon": {"optimizer": "muon"},
}

#: A shape small enough to learn something in a few CPU minutes (about 2,900 training tokens a
#: second on one core of a 2-core AVX2 EPYC, where `small` trains at 700 in float32 and 13x
#: slower in emulated bfloat16).
SHAPES = {"study": dict(context=256, layers=4, heads=4, width=128, dropout=0.0)}


def shape(name: str) -> dict:
    """A model shape by name: one of the study's SHAPES or the package's sizes."""
    if name not in SHAPES and name not in SIZES:
        raise SystemExit(f"unknown model shape {name!r}; use one of {', '.join([*SHAPES, *SIZES])}")
    return dict(SHAPES.get(name) or SIZES[name])


def rate(step: int, spent: float, peak: float, floor: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine from `peak` to `floor` over the budget."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return floor + 0.5 * (1 + math.cos(math.pi * min(spent, 1.0))) * (peak - floor)


def clock(args) -> float:
    """Seconds by the budget's clock: wall-clock, or this process's CPU time (`--clock cpu`,
    with `--threads 1` the wall-clock time of the run on a core of its own)."""
    return time.process_time() if args.clock == "cpu" else time.perf_counter()


def run_variant(name: str, data: Dataset, valid: Dataset, args, seed: int) -> dict:
    """Train one variant for the budget and score it on the valid split."""
    torch.manual_seed(seed)
    settings = dict(VARIANTS[name])
    optimizer_kind = settings.pop("optimizer", "adamw")
    model = build_model(shape(args.size), data.vocab.size, dropout=0.0, **settings)
    optimizer = make_optimizer(model, optimizer_kind, args.lr, 0.1)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(args.precision, torch.device("cpu")))
    budget, spent, step, tokens = args.minutes * 60.0, 0.0, 0, 0
    model.train()
    while spent < budget:
        began = clock(args)
        lr = rate(step, spent / budget, args.lr, args.lr / 10, 50)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = data.sample(np.random.default_rng([seed, step]), args.batch, model.config.context)
        inputs, features, targets = to_tensors(batch, "cpu")
        with autocast:
            losses = token_losses(model, inputs, features, targets, data.vocab.PAD)
            count = int((targets != data.vocab.PAD).sum())
            (losses.sum() / max(count, 1)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step, tokens = step + 1, tokens + count
        spent += clock(args) - began
    scores = heldout_scores(model, valid, model.config.context, "cpu", args.eval_tokens)
    rows = np.array(scores["rows"])
    notes, seconds = valid.index["notes"][rows].sum(), valid.index["seconds"][rows].sum()
    return {"variant": name, "seed": seed, "steps": step, "tokens_per_second": tokens / spent,
            "valid_loss": scores["valid_loss"], "bits_per_note": scores["bits_per_note"],
            "bits_per_second": scores["bits_per_note"] * notes / max(seconds, 1e-9),
            "parameters": model.parameter_count()}


def table(results: list[dict]) -> str:
    """Mean and spread over the seeds of each variant's figures, as Markdown."""
    keys = ("valid_loss", "bits_per_note", "bits_per_second", "tokens_per_second", "steps")
    lines = ["| variant | seeds | valid loss (nats/token) | bits per note | bits per second | train tokens/s "
             "| steps |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in dict.fromkeys(r["variant"] for r in results):
        mine = [r for r in results if r["variant"] == name]
        cells = []
        for key in keys:
            values = np.array([r[key] for r in mine], float)
            digits = 0 if key in ("tokens_per_second", "steps") else 3
            cells.append(f"{values.mean():,.{digits}f} ({values.min():,.{digits}f}-{values.max():,.{digits}f})")
        lines.append(f"| {name} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def study_arguments(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, Path]:
    """The options both halves of the study share; parses, sets the threads, makes --out."""
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per run (default 3)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--size", default="study", help="model shape (study, tiny, small, ...)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="auto: bfloat16 only where the CPU does it natively (AMX / AVX512-BF16)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="budget in wall-clock seconds, or in the process's CPU seconds (fair when two "
                             "single-threaded studies share the machine)")
    parser.add_argument("--out", required=True, help="folder for results.json (appended as runs finish)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return args, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="a built dataset (`musenet data build`)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"some of {', '.join(VARIANTS)}")
    parser.add_argument("--eval-tokens", type=int, default=40000, help="valid tokens scored (whole pieces)")
    args, out = study_arguments(parser)
    data, valid = Dataset(args.data, "train"), Dataset(args.data, "valid")
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["variant"], r["seed"]) for r in results}  # a rerun goes on where a killed one stopped
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in args.variants.split(","):
            if name not in VARIANTS:
                raise SystemExit(f"unknown variant {name!r}; use some of {', '.join(VARIANTS)}")
            if (name, seed) in done:
                continue
            results.append(run_variant(name, data, valid, args, seed))
            write_atomic(results_path, (json.dumps(results, indent=2) + "\n").encode())
            print(f"{name} seed {seed}: {results[-1]['bits_per_note']:.3f} bits per note", flush=True)
    print(f"\n{args.size} model, {args.minutes:g} min of training per variant and seed on this machine\n")
    print(table(results))


if __name__ == "__main__":
    main()

"""JSB chorales benchmark (Music Transformer, Huang et al. 2019, Table 1) with our model.

Data: the Coconet 16th-note JSB chorales (229 / 76 / 77 train / valid / test chorales), read
from ../shared/benchmarks/jsb/Jsb16thSeparated.npz (see the README.md beside it). Each chorale is
a (T, 4) array, one row per sixteenth note, columns soprano, alto, tenor, bass, each a MIDI pitch
or NaN.

Protocol, as in the paper:
- raster order: each sixteenth step, then its four voices S, A, T, B; one token per cell, a
  pitch token or a single "rest" token for NaN;
- a whole chorale is one sequence, preceded by a start token so that its first cell is predicted
  too; the start token is input only (never a target) and there is no end token, so a chorale of
  T steps contributes exactly 4T scored tokens;
- metric: mean negative log-likelihood, nats per token, over every token of the valid split and,
  separately, of the test split; valid and test are never transposed nor trained on.
With --context 2560 every chorale fits whole (the longest, in test, has 640 steps). With a
smaller context, such as the default 256, chorales longer than it are scored with sliding
windows (stride --eval-stride, default context / 4) that score every token exactly once, each
with as much left context as the window allows (at least context - stride tokens once past the
first window); training then uses random crops of the context's length that start on a step
boundary. On a 2-core CPU short crops train much faster per minute than whole chorales (more
chorales per step, cheaper attention): after 4 minutes, 256-token crops (16 per step) reached a
valid NLL of 0.65 against 0.74 for 512 (8 per step) and 0.86 for whole chorales (4 per step).

Model: ours, `musenet.model.build_model` with learned, rotary or ALiBi positions (and, with
--relative-span, Music Transformer's relative attention beside them) and, with
--features, MuseNet's side features read off the raster (`side_features`): `chord`, each cell's
place in its chord (the voice: soprano 1 to bass 4), `time` (sixteenths since the window's
first; --time-heads rotates that many heads by it, so they score cells by their distance in
time, whatever voices lie between), `phase` (the sixteenth within a 4/4 bar from the chorale's
first) and `held_for` (for how many sixteenths the cell's voice has kept its pitch). All are
computed from the tokens up to and including the cell they describe, so no future token leaks
into a prediction; with none, rotary positions alone cannot tell which voice comes next where a
window starts mid-chorale. Trained with AdamW (the project's weight-decay groups) and the
project's warm-up + cosine `learning_rate` helper driven by the fraction of the time budget
spent, on chorales transposed by a random k in [-transpose, +transpose] semitones (limited per
chorale so every pitch stays inside the vocabulary). --dropout applies to the embeddings and
the residual branches; attention-probability dropout is off (the model's `attention_dropout`
default; see --attention-dropout) because on CPU `scaled_dot_product_attention` with dropout
leaves the fused kernel for the quadratic-memory math path and trains several times slower.
--optimizer muon (the default) trains the transformer blocks' matrices with Muon and the rest with AdamW
(`musenet.train.MuonAdamW`). --final-context trains the last --final-share of the budget on
longer windows (whole chorales at 2560, batched to about the same tokens a step) and scores
with them, so a phrase that comes back (a chorale's repeated opening) can be read from further
back than a short crop reaches; --score-keys N also scores the model read in every key within
+-N semitones with its probabilities averaged (`evaluate_transposed`: a mixture over
transpositions, each token's probability the mean of the model's for it in each key, the same
keys for every chorale; the shifted distributions lose any mass on pitches outside the
vocabulary, so the mixture sums to at most 1 and its NLL is, if anything, too high); --ema D
also keeps an exponential moving average of the weights (decay D) and scores it beside them,
keeping whichever is better on valid (README: level with the weights themselves at the end). The
time budget counts training steps only; the valid split is scored every --eval-minutes of
training and the best-valid weights are kept in memory, and the final valid and test numbers
are theirs (scored in float32; the periodic valid scores use bfloat16 matmuls under --bf16, the
default on CPUs with native bfloat16).

Run (2-core CPU, about 30 minutes of training plus a few of evaluation):
    python benchmarks/jsb.py --minutes 30 --out /tmp/jsb.json
The defaults are the settings picked by short trials on that CPU. --threads 2 is fastest on an
idle machine, but when other processes keep the cores busy, 2 threads synchronising on 2 shared
cores ran 2-7x slower than --threads 1.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from musenet.model import build_model
from musenet.train import OPTIMIZERS, TrainConfig, learning_rate, make_optimizer, native_bf16

DATA = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "jsb" / "Jsb16thSeparated.npz"
PUBLISHED = [  # Huang et al. 2019, Table 1: valid NLL only
    ("Transformer, absolute positions (Huang et al. 2019)", 0.417),
    ("Music Transformer, relative attention (Huang et al. 2019)", 0.335),
]
REST, START, FIRST_PITCH = 0, 1, 2
IGNORE = -100  # target padding, skipped by cross_entropy
JSB_FEATURES = ("chord", "time", "phase", "held_for")  # the side features `side_features` computes here
VIRTUAL_STEPS = 10_000  # the lr schedule runs over the time budget mapped onto this many steps


@dataclass
class Vocab:
    """rest, start, then one token per MIDI pitch from low to high."""

    low: int
    high: int

    @property
    def size(self) -> int:
        return FIRST_PITCH + self.high - self.low + 1

    def encode(self, chorale: np.ndarray, shift: int = 0) -> np.ndarray:
        """[start] + the cells of a (T, 4) chorale in raster order, transposed by `shift`."""
        cells = chorale.reshape(-1).astype(np.float64)
        tokens = np.full(cells.shape, REST, np.int64)
        notes = ~np.isnan(cells)
        pitches = cells[notes].astype(np.int64) + shift
        if pitches.size and (pitches.min() < self.low or pitches.max() > self.high):
            raise ValueError(f"pitches {pitches.min()}..{pitches.max()} outside {self.low}..{self.high}")
        tokens[notes] = pitches - self.low + FIRST_PITCH
        return np.concatenate([[START], tokens])

    def shifts(self, chorale: np.ndarray, transpose: int) -> range:
        """Transpositions in [-transpose, transpose] that keep the chorale inside the vocabulary."""
        low, high = int(np.nanmin(chorale)), int(np.nanmax(chorale))
        return range(max(-transpose, self.low - low), min(transpose, self.high - high) + 1)


def load_splits(path: Path) -> dict[str, list[np.ndarray]]:
    data = np.load(path, allow_pickle=True, encoding="latin1")
    return {split: [np.asarray(c, np.float64) for c in data[split]] for split in ("train", "valid", "test")}


def make_vocab(train: list[np.ndarray], transpose: int) -> Vocab:
    low = min(int(np.nanmin(c)) for c in train)
    high = max(int(np.nanmax(c)) for c in train)
    return Vocab(low - transpose, high + transpose)


def collate(sequences: list[np.ndarray], sides: list[dict] | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, dict | None]:
    """(inputs, targets, side features or None) padded to the longest: sequence[:-1] predicts
    sequence[1:]; `sides`, each sequence's `side_features` (padded with 0)."""
    length = max(len(s) for s in sequences) - 1
    inputs = np.full((len(sequences), length), REST, np.int64)
    targets = np.full((len(sequences), length), IGNORE, np.int64)
    for row, s in enumerate(sequences):
        inputs[row, : len(s) - 1] = s[:-1]
        targets[row, : len(s) - 1] = s[1:]
    if not sides or not sides[0]:
        return torch.from_numpy(inputs), torch.from_numpy(targets), None
    table = {name: np.zeros((len(sequences), length), np.int64) for name in sides[0]}
    for row, side in enumerate(sides):
        for name, values in side.items():
            table[name][row, : len(values)] = values
    return torch.from_numpy(inputs), torch.from_numpy(targets), {k: torch.from_numpy(v) for k, v in table.items()}


def side_features(tokens: np.ndarray, start: int, length: int, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """MuseNet's side features `names` of the `length` input tokens from index `start` of a
    chorale's `tokens` (index 0 is the start token, then cell j = index - 1 is voice j % 4 of
    sixteenth j // 4): `chord`, the cell's place in its chord (1-4 for soprano to bass, 0 for
    the start token); `time`, sixteenths since the window's first (what time heads rotate by);
    `phase`, the sixteenth within a 4/4 bar counted from the chorale's first; `held_for`, for
    how many sixteenths before this one the voice has kept the same pitch (or rest), from the
    chorale's start (so a window starting mid-note still knows), saturating at 32."""
    if not names:
        return {}
    index = np.arange(start, start + length)
    cell = index - 1
    step = np.maximum(cell, 0) // 4
    out = {"chord": np.where(index > 0, cell % 4 + 1, 0), "time": step - step[0],
           "phase": np.where(index > 0, step % 16, 0)}
    if "held_for" in names:
        grid = tokens[1:1 + 4 * ((len(tokens) - 1) // 4)].reshape(-1, 4)
        steps = np.arange(len(grid))[:, None]
        changed = np.vstack([np.ones((1, 4), bool), grid[1:] != grid[:-1]])
        held = np.minimum(steps - np.maximum.accumulate(np.where(changed, steps, 0), axis=0), 32)
        flat = np.concatenate([[0], held.reshape(-1), np.zeros(len(tokens), np.int64)])
        out["held_for"] = flat[index]
    return {name: out[name] for name in names}


def random_crop(sequence: np.ndarray, context: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A context+1 slice starting on a step boundary (so voice = position mod 4 stays true),
    and where it starts."""
    targets = len(sequence) - 1
    if targets <= context:
        return sequence, 0
    start = 4 * int(rng.integers(0, (targets - context) // 4 + 1))
    return sequence[start: start + context + 1], start


def training_batches(chorales: list[np.ndarray], vocab: Vocab, batch_size: int, context: int, transpose: int,
                     rng: np.random.Generator, features: tuple[str, ...] = ()):
    """Endless (inputs, targets, side features) batches: each epoch shuffles, groups chorales of similar length
    (sorted within chunks of 16 batches, to waste little on padding) and transposes each one."""
    while True:
        order = rng.permutation(len(chorales))
        groups = []
        chunk = 16 * batch_size
        for i in range(0, len(order), chunk):
            part = sorted(order[i: i + chunk], key=lambda j: len(chorales[j]))
            groups += [part[k: k + batch_size] for k in range(0, len(part), batch_size)]
        for g in rng.permutation(len(groups)):
            crops, sides = [], []
            for j in groups[g]:
                shift = int(rng.choice(vocab.shifts(chorales[j], transpose)))
                tokens = vocab.encode(chorales[j], shift)
                crop, start = random_crop(tokens, context, rng)
                crops.append(crop)
                sides.append(side_features(tokens, start, len(crop) - 1, features))
            yield collate(crops, sides)


def eval_windows(targets: int, context: int, stride: int) -> list[tuple[int, int]]:
    """(start, first scored target) per window: inputs [start, start+context) predict targets of
    the same indices; every target is scored once, with as much left context as the window has."""
    if targets <= context:
        return [(0, 0)]
    windows, scored, start = [], 0, 0
    while scored < targets:
        start = min(start, targets - context)
        windows.append((start, scored))
        scored = start + context
        start += stride
    return windows


@torch.no_grad()
def token_log_probs(model, sequences: list[np.ndarray], context: int, stride: int, bf16: bool = False,
                    batch_tokens: int = 4096, features: tuple[str, ...] = ()) -> list[np.ndarray]:
    """The log-probability of every target token of each sequence (start token excluded), each
    read with as much left context as its window allows; `bf16` autocasts the matmuls (faster,
    for checkpoint selection; final numbers use float32)."""
    model.eval()
    pieces = []  # (window, targets that are context only, side features, sequence, first target)
    for n, s in enumerate(sequences):
        for start, first in eval_windows(len(s) - 1, context, stride):
            window = s[start: start + context + 1]
            pieces.append((window, first - start, side_features(s, start, len(window) - 1, features), n, start))
    pieces.sort(key=lambda p: -len(p[0]))  # longest first: each batch's first window sets its size
    out = [np.zeros(len(s) - 1) for s in sequences]
    i = 0
    while i < len(pieces):
        size = max(1, batch_tokens // len(pieces[i][0]))
        chunk = pieces[i: i + size]
        i += len(chunk)
        inputs, targets, side = collate([p[0] for p in chunk], [p[2] for p in chunk])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(inputs, side).float()
        picked = logits.log_softmax(-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0].numpy()
        for row, (window, skip, _, n, start) in enumerate(chunk):
            out[n][start + skip: start + len(window) - 1] = picked[row, skip: len(window) - 1]
    model.train()
    return out


def evaluate(model, sequences: list[np.ndarray], context: int, stride: int, bf16: bool = False,
             features: tuple[str, ...] = ()) -> float:
    """Mean NLL (nats per token) over every target token of `sequences`."""
    scores = token_log_probs(model, sequences, context, stride, bf16, features=features)
    return -float(np.concatenate(scores).mean())


def evaluate_transposed(model, chorales: list[np.ndarray], vocab: Vocab, transpose: int, context: int,
                        stride: int, features: tuple[str, ...] = ()) -> float:
    """Mean NLL of the mixture of the model read in each of the 2 x `transpose` + 1 keys within
    +-`transpose` semitones: each token's probability is the mean of the model's probabilities
    for it in each key (one pass a key). The keys are the same for every chorale, so what comes
    later cannot choose them; a key that takes a pitch outside the vocabulary gives that
    token, and every later one, probability 0."""
    scores = []
    for chorale in chorales:
        keys, outsides = [], []
        for shift in range(-transpose, transpose + 1):
            shifted = chorale.reshape(-1) + shift
            outside = ~np.isnan(shifted) & ((shifted < vocab.low) | (shifted > vocab.high))
            keys.append(vocab.encode(np.where(outside.reshape(chorale.shape), np.nan, chorale), shift))
            outsides.append(outside)
        each = np.stack(token_log_probs(model, keys, context, stride, features=features))  # all keys in one pass
        for log_probs, outside in zip(each, outsides, strict=True):
            if outside.any():
                log_probs[int(np.argmax(outside)):] = -np.inf
        scores.append(np.logaddexp.reduce(each, axis=0) - math.log(len(keys)))
    return -float(np.concatenate(scores).mean())


def train(model, args, splits: dict, vocab: Vocab) -> dict:
    """Train for args.minutes of step time; returns the best-valid state and the history."""
    rng = np.random.default_rng(args.seed)
    valid = [vocab.encode(c) for c in splits["valid"]]
    schedule = TrainConfig(learning_rate=args.lr, min_learning_rate=args.lr * args.min_lr_ratio,
                           warmup_steps=int(args.warmup * VIRTUAL_STEPS), max_steps=VIRTUAL_STEPS)
    optimizer = make_optimizer(model, args.optimizer, args.lr, args.weight_decay, betas=(0.9, 0.98))
    features = tuple(model.config.features)
    batches = training_batches(splits["train"], vocab, args.batch_size, args.context, args.transpose, rng, features)
    budget = args.minutes * 60
    context, stride = args.context, args.eval_stride
    train_seconds, next_eval, step, tokens = 0.0, args.eval_minutes * 60, 0, 0
    recent, history, best = [], [], {"valid": math.inf}
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema), use_buffers=True) if args.ema else None
    while True:
        done = train_seconds >= budget
        if context != args.final_context and train_seconds >= budget * (1 - args.final_share):
            # the last stretch reads whole chorales (or longer windows): where a phrase comes back, the
            # model can copy it from further back than the short crops reach
            context, stride = args.final_context, args.final_stride
            mean_tokens = np.mean([4 * len(c) + 1 for c in splits["train"]])
            batch_size = max(1, round(args.batch_size * args.context / min(context, mean_tokens)))
            batches = training_batches(splits["train"], vocab, batch_size, context, args.transpose, rng, features)
            print(f"  {train_seconds / 60:6.2f} min  now {context}-token windows, {batch_size} a step", flush=True)
        if train_seconds >= next_eval or done:
            next_eval += args.eval_minutes * 60
            score = evaluate(model, valid, context, stride, args.bf16, features=features)
            record = {"minutes": round(train_seconds / 60, 2), "step": step, "tokens": tokens,
                      "train": round(sum(recent) / max(len(recent), 1), 4), "valid": round(score, 4),
                      "lr": optimizer.param_groups[0]["lr"]}
            candidates = [(score, "raw", model)]
            if ema is not None and step:  # the running average, scored alike; the better one may be kept
                record["valid_ema"] = round(evaluate(ema.module, valid, context, stride, args.bf16,
                                                     features=features), 4)
                candidates.append((record["valid_ema"], "ema", ema.module))
            history.append(record)
            recent = []
            score, kind, weights = min(candidates, key=lambda c: c[0])
            if score < best["valid"]:
                best = {"valid": score, "step": step, "minutes": record["minutes"], "context": context,
                        "stride": stride, "weights": kind,
                        "state": {k: v.detach().clone() for k, v in weights.state_dict().items()}}
            averaged = f"  averaged {record['valid_ema']:.4f}" if "valid_ema" in record else ""
            print(f"  {record['minutes']:6.2f} min  step {step:5d}  train {record['train']:.4f}  "
                  f"valid {record['valid']:.4f}{averaged}{'  *' if best['step'] == step else ''}", flush=True)
        if done:
            break
        started = time.perf_counter()
        lr = learning_rate(int(train_seconds / budget * VIRTUAL_STEPS), schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs, targets, side = next(batches)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(inputs, side)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=IGNORE)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        recent.append(loss.item())
        step += 1
        tokens += int((targets != IGNORE).sum())
        train_seconds += time.perf_counter() - started
    return {"best": best, "history": history, "steps": step, "tokens": tokens, "train_seconds": train_seconds}


def describe(args) -> str:
    extra = f", features {'+'.join(args.features)}" if args.features else ""
    extra += f", {args.time_heads} time heads" if args.time_heads else ""
    extra += f", relative attention over {args.relative_span} tokens" if args.relative_span else ""
    return (f"ours ({args.positions}, {args.layers} layers x {args.width}, {args.heads} heads, "
            f"dropout {args.dropout}{extra}, {args.minutes:g} min CPU)")


def markdown_table(args, valid: float, test: float) -> str:
    rows = ["| model | valid NLL | test NLL |", "| --- | --- | --- |"]
    rows += [f"| {name} | {nll:.3f} | — |" for name, nll in PUBLISHED]
    rows.append(f"| {describe(args)} | {valid:.3f} | {test:.3f} |")
    return "\n".join(rows)


def feature_list(text: str) -> tuple[str, ...]:
    names = tuple(n for n in text.split(",") if n)
    unknown = [n for n in names if n not in JSB_FEATURES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown side feature {unknown[0]!r}: use {', '.join(JSB_FEATURES)}")
    return names


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--minutes", type=float, default=30.0, help="training time budget (steps only)")
    p.add_argument("--positions", choices=("learned", "rotary", "alibi"), default="rotary")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--features", type=feature_list, default=(),
                   help="MuseNet's side features, comma-separated, from chord (the voice), time, phase, held_for "
                        "(`side_features`; default none)")
    p.add_argument("--time-heads", type=int, default=0, help="heads rotated by time (needs the time feature)")
    p.add_argument("--relative-span", type=int, default=256,
                   help="Music Transformer's relative attention over distances up to N tokens, "
                        "beside --positions (0: off)")
    p.add_argument("--attention-dropout", type=float, default=0.0,
                   help="dropout on attention probabilities (slow on CPU when > 0)")
    p.add_argument("--context", type=int, default=256, help="tokens per window; a multiple of 4")
    p.add_argument("--eval-stride", type=int, default=0, help="sliding-window stride (0: context / 4)")
    p.add_argument("--final-context", type=int, default=0,
                   help="tokens per window for the last --final-share of the budget and for scoring "
                        "(0: --context throughout; 2560 holds every chorale whole)")
    p.add_argument("--final-share", type=float, default=0.3, help="share of the budget at --final-context")
    p.add_argument("--batch-size", type=int, default=16, help="chorales per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="muon",
                   help="muon: Muon for the transformer blocks' matrices, AdamW for the rest (`train.MuonAdamW`)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="also keep an exponential moving average of the weights with this decay (e.g. 0.999) "
                        "and score it beside them; the better on valid is kept (0: off)")
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup", type=float, default=0.03, help="fraction of the budget")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--transpose", type=int, default=6, help="max semitones up or down")
    p.add_argument("--score-keys", type=int, default=0,
                   help="also score the model read in every key within +-N semitones, probabilities averaged "
                        "(a mixture over transpositions: 2N + 1 scoring passes)")
    p.add_argument("--eval-minutes", type=float, default=3.0)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=native_bf16(torch.device("cpu")),
                   help="bfloat16 autocast for training steps (evaluation is always float32); default: where "
                        "the CPU does it natively (AMX / AVX512-BF16; emulated it trains about 13x slower)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write settings, history and results as JSON")
    args = p.parse_args(argv)
    if args.context % 4:
        p.error("--context must be a multiple of 4 (one step = 4 tokens)")
    args.eval_stride = args.eval_stride or max(4, args.context // 16 * 4)
    if args.eval_stride % 4:
        p.error("--eval-stride must be a multiple of 4")
    args.final_context = args.final_context or args.context
    if args.final_context % 4:
        p.error("--final-context must be a multiple of 4")
    args.final_stride = max(4, args.final_context // 16 * 4)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print("settings:", " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()), flush=True)
    splits = load_splits(args.data)
    vocab = make_vocab(splits["train"], args.transpose)
    model = build_model(dict(context=max(args.context, args.final_context), layers=args.layers, heads=args.heads,
                             width=args.width,
                             dropout=args.dropout, attention_dropout=args.attention_dropout,
                             positions=args.positions, side_features=list(args.features),
                             time_heads=args.time_heads, relative_span=args.relative_span), vocab.size)
    print(f"vocabulary {vocab.size} (MIDI {vocab.low}..{vocab.high}, rest, start); "
          f"parameters {model.parameter_count():,}; chorales "
          + ", ".join(f"{k} {len(v)}" for k, v in splits.items()), flush=True)
    started = time.perf_counter()
    result = train(model, args, splits, vocab)
    best = result["best"]
    model.load_state_dict(best["state"])
    features = tuple(model.config.features)
    valid = evaluate(model, [vocab.encode(c) for c in splits["valid"]], best["context"], best["stride"],
                     features=features)
    test = evaluate(model, [vocab.encode(c) for c in splits["test"]], best["context"], best["stride"],
                    features=features)
    keyed = {}
    if args.score_keys:
        for split in ("valid", "test"):
            keyed[split] = evaluate_transposed(model, splits[split], vocab, args.score_keys, best["context"],
                                               best["stride"], features=features)
    wall = time.perf_counter() - started
    print(f"\ntraining {result['train_seconds'] / 60:.1f} min ({result['steps']} steps, "
          f"{result['tokens'] / result['train_seconds']:.0f} tokens/s, "
          f"{result['tokens'] / sum(4 * len(c) for c in splits['train']):.1f} epochs); "
          f"wall {wall / 60:.1f} min with evaluation; best valid at {best['minutes']} min, step {best['step']}"
          f"{' (the averaged weights)' if best.get('weights') == 'ema' else ''}\n")
    print(markdown_table(args, valid, test))
    if keyed:
        print(f"| the same, read in {2 * args.score_keys + 1} keys (+-{args.score_keys}) and averaged "
              f"| {keyed['valid']:.3f} | {keyed['test']:.3f} |")
    if args.out:
        args.out.write_text(json.dumps({
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "parameters": model.parameter_count(), "valid_nll": valid, "test_nll": test,
            "keyed_valid_nll": keyed.get("valid"), "keyed_test_nll": keyed.get("test"),
            "best_step": best["step"], "best_minutes": best["minutes"], "best_weights": best.get("weights", "raw"),
            "train_seconds": result["train_seconds"],
            "steps": result["steps"], "tokens": result["tokens"], "wall_seconds": wall,
            "history": result["history"],
        }, indent=2))


if __name__ == "__main__":
    main()

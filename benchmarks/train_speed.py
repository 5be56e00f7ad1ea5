"""Training speed, tokens per second, of our model against Hugging Face's GPT2LMHeadModel.

Both models get the same shape (layers, width, heads, context, vocabulary, dropout), tied
input/output embeddings, learned absolute positions and no side features (so ours is a
GPT-2 with pre-norm blocks, as GPT2LMHeadModel is); GPT-2's activation is set to exact "gelu"
like ours. One training step = forward + cross-entropy on the same batch of random tokens +
backward + AdamW step (same settings for both). After --warmup untimed steps each, the two
models take turns step by step (ours, HF, ours, HF, ...) so that noise from other processes
falls on both alike; the table reports the median and best step time of --steps timed steps.

Three models take part: ours as it trains (dropout on embeddings and residual branches, none on
attention probabilities: `attention_dropout` 0, the model's default), GPT-2 as Hugging Face
configures it with the same `dropout` (GPT-2 applies it to attention probabilities too:
attn_pdrop = resid_pdrop = embd_pdrop), and GPT-2 with attn_pdrop 0 (exactly our dropout
placement). On CPU, PyTorch's fused flash-attention kernel does not do dropout, so attention
dropout sends a model to the math path (an explicit L x L score matrix, softmax and Bernoulli
mask per head), which dominates a training step at context 512. The first ratio is the one the
issue asks for; the second shows how much of it is that design choice.

Needs transformers (not a project dependency): pip install transformers

Run:  python benchmarks/train_speed.py [--size small] [--batch-size 8] [--steps 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

from musenet.model import SIZES, build_model

VOCAB = 6989


def build_ours(shape: dict, vocab: int):
    return build_model(dict(shape, positions="learned", side_features=False), vocab)


def build_hf(shape: dict, vocab: int, attention_dropout: float) -> GPT2LMHeadModel:
    config = GPT2Config(vocab_size=vocab, n_positions=shape["context"], n_embd=shape["width"],
                        n_layer=shape["layers"], n_head=shape["heads"], activation_function="gelu",
                        resid_pdrop=shape["dropout"], embd_pdrop=shape["dropout"], attn_pdrop=attention_dropout,
                        tie_word_embeddings=True, bos_token_id=None, eos_token_id=None)
    return GPT2LMHeadModel(config)


def hf_logits(model: GPT2LMHeadModel, inputs: torch.Tensor) -> torch.Tensor:
    return model(input_ids=inputs, use_cache=False).logits


def make_stepper(model, logits_of, lr: float, bf16: bool):
    """A function doing one training step on (inputs, targets), returning its seconds."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    model.train()

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = logits_of(model, inputs)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    return step


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights appear once


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", choices=tuple(SIZES), default="small")
    p.add_argument("--vocab", type=int, default=VOCAB)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--context", type=int, help="override the size's context")
    p.add_argument("--dropout", type=float, help="override the size's dropout")
    p.add_argument("--attention-dropout", type=float, default=0.0,
                   help="our model's dropout on attention probabilities")
    p.add_argument("--steps", type=int, default=10, help="timed steps per model")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False,
                   help="bfloat16 autocast for forward passes")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the results here")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    shape = dict(SIZES[args.size])
    if args.context:
        shape["context"] = args.context
    if args.dropout is not None:
        shape["dropout"] = args.dropout
    shape["attention_dropout"] = args.attention_dropout
    shape["relative_span"] = 0  # Hugging Face's GPT-2 has none: the same attention on both sides
    print("settings:", " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()))
    print(f"shape: {shape}, vocab {args.vocab}; torch {torch.__version__}, transformers {transformers.__version__}")
    torch.manual_seed(args.seed)
    hf_name, hf_zero_name = "HF GPT2LMHeadModel", "HF GPT2LMHeadModel, attn_pdrop 0"
    models = {"ours (musenet)": (build_ours(shape, args.vocab), lambda m, x: m(x)),
              hf_name: (build_hf(shape, args.vocab, shape["dropout"]), hf_logits),
              hf_zero_name: (build_hf(shape, args.vocab, 0.0), hf_logits)}
    print(f"HF attention implementation: {models[hf_name][0].config._attn_implementation}")
    steppers = {name: make_stepper(model, logits_of, args.lr, args.bf16) for name, (model, logits_of) in models.items()}
    tokens = torch.randint(0, args.vocab, (args.batch_size, shape["context"] + 1),
                           generator=torch.Generator().manual_seed(args.seed))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    times = {name: [] for name in steppers}
    for i in range(args.warmup + args.steps):
        for name, step in steppers.items():  # alternate, so noise hits both
            seconds = step(inputs, targets)
            if i >= args.warmup:
                times[name].append(seconds)
    per_step = args.batch_size * shape["context"]
    results = {}
    for name, (model, _) in models.items():
        median, best = statistics.median(times[name]), min(times[name])
        results[name] = {"parameters": parameter_count(model), "median_s": median, "best_s": best,
                         "tokens_per_s_median": per_step / median, "tokens_per_s_best": per_step / best}
    ours, hf, hf_zero = results["ours (musenet)"], results[hf_name], results[hf_zero_name]
    print(f"\n{args.steps} timed steps each (after {args.warmup} warm-up), batch {args.batch_size} x "
          f"{shape['context']} tokens, {args.threads} threads, {'bf16 autocast' if args.bf16 else 'float32'}\n")
    print("| model | attention dropout | parameters | tokens/s (median) | tokens/s (best) | ours / this (median) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        ratio = ours["tokens_per_s_median"] / r["tokens_per_s_median"]
        attention = shape["attention_dropout"] if name == "ours (musenet)" else models[name][0].config.attn_pdrop
        print(f"| {name} | {attention} | {r['parameters']:,} | {r['tokens_per_s_median']:,.0f} "
              f"| {r['tokens_per_s_best']:,.0f} | {ratio:.2f}x |")
    for label, other in (("HF GPT-2, same dropout", hf), ("HF GPT-2, attn_pdrop 0", hf_zero)):
        print(f"ratio ours / {label}: {ours['tokens_per_s_median'] / other['tokens_per_s_median']:.2f}x median, "
              f"{ours['tokens_per_s_best'] / other['tokens_per_s_best']:.2f}x best")
    if args.json:
        args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "shape": shape,
                                         "results": results, "times": times}, indent=2))


if __name__ == "__main__":
    main()

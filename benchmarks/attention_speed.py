"""What relative attention costs a training step on this CPU.

Music Transformer's relative scores are learned, so they need a gradient, and PyTorch's
fused CPU attention takes no mask that needs one: given the scores as a whole
(queries, keys) mask, `scaled_dot_product_attention` falls back to its math path.
`model.relative_attention` goes a block of queries at a time instead. This prints, for the
JSB benchmark's shape (3 heads of 64, 16 windows) at several window lengths, one forward
and backward pass in bfloat16 autocast of:

- attention alone: fused causal attention with no relative term (the floor), the relative
  term as a whole mask through `scaled_dot_product_attention`, and `relative_attention`;
- the whole model (`benchmarks/jsb.py`'s 4 layers x 192) without and with `relative_span`.

    python benchmarks/attention_speed.py --lengths 256,1024,2560 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from musenet.model import build_model, relative_attention, relative_logits


def seconds(run, repeats: int) -> float:
    """Median seconds of `run()` (forward and backward) after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def attention_pass(attend, q, k, v, table):
    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = attend(q, k, v, table)
        out.float().sum().backward()
    return run


def model_pass(length: int, span: int, batch: int, vocab: int = 60):
    model = build_model(dict(context=length, layers=4, heads=3, width=192, dropout=0.1, positions="rotary",
                             side_features=False, relative_span=span), vocab)
    tokens = torch.randint(0, vocab, (batch, length))

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(tokens[:, :-1]).float().transpose(1, 2), tokens[:, 1:])
        loss.backward()
    return run


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--lengths", default="256,1024,2560", help="window lengths, comma-separated")
    p.add_argument("--span", type=int, default=256, help="relative attention's distances")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    heads, dim = 3, 64
    attends = {
        "fused, no relative": lambda q, k, v, t: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "relative, whole mask": lambda q, k, v, t: F.scaled_dot_product_attention(
            q, k, v, attn_mask=relative_logits(q, t)),
        "relative, by blocks": relative_attention,
    }
    print(f"{args.batch} windows, {heads} heads x {dim}, span {args.span}, {args.threads} threads; "
          f"seconds per forward and backward pass (median of {args.repeats})\n")
    print("| tokens | " + " | ".join(f"attention: {name}" for name in attends)
          + " | model, no relative | model, relative | model ratio |")
    print("|---:|" + "---:|" * (len(attends) + 3))
    for length in (int(n) for n in args.lengths.split(",")):
        q, k, v = (torch.randn(args.batch, heads, length, dim, requires_grad=True) for _ in range(3))
        table = (0.3 * torch.randn(heads, args.span, dim)).requires_grad_()
        cells = [seconds(attention_pass(attend, q, k, v, table), args.repeats) for attend in attends.values()]
        plain = seconds(model_pass(length, 0, args.batch), args.repeats)
        relative = seconds(model_pass(length, args.span, args.batch), args.repeats)
        print(f"| {length:,} | " + " | ".join(f"{c:.3f}" for c in cells)
              + f" | {plain:.3f} | {relative:.3f} | {relative / plain:.2f} |", flush=True)


if __name__ == "__main__":
    main()

"""Generation speed: our sampler against Hugging Face `generate`, in one run.

Both sides decode the same number of new tokens with a KV cache from the same 16-token
prompt, with a GPT-2-shaped model of the same size (layers, width, heads, context, vocabulary;
random weights, so no early `end`):

- "ours, model loop": our model's cached forward and plain sampling, nothing else;
- "ours, composing": the whole `Generator` (instrument, grammar and length masks, side
  features), i.e. what `musenet generate` does per token;
- "HF generate": `GPT2LMHeadModel.generate(do_sample=True, use_cache=True)`.

With `--model DIR` it also composes a 4-minute piece with that trained model and reports
seconds of music per second of computing.

Run:  python benchmarks/generate.py [--size small] [--tokens 256] [--threads 2] [--model runs/small]
"""

from __future__ import annotations

import argparse
import time

import torch

from musenet.composer import Composer
from musenet.model import SIZES, build_model
from musenet.quantize import quantize_int8
from musenet.sample import Generator
from musenet.settings import Settings
from musenet.vocab import default_vocab


def best_of(repeat: int, fn) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@torch.no_grad()
def our_model_loop(model, prompt: torch.Tensor, new_tokens: int) -> None:
    cache = model.new_cache()
    logits = model(prompt, None, cache)[:, -1]
    generator = torch.Generator().manual_seed(0)
    for _ in range(new_tokens):
        token = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
        logits = model(token, None, cache)[:, -1]


def our_composing(generator: Generator, batch: int, new_tokens: int) -> None:
    """The full sampler, stopped after `new_tokens` steps (the requested length is far away)."""
    generator.generate(Settings(style="pop", seconds=3600, candidates=batch, seed=0, top_p=1.0,
                                max_tokens=new_tokens))


def hf_generate(hf_model, prompt: torch.Tensor, new_tokens: int) -> None:
    hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                      min_new_tokens=new_tokens, do_sample=True, top_k=0, use_cache=True, pad_token_id=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=[s for s in SIZES if s != "musenet"])
    parser.add_argument("--tokens", type=int, default=256, help="new tokens per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--model", help="a trained checkpoint: also time a 4-minute piece with it")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from transformers import GPT2Config, GPT2LMHeadModel

    vocab = default_vocab()
    size = dict(SIZES[args.size])
    torch.manual_seed(0)
    ours = build_model(args.size, vocab.size, side_features=True).eval()
    plain = build_model(args.size, vocab.size, side_features=False).eval()
    hf = GPT2LMHeadModel(GPT2Config(
        vocab_size=vocab.size, n_positions=size["context"], n_embd=size["width"], n_layer=size["layers"],
        n_head=size["heads"], resid_pdrop=size["dropout"], embd_pdrop=size["dropout"], attn_pdrop=size["dropout"],
        activation_function="gelu", tie_word_embeddings=True,
    )).eval()
    generator = Generator(ours, vocab)
    generator_int8 = Generator(quantize_int8(ours), vocab)
    rows = []
    for batch in (1, 4):
        prompt = torch.randint(0, vocab.size, (batch, 16))
        t_loop = best_of(args.repeat, lambda b=batch, p=prompt: our_model_loop(plain, p, args.tokens))
        t_full = best_of(args.repeat, lambda b=batch: our_composing(generator, b, args.tokens))
        t_int8 = best_of(args.repeat, lambda b=batch: our_composing(generator_int8, b, args.tokens))
        t_hf = best_of(args.repeat, lambda p=prompt: hf_generate(hf, p, args.tokens))
        for name, seconds in (("ours, model loop", t_loop), ("ours, composing", t_full),
                              ("ours, composing, int8 weights", t_int8), ("HF generate", t_hf)):
            rate = batch * args.tokens / seconds
            rows.append((batch, name, rate, t_hf / seconds))
    print(f"{args.size} model ({ours.parameter_count() / 1e6:.1f}M parameters), {args.tokens} new tokens, "
          f"best of {args.repeat}, {args.threads} threads\n")
    print("| batch | generator | tokens/s | speed vs HF |")
    print("|---:|---|---:|---:|")
    for batch, name, rate, ratio in rows:
        print(f"| {batch} | {name} | {rate:,.0f} | {ratio:.2f}x |")

    for int8 in (False, True) if args.model else ():
        composer = Composer.load(args.model, precision="int8" if int8 else "float32")
        start = time.perf_counter()
        piece = composer.generate(style=composer.styles[1], seconds=240, seed=0)[0]
        elapsed = time.perf_counter() - start
        print(f"\n4-minute piece with {args.model}{' int8' if int8 else ' float32'}: {len(piece.tokens)} tokens, "
              f"{piece.seconds:.0f} s of music in {elapsed:.1f} s = {piece.seconds / elapsed:.1f} s of music "
              "per second of computing")


if __name__ == "__main__":
    main()

"""Composing speed: our sampler against Hugging Face `generate`, and against an earlier
version of this code, in one run.

1. **Against Hugging Face** (the bundled model's shape, `small` with its time heads, with
   random weights, so no early `end`; the
   same number of new tokens from the same 16-token prompt, KV cache on both sides, best of
   `--repeat`): "ours, composing" is the whole `Generator` (instrument, grammar, entrance
   and length masks, side features: what `musenet generate` does per token) in float32 and
   with int8 weights (`quantize.py`, the default on a CPU), and with
   int8 weights through the compiled step and state update (`kernels.py`, built first if need be);
   "HF generate" is `GPT2LMHeadModel.generate(do_sample=True, use_cache=True)`.
2. **The bundled model, this code against `--baseline REV`** (a git revision, checked out
   into a temporary worktree; each scenario in its own process, default settings, so the
   old code decodes as it did): a dense four-minute piece (pop, voice, piano, bass and
   drums) as composed, and 5,000 new tokens of a long piece (the same amount of work for every
   version: what a dense four-minute piece takes), the co-composer's four 20-second ideas
   (one batch of 4), and a continuation of a two-minute piece by 20 s (the co-composer
   re-reads the whole piece; its new tokens are counted); this code twice, with the bundled
   model's compiled step (built first if need be) and with `--compiled off`. Seconds, new tokens, tokens per
   second, the seconds loading the model took, and peak memory (the process's high-water mark);
   the speed-up is in tokens per second, since the versions compose different music.
3. **Divergence**: KL of the next-token distribution the sampler reads with int8 weights
   (`inference.py`: a half window read at once, then one token at a time, eager and through
   the compiled step) from float32's full forward pass, on windows of the real MIDI files in
   `--midi` (never trained on).

Run:  python benchmarks/generate.py [--baseline 0b2bea0] [--midi ../shared/midi] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BAND = dict(style="pop", instruments=["voice", "piano", "bass", "drums"])
SCENARIOS = {"5000-tokens": "5,000 new tokens of a long piece (a dense 4-minute piece's worth)",
             "four-minute": "a 4-minute piece as composed", "four-ideas": "four 20-s ideas (batch 4)",
             "continue": "continue a 2-minute piece by 20 s"}


def best_of(repeat: int, fn) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def against_hf(tokens: int, repeat: int) -> list[tuple]:
    """Rows (batch, generator, tokens/s, ratio to HF) for batch 1 and 4."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from musenet.composer import bundled_model_path
    from musenet.model import SIZES, build_model
    from musenet.quantize import quantize_int8
    from musenet.sample import Generator
    from musenet.settings import Settings
    from musenet.vocab import default_vocab

    vocab, size = default_vocab(), dict(SIZES["small"])
    torch.manual_seed(0)
    bundled = json.loads((bundled_model_path() / "config.json").read_text())["model"]
    ours = build_model("small", vocab.size, time_heads=bundled.get("time_heads", 0),
                       relative_span=bundled.get("relative_span", 0)).eval()  # the bundled model's attention
    hf = GPT2LMHeadModel(GPT2Config(
        vocab_size=vocab.size, n_positions=size["context"], n_embd=size["width"], n_layer=size["layers"],
        n_head=size["heads"], activation_function="gelu", tie_word_embeddings=True)).eval()
    compiled = Generator(quantize_int8(ours), vocab)
    start = time.perf_counter()
    if not compiled.use_compiled(build=True):
        raise SystemExit("could not build the compiled step, update and chooser (kernels.py, choose.py); is a C++ "
                         "compiler installed?")
    print(f"(the compiled step, update and chooser of the random-weight model: built or loaded in "
          f"{time.perf_counter() - start:.1f} s)\n")
    generators = {"ours, composing, float32": Generator(ours, vocab),
                  "ours, composing, int8 weights": Generator(quantize_int8(ours), vocab),
                  "ours, composing, int8, compiled step, update and chooser": compiled}
    rows = []
    for batch in (1, 4):
        prompt = torch.randint(0, vocab.size, (batch, 16))
        settings = Settings(style="pop", seconds=3600, candidates=batch, seed=0, top_p=1.0, max_tokens=tokens)
        t_hf = best_of(repeat, lambda p=prompt: hf.generate(
            p, attention_mask=torch.ones_like(p), max_new_tokens=tokens, min_new_tokens=tokens, do_sample=True,
            top_k=0, use_cache=True, pad_token_id=0))
        for name, generator in generators.items():
            seconds = best_of(repeat, lambda g=generator, s=settings: g.generate(s))
            rows.append((batch, name, batch * tokens / seconds, t_hf / seconds))
        rows.append((batch, "HF generate", batch * tokens / t_hf, 1.0))
    return rows


def scenario(name: str, compiled: str) -> dict:
    """One timed scenario with the bundled model at default settings (run in a child process;
    only API that every version has, `compiled` only where asked). Loading is timed apart."""
    from musenet import Composer

    start = time.perf_counter()
    composer = Composer.load(**({} if compiled == "auto" else {"compiled": compiled}))
    load = time.perf_counter() - start
    asked = {"5000-tokens": dict(seconds=3600, max_tokens=5000), "four-minute": dict(seconds=240),
             "four-ideas": dict(seconds=20, candidates=4), "continue": dict(seconds=140)}[name]
    before = 0
    if name == "continue":  # a two-minute piece, composed once (untimed), continued by 20 s
        prompt = composer.generate(seconds=120, seed=1, **BAND)[0]
        asked["prompt"], before = prompt.table, len(prompt.tokens)
    start = time.perf_counter()
    pieces = composer.generate(seed=0, **BAND, **asked)
    seconds = time.perf_counter() - start
    peak = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmHWM"))
    return {"seconds": seconds, "load_seconds": load, "tokens": int(sum(len(p.tokens) - before for p in pieces)),
            "music_seconds": float(sum(p.seconds for p in pieces)), "peak_mb": peak / 1024}


def run_scenario(source: Path, name: str, threads: int, compiled: str = "auto") -> dict:
    """`scenario(name)` in a fresh process importing the package from `source`/src."""
    env = {**os.environ, "PYTHONPATH": str(source / "src"), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, __file__, "--scenario", name, "--compiled", compiled], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def divergence(midi: Path, files: int = 4, compiled: bool = False) -> list[float]:
    """KL (nats per token) of what the sampler reads with int8 weights (the decoder: half a
    window at once, then a token at a time, attention in bfloat16; with `compiled`, those
    tokens through the compiled step) from float32's full forward pass, over the first
    context of real MIDI files."""
    from musenet import Composer
    from musenet.encoding import encode_notes
    from musenet.notes import read_midi
    from musenet.sequence import side_features

    plain = Composer.load(precision="float32", compiled="off")
    int8 = Composer.load(precision="int8", compiled="on" if compiled else "off")
    context, decoder = plain.model.config.context, int8.sampler.decoder
    paths = [p for folder in ("one-track", "multitrack") for p in sorted((midi / folder).glob("*.mid"))[:files // 2]]
    values = []
    for path in paths:
        tokens = encode_notes(read_midi(path), plain.vocab, "pop")[:context]
        features = {k: torch.from_numpy(v[None]) for k, v in side_features(tokens, plain.vocab, 60.0).items()}
        tokens, half = torch.from_numpy(tokens[None]), len(tokens) // 2
        with torch.inference_mode():
            p = torch.log_softmax(plain.model(tokens, features)[0, half - 1: -1].float(), -1)
        cache = int8.model.new_cache()
        steps = [decoder.forward(tokens[:, :half], {k: v[:, :half] for k, v in features.items()}, cache)]
        for i in range(half, tokens.shape[1] - 1):
            steps.append(decoder.step(tokens[:, i], {k: v[:, i:i + 1] for k, v in features.items()}, cache))
        q = torch.log_softmax(torch.cat(steps), -1)
        values.append(float((p.exp() * (p - q)).sum(-1).mean()))
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256, help="new tokens per run against HF")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--baseline", metavar="REV", help="also time these scenarios with this git revision")
    parser.add_argument("--midi", default=str(ROOT.parent / "shared" / "midi"), help="real MIDI for the divergence")
    parser.add_argument("--scenario", help=argparse.SUPPRESS)  # internal: one timed scenario, JSON on stdout
    parser.add_argument("--compiled", default="auto", help=argparse.SUPPRESS)  # internal: the scenario's choice
    args = parser.parse_args(argv)
    if args.scenario:
        print(json.dumps(scenario(args.scenario, args.compiled)))
        return
    torch.set_num_threads(args.threads)

    print(f"## Against Hugging Face (the bundled model's shape, random weights, {args.tokens} new tokens, "
          f"best of {args.repeat}, {args.threads} threads)\n")
    rows = against_hf(args.tokens, args.repeat)
    print("| batch | generator | tokens/s | vs HF |\n|---:|---|---:|---:|")
    for batch, name, rate, ratio in rows:
        print(f"| {batch} | {name} | {rate:,.0f} | {ratio:.2f}x |")

    from musenet import Composer

    start = time.perf_counter()
    if not Composer.load(compiled="on").sampler.use_compiled():
        raise SystemExit("could not build the bundled model's compiled step, update and chooser")
    took = time.perf_counter() - start
    print(f"\n(the bundled model's compiled step, update and chooser: built or loaded in {took:.1f} s)")
    versions = {"this code": (ROOT, "auto"), "this code, --compiled off": (ROOT, "off")}
    with tempfile.TemporaryDirectory() as scratch:
        if args.baseline:
            old = Path(scratch) / "baseline"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.baseline],
                           check=True, capture_output=True)
            versions = {f"baseline {args.baseline}": (old, "auto"), **versions}
        try:
            results = {label: {name: run_scenario(path, name, args.threads, compiled)
                               for name in SCENARIOS}
                       for label, (path, compiled) in versions.items()}
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)
    print("\n## The bundled model at default settings, each scenario in its own process\n")
    print("| scenario | code | tokens | seconds | tokens/s | loading the model (s) | peak memory (MB) |\n"
          "|---|---|---:|---:|---:|---:|---:|")
    for name, label in SCENARIOS.items():
        for version, result in results.items():
            r = result[name]
            print(f"| {label} | {version} | {r['tokens']:,} | {r['seconds']:.1f} | {r['tokens'] / r['seconds']:,.0f} "
                  f"| {r.get('load_seconds', float('nan')):.1f} | {r['peak_mb']:,.0f} |")
    if args.baseline:
        old, new = results[f"baseline {args.baseline}"], results["this code"]
        print("\nSpeed-up in tokens per second, this code / baseline: " + ", ".join(
            f"{SCENARIOS[n]} {(new[n]['tokens'] / new[n]['seconds']) / (old[n]['tokens'] / old[n]['seconds']):.2f}x"
            for n in SCENARIOS))
    if Path(args.midi).is_dir():
        for compiled in (False, True):
            kls = divergence(Path(args.midi), compiled=compiled)
            print(f"\nKL of the int8 decoder{', compiled step,' if compiled else ''} from float32 on {len(kls)} real "
                  f"MIDI windows: mean {sum(kls) / len(kls):.5f}, max {max(kls):.5f} nats per token")


if __name__ == "__main__":
    main()

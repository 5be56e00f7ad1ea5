"""Does a model read its hints? Three checks, as tables (issue #16).

    python benchmarks/hint_use.py --data data/band [--model DIR]

- Copy test: bits of the real middle (6 s from 10 s) of one test piece per style for up to 10
  styles, given the left side only, with the right side as a hint (infilling), and with the
  middle itself as the hint: a model that reads hints finds that last one nearly free.
- Accompany windows: mean loss (nats per token) of the bodies of 25 pop valid windows (400
  tokens from body position 50), plain and with an `accompany` hint (some families' notes
  read ahead), over all tokens and split into the notes the hint holds (a model that reads
  hints copies them nearly free) and the rest (the parts written around them).
- Fill-middle windows, made as training makes them (`hints.fill_middle`: the tail of a
  512-token valid window, from a random instant, moved into the hint): bits of the body with
  the hint and with it taken out, by how many tokens before the cut they stand. A model that
  writes towards what follows gains most just before the cut.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from musenet.composer import Composer
from musenet.dataset import Dataset
from musenet.encoding import encode_notes
from musenet.evaluate.keep import token_bits
from musenet.fixed import grid_step
from musenet.hints import MAX_TAIL, accompany, events_only, fill_middle
from musenet.model import ALL_FEATURES
from musenet.sequence import header_length, hint_mask, side_features, steps_before, window_of

sys.path.insert(0, str(Path(__file__).parent))
from keep import SPAN, test_pieces  # noqa: E402


def copy_test(composer: Composer, data: Dataset) -> dict[str, float]:
    """Bits of the real middles: no hint, the right side as the hint, the middle itself."""
    model, vocab = composer.model, composer.vocab
    totals = {"left side only": 0.0, "right side as hint": 0.0, "the middle itself as hint": 0.0}
    for table, style in test_pieces(data, 1)[:10]:
        onset = table.seconds(table.onset)
        tokens = encode_notes(table.select(np.flatnonzero(onset < SPAN[1])), vocab, style)
        waits = vocab.tables["wait"][tokens]
        step = np.cumsum(waits) - waits
        start, stop = grid_step(table, SPAN[0], vocab), grid_step(table, SPAN[1], vocab)
        region = ((np.arange(len(tokens)) >= header_length(tokens, vocab)) & (step >= start)
                  & (tokens != vocab.END))[1:]
        whole = encode_notes(table, vocab, style)
        steps, events = events_only(whole[header_length(whole, vocab):], vocab)
        for name, hint in (("left side only", None), ("right side as hint", steps >= stop),
                           ("the middle itself as hint", steps >= start)):
            given = None if hint is None else (steps[hint], events[hint])
            bits = token_bits(model, vocab, tokens, "cpu", hint=given, budget=MAX_TAIL,
                              total_seconds=table.end_seconds())
            totals[name] += float(bits[region].sum())
    return totals


def accompany_windows(composer: Composer, data: Dataset) -> dict[str, list[float]]:
    """Body loss of pop valid windows, plain and with an accompany hint: (plain nats, hinted
    nats, tokens) over all tokens, the notes the hint holds, and the other tokens."""
    model, vocab = composer.model, composer.vocab
    rng = np.random.default_rng(0)
    sums = {name: [0.0, 0.0, 0] for name in ("all tokens", "notes the hint holds", "other tokens")}
    for row in [r for r in data.rows if data.style_of(r) == "pop"][:25]:
        piece = data.piece(int(row))
        head = header_length(piece, vocab)
        window, start_seconds = window_of(piece, vocab, head, 50, 400)
        start_step = steps_before(piece, vocab, head, 50)
        with_hint = accompany(window, vocab, rng)[:400]
        hinted = hint_mask(with_hint, vocab)
        if not hinted.any():
            continue
        a, b = (_body_nats(model, vocab, w, start_seconds, float(data.index["seconds"][row]), start_step)
                for w in (window, with_hint))
        n = min(len(a), len(b))
        held = _held_by_hint(with_hint[~hinted], with_hint[hinted], vocab)[1: n + 1]
        for name, chosen in (("all tokens", np.ones(n, bool)), ("notes the hint holds", held),
                             ("other tokens", ~held)):
            total = sums[name]
            total[0] += float(a[:n][chosen].sum())
            total[1] += float(b[:n][chosen].sum())
            total[2] += int(chosen.sum())
    return sums


BEFORE_CUT = (0, 10, 30, 60, 120, 250, 600)  # bins of tokens before the cut


def fill_windows(composer: Composer, data: Dataset, windows: int = 150) -> list[tuple[str, float, float, int]]:
    """(bin, bits with the hint, bits without, tokens) of the bodies of `windows` valid
    windows made as training makes fill-middle windows, by tokens before the cut."""
    model, vocab, context = composer.model, composer.vocab, composer.model.config.context
    rng = np.random.default_rng(0)
    sums = np.zeros((len(BEFORE_CUT) - 1, 3))
    made = 0
    while made < windows:
        row = int(rng.choice(data.rows))
        piece = data.piece(row)
        head = header_length(piece, vocab)
        if len(piece) < 2 * context:
            continue
        start = int(rng.integers(0, len(piece) - context - head))
        window, start_seconds = window_of(piece, vocab, head, start, context + 1)
        hinted = fill_middle(window, vocab, rng)[: context + 1]  # as `Dataset.window` cuts it
        in_hint = hint_mask(hinted, vocab)
        if not in_hint.any():
            continue
        plain = hinted[~in_hint]
        total, start_step = float(data.index["seconds"][row]), steps_before(piece, vocab, head, start)
        with_hint, without = (_body_nats(model, vocab, w, start_seconds, total, start_step) for w in (hinted, plain))
        before_cut = len(without) - 1 - np.arange(len(without))
        body = np.arange(len(without)) >= header_length(plain, vocab) - 1
        where = np.digitize(before_cut, BEFORE_CUT) - 1
        for b in range(len(BEFORE_CUT) - 1):
            chosen = body & (where == b)
            sums[b] += with_hint[chosen].sum() / np.log(2), without[chosen].sum() / np.log(2), chosen.sum()
        made += 1
    return [(f"{lo}-{hi}", *sums[b]) for b, (lo, hi) in enumerate(zip(BEFORE_CUT[:-1], BEFORE_CUT[1:], strict=True))]


def _held_by_hint(tokens: np.ndarray, hint: np.ndarray, vocab) -> np.ndarray:
    """For each token of a window without its hint: a body note the hint holds (same step)."""
    head = header_length(tokens, vocab)
    steps, events = events_only(tokens[head:], vocab)
    hint_steps, hint_events = events_only(hint, vocab)
    known = set(zip(hint_steps.tolist(), hint_events.tolist(), strict=True))
    notes = np.flatnonzero(vocab.tables["family"][tokens[head:]] >= 0) + head
    held = np.zeros(len(tokens), bool)
    held[notes] = [(int(s), int(e)) in known for s, e in zip(steps, events, strict=True)]
    return held


@torch.no_grad()
def _body_nats(model, vocab, window: np.ndarray, start_seconds: float, total: float,
               start_step: int) -> np.ndarray:
    features = side_features(window, vocab, total, start_seconds, start_step=start_step)
    feats = {k: torch.from_numpy(features[k][None, :-1]) for k in ALL_FEATURES}
    logits = model(torch.from_numpy(window[None, :-1]), feats)
    nats = -torch.log_softmax(logits.float(), -1)[0].gather(1, torch.from_numpy(window[1:])[:, None])[:, 0].numpy()
    return nats[np.flatnonzero(~hint_mask(window, vocab))[1:] - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a checkpoint or run directory (default: the bundled model)")
    parser.add_argument("--data", required=True, help="a built dataset with pop and other styles")
    args = parser.parse_args()
    composer = Composer.load(args.model, precision="float32")
    copy = copy_test(composer, Dataset(args.data, "test"))
    valid = Dataset(args.data, "valid")
    windows = accompany_windows(composer, valid)
    fills = fill_windows(composer, valid)
    print(f"model {composer.model_path} (reads hints: {composer.reads_hints})\n")
    print("| real middles of 10 test pieces | bits |\n|---|---:|")
    for name, bits in copy.items():
        print(f"| {name} | {bits:,.1f} |")
    print("\n| 25 pop valid windows | tokens | plain (nats per token) | with an accompany hint |")
    print("|---|---:|---:|---:|")
    for name, (plain, hinted, count) in windows.items():
        print(f"| {name} | {count:,} | {plain / count:.3f} | {hinted / count:.3f} ({1 - hinted / plain:.1%} lower) |")
    print("\n| 150 fill-middle valid windows: tokens before the cut | tokens | bits per token, hint taken out "
          "| with the hint |\n|---|---:|---:|---:|")
    for name, hinted, plain, count in fills:
        print(f"| {name} | {count:,.0f} | {plain / count:.3f} | {hinted / count:.3f} "
              f"({1 - hinted / plain:.1%} lower) |")


if __name__ == "__main__":
    main()

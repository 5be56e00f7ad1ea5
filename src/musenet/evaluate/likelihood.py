"""The model's likelihood of music it did not train on: the loss of every token of held-out
pieces (the trainer's validation loss too), in bits per note overall, per style and per kind
of token, and set against the n-gram baseline on the very same pieces."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..dataset import Dataset, Window
from ..model import ALL_FEATURES
from ..sequence import header_length
from ..vocab import TOKEN_KINDS
from .ngram import NGRAM_ORDER, SHARED_ORDER, ngram_bits_per_note, seen_share, shared_ngram_share

WINDOW_OVERLAP = 0.5          # pieces longer than the context are scored in half-overlapping windows


def to_tensors(batch: dict[str, np.ndarray], device) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """(inputs, features, targets) from a batch of context+1 windows."""
    tokens = torch.from_numpy(batch["tokens"]).to(device)
    features = {name: torch.from_numpy(batch[name][:, :-1]).to(device) for name in ALL_FEATURES}
    return tokens[:, :-1], features, tokens[:, 1:]


def token_losses(model, inputs, features, targets, pad: int) -> torch.Tensor:
    """Cross-entropy (nats) of every target token; 0 where the target is padding."""
    logits = model(inputs, features)
    losses = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                             ignore_index=pad, reduction="none")
    return losses.view(targets.shape)


def scoring_windows(data: Dataset, context: int, max_tokens: int = 0,
                    overlap: float = 0.0) -> list[tuple[Window, int, int]]:
    """(window, index row, tokens to skip) that predict every token of the pieces once: each
    window repeats its piece's header, and a later one starts `overlap` (0 to 0.9) of a window
    before the previous one ends, scoring only what follows it. Pieces are taken from each
    style in turn until `max_tokens` (0: all) are covered."""
    styles = data.index["style"][data.rows]
    turn = np.zeros(len(styles), np.int64)  # take the styles in turn, so a token budget covers them all
    for style in np.unique(styles):
        turn[styles == style] = np.arange((styles == style).sum())
    windows, counted = [], 0
    for row in data.rows[np.lexsort((styles, turn))]:
        length = int(data.index["length"][row])
        head = header_length(data.piece(row), data.vocab)
        body_per_window = context + 1 - head
        stride = max(1, round(body_per_window * (1 - min(max(overlap, 0.0), 0.9))))
        start = 0
        while True:  # a later window scores only what follows the previous window's end
            skip = 0 if start == 0 else head - 1 + body_per_window - stride
            windows.append((data.window(int(row), start, context + 1, align=False), int(row), skip))
            if start + body_per_window >= length - head:
                break
            start += stride
        counted += length
        if max_tokens and counted >= max_tokens:
            break
    return windows


def _batch(windows: list[Window], context: int, pad: int) -> dict[str, np.ndarray]:
    """Windows padded to context+1 tokens, with their side features."""
    batch = {key: np.zeros((len(windows), context + 1), np.int64) for key in ("tokens", *ALL_FEATURES)}
    batch["tokens"][:] = pad
    for j, window in enumerate(windows):
        n = len(window.tokens)
        batch["tokens"][j, :n] = window.tokens
        for name in ALL_FEATURES:
            batch[name][j, :n] = window.features[name]
    return batch


@torch.no_grad()
def heldout_scores(model, data: Dataset, context: int, device, max_tokens: int = 0, batch_size: int = 8,
                   overlap: float = 0.0) -> dict:
    """Valid loss (nats per token) and bits per note, overall, per style and per kind of token,
    of the pieces `scoring_windows` covers (see there for `max_tokens` and `overlap`). The
    model is left in the mode (training or eval) it came in."""
    vocab = data.vocab
    windows = scoring_windows(data, context, max_tokens, overlap)
    nats = {}  # per index row
    kind_nats = np.zeros(len(TOKEN_KINDS))
    total_nats, tokens_scored = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(windows), batch_size):
            chunk = windows[i: i + batch_size]
            batch = _batch([window for window, _, _ in chunk], context, vocab.PAD)
            inputs, features, targets = to_tensors(batch, device)
            losses = token_losses(model, inputs, features, targets, vocab.PAD).cpu().numpy()
            for j, (_, row, skip) in enumerate(chunk):  # a repeated header is context only
                scored, targets_scored = losses[j, skip:], batch["tokens"][j, 1 + skip:]
                kind_nats += np.bincount(vocab.kinds[targets_scored], weights=scored, minlength=len(TOKEN_KINDS))
                nats[row] = nats.get(row, 0.0) + float(scored.sum())
                total_nats += float(scored.sum())
                tokens_scored += int((targets_scored != vocab.PAD).sum())
    finally:
        model.train(was_training)
    return _per_note(data, nats, kind_nats, total_nats / max(tokens_scored, 1), tokens_scored)


def _per_note(data: Dataset, nats: dict[int, float], kind_nats: np.ndarray, valid_loss: float,
              tokens_scored: int) -> dict:
    """The scores of `heldout_scores` from the nats of each piece and of each kind of token."""
    bits_per_note, style_bits, style_notes = 0.0, {}, {}
    notes_total = 0
    for row, piece_nats in nats.items():
        notes = int(data.index["notes"][row])
        style = data.style_of(row)
        style_bits[style] = style_bits.get(style, 0.0) + piece_nats / math.log(2)
        style_notes[style] = style_notes.get(style, 0) + notes
        bits_per_note += piece_nats / math.log(2)
        notes_total += notes
    return {
        "valid_loss": valid_loss,
        "bits_per_note": bits_per_note / max(notes_total, 1),
        "bits_per_note_by_style": {s: style_bits[s] / max(style_notes[s], 1) for s in sorted(style_bits)},
        "pieces": len(nats),
        "rows": list(nats),  # the index rows scored, in order
        "bits_per_note_by_kind": dict(zip(TOKEN_KINDS, (kind_nats / math.log(2) / max(notes_total, 1)).tolist(),
                                          strict=True)),
        "tokens": tokens_scored,
    }


def versus_ngram(scores: dict, held: Dataset, train: Dataset) -> dict:
    """The likelihood section of the report: the model's `heldout_scores` beside a Kneser-Ney
    n-gram fitted on the train split, on the same pieces and tokens, and the share of the
    pieces' n-grams seen verbatim in train; overall, per style and per kind of token."""
    rows = scores["rows"]  # the very pieces the model was scored on
    eval_pieces = [held.piece(int(r)) for r in rows]
    notes = [int(held.index["notes"][r]) for r in rows]
    train_pieces = [train.piece(int(r)) for r in train.rows]  # read once for both baselines
    ngram = ngram_bits_per_note(train_pieces, eval_pieces, held.vocab, NGRAM_ORDER, notes)
    shared = shared_ngram_share(train_pieces, eval_pieces)
    piece_styles = [held.style_of(int(r)) for r in rows]
    by_style = {}
    for style in sorted(set(piece_styles)):
        mine = [i for i, s in enumerate(piece_styles) if s == style]
        ngram_bits = sum(ngram["bits"][i] for i in mine) / max(sum(notes[i] for i in mine), 1)
        model_bits = scores["bits_per_note_by_style"].get(style, float("nan"))
        by_style[style] = {"pieces": len(mine), "notes": int(sum(notes[i] for i in mine)), "model": model_bits,
                           "ngram": ngram_bits, "shared_with_train": seen_share(shared[mine]),
                           "reduction": 1 - model_bits / ngram_bits if ngram_bits else float("nan")}
    model_bits, ngram_bits = scores["bits_per_note"], ngram["bits_per_note"]
    return {
        "split": held.split, "pieces": len(rows), "tokens": scores["tokens"], "notes": int(sum(notes)),
        "model_bits_per_note": model_bits, "ngram_bits_per_note": ngram_bits,
        "reduction": 1 - model_bits / ngram_bits if ngram_bits else float("nan"),
        "ngram_order": NGRAM_ORDER, "ngram_train_pieces": len(train), "model_valid_loss": scores["valid_loss"],
        "shared_order": SHARED_ORDER, "shared_with_train": seen_share(shared),
        "by_kind": {kind: {"model": scores["bits_per_note_by_kind"][kind],
                           "ngram": ngram["bits_per_note_by_kind"][kind]} for kind in TOKEN_KINDS},
        "by_style": by_style,
    }


"""The training loop: one CPU, one GPU, or many under `torchrun` (DistributedDataParallel).

Every step's data and dropout are drawn from generators seeded by (seed, step), so a run
killed at any moment and resumed from its last checkpoint reaches exactly the losses of
one never stopped, and N processes that each take 1/N of the same global batch compute
the same gradient as one process taking all of it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .augment import Augment
from .checkpoint import load_checkpoint, resolve, save_run_checkpoint
from .dataset import Dataset
from .errors import MuseNetError
from .model import FEATURES, SIZES, MuseNet, build_model
from .vocab import TOKEN_KINDS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class TrainConfig:
    batch_size: int = 16            # windows per optimizer step (all processes together)
    accumulate: int = 1             # micro-batches per step (batch_size must divide evenly)
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-4
    warmup_steps: int = 100
    max_steps: int = 2000
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_tokens: int = 100_000      # tokens of the valid split per evaluation (0 = all)
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    compile: bool = False
    precision: str = "auto"         # "auto" (bf16 where the hardware does it natively), "bf16" or "fp32"
    augment: dict = field(default_factory=lambda: {"transpose": 6, "volume": 0.2, "stretch": 0.05,
                                                    "reorchestrate": 0.1})


#: Training settings that go with each named size.
TRAIN_DEFAULTS: dict[str, dict] = {
    "tiny": dict(batch_size=8, learning_rate=3e-3, warmup_steps=10, max_steps=200, eval_every=50,
                 checkpoint_every=50, eval_tokens=20_000),
    "small": dict(batch_size=16, learning_rate=1e-3, warmup_steps=100, max_steps=3000),
    "base": dict(batch_size=32, learning_rate=6e-4, warmup_steps=500, max_steps=50_000, eval_every=1000,
                 checkpoint_every=500),
    "musenet": dict(batch_size=64, learning_rate=2e-4, warmup_steps=2000, max_steps=500_000, eval_every=5000,
                    checkpoint_every=2000),
}


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matmuls are fast here: CUDA, or a CPU with AMX or AVX512-BF16 (1.6x on the
    small model; elsewhere CPU bf16 is emulated and slower than float32)."""
    if device.type == "cuda":
        return True
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return device.type == "cpu" and any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether training steps run under bfloat16 autocast for a `precision` setting."""
    if precision not in ("auto", "bf16", "fp32"):
        raise MuseNetError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


def load_config(name_or_file: str) -> tuple[dict, TrainConfig]:
    """(model settings, training settings) from a named size or a TOML file with [model] and
    [train] tables (a `size` key in [model] starts from that named size)."""
    if name_or_file in SIZES:
        return dict(SIZES[name_or_file]), TrainConfig(**TRAIN_DEFAULTS[name_or_file])
    path = Path(name_or_file)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise MuseNetError(f"{name_or_file}: not a size ({', '.join(SIZES)}) nor a readable TOML file ({err})") \
            from None
    model = dict(data.get("model", {}))
    size = model.pop("size", None)
    train = dict(TRAIN_DEFAULTS.get(size, {}))
    train.update(data.get("train", {}))
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(train) - known
    if unknown:
        raise MuseNetError(f"{name_or_file}: unknown [train] settings {', '.join(sorted(unknown))}")
    return {**(SIZES.get(size, {})), **model}, TrainConfig(**train)


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_learning_rate at max_steps."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
    return config.min_learning_rate + 0.5 * (1 + math.cos(math.pi * progress)) * (
        config.learning_rate - config.min_learning_rate)


def to_tensors(batch: dict[str, np.ndarray], device) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """(inputs, features, targets) from a batch of context+1 windows."""
    tokens = torch.from_numpy(batch["tokens"]).to(device)
    features = {name: torch.from_numpy(batch[name][:, :-1]).to(device) for name in FEATURES}
    return tokens[:, :-1], features, tokens[:, 1:]


def token_losses(model, inputs, features, targets, pad: int) -> torch.Tensor:
    """Cross-entropy (nats) of every target token; 0 where the target is padding."""
    logits = model(inputs, features)
    losses = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                             ignore_index=pad, reduction="none")
    return losses.view(targets.shape)


@torch.no_grad()
def evaluate(model: MuseNet, data: Dataset, context: int, device, max_tokens: int = 0,
             batch_size: int = 8, overlap: float = 0.0) -> dict:
    """Valid loss (nats per token) and bits per note, overall and per style: every token of
    each evaluated piece is predicted once, in windows that repeat its header. With `overlap`
    (0 to 0.9), each later window starts that share of a window before the previous one ends
    and scores only the tokens after it, so they are predicted with more of the piece before
    them (a sliding-window evaluation; 0: consecutive windows, the cheapest).
    With `max_tokens`, pieces are taken from each style in turn until the budget is spent."""
    model.eval()
    vocab = data.vocab
    windows, owners = [], []
    counted = 0
    styles = data.index["style"][data.rows]
    turn = np.zeros(len(styles), np.int64)  # take the styles in turn, so a token budget covers them all
    for style in np.unique(styles):
        turn[styles == style] = np.arange((styles == style).sum())
    for row in data.rows[np.lexsort((styles, turn))]:
        length = int(data.index["length"][row])
        head = int(np.argmax(data.piece(row) == vocab.START)) + 1 + (vocab.time_mode == "beat")
        body_per_window = context + 1 - head
        stride = max(1, round(body_per_window * (1 - min(max(overlap, 0.0), 0.9))))
        start = 0
        while True:  # a later window scores only what follows the previous window's end
            windows.append(data.window(int(row), start, context + 1, align=False))
            owners.append((int(row), 0 if start == 0 else head - 1 + body_per_window - stride))
            if start + body_per_window >= length - head:
                break
            start += stride
        counted += length
        if max_tokens and counted >= max_tokens:
            break
    nll = {}
    kinds = vocab.kinds
    kind_nats = np.zeros(len(TOKEN_KINDS))
    tokens_scored = 0
    total_nats = 0.0
    for i in range(0, len(windows), batch_size):
        chunk = windows[i: i + batch_size]
        batch = {key: np.zeros((len(chunk), context + 1), np.int64) for key in ("tokens", *FEATURES)}
        batch["tokens"][:] = vocab.PAD
        for j, window in enumerate(chunk):
            n = len(window.tokens)
            batch["tokens"][j, :n] = window.tokens
            for name in FEATURES:
                batch[name][j, :n] = window.features[name]
        inputs, features, targets = to_tensors(batch, device)
        losses = token_losses(model, inputs, features, targets, vocab.PAD).cpu().numpy()
        for j, (row, skip) in enumerate(owners[i: i + batch_size]):  # a repeated header is context only
            scored = losses[j, skip:]
            kind_nats += np.bincount(kinds[batch["tokens"][j, 1 + skip:]], weights=scored, minlength=len(TOKEN_KINDS))
            nll[row] = nll.get(row, 0.0) + float(scored.sum())
            total_nats += float(scored.sum())
            tokens_scored += int((batch["tokens"][j, 1 + skip:] != vocab.PAD).sum())
    model.train()
    bits_per_note, style_bits, style_notes = 0.0, {}, {}
    notes_total = 0
    for row, nats in nll.items():
        notes = int(data.index["notes"][row])
        style = data.style_of(row)
        style_bits[style] = style_bits.get(style, 0.0) + nats / math.log(2)
        style_notes[style] = style_notes.get(style, 0) + notes
        bits_per_note += nats / math.log(2)
        notes_total += notes
    return {
        "valid_loss": total_nats / max(tokens_scored, 1),
        "bits_per_note": bits_per_note / max(notes_total, 1),
        "bits_per_note_by_style": {s: style_bits[s] / max(style_notes[s], 1) for s in sorted(style_bits)},
        "pieces": len(nll),
        "rows": list(nll),  # the index rows scored, in order
        "bits_per_note_by_kind": dict(zip(TOKEN_KINDS, (kind_nats / math.log(2) / max(notes_total, 1)).tolist(),
                                          strict=True)),
        "tokens": tokens_scored,
    }


class _Distributed:
    """World size, rank and device under torchrun (or a single process)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            self.device = torch.device("cuda", local)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            torch.distributed.barrier()


def train(data_dir: str | Path, config: str, out: str | Path, max_steps: int | None = None,
          resume: bool = False, progress: bool = True, overrides: dict | None = None,
          init: str | Path | None = None) -> list[dict]:
    """Train (or resume) a model; returns the metric records written to RUN_DIR/metrics.jsonl.

    `init` (a checkpoint or run directory) starts a new run from that model's weights instead
    of random ones (fine-tuning, or going on with a finished model under a new schedule); the
    model shape comes from it, and its vocabulary must be the data's."""
    dist = _Distributed()
    out = Path(out)
    model_settings, train_config = load_config(config)
    for key, value in (overrides or {}).items():
        setattr(train_config, key, value)
    if max_steps is not None:
        train_config.max_steps = max_steps
    if train_config.batch_size % (train_config.accumulate * dist.world):
        raise MuseNetError(f"batch_size {train_config.batch_size} must divide by accumulate x processes "
                           f"({train_config.accumulate} x {dist.world})")
    data = Dataset(data_dir, "train")
    valid = Dataset(data_dir, "valid")
    if len(data) == 0:
        raise MuseNetError(f"{data_dir}: the train split is empty")
    vocab = data.vocab

    step = 0
    state = None
    if resume:
        try:
            checkpoint = resolve(out)
        except MuseNetError:
            checkpoint = None
        if checkpoint is not None:
            state = torch.load(checkpoint / "trainer.pt", map_location="cpu", weights_only=False)
            saved = json.loads((checkpoint / "config.json").read_text())
            model_settings = saved["model"]
            train_config = TrainConfig(**{**saved["train"], "max_steps": train_config.max_steps})
    start_weights = None
    if init is not None and state is None:
        start_weights, model_settings = _initial_weights(init, vocab, model_settings)
    torch.manual_seed(train_config.seed)
    model = build_model(model_settings, vocab.size)
    if model.config.note_factors:
        model.set_note_factors(vocab)
    if start_weights is not None:  # factor embeddings, if new, keep their zeros
        missing, unexpected = model.load_state_dict(start_weights, strict=False)
        if unexpected or any(not key.startswith("factor_embeddings.") and not key.endswith("_of_token")
                             for key in missing):
            raise MuseNetError(f"{init}: its weights do not fit this model ({(unexpected or missing)[0]})")
    model = model.to(dist.device)
    optimizer = torch.optim.AdamW(_param_groups(model, train_config.weight_decay), lr=train_config.learning_rate,
                                  betas=(0.9, 0.95), fused=dist.device.type == "cuda")
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
    context = model.config.context
    net = model
    if train_config.compile:
        net = torch.compile(net)
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[dist.device] if dist.device.type == "cuda"
                                                        else None)
    augment = Augment(**train_config.augment)
    autocast = (torch.autocast(dist.device.type, dtype=torch.bfloat16)
                if use_bf16(train_config.precision, dist.device) else nullcontext())
    extra_config = {"train": asdict(train_config), "data": str(data_dir)}
    if init is not None:
        extra_config["init"] = str(init)
    elif state is not None and "init" in saved:
        extra_config["init"] = saved["init"]
    metrics_path = out / "metrics.jsonl"
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        if not resume and metrics_path.exists():
            metrics_path.unlink()
        _truncate_metrics(metrics_path, step)
    writer = _tensorboard(out) if dist.main else None
    records = []
    micro = train_config.batch_size // train_config.accumulate
    per_rank = micro // dist.world
    bar = tqdm(total=train_config.max_steps, initial=step, unit="step", desc="training",
               disable=not (progress and dist.main), dynamic_ncols=True)
    started, tokens_seen = time.time(), 0
    model.train()
    while step < train_config.max_steps:
        lr = learning_rate(step, train_config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss = torch.zeros((), device=dist.device)
        batches = [data.sample(np.random.default_rng([train_config.seed, step, m]), micro, context, augment)
                   for m in range(train_config.accumulate)]
        total_targets = sum(int((b["tokens"][:, 1:] != vocab.PAD).sum()) for b in batches)
        torch.manual_seed(train_config.seed * 1_000_003 + step * 101 + dist.rank)  # dropout, per step
        for m, batch in enumerate(batches):
            mine = {k: v[dist.rank * per_rank: (dist.rank + 1) * per_rank] for k, v in batch.items()}
            inputs, features, targets = to_tensors(mine, dist.device)
            sync = m == train_config.accumulate - 1 or dist.world == 1
            with autocast, (nullcontext() if sync else net.no_sync()):
                losses = token_losses(net, inputs, features, targets, vocab.PAD)
                loss = losses.sum() * dist.world / total_targets  # DDP averages over processes
                loss.backward()
            step_loss += losses.sum().detach() / total_targets
        if dist.world > 1:
            torch.distributed.all_reduce(step_loss)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += total_targets
        bar.update()
        loss_value = float(step_loss)
        if not math.isfinite(loss_value):
            raise MuseNetError(f"training diverged at step {step} (loss {loss_value}); lower the learning rate")
        if dist.main and (step % train_config.log_every == 0 or step == train_config.max_steps):
            elapsed = time.time() - started
            record = {"step": step, "loss": round(loss_value, 6), "lr": lr, "grad_norm": round(float(grad_norm), 4),
                      "tokens_per_second": round(tokens_seen / elapsed, 1), "elapsed": round(elapsed, 1)}
            records.append(_log(metrics_path, record, writer))
            bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tokens_seen / elapsed:,.0f}", refresh=False)
        if step % train_config.eval_every == 0 or step == train_config.max_steps:
            if dist.main and len(valid):
                eval_started = time.time()
                result = evaluate(model, valid, context, dist.device, train_config.eval_tokens)
                started += time.time() - eval_started  # speed counts training time only
                records.append(_log(metrics_path, {"step": step, **{k: v for k, v in result.items() if k != "rows"}},
                                    writer))
                bar.write(f"step {step}: valid loss {result['valid_loss']:.4f}, "
                          f"{result['bits_per_note']:.3f} bits per note")
        if step % train_config.checkpoint_every == 0 or step == train_config.max_steps:
            if dist.main:
                save_run_checkpoint(out, step, model, vocab, extra_config, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step})
            dist.barrier()
    bar.close()
    if writer is not None:
        writer.close()
    return records


#: Model settings a run started with --init may change: they do not change the weights' shapes.
INIT_OVERRIDES = ("dropout", "attention_dropout", "note_factors")


def _initial_weights(init: str | Path, vocab, settings: dict) -> tuple[dict, dict]:
    """(float32 state dict, model settings) of the model a run starts from: its shape, with
    the config's INIT_OVERRIDES; one-line errors when it cannot be read or was trained on
    another vocabulary."""
    model, init_vocab, _ = load_checkpoint(init)
    if init_vocab.to_json() != vocab.to_json():
        raise MuseNetError(f"{init}: its vocabulary ({init_vocab.size} tokens) is not the data's ({vocab.size}); "
                           "start from a model trained on the same kind of build")
    shape = model.config.to_dict()
    shape.update({key: settings[key] for key in INIT_OVERRIDES if key in settings})
    return {k: v.float() for k, v in model.state_dict().items()}, shape


def _param_groups(model: MuseNet, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (not biases, norms or embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "embedding" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _log(path: Path, record: dict, writer) -> dict:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
    if writer is not None:
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "step":
                writer.add_scalar(key, value, record["step"])
    return record


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, forget records written after the checkpoint we resume from."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))

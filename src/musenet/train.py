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
from tqdm import tqdm

from .augment import Augment
from .checkpoint import load_checkpoint, resolve, save_run_checkpoint
from .dataset import Dataset
from .errors import MuseNetError
from .evaluate.likelihood import heldout_scores, to_tensors, token_losses
from .instruments import FAMILIES
from .model import SIZES, MuseNet, build_model
from .vocab import Vocab

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
    style_weights: dict = field(default_factory=dict)  # style or pattern (drums-*) -> how much more often drawn
    feature_lr: dict = field(default_factory=dict)  # side feature -> factor on its embedding's learning rate
    ensembles: dict = field(default_factory=dict)  # style -> its usual families, over what the data's counts say
    optimizer: str = "muon"         # "muon": Muon for the blocks' matrices, AdamW for the rest; or "adamw"


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


def usual_ensembles(data: Dataset, chosen: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each style's usual families (what composing a style without naming instruments gets):
    the data's (`Dataset.ensembles`), with the config's `ensembles` in place of a style's
    where the counts mislead (derived versions that leave a family out, for instance)."""
    unknown = sorted({f for families in chosen.values() for f in families} - set(FAMILIES))
    if unknown:
        raise MuseNetError(f"[train] ensembles: unknown families {', '.join(unknown)} "
                           f"(families: {', '.join(FAMILIES)})")
    return {**data.ensembles(), **{style: list(families) for style, families in chosen.items()}}


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_learning_rate at max_steps."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
    return config.min_learning_rate + 0.5 * (1 + math.cos(math.pi * progress)) * (
        config.learning_rate - config.min_learning_rate)


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


WARM_STEPS, TIMED_STEPS = 5, 20  # a run with a wall-clock budget times 20 steps after 5 (compiling, caches)


def train(data_dir: str | Path, config: str, out: str | Path, max_steps: int | None = None,
          resume: bool = False, progress: bool = True, overrides: dict | None = None,
          init: str | Path | None = None, minutes: float | None = None) -> list[dict]:
    """Train (or resume) a model; returns the metric records written to RUN_DIR/metrics.jsonl.

    `init` (a checkpoint or run directory) starts a new run from that model's weights instead
    of random ones (fine-tuning, or going on with a finished model under a new schedule); the
    model shape comes from it, and its vocabulary must be the data's.

    `minutes`, a wall-clock budget (a GPU loan, a CPU hour): every TIMED_STEPS steps after
    the first WARM_STEPS (compiling, warming caches) the run sets its last step from its
    speed since then, evaluations included, so that the learning-rate schedule ends in time,
    never past max_steps; once time is up, that step is the last (its evaluation and
    checkpoint follow)."""
    budget_started = time.time()
    dist = _Distributed()
    out = Path(out)
    model_settings, train_config = _settings(config, overrides, max_steps, dist.world)
    data, valid = Dataset(data_dir, "train"), Dataset(data_dir, "valid")
    if len(data) == 0:
        raise MuseNetError(f"{data_dir}: the train split is empty")
    vocab = data.vocab
    state, saved = _saved_state(out) if resume else (None, {})
    if state is not None:  # the run goes on as it was configured, up to the new max_steps
        model_settings = saved["model"]
        train_config = TrainConfig(**{**saved["train"], "max_steps": train_config.max_steps})
    model, optimizer, step = _model_and_optimizer(model_settings, vocab, train_config, init, state, dist.device)
    net = _wrapped(model, train_config.compile, dist)
    augment = Augment(**train_config.augment)
    shares = data.style_shares(train_config.style_weights)
    autocast = (torch.autocast(dist.device.type, dtype=torch.bfloat16)
                if use_bf16(train_config.precision, dist.device) else nullcontext())
    extra_config = {"train": asdict(train_config), "data": str(data_dir),
                    "ensembles": usual_ensembles(data, train_config.ensembles)}
    if init is not None or "init" in saved:
        extra_config["init"] = str(init) if init is not None else saved["init"]
    metrics_path = out / "metrics.jsonl"
    if dist.main:
        _start_metrics(metrics_path, resume, step)
    writer = _tensorboard(out) if dist.main else None
    records = []
    micro = train_config.batch_size // train_config.accumulate
    bar = tqdm(total=train_config.max_steps, initial=step, unit="step", desc="training",
               disable=not (progress and dist.main), dynamic_ncols=True)
    started, tokens_seen, first_step, warm = time.time(), 0, step, None
    step_cap = train_config.max_steps  # a budget moves the last step, never past this
    model.train()
    while step < train_config.max_steps:
        lr = learning_rate(step, train_config)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_factor", 1.0)
        batches = [data.sample(np.random.default_rng([train_config.seed, step, m]), micro, model.config.context,
                               augment, shares=shares) for m in range(train_config.accumulate)]
        loss_value, grad_norm, targets = _optimizer_step(net, model, optimizer, batches, train_config, step, dist,
                                                         autocast, vocab.PAD)
        step += 1
        tokens_seen += targets
        bar.update()
        if not math.isfinite(loss_value):
            raise MuseNetError(f"training diverged at step {step} (loss {loss_value}); lower the learning rate")
        if minutes is not None:  # every TIMED_STEPS steps (on every process alike), the last step set anew
            if step - first_step == WARM_STEPS:
                warm = (step, time.time())
            elif warm is not None and (step - warm[0]) % TIMED_STEPS == 0:
                train_config.max_steps = _steps_in_budget(step, warm, budget_started, minutes, step_cap, dist)
                bar.total = train_config.max_steps
        last = step == train_config.max_steps
        if dist.main and (step % train_config.log_every == 0 or last):
            elapsed = time.time() - started
            record = {"step": step, "loss": round(loss_value, 6), "lr": lr, "grad_norm": round(grad_norm, 4),
                      "tokens_per_second": round(tokens_seen / elapsed, 1), "elapsed": round(elapsed, 1)}
            records.append(_log(metrics_path, record, writer))
            bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tokens_seen / elapsed:,.0f}", refresh=False)
        if (step % train_config.eval_every == 0 or last) and dist.main and len(valid):
            eval_started = time.time()
            result = heldout_scores(model, valid, model.config.context, dist.device, train_config.eval_tokens)
            started += time.time() - eval_started  # speed counts training time only
            records.append(_log(metrics_path, {"step": step, **{k: v for k, v in result.items() if k != "rows"}},
                                writer))
            bar.write(f"step {step}: valid loss {result['valid_loss']:.4f}, "
                      f"{result['bits_per_note']:.3f} bits per note")
        if step % train_config.checkpoint_every == 0 or last:
            if dist.main:
                save_run_checkpoint(out, step, model, vocab, extra_config, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step})
            dist.barrier()
    bar.close()
    if writer is not None:
        writer.close()
    return records


def _steps_in_budget(step: int, warm: tuple[int, float], budget_started: float, minutes: float,
                     step_cap: int, dist: _Distributed) -> int:
    """The run's last step under a budget of `minutes` from `budget_started`: as many more
    steps as the speed since `warm` (an earlier step, its time) leaves time for (none once
    time is up), never past `step_cap`. Every process takes the main process's answer."""
    now = time.time()
    left = max(60 * minutes - (now - budget_started), 0.0)
    last = min(step_cap, step + int(left / ((now - warm[1]) / (step - warm[0]))))
    if dist.world > 1:
        shared = torch.tensor([last], device=dist.device)
        torch.distributed.broadcast(shared, 0)
        last = int(shared.item())
    return max(last, step)


def _settings(config: str, overrides: dict | None, max_steps: int | None, world: int) -> tuple[dict, TrainConfig]:
    """(model settings, training settings) of `load_config`, with the overrides and max_steps
    applied; the batch must split evenly into micro-batches on every process."""
    model_settings, train_config = load_config(config)
    for key, value in (overrides or {}).items():
        setattr(train_config, key, value)
    if max_steps is not None:
        train_config.max_steps = max_steps
    if train_config.batch_size % (train_config.accumulate * world):
        raise MuseNetError(f"batch_size {train_config.batch_size} must divide by accumulate x processes "
                           f"({train_config.accumulate} x {world})")
    return model_settings, train_config


def _saved_state(out: Path) -> tuple[dict | None, dict]:
    """(trainer state, config.json) of the run's latest checkpoint, or (None, {}) if it has none."""
    try:
        checkpoint = resolve(out)
    except MuseNetError:
        return None, {}
    state = torch.load(checkpoint / "trainer.pt", map_location="cpu", weights_only=False)
    return state, json.loads((checkpoint / "config.json").read_text())


def _model_and_optimizer(settings: dict, vocab, config: TrainConfig, init: str | Path | None, state: dict | None,
                         device: torch.device) -> tuple[MuseNet, torch.optim.Optimizer | MuonAdamW, int]:
    """(model, optimizer, step to start from): fresh, from `init`'s weights, or as `state` left them."""
    model = _new_model(settings, vocab, config.seed, init if state is None else None).to(device)
    optimizer = make_optimizer(model, config.optimizer, config.learning_rate, config.weight_decay, config.feature_lr,
                               fused=device.type == "cuda")
    if state is None:
        return model, optimizer, 0
    model.load_state_dict(state["model"])
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (KeyError, ValueError) as error:
        other = "adamw" if config.optimizer == "muon" else "muon"
        raise MuseNetError(f"the checkpoint's optimizer state does not fit optimizer = {config.optimizer!r}: "
                           f"name optimizer = {other!r} in the config's [train] (runs begun before 2026-12-07 "
                           f"trained with adamw) ({error})") from None
    return model, optimizer, state["step"]


def _new_model(settings: dict, vocab, seed: int, init: str | Path | None) -> MuseNet:
    """A model seeded by `seed`, or with `init`'s weights (and shape) when given."""
    start_weights = None
    if init is not None:
        start_weights, settings = initial_weights(init, vocab, settings)
    torch.manual_seed(seed)
    model = build_model(settings, vocab.size)
    if model.config.note_factors:
        model.set_note_factors(vocab)
    if start_weights is not None:  # factor embeddings, side features and relative attention, if new, start at 0
        missing, unexpected = model.load_state_dict(start_weights, strict=False)
        zeroed = [key for key in missing if key.startswith("feature_embeddings.") or key.endswith("attention.relative")]
        if unexpected or any(key not in zeroed and not key.startswith("factor_embeddings.")
                             and not key.endswith("_of_token") for key in missing):
            raise MuseNetError(f"{init}: its weights do not fit this model ({(unexpected or missing)[0]})")
        with torch.no_grad():  # so the model computes what `init` did until it learns them
            for key in zeroed:
                model.get_parameter(key).zero_()
    return model


def _wrapped(model: MuseNet, compiled: bool, dist: _Distributed) -> torch.nn.Module:
    """The module the steps run through: compiled if asked, under DDP with many processes."""
    net = torch.compile(model) if compiled else model
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[dist.device] if dist.device.type == "cuda"
                                                        else None)
    return net


def _optimizer_step(net, model: MuseNet, optimizer, batches: list[dict], config: TrainConfig, step: int,
                    dist: _Distributed, autocast, pad: int) -> tuple[float, float, int]:
    """One optimizer step over the micro-batches (this process takes its share of each);
    returns (mean loss per target token over all processes, gradient norm, target tokens)."""
    per_rank = len(batches[0]["tokens"]) // dist.world
    step_loss = torch.zeros((), device=dist.device)
    total_targets = sum(int((b["tokens"][:, 1:] != pad).sum()) for b in batches)
    torch.manual_seed(config.seed * 1_000_003 + step * 101 + dist.rank)  # dropout, per step
    for m, batch in enumerate(batches):
        mine = {k: v[dist.rank * per_rank: (dist.rank + 1) * per_rank] for k, v in batch.items()}
        inputs, features, targets = to_tensors(mine, dist.device)
        sync = m == len(batches) - 1 or dist.world == 1
        with autocast, (nullcontext() if sync else net.no_sync()):
            losses = token_losses(net, inputs, features, targets, pad)
            loss = losses.sum() * dist.world / total_targets  # DDP averages over processes
            loss.backward()
        step_loss += losses.sum().detach() / total_targets
    if dist.world > 1:
        torch.distributed.all_reduce(step_loss)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(step_loss), float(grad_norm), total_targets


#: Model settings a run started with --init may change: they keep the shapes of the weights the
#: model has (relative attention and side features add tables, which start at zero).
INIT_OVERRIDES = ("dropout", "attention_dropout", "note_factors", "time_heads", "side_features", "relative_span")


def initial_weights(init: str | Path, vocab, settings: dict) -> tuple[dict, dict]:
    """(float32 state dict, model settings) of the model a run starts from: its shape, with
    the config's INIT_OVERRIDES; one-line errors when it cannot be read or was trained on
    another vocabulary."""
    model, init_vocab, _ = load_checkpoint(init)
    weights = {k: v.float() for k, v in model.state_dict().items()}
    if init_vocab.to_json() != vocab.to_json():
        if not grows(init_vocab, vocab):
            raise MuseNetError(f"{init}: its vocabulary ({init_vocab.size} tokens) is not the data's ({vocab.size}); "
                               "start from a model trained on the same kind of build")
        weights = grown_weights(weights, init_vocab, vocab)
    shape = {**model.config.to_dict(), "vocab_size": vocab.size}
    shape.update({key: settings[key] for key in INIT_OVERRIDES if key in settings})
    if model.config.relative_span and shape["relative_span"] != model.config.relative_span:
        raise MuseNetError(f"{init}: its relative attention spans {model.config.relative_span} tokens, the config "
                           f"asks for {shape['relative_span']}; --init may add relative attention, not resize it")
    return weights, shape


def grows(old: Vocab, new: Vocab) -> bool:
    """Whether `new` is `old` with more styles after its own (every other id unchanged; the
    instant order may differ: fine-tuning teaches the model the new one)."""
    return (old.time_mode == new.time_mode and new.styles[: len(old.styles)] == old.styles
            and new.style_offset == old.style_offset)


def grown_weights(weights: dict, old: Vocab, new: Vocab) -> dict:
    """A model's weights for a vocabulary with more styles: each new style's embedding starts
    as the mean of the old styles' (and its output row as the mean too; style tokens are
    never sampled); per-token tables of the note factors are rebuilt by the model."""
    grown = {}
    added = new.size - old.size
    for key, value in weights.items():
        if key.endswith("_of_token"):
            continue
        if key in ("token_embedding.weight", "head.weight") and value.shape[0] == old.size:
            mean = value[old.style_offset: old.size].mean(dim=0, keepdim=True)
            value = torch.cat([value, mean.expand(added, -1)])
        grown[key] = value
    return grown


OPTIMIZERS = ("adamw", "muon")


class MuonAdamW:
    """Muon (`torch.optim.Muon`: each step's momentum orthogonalised by Newton-Schulz, scaled to
    AdamW's update size so the same learning rate and weight decay serve) for the matrices inside
    the transformer blocks, AdamW for embeddings, norms, biases and the output layer; stepped,
    scheduled and saved as one optimizer."""

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer):
        self.parts = (muon, adamw)

    @property
    def param_groups(self) -> list[dict]:
        return [group for part in self.parts for group in part.param_groups]

    def step(self) -> None:
        for part in self.parts:
            part.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.parts[0].state_dict(), "adamw": self.parts[1].state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.parts[0].load_state_dict(state["muon"])
        self.parts[1].load_state_dict(state["adamw"])


def make_optimizer(model: MuseNet, kind: str, lr: float, weight_decay: float, feature_lr: dict | None = None,
                   betas: tuple[float, float] = (0.9, 0.95), fused: bool = False):
    """AdamW over `param_groups`, or (kind "muon") `MuonAdamW`; either has `param_groups` whose
    lr the schedule sets (times a group's `lr_factor`)."""
    if kind not in OPTIMIZERS:
        raise MuseNetError(f"unknown optimizer {kind!r}: use one of {', '.join(OPTIMIZERS)}")
    groups = param_groups(model, weight_decay, feature_lr)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)
    inner = [p for name, p in model.named_parameters() if name.startswith("blocks.") and p.dim() == 2]
    chosen = {id(p) for p in inner}
    rest = [dict(group, params=[p for p in group["params"] if id(p) not in chosen]) for group in groups]
    return MuonAdamW(torch.optim.Muon(inner, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw"),
                     torch.optim.AdamW([g for g in rest if g["params"]], lr=lr, betas=betas, fused=fused))


def param_groups(model: MuseNet, weight_decay: float, feature_lr: dict | None = None) -> list[dict]:
    """Weight decay on matrices only (not biases, norms or embeddings); the side features
    named in `feature_lr` learn at that factor times the learning rate (new embeddings that
    start at zero in a fine-tuning run, which would otherwise barely move)."""
    decay, no_decay, faster = [], [], {}
    for name, p in model.named_parameters():
        feature = name.removeprefix("feature_embeddings.").removesuffix(".weight")
        if feature_lr and feature in feature_lr:
            faster.setdefault(float(feature_lr[feature]), []).append(p)
        else:
            # relative attention's distance tables (3-D) are embeddings too: no decay
            (decay if p.dim() == 2 and "embedding" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0},
            *({"params": ps, "weight_decay": 0.0, "lr_factor": f} for f, ps in faster.items())]


def _log(path: Path, record: dict, writer) -> dict:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
    if writer is not None:
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "step":
                writer.add_scalar(key, value, record["step"])
    return record


def _start_metrics(path: Path, resume: bool, step: int) -> None:
    """A new run starts metrics.jsonl afresh; a resumed one forgets records written after the
    checkpoint it resumes from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not resume and path.exists():
        path.unlink()
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

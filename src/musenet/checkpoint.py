"""Checkpoints as directories: config.json, vocab.json, model.safetensors (+ trainer.pt to resume).

A run directory holds `checkpoints/step-NNNNNNN/` folders and a `latest` file naming the
newest. Each folder is written under a temporary name and renamed when complete, and
`latest` is replaced atomically, so a run killed at any moment leaves a loadable checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from .errors import MuseNetError
from .files import current_umask, write_atomic
from .model import ModelConfig, MuseNet
from .vocab import Vocab

KEEP_CHECKPOINTS = 2


def save_checkpoint(directory: str | Path, model: MuseNet, vocab: Vocab, extra_metadata: dict | None = None,
                    trainer_state: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write a complete checkpoint directory (atomically: temp name, then rename). Its
    config.json holds the model's shape under "model" and `extra_metadata` beside it."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    metadata = {"model": model.config.to_dict(), **(extra_metadata or {})}
    (tmp / "config.json").write_text(json.dumps(metadata, indent=2))
    (tmp / "vocab.json").write_text(vocab.to_json())
    if dtype is not None:  # a copy in a smaller dtype, for shipping
        model = _cast_copy(model, dtype)
    save_model(model, str(tmp / "model.safetensors"))
    if trainer_state is not None:
        torch.save(trainer_state, tmp / "trainer.pt")
    for written in tmp.iterdir():  # safetensors writes owner-only files
        written.chmod(0o666 & ~current_umask())
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return directory


def _cast_copy(model: MuseNet, dtype: torch.dtype) -> MuseNet:
    copy = MuseNet(model.config)
    copy.load_state_dict(model.state_dict())
    return copy.to(dtype)


def resolve(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (its latest checkpoint)."""
    path = Path(path)
    if (path / "model.safetensors").exists():
        return path
    latest = path / "latest"
    if latest.exists():
        candidate = path / "checkpoints" / latest.read_text().strip()
        if (candidate / "model.safetensors").exists():
            return candidate
    raise MuseNetError(f"{path}: no checkpoint here (expected model.safetensors, or a run directory)")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[MuseNet, Vocab, dict]:
    """(model in eval mode, vocabulary, metadata: the whole config.json) from a checkpoint or run directory.
    Note factor embeddings are folded into the token table (see MuseNet.fold_note_factors)."""
    directory = resolve(path)
    try:
        metadata = json.loads((directory / "config.json").read_text())
        vocab = Vocab.load(directory / "vocab.json")
        model = MuseNet(ModelConfig.from_dict(metadata["model"]))
        load_model(model, str(directory / "model.safetensors"), strict=True, device=str(device))
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise MuseNetError(f"{directory}: cannot load checkpoint ({str(err).splitlines()[0]})") from None
    return model.fold_note_factors().float().to(device).eval(), vocab, metadata


def save_run_checkpoint(run_dir: Path, step: int, model: MuseNet, vocab: Vocab, extra_metadata: dict,
                        trainer_state: dict) -> Path:
    """checkpoints/step-N in a run directory, then point `latest` at it and drop old ones."""
    name = f"step-{step:07d}"
    path = save_checkpoint(run_dir / "checkpoints" / name, model, vocab, extra_metadata, trainer_state)
    write_atomic(run_dir / "latest", name.encode())
    old = sorted((run_dir / "checkpoints").glob("step-*"))[:-KEEP_CHECKPOINTS]
    for stale in old:
        shutil.rmtree(stale, ignore_errors=True)
    return path


def export_model(source: str | Path, out: str | Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """A checkpoint (or a run's latest) as a small shippable directory: config.json, vocab.json
    and the weights in `dtype`, without the optimizer state."""
    model, vocab, metadata = load_checkpoint(source)
    metadata.pop("model", None)
    metadata["exported_from"] = str(resolve(source))
    return save_checkpoint(out, model, vocab, metadata, dtype=dtype)

"""8-bit weights for decoding on a CPU: the default on every CPU.

Composing one token at a time reads every weight of the model once per token, and on a
small model that reading, not the arithmetic, is most of the time: the float32 weights of
the bundled model (26 MB) do not stay in a 2-core CPU's cache, its 8-bit ones (7 MB) do.
`quantize_int8` gives every linear layer (the output head too) int8 weights with one
scale per output channel (`Int8Linear`), computed by PyTorch's weight-only int8 kernel
(`torch._weight_int8pack_mm`, the one torchao's int8 weight-only mode uses on CPUs), which
reads its inputs in bfloat16, the precision the model was trained in. In `MuseNet.forward`
everything else (embeddings, norms, attention) stays float32; the sampler's own forward pass
(`inference.py`) also runs attention and its KV cache in bfloat16, the kernel's output
dtype. Weights are rounded to within half a step of 1/127 of their row's largest, so the
next-token distribution stays within a KL of 0.01 nats of float32's
(`tests/test_inference.py`, `benchmarks/generate.py` measure it).

`decoding_precision("auto")` picks int8 on a CPU (where PyTorch's build has the kernel for
it: a tiny product tries it once) and float32 on a GPU, where this kernel is not meant. The
CPU need not compute in bfloat16 itself: on a 2-core AVX2 EPYC without it (bfloat16 rounded
in software) int8 composed 2.1x float32's tokens a second at batch 1, and 5.1x Hugging
Face's through the compiled step (`benchmarks/generate.py`, 2026-12-06).
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn

from .errors import MuseNetError

PRECISIONS = ("auto", "float32", "int8")


class Int8Linear(nn.Module):
    """y = x W^T + b with W in int8 (one bfloat16 scale per output row), x read in bfloat16;
    y in x's own dtype."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        weight = weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127
        self.register_buffer("weight", torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]).to(torch.bfloat16).contiguous(), self.weight,
                                      self.scale)
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype).view(*shape[:-1], y.shape[-1])


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` (a MuseNet with note factors folded) for CPU decoding: every linear
    layer, the tied output head included, an `Int8Linear`."""
    if getattr(model.config, "note_factors", False):
        raise MuseNetError("internal error: fold the note factors before quantising")
    quantized = copy.deepcopy(model)
    quantized.head = Int8Linear(model.head.weight, None)  # untied: the embedding table stays float32
    for parent in quantized.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8Linear(child.weight, child.bias))
    return quantized.eval()


@functools.cache
def int8_kernel_works() -> bool:
    """Whether this PyTorch build computes `torch._weight_int8pack_mm` on this CPU (a tiny product)."""
    try:
        torch._weight_int8pack_mm(torch.ones(1, 32, dtype=torch.bfloat16), torch.ones(8, 32, dtype=torch.int8),
                                  torch.ones(8, dtype=torch.bfloat16))
        return True
    except (AttributeError, NotImplementedError, RuntimeError):
        return False


def decoding_precision(precision: str, device: torch.device) -> str:
    """float32 or int8 for `precision` (auto, float32, int8) on `device`."""
    if precision not in PRECISIONS:
        raise MuseNetError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return "int8" if device.type == "cpu" and int8_kernel_works() else "float32"
    if precision == "int8" and device.type != "cpu":
        raise MuseNetError("int8 is for CPU decoding; on a GPU compose in the model's own precision")
    return precision

"""Compiled decoding: the model's one-token step and the sampler's state update, each one call
of C++ code built for this CPU.

Composing reads one token per candidate per step, and `Decoder.forward` (inference.py) spends
most of such a step dispatching about 150 small PyTorch operations, not computing them.
`StepModule` is the same step written for a compiler: a static KV cache (the buffers of
`model.Cache`, written at the step's position, attention over all of them with the later
positions masked), the whole context length fixed, the batch free. PyTorch's ahead-of-time
compiler (AOTInductor: `torch.export`, then `torch._inductor.aoti_compile_and_package`)
turns it into a shared library with the weights inside, fused loops for the norms,
rotations, attention and GELU, and PyTorch's own int8 kernel for the matrix products.

Building takes about 20 seconds and needs a C++ compiler; the package is cached per
model weights, precision, PyTorch version and CPU (`kernel_path`, under
`~/.cache/musenet/kernels` or `$MUSENET_CACHE`), so each machine builds a model's step
once and later runs load it in 0.02 s. `Decoder.step` uses it when loaded and falls back
to `Decoder.forward` otherwise (and for ALiBi models, which it does not cover; it covers
relative attention). The state
update (`StateUpdate`, below) is built and cached the same way, per vocabulary.

Numbers: the step returns the last layer's normalised states; attention is computed in
float32 over bfloat16 keys and values (the same rounding as `Decoder.forward` with int8
weights), so the next-token distribution stays within the KL bound `tests/test_kernels.py`
checks.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import MuseNetError
from .model import MuseNet
from .quantize import Int8Linear

FORMAT = 3  # what the packages take and give: a new number when that changes, so old files are not loaded


class StepLinear(nn.Module):
    """A linear layer of the step: PyTorch's int8 kernel (bfloat16 out, as `inference.linear_of`)
    or a float32 `F.linear`."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.int8 = isinstance(module, Int8Linear)
        self.weight = nn.Buffer(module.weight.detach().clone())
        self.scale = nn.Buffer(module.scale.detach().clone()) if self.int8 else None
        self.bias = None if module.bias is None else nn.Buffer(module.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.int8:
            y = torch._weight_int8pack_mm(x.to(torch.bfloat16), self.weight, self.scale)
        else:
            y = F.linear(x, self.weight)
        return y if self.bias is None else y + self.bias


class StepModule(nn.Module):
    """One new token per row over a static KV cache: (token (batch,), side features
    (batch, features) in `MuseNet.feature_embeddings` order, position (a 0-d long tensor),
    keys and values of every layer (batch, heads, context, head_dim), written at `position`)
    -> the last layer's normalised states (batch, width), float32."""

    def __init__(self, model: MuseNet):
        super().__init__()
        c = model.config
        if c.positions not in ("learned", "rotary"):
            raise MuseNetError(f"the compiled step does not cover {c.positions} positions")
        self.heads, self.head_dim, self.time_heads, self.width = c.heads, c.width // c.heads, c.time_heads, c.width
        self.rotary_positions = c.positions == "rotary"
        self.token_table = nn.Buffer(model.token_table().detach().float().clone())
        self.positions = None if model.position_embedding is None else nn.Buffer(
            model.position_embedding.weight.detach().clone())
        self.features = nn.ParameterList(
            [nn.Parameter(e.weight.detach().clone(), requires_grad=False) for e in model.feature_embeddings.values()]
            if c.features else [])
        self.norms = nn.ModuleList()
        self.linears = nn.ModuleList()
        for block in model.blocks:
            self.norms.extend([block.norm1, block.norm2])
            self.linears.extend(StepLinear(m) for m in (block.attention.qkv, block.attention.out, block.mlp[0],
                                                        block.mlp[2]))
        self.norm = model.norm
        self.relative = nn.ParameterList(  # relative attention's distance tables (heads, span, head_dim)
            [nn.Parameter(b.attention.relative.detach().float().clone(), requires_grad=False) for b in model.blocks]
            if c.relative_span else [])
        half = self.head_dim // 2
        self.inv_freq = nn.Buffer(1.0 / (10000 ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32)
                                                    / self.head_dim)))
        self.context = c.context
        self.half = half
        self.time_index = c.features.index("time") if c.time_heads else -1

    def rotation(self, steps: torch.Tensor):
        """cos and sin (rows, head_dim) of rotary angles for `steps` (rows,)."""
        angles = steps.float()[:, None] * self.inv_freq
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos(), angles.sin()

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        rotated = torch.cat([-x[..., self.half:], x[..., :self.half]], dim=-1)
        return x * cos + rotated * sin

    def forward(self, token: torch.Tensor, features: torch.Tensor, position: torch.Tensor,
                keys: list[torch.Tensor], values: list[torch.Tensor]) -> torch.Tensor:
        batch, heads, head_dim, width = token.shape[0], self.heads, self.head_dim, self.width
        x = F.embedding(token, self.token_table)
        if self.positions is not None:
            x = x + F.embedding(position.view(1), self.positions)
        for index, table in enumerate(self.features):  # saturating at the table's last bucket
            x = x + F.embedding(features[:, index].clamp(0, table.shape[0] - 1), table)
        # one rotation per head: positions (rotary models) then time (the last `time_heads` heads)
        ones = torch.ones(batch, heads, head_dim, device=x.device)
        cos, sin = ones, torch.zeros_like(ones)
        if self.rotary_positions:
            p_cos, p_sin = self.rotation(position.view(1).expand(batch))
            cos, sin = p_cos[:, None].expand(-1, heads, -1), p_sin[:, None].expand(-1, heads, -1)
        if self.time_heads:
            t_cos, t_sin = self.rotation(features[:, self.time_index])
            t_cos, t_sin = t_cos[:, None], t_sin[:, None]
            timed_cos = cos[:, -self.time_heads:] * t_cos - sin[:, -self.time_heads:] * t_sin
            timed_sin = sin[:, -self.time_heads:] * t_cos + cos[:, -self.time_heads:] * t_sin
            cos = torch.cat([cos[:, :-self.time_heads], timed_cos], dim=1)
            sin = torch.cat([sin[:, :-self.time_heads], timed_sin], dim=1)
        seen = torch.arange(self.context, device=x.device) <= position  # the cache up to this token
        if self.relative:  # each cached key's distance to this token, farther ones sharing the table's last
            distance = (position - torch.arange(self.context, device=x.device)).clamp(0, self.relative[0].shape[1] - 1)
        for layer in range(len(self.norms) // 2):
            qkv, out, up, down = self.linears[4 * layer: 4 * layer + 4]
            norm1, norm2 = self.norms[2 * layer], self.norms[2 * layer + 1]
            cache_keys, cache_values = keys[layer], values[layer]
            q, k, v = qkv(norm1(x)).view(batch, 3, heads, head_dim).unbind(1)
            dtype = cache_keys.dtype
            q = self.rotate(q.float(), cos, sin).to(dtype).float()
            k = self.rotate(k.float(), cos, sin).to(dtype)
            cache_keys.index_copy_(2, position.view(1), k[:, :, None])
            cache_values.index_copy_(2, position.view(1), v[:, :, None].to(dtype))
            scores = (q[:, :, None, :] * cache_keys.float()).sum(-1)  # (batch, heads, context)
            if self.relative:  # Music Transformer's term: q . E(distance)
                scores = scores + (q[:, :, None, :] * self.relative[layer]).sum(-1)[..., distance]
            scores = scores * head_dim ** -0.5
            weights = torch.softmax(scores.masked_fill(~seen, float("-inf")), dim=-1)
            y = (weights[..., None] * cache_values.float()).sum(-2).to(dtype)
            x = x + out(y.reshape(batch, width))
            x = x + down(F.gelu(up(norm2(x).to(dtype))).to(dtype))
        return self.norm(x)


@functools.cache
def _cpu_flags() -> str:
    """What the compiled code may depend on about this CPU (its instruction-set flags)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_dir() -> Path:
    """Where compiled steps are kept: $MUSENET_CACHE/kernels, else ~/.cache/musenet/kernels."""
    root = os.environ.get("MUSENET_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME")
                                                           or os.path.expanduser("~/.cache"), "musenet")
    return Path(root) / "kernels"


def package_file(kind: str, digest) -> Path:
    """The cache file of a package: `kind`, then a hash of what it was built from (`digest`,
    a hashlib object), PyTorch's version, the CPU's flags and FORMAT."""
    digest.update(f"{torch.__version__}|{_cpu_flags()}|{FORMAT}".encode())
    return cache_dir() / f"{kind}-{digest.hexdigest()[:24]}.pt2"


def kernel_path(step: StepModule) -> Path:
    """The package file of this step: its weights (and context length) hashed."""
    digest = hashlib.sha256(str(step.context).encode())
    for name, tensor in step.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes() if tensor.dtype != torch.bfloat16
                      else tensor.contiguous().view(torch.int16).numpy().tobytes())
    return package_file("step", digest)


def example_inputs(step: StepModule, batch: int, cache_dtype: torch.dtype):
    """Inputs of the right shapes for tracing: a token per row, features, position 0, caches."""
    layers = len(step.norms) // 2
    shape = (batch, step.heads, step.context, step.head_dim)
    return (torch.zeros(batch, dtype=torch.long), torch.zeros(batch, max(len(step.features), 1), dtype=torch.long),
            torch.tensor(0), [torch.zeros(shape, dtype=cache_dtype) for _ in range(layers)],
            [torch.zeros(shape, dtype=cache_dtype) for _ in range(layers)])


def build(step: StepModule, path: Path, cache_dtype: torch.dtype) -> None:
    """Compile `step` for any batch of 1 to 64 rows into the package `path`."""
    batch = torch.export.Dim("batch", min=1, max=64)
    inputs = example_inputs(step, 2, cache_dtype)
    dynamic = ({0: batch}, {0: batch}, None, [{0: batch}] * len(inputs[3]), [{0: batch}] * len(inputs[4]))
    package(step, inputs, dynamic, path, "the compiled decode step for this CPU (once per model and machine, "
            "about 20 s)")


def package(module: nn.Module, inputs: tuple, dynamic: tuple, path: Path, what: str) -> None:
    """Export `module` with `inputs` (`dynamic`: their free dimensions) and compile it into the
    package `path`, written whole: to a temporary file beside it, then renamed."""
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's own deprecation notices from inside the exporter
        exported = torch.export.export(module, inputs, dynamic_shapes=dynamic)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".pt2", dir=path.parent)
    os.close(handle)
    print(f"musenet: building {what}", file=sys.stderr)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch._inductor.aoti_compile_and_package(exported, package_path=temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def load_or_build(path: Path, build_package, build: bool, what: str, kind: type[Package],
                  quiet: bool = False) -> Package | None:
    """The package at `path` loaded as `kind`; where there is none, with `build`, first
    `build_package(path)`. None where there is none and `build` is off, or building failed
    (no C++ compiler, an unsupported platform): then one line on stderr says why (unless
    `quiet`), and decoding goes on eagerly."""
    if not path.exists():
        if not build:
            return None
        try:
            build_package(path)
        except Exception as error:
            first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            if not quiet:
                print(f"musenet: could not build {what} ({first}); composing without it", file=sys.stderr)
            return None
    return kind(path)


class Package:
    """A loaded package, called with a flat list of tensors; returns its flat outputs.

    It calls PyTorch's package loader directly, not through `torch._inductor.aoti_load_package`,
    which first probes the CPU by compiling test programs (over a second, only to warn where
    the package was built on another CPU: the cache's file names already tell CPUs apart) and
    unpacks its arguments' tree structure on every call."""

    def __init__(self, path: Path):
        self.path = path
        self.loader = torch._C._aoti.AOTIModelPackageLoader(str(path), "model", False, 1, -1)

    def run(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.loader.boxed_run(inputs)


class CompiledStep(Package):
    """`__call__(token, features, position, keys, values)` as `StepModule`."""

    def __call__(self, token, features, position, keys, values) -> torch.Tensor:
        return self.run([token, features, position, *keys, *values])[0]


# ---- the state update, compiled -----------------------------------------------------------------
#
# After every token the sampler computes the token's side features and the state after it
# (`rules.next_features`, `rules.advance`): some 40 tensor operations on a few rows, 0.14 ms a
# token in eager PyTorch, which spends 2-8 us dispatching each however small. Traced by
# `torch.export` (`rules.tracing()` keeps Python `if`s off tensors there) and compiled like
# the step, they take 0.02 ms. (The mask and the sampling, compiled the same way, took longer
# than eager, 0.52 ms against 0.45: their gathers over the vocabulary compile poorly. They are
# C loops instead, choose.py.)

STATE = ("sounding", "onset", "polyphony", "rest_seconds", "seconds", "window_steps", "window_seconds", "steps",
         "instant_ons", "instant_drums", "tempo", "finished", "family_last")  # DecodeState's tensors, in package order


class StateUpdate(nn.Module):
    """(token, the state's tensors (STATE), the seconds asked for (0-d float64)) -> (the side
    features of `token` (batch, features in ALL_FEATURES order), the seconds a grid step lasts
    after it (batch,)), after which the state's tensors hold the state after it (written in
    place)."""

    def __init__(self, tables):
        super().__init__()
        self.tables = tables

    def forward(self, token, *inputs):
        from .model import ALL_FEATURES
        from .rules import DecodeState, advance, next_features

        values, target = inputs[:len(STATE)], inputs[len(STATE)]
        state = DecodeState(**dict(zip(STATE, values, strict=True)))
        features = next_features(token, state, self.tables, target)
        advance(state, token, self.tables)
        for name, before in zip(STATE, values, strict=True):  # what `advance` replaced, written back
            after = getattr(state, name)
            if after is not before:
                before.copy_(after)
        return torch.cat([features[name] for name in ALL_FEATURES], dim=1), state.step_seconds(self.tables.vocab)


def update_path(tables) -> Path:
    """The state update's package file: the vocabulary's tables hashed."""
    from .model import ALL_FEATURES

    digest = hashlib.sha256(tables.vocab.time_mode.encode())
    digest.update(",".join(ALL_FEATURES).encode())  # the features it returns
    for name, array in sorted(tables.vocab.tables.items()):
        digest.update(name.encode())
        digest.update(array.tobytes())
    return package_file("update", digest)


def build_update(tables, path: Path) -> None:
    """Compile StateUpdate for any batch of 1 to 64 rows into the package `path`."""
    from .rules import DecodeState

    state = DecodeState.new(2, "cpu")
    inputs = (torch.zeros(2, dtype=torch.long), *(getattr(state, name) for name in STATE),
              torch.tensor(60.0, dtype=torch.float64))
    rows = {0: torch.export.Dim("batch", min=1, max=64)}
    package(StateUpdate(tables), inputs, (rows, (*(rows for _ in STATE), None)), path,
            "the compiled state update for this CPU (once per vocabulary and machine, about 10 s)")


class CompiledUpdate(Package):
    """`__call__(token, state, target)`: StateUpdate on a `rules.DecodeState`; returns the
    side features as `rules.next_features` does (a dict of (batch, 1) columns)."""

    def __call__(self, token, state, target: torch.Tensor) -> dict[str, torch.Tensor]:
        from .model import ALL_FEATURES

        columns, step = self.run([token.contiguous(), *(getattr(state, name) for name in STATE), target])
        state._step = (state.tempo, step)  # the tempo may have changed in place: its step, computed alike
        return {name: columns[:, index: index + 1] for index, name in enumerate(ALL_FEATURES)}

"""The forward pass the sampler runs: a KV-cached inference form of `MuseNet.forward`.

Composing reads one new token per candidate per step. For the bundled model that is about
150 small tensor operations, and at batch 1 their dispatch and Python calls and the memory
they stream, not the arithmetic, are most of a step's time. `Decoder` reads a `MuseNet`'s
weights once (float32, or the int8 of `quantize.py`) into flat tuples, and
`Decoder.forward` computes the next-token logits after some new tokens over the KV cache
with the operations of `MuseNet.forward` and no module calls, for the last position only.

- With float32 weights it computes what `MuseNet.forward` computes, to the bit (tests pin it).
- With int8 weights the kernel's bfloat16 outputs flow on as they are: queries, keys, values,
  the KV cache and attention in bfloat16 (the keys and values were bfloat16 already, so the
  cache holds the same numbers in half the bytes), float32 only in the residual stream, the
  norms and the logits. The next-token distribution stays within a KL of 0.01 nats of
  float32's (`tests/test_inference.py`, `benchmarks/generate.py` measure it).
- `forward(..., rows=)` scores only the given vocabulary rows (the tokens a request can ever
  take; the others get -inf): the output head is the largest matrix product of a step, and a
  request for four of ten families never takes most note-ons. Sampling from the masked
  distribution is unchanged by it, since masked tokens get no probability either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import MuseNetError
from .model import Cache, MuseNet, alibi_bias, apply_rotary, relative_attention, rotary_tables, time_rotary
from .quantize import Int8Linear


def linear_of(module: nn.Module):
    """A function computing `module` (an nn.Linear or Int8Linear): float32 in and out for
    nn.Linear; for Int8Linear bfloat16 out (the kernel's own output, which the next matrix
    product or attention reads as it is, and a float32 residual adds exactly)."""
    if isinstance(module, Int8Linear):
        weight, scale, bias = module.weight, module.scale, module.bias
        if bias is None:
            return lambda x: torch._weight_int8pack_mm(x.to(torch.bfloat16), weight, scale)
        return lambda x: torch._weight_int8pack_mm(x.to(torch.bfloat16), weight, scale) + bias
    weight, bias = module.weight, module.bias
    return lambda x: F.linear(x, weight, bias)


def head_rows(module: nn.Module, rows: torch.Tensor):
    """The output head restricted to vocabulary `rows`, as a function of a 2-D input."""
    if isinstance(module, Int8Linear):
        weight, scale = module.weight[rows].contiguous(), module.scale[rows].contiguous()
        return lambda x: torch._weight_int8pack_mm(x.to(torch.bfloat16), weight, scale)
    weight = module.weight[rows].contiguous()
    return lambda x: F.linear(x, weight)


class Decoder:
    """`forward`: a `MuseNet`'s next-token logits after some new tokens, over its KV cache."""

    def __init__(self, model: MuseNet):
        c = model.config
        self.config = c
        self.heads, self.head_dim = c.heads, c.width // c.heads
        self.table = model.token_table().detach()
        self.positions = None if model.position_embedding is None else model.position_embedding.weight
        self.features = ({name: e.weight for name, e in model.feature_embeddings.items()} if c.features else {})
        self.layers = [(b.norm1.weight, b.norm1.bias, b.norm1.eps, linear_of(b.attention.qkv),
                        linear_of(b.attention.out), b.norm2.weight, b.norm2.bias, b.norm2.eps,
                        linear_of(b.mlp[0]), linear_of(b.mlp[2])) for b in model.blocks]
        self.relative = [b.attention.relative for b in model.blocks]  # relative attention's tables, or None
        self.norm = (model.norm.weight, model.norm.bias, model.norm.eps)
        self.head = model.head
        self.full_head = linear_of(model.head)
        self.model = model
        self.feature_names = tuple(model.feature_embeddings) if c.features else ()
        # what the KV cache holds: bfloat16 with int8 weights (the kernel's output), else float32
        self.cache_dtype = torch.bfloat16 if isinstance(model.blocks[0].attention.qkv, Int8Linear) else torch.float32
        self.kernel = None  # a compiled step (kernels.py), once `use_kernel` found or built one

    def use_kernel(self, build: bool = False) -> bool:
        """Load this model's compiled step (kernels.py) if this machine has built it, or with
        `build` build it now (about 20 s, once per model and machine). True if loaded; False
        where the model or device is not covered, or building failed (then `forward` serves)."""
        from . import kernels  # imported here: torch.export and the compiler load only when asked

        covered = self.config.positions != "alibi"
        if self.kernel is None and covered and self.table.device.type == "cpu":
            step = kernels.StepModule(self.model).eval()
            self.kernel = kernels.load_or_build(kernels.kernel_path(step),
                                                lambda path: kernels.build(step, path, self.cache_dtype), build,
                                                "the compiled decode step", kernels.CompiledStep)
        return self.kernel is not None

    def step(self, token: torch.Tensor, features: dict[str, torch.Tensor], cache: Cache, head=None,
             rows: torch.Tensor | None = None) -> torch.Tensor:
        """`forward` for one new token per row (`token` (batch,), features (batch, 1)): through
        the compiled step where one is loaded and the cache is filled, else `forward`."""
        kernel, past = self.kernel, cache.length
        if kernel is None or cache.keys[0] is None or cache.keys[0].dtype != self.cache_dtype:
            return self.forward(token[:, None], features, cache, head, rows)
        if past + 1 > self.config.context:
            raise MuseNetError(f"{past + 1} tokens do not fit the context of {self.config.context}")
        columns = (torch.cat([features[name] for name in self.feature_names], dim=1) if self.feature_names
                   else torch.zeros(len(token), 1, dtype=torch.long))
        states = kernel(token.contiguous(), columns.contiguous(), torch.tensor(past), cache.keys, cache.values)
        cache.lengths = [past + 1] * len(cache.lengths)
        return self.logits(states, head, rows)

    def logits(self, states: torch.Tensor, head=None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits (batch, vocab) from the last layer's normalised states (batch, width)."""
        if rows is None:
            return (self.full_head if head is None else head)(states).float()
        return states.new_full((len(states), self.config.vocab_size), float("-inf")).index_copy_(
            1, rows, head(states).float())

    def head_for(self, rows: torch.Tensor | None):
        """The output head over `rows` of the vocabulary (None: all of it)."""
        return self.full_head if rows is None else head_rows(self.head, rows)

    def rotation(self, length: int, past: int, time: torch.Tensor | None, device):
        """cos and sin of every head's one rotation of queries and keys, or None: the rotary
        position angles, plus (for the time heads, when `time` is given) `time_rotary`'s
        angles, since rotating by one angle and then by another is rotating by their sum.
        One rotation per layer does what `MuseNet.forward` does in two."""
        c, dim = self.config, self.head_dim
        position = rotary_tables(length, dim, past, device) if c.positions == "rotary" else None
        if not c.time_heads or time is None:
            return position
        cos, sin = time_rotary(time, dim)  # (batch, 1, length, dim)
        if position is not None:
            cos, sin = position[0] * cos - position[1] * sin, position[1] * cos + position[0] * sin
            plain = position[0].expand(cos.shape[0], 1, -1, -1), position[1].expand(sin.shape[0], 1, -1, -1)
        else:
            plain = torch.ones_like(cos), torch.zeros_like(sin)
        others, timed = self.heads - c.time_heads, c.time_heads
        return (torch.cat([plain[0].expand(-1, others, -1, -1), cos.expand(-1, timed, -1, -1)], 1),
                torch.cat([plain[1].expand(-1, others, -1, -1), sin.expand(-1, timed, -1, -1)], 1))

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, features: dict[str, torch.Tensor] | None, cache: Cache,
                head=None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, vocab) for the token after `tokens` (batch, length), which are placed
        after the cached ones, with their side features (batch, length). With `head` from
        `head_for(rows)`, only `rows` are scored and the other logits are -inf."""
        c, width, heads, head_dim = self.config, self.config.width, self.heads, self.head_dim
        (batch, length), past = tokens.shape, cache.length
        if past + length > c.context:
            raise MuseNetError(f"{past + length} tokens do not fit the context of {c.context}")
        # the residual stream is (batch x length, width), so that every matrix product reads 2-D
        x = F.embedding(tokens.reshape(-1), self.table)
        if self.positions is not None:
            x = x + self.positions[past: past + length].repeat(batch, 1)
        if features is not None:
            for name, table in self.features.items():  # saturating at the table's last bucket
                x = x + F.embedding(features[name].reshape(-1).clamp(0, table.shape[0] - 1), table)
        rotary = self.rotation(length, past, features["time"] if features is not None else None, x.device)
        alibi = alibi_bias(heads, length, past, x.device) if c.positions == "alibi" else None
        mask, causal = None, alibi is None and past == 0 and length > 1  # one new token may see every key
        if alibi is None and past and length > 1:  # new tokens see every cached key and the new ones up to themselves
            mask = torch.ones(length, past + length, dtype=torch.bool, device=x.device).tril(past)
        for layer, (w1, b1, e1, qkv, out, w2, b2, e2, up, down) in enumerate(self.layers):
            h = F.layer_norm(x, (width,), w1, b1, e1)
            qkv_heads = qkv(h).view(batch, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
            qk, v = qkv_heads[:2], qkv_heads[2]  # queries and keys rotated at once
            q, k = apply_rotary(qk, *rotary) if rotary is not None else qk
            k, v = cache.extend(layer, k, v)
            if self.relative[layer] is not None:  # relative scores, causal, plus ALiBi's penalties if any
                y = relative_attention(q, k, v, self.relative[layer], alibi)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask if alibi is None else alibi.to(q.dtype),
                                                   is_causal=causal)
            x = x + out(y.transpose(1, 2).reshape(batch * length, width))
            x = x + down(F.gelu(up(F.layer_norm(x, (width,), w2, b2, e2))))
        return self.logits(F.layer_norm(x.view(batch, length, width)[:, -1], (width,), *self.norm), head, rows)

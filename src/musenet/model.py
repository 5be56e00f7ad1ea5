"""The MuseNet transformer: a GPT-2-style decoder with MuseNet's extra embeddings.

Read top to bottom: `ModelConfig` (sizes), `Attention` and `Block` (pre-norm, causal
attention through `scaled_dot_product_attention`, which uses flash kernels on GPU), and
`MuseNet`, which adds to each token embedding
- a position: learned absolute (GPT-2), rotary (applied inside attention) or none, with
  ALiBi's distance penalties on the attention scores instead (Press et al., 2022),
- MuseNet's side features, when `side_features` is on (or those it names): the time since the window start
  (tokens sounding together share it), the note's place in its chord, which 1/128 of the
  piece the token is in, and a countdown to the piece's end; named only, `phase`: the grid
  step within a 4-beat bar counted from the piece's start (where in the beat and bar a token falls),
  and `held` / `held_for`: the note sounding longest and for how long (so it is not forgotten),
  `ahead`: how far the hint's next event is (so the music can lead into what is given),
  and `kept_top` / `kept_low` / `kept_next`: a kept part read beside the sequence
  (`channel.py`; bucket 0, no kept part, is fixed at zero),
- with `time_heads`, that many heads whose queries and keys are rotated by the time feature
  (`time_rotary`), so they score tokens by their distance in time,
- with `relative_span`, Music Transformer's relative attention (Huang et al., 2019): each
  head adds to a query's score of a key the query's dot product with a learned embedding of
  their distance (`relative_logits`), beside whichever position scheme is chosen,
and predicts the next token with an output head tied to the token embedding. With
`note_factors`, a note token's embedding is its own vector plus vectors for its pitch, its
family and its loudness (0 = note-off), so a note-on and its note-off share most of theirs;
the tied head scores with the same sums. `fold_note_factors` adds them into the token table
for inference, leaving a plain model. A KV cache (`Cache`) makes incremental decoding cost one
token's work per step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import MuseNetError
from .instruments import FAMILIES
from .sequence import KEPT_FEATURES
from .vocab import VELOCITIES

FEATURES = ("time", "chord", "position", "countdown")  # what side_features = True embeds
EXTRA_FEATURES = ("phase", "held", "held_for", "ahead", *KEPT_FEATURES)  # embedded only where side_features names them
ALL_FEATURES = FEATURES + EXTRA_FEATURES  # what `sequence.side_features` computes
POSITIONS = ("learned", "rotary", "alibi")
#: Factor embeddings of note tokens and their sizes; the last id of each is "not a note".
NOTE_FACTORS = {"pitch": 129, "family": len(FAMILIES) + 1, "loudness": len(VELOCITIES) + 2}


@dataclass
class ModelConfig:
    vocab_size: int
    context: int = 512
    layers: int = 6
    heads: int = 8
    width: int = 256
    dropout: float = 0.1           # on embeddings and residual branches
    attention_dropout: float = 0.0  # on attention probabilities; > 0 leaves the fused CPU kernel (2.4x slower)
    positions: str = "learned"     # "learned" (GPT-2), "rotary" or "alibi"
    side_features: bool | list = True  # MuseNet's time / chord / position / countdown embeddings (or those named)
    time_buckets: int = 1024       # time since window start, in grid steps, saturating
    chord_buckets: int = 16        # place in the chord (0 = not a note-on), saturating
    position_buckets: int = 128    # which 1/128 of the piece
    countdown_buckets: int = 256   # time left, saturating
    phase_buckets: int = 48        # grid step within a 4-beat bar since the piece began (beat mode)
    held_buckets: int = 1281       # the note sounding longest (0: none; 1 + family x 128 + pitch)
    held_for_buckets: int = 33     # how long it has sounded, in quarter seconds, saturating
    ahead_buckets: int = 34        # how far the hint's next event is, in half beats (seconds mode: 0.25 s); 0: none
    kept_top_buckets: int = 25     # a kept part's highest sounding pitch class (+ 12 at its onsets; 0: none)
    kept_low_buckets: int = 13     # ... its lowest sounding pitch class
    kept_next_buckets: int = 13    # ... the pitch class of its next onset within a beat
    note_factors: bool = False     # pitch / family / loudness embeddings shared by note tokens (starting at 0)
    time_heads: int = 0            # the last heads rotate queries and keys by the time feature (time_rotary)
    relative_span: int = 0         # relative attention's learned distances, in tokens (farther share the last); 0: off

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise MuseNetError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.positions not in POSITIONS:
            raise MuseNetError(f"positions must be one of {', '.join(POSITIONS)}, not {self.positions!r}")
        unknown = set(self.features) - set(ALL_FEATURES)
        if unknown:
            raise MuseNetError(f"unknown side feature {sorted(unknown)[0]!r}; use some of {', '.join(ALL_FEATURES)}")
        if not 0 <= self.time_heads <= self.heads or (self.time_heads and "time" not in self.features):
            raise MuseNetError(f"time_heads must be 0 to {self.heads} and needs the time feature")
        if self.relative_span < 0:
            raise MuseNetError(f"relative_span must be 0 (off) or a number of tokens, not {self.relative_span}")

    @property
    def features(self) -> tuple[str, ...]:
        """The side features embedded: all four, none, or those `side_features` names."""
        if isinstance(self.side_features, bool):
            return FEATURES if self.side_features else ()
        return tuple(self.side_features)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


#: Named sizes. `small` trains on a 2-core CPU in about an hour; `musenet` is OpenAI's
#: published shape (72 layers, 24 heads, 4,096 context; its width was not published, we
#: take 24 heads x 64 = 1536). Each has relative attention (`relative_span`) since 2026-12-08,
#: the design study's and the JSB benchmark's measured win; models saved before keep their own.
SIZES: dict[str, dict] = {
    "tiny": dict(context=128, layers=2, heads=2, width=64, dropout=0.0, relative_span=64),
    "small": dict(context=512, layers=6, heads=8, width=256, dropout=0.1, relative_span=256),
    "base": dict(context=1024, layers=12, heads=12, width=768, dropout=0.1, relative_span=256),
    "musenet": dict(context=4096, layers=72, heads=24, width=1536, dropout=0.1, relative_span=256),
}


def rotary_tables(length: int, dim: int, offset: int = 0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of rotary position angles, shape (length, dim)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    angles = torch.outer(torch.arange(offset, offset + length, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def alibi_bias(heads: int, length: int, past: int = 0, device=None) -> torch.Tensor:
    """ALiBi's additive attention bias (heads, length, past + length): each head penalises a
    key by its distance to the query, with slopes 2^(-8h/heads); later keys are masked."""
    slopes = 2.0 ** (-8.0 * torch.arange(1, heads + 1, device=device) / heads)
    query = torch.arange(past, past + length, device=device)[:, None]
    key = torch.arange(past + length, device=device)[None, :]
    distance = (query - key).float()
    bias = -slopes[:, None, None] * distance
    return bias.masked_fill(distance < 0, float("-inf"))


def relative_logits(q: torch.Tensor, table: torch.Tensor, past: int = 0) -> torch.Tensor:
    """Music Transformer's relative attention term (Huang et al., 2019) as an additive mask
    (batch, heads, length, past + length): each query's dot product with its head's learned
    embedding (`table`, (heads, span, head_dim)) of its distance to each key, distances of
    `span` or more sharing the last row, scaled as attention scales q.k; later keys masked."""
    batch, heads, length, dim = q.shape
    span, keys = table.shape[1], past + length
    distance = torch.arange(past, keys, device=q.device)[:, None] - torch.arange(keys, device=q.device)
    if past == 0:  # Huang's skew: one product with distances length-1 ... 0, shifted into place
        rows = table[:, (length - 1 - torch.arange(length, device=q.device)).clamp(max=span - 1)]
        scores = torch.matmul(q, rows.to(q.dtype).transpose(1, 2))  # [i, r]: q_i . E(length-1-r)
        scores = F.pad(scores, (1, 0)).view(batch, heads, length + 1, length)[:, :, 1:]  # [i, j]: q_i . E(i-j)
    else:  # new queries over cached keys: look each distance up
        index = distance.clamp(0, span - 1).expand(batch, heads, length, keys)
        scores = torch.matmul(q, table.to(q.dtype).transpose(1, 2)).gather(-1, index)
    return (scores / math.sqrt(dim)).masked_fill(distance < 0, float("-inf"))


def relative_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, table: torch.Tensor,
                       bias: torch.Tensor | None = None, dropout: float = 0.0, block: int = 128) -> torch.Tensor:
    """Causal attention of `q` (the last of `k`'s keys) with `relative_logits`' scores added
    (and an additive `bias` (heads, queries, keys), e.g. ALiBi's), `block` queries at a time:
    each block scores only the keys up to its last query, and no (length, length) mask is made.
    Learned scores keep PyTorch's fused attention off (they need a gradient), and its fallback
    builds the whole matrix; this does about half the work, 3.7 times faster on 1,024 tokens
    (benchmarks/attention_speed.py)."""
    length, keys = q.shape[2], k.shape[2]
    past, scale = keys - length, 1 / math.sqrt(q.shape[-1])
    outputs = []
    for start in range(0, length, block):
        end = min(start + block, length)
        queries, seen = q[:, :, start:end], past + end
        scores = torch.matmul(queries, k[:, :, :seen].transpose(-1, -2)) * scale
        scores = scores + relative_logits(queries, table, past + start)
        if bias is not None:
            scores = scores + bias[..., start:end, :seen].to(scores.dtype)
        weights = F.dropout(torch.softmax(scores.float(), dim=-1), dropout).to(v.dtype)
        outputs.append(torch.matmul(weights, v[:, :, :seen]))
    return torch.cat(outputs, dim=2)


def time_rotary(time: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (batch, 1, length, dim) of rotary angles driven by each token's time (grid
    steps since the window start) rather than its position: a head whose queries and keys
    are rotated by them scores two tokens by how far apart they are in time, so a note can
    find what sounds at its own time, in the body or in a hint read before `start`."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=time.device, dtype=torch.float32) / dim))
    angles = time.float()[..., None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)[:, None]
    return angles.cos(), angles.sin()


def rotate_time_heads(x: torch.Tensor, timing, heads: int) -> torch.Tensor:
    """`x` (batch, heads, length, head_dim) with its last `heads` heads rotated by `timing`."""
    return torch.cat([x[:, :-heads], apply_rotary(x[:, -heads:], *timing)], dim=1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class Cache:
    """Keys and values of every layer for the tokens seen so far, in buffers allocated once
    for the whole context (batch, heads, context, head_dim), so a step copies one token's worth."""

    def __init__(self, layers: int, capacity: int):
        self.capacity = capacity
        self.keys: list[torch.Tensor | None] = [None] * layers
        self.values: list[torch.Tensor | None] = [None] * layers
        self.lengths = [0] * layers

    @property
    def length(self) -> int:
        return self.lengths[0]

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer] is None:
            shape = (k.shape[0], k.shape[1], self.capacity, k.shape[3])
            self.keys[layer] = k.new_zeros(shape)
            self.values[layer] = v.new_zeros(shape)
        start, end = self.lengths[layer], self.lengths[layer] + k.shape[2]
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        self.lengths[layer] = end
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the given batch rows (e.g. after dropping finished candidates)."""
        self.keys = [k[rows] if k is not None else None for k in self.keys]
        self.values = [v[rows] if v is not None else None for v in self.values]


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.out = nn.Linear(config.width, config.width)
        self.dropout = config.attention_dropout
        self.time_heads = config.time_heads
        span, dim = config.relative_span, config.width // config.heads  # relative attention: a table per head
        self.relative = nn.Parameter(0.02 * torch.randn(config.heads, span, dim)) if span else None

    def forward(self, x, positional=None, cache: Cache | None = None, layer: int = 0, timing=None):
        """`positional`: rotary tables (cos, sin), an ALiBi bias, or None (learned positions);
        `timing`: `time_rotary`'s tables for the time heads, if any."""
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        bias = positional if isinstance(positional, torch.Tensor) else None  # ALiBi's penalties, causal
        if bias is None and positional is not None:
            q, k = apply_rotary(q, *positional), apply_rotary(k, *positional)
        if timing is not None:
            q, k = rotate_time_heads(q, timing, self.time_heads), rotate_time_heads(k, timing, self.time_heads)
        past = 0
        if cache is not None:
            k, v = cache.extend(layer, k, v)
            past = k.shape[2] - length
        if self.relative is not None:  # relative scores, causal, plus ALiBi's penalties if any
            y = relative_attention(q, k, v, self.relative, bias, self.dropout if self.training else 0.0)
            return self.out(y.transpose(1, 2).reshape(batch, length, width))
        if bias is not None:
            mask, causal = bias.to(q.dtype), False
        elif past == 0 or length == 1:  # a single new query may see every key
            mask, causal = None, past == 0 and length > 1
        else:  # new queries see every cached key and the new keys up to themselves
            mask = torch.ones(length, past + length, dtype=torch.bool, device=x.device).tril(past)
            causal = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width)
        self.attention = Attention(config)
        self.norm2 = nn.LayerNorm(config.width)
        self.mlp = nn.Sequential(
            nn.Linear(config.width, 4 * config.width), nn.GELU(), nn.Linear(4 * config.width, config.width),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, positional=None, cache=None, layer=0, timing=None):
        if not self.training:  # no dropout: skip its calls, which cost more than a token's arithmetic
            x = x + self.attention(self.norm1(x), positional, cache, layer, timing)
            return x + self.mlp(self.norm2(x))
        x = x + self.dropout(self.attention(self.norm1(x), positional, cache, layer, timing))
        return x + self.dropout(self.mlp(self.norm2(x)))


class MuseNet(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.width)
        self.position_embedding = nn.Embedding(c.context, c.width) if c.positions == "learned" else None
        if c.features:
            sizes = {"time": c.time_buckets, "chord": c.chord_buckets, "position": c.position_buckets,
                     "countdown": c.countdown_buckets, "phase": c.phase_buckets, "held": c.held_buckets,
                     "held_for": c.held_for_buckets, "ahead": c.ahead_buckets, "kept_top": c.kept_top_buckets,
                     "kept_low": c.kept_low_buckets, "kept_next": c.kept_next_buckets}
            self.feature_embeddings = nn.ModuleDict({
                name: nn.Embedding(sizes[name], c.width, padding_idx=0 if name in KEPT_FEATURES else None)
                for name in c.features})
        self.dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.width)
        self.head = nn.Linear(c.width, c.vocab_size, bias=False)
        self.head.weight = self.token_embedding.weight  # tied
        if c.note_factors:  # per-token factor ids; set from a vocabulary by set_note_factors
            for name, size in NOTE_FACTORS.items():
                self.register_buffer(f"{name}_of_token", torch.full((c.vocab_size,), size - 1, dtype=torch.long))
            self.factor_embeddings = nn.ModuleDict({name: nn.Embedding(size, c.width)
                                                    for name, size in NOTE_FACTORS.items()})
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale the residual projections
            if name.endswith(("attention.out.weight", "mlp.2.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * c.layers))
        if c.note_factors:  # start at 0: a model with factors added computes what it did before
            for embedding in self.factor_embeddings.values():
                nn.init.zeros_(embedding.weight)
        with torch.no_grad():  # no kept part reads as nothing added
            for name in set(c.features) & set(KEPT_FEATURES):
                self.feature_embeddings[name].weight[0].zero_()

    @staticmethod
    def _init(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def set_note_factors(self, vocab) -> None:
        """Which pitch, family and loudness each token has (the last id of each: none)."""
        t = vocab.tables
        note = t["family"] >= 0
        level = np.searchsorted(np.array((0, *VELOCITIES)), t["velocity"])
        ids = {"pitch": np.where(note, t["pitch"], NOTE_FACTORS["pitch"] - 1),
               "family": np.where(note, t["family"], NOTE_FACTORS["family"] - 1),
               "loudness": np.where(note, level, NOTE_FACTORS["loudness"] - 1)}
        for name, values in ids.items():
            getattr(self, f"{name}_of_token").copy_(torch.from_numpy(values))

    def token_table(self) -> torch.Tensor:
        """The (vocab, width) embedding of every token, shared by input and output."""
        table = self.token_embedding.weight
        if self.config.note_factors:
            for name, embedding in self.factor_embeddings.items():
                table = table + embedding.weight[getattr(self, f"{name}_of_token")]
        return table

    def fold_note_factors(self) -> MuseNet:
        """Add the factor embeddings into the token table and drop them: same outputs, plain model."""
        if self.config.note_factors:
            with torch.no_grad():
                self.token_embedding.weight.copy_(self.token_table())
            del self.factor_embeddings
            for name in NOTE_FACTORS:
                delattr(self, f"{name}_of_token")
            self.config.note_factors = False
        return self

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, tokens: torch.Tensor, features: dict[str, torch.Tensor] | None = None,
                cache: Cache | None = None, hidden: bool = False) -> torch.Tensor:
        """tokens (batch, length) -> logits (batch, length, vocab). With a cache, `tokens` are
        the new tokens only, placed after the cached ones. With `hidden`, also the last layer's
        normalised states (batch, length, width): (logits, states), for the critic."""
        c = self.config
        past = cache.length if cache is not None else 0
        length = tokens.shape[1]
        if past + length > c.context:
            raise MuseNetError(f"{past + length} tokens do not fit the context of {c.context}")
        table = self.token_table()
        x = F.embedding(tokens, table)
        positional = None
        if c.positions == "learned":
            x = x + self.position_embedding(torch.arange(past, past + length, device=tokens.device))
        elif c.positions == "rotary":
            positional = rotary_tables(length, c.width // c.heads, past, tokens.device)
        else:
            positional = alibi_bias(c.heads, length, past, tokens.device)
        if c.features and features is not None:
            for name, embedding in self.feature_embeddings.items():  # saturating at the table's last bucket
                x = x + embedding(features[name].clamp(0, embedding.num_embeddings - 1))
        timing = None
        if c.time_heads and features is not None:
            timing = time_rotary(features["time"], c.width // c.heads)
        if self.training:
            x = self.dropout(x)
        for layer, block in enumerate(self.blocks):
            x = block(x, positional, cache, layer, timing)
        states = self.norm(x)
        logits = F.linear(states, table) if c.note_factors else self.head(states)
        return (logits, states) if hidden else logits

    def new_cache(self) -> Cache:
        return Cache(self.config.layers, self.config.context)


def build_model(size_or_config: str | dict | ModelConfig, vocab_size: int | None = None, **overrides) -> MuseNet:
    """A model from a named size (tiny, small, base, musenet), a dict, or a ModelConfig."""
    if isinstance(size_or_config, ModelConfig):
        return MuseNet(size_or_config)
    if isinstance(size_or_config, str):
        if size_or_config not in SIZES:
            raise MuseNetError(f"unknown model size {size_or_config!r}; use one of {', '.join(SIZES)}")
        fields = dict(SIZES[size_or_config])
    else:
        fields = dict(size_or_config)
    fields.update(overrides)
    if vocab_size is not None:
        fields["vocab_size"] = vocab_size
    return MuseNet(ModelConfig.from_dict(fields))

import numpy as np
import pytest
import torch

from musenet import MuseNetError
from musenet.checkpoint import load_checkpoint, save_checkpoint
from musenet.model import FEATURES, SIZES, alibi_bias, build_model, relative_attention, relative_logits
from musenet.vocab import default_vocab


def random_inputs(batch=2, length=24, vocab=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (batch, length), generator=g)
    features = {name: torch.randint(0, 40, (batch, length), generator=g) for name in FEATURES}
    return tokens, features


@pytest.mark.parametrize("positions", ["learned", "rotary", "alibi"])
@pytest.mark.parametrize("relative_span", [0, 8])
def test_shapes_and_causality(positions, relative_span):
    model = build_model("tiny", 300, positions=positions, relative_span=relative_span).eval()
    tokens, features = random_inputs()
    logits = model(tokens, features)
    assert logits.shape == (2, 24, 300)
    changed = tokens.clone()
    changed[:, 15:] = (changed[:, 15:] + 1) % 300
    changed_features = {k: v.clone() for k, v in features.items()}
    changed_features["time"][:, 15:] += 3
    other = model(changed, changed_features)
    torch.testing.assert_close(logits[:, :15], other[:, :15])  # the past never sees the future
    assert not torch.allclose(logits[:, 15:], other[:, 15:])


@pytest.mark.parametrize("positions", ["learned", "rotary", "alibi"])
@pytest.mark.parametrize(("side_features", "time_heads"),
                         [(True, 0), (False, 0), (["time", "countdown"], 0), (True, 1)])
@pytest.mark.parametrize("relative_span", [0, 8])
def test_kv_cache_decoding_equals_full_forward(positions, side_features, time_heads, relative_span):
    torch.manual_seed(0)
    model = build_model("tiny", 300, positions=positions, side_features=side_features, time_heads=time_heads,
                        relative_span=relative_span).eval()
    tokens, features = random_inputs(length=30)
    full = model(tokens, features)
    cache = model.new_cache()
    pieces = [model(tokens[:, :9], {k: v[:, :9] for k, v in features.items()}, cache)]
    for i in range(9, 30):
        pieces.append(model(tokens[:, i:i + 1], {k: v[:, i:i + 1] for k, v in features.items()}, cache))
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-5, rtol=1e-5)
    cache.select(torch.tensor([1]))
    assert cache.length == 30 and cache.keys[0].shape[0] == 1


@pytest.mark.parametrize("past", [0, 5])
def test_relative_logits_score_each_query_with_its_distance_to_each_key(past):
    """Huang et al.'s skew (no cache) and the lookup (a cache) both give q_i . E(i - j),
    distances beyond the table sharing its last row, and mask later keys."""
    torch.manual_seed(0)
    q, table = torch.randn(2, 3, 7, 4), torch.randn(3, 5, 4)
    got = relative_logits(q, table, past)
    assert got.shape == (2, 3, 7, past + 7)
    for i in range(7):
        for j in range(past + 7):
            distance = past + i - j
            if distance < 0:
                assert bool(torch.isneginf(got[:, :, i, j]).all())
            else:
                want = (q[:, :, i] * table[:, min(distance, 4)]).sum(-1) / 2.0
                torch.testing.assert_close(got[:, :, i, j], want)
    with pytest.raises(MuseNetError, match="relative_span"):
        build_model("tiny", 300, relative_span=-1)


@pytest.mark.parametrize("past", [0, 5])
@pytest.mark.parametrize("alibi", [False, True])
def test_relative_attention_a_block_at_a_time_is_attention_with_the_whole_relative_mask(past, alibi):
    """Blocks of 4 queries over 11 (a ragged last block), each scoring only the keys up to its
    last query, give what attention with the whole (queries, keys) mask gives."""
    torch.manual_seed(0)
    q, table = torch.randn(2, 3, 11, 4), torch.randn(3, 5, 4)
    k, v = torch.randn(2, 3, past + 11, 4), torch.randn(2, 3, past + 11, 4)
    bias = alibi_bias(3, 11, past) if alibi else None
    mask = relative_logits(q, table, past) + (bias if alibi else 0)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(relative_attention(q, k, v, table, bias, block=4), want)


def test_time_heads_score_by_distance_in_time_and_decode_with_a_cache():
    """Shifting every token's time by the same amount changes nothing a time head sees (the
    KV cache: test_kv_cache_decoding_equals_full_forward); bad settings are one-line errors."""
    torch.manual_seed(0)
    model = build_model("tiny", 300, time_heads=1, relative_span=0).eval()  # relative scores read rotated queries
    tokens, features = random_inputs(length=30)
    shifted = {**features, "time": features["time"] + 7}
    plain = build_model("tiny", 300, relative_span=0).eval()
    plain.load_state_dict(model.state_dict())
    plain.feature_embeddings["time"].weight.data.zero_()  # the time embedding aside, only the heads see time
    model.feature_embeddings["time"].weight.data.zero_()
    torch.testing.assert_close(model(tokens, shifted), model(tokens, features), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(model(tokens, features), plain(tokens, features), atol=1e-4)
    for bad in (dict(time_heads=3), dict(time_heads=1, side_features=["chord"])):
        with pytest.raises(MuseNetError, match="time_heads"):
            build_model("tiny", 300, **bad)


def test_side_features_can_be_chosen_one_by_one():
    model = build_model("tiny", 300, side_features=["time", "chord"]).eval()
    assert list(model.feature_embeddings) == ["time", "chord"]
    tokens, features = random_inputs()
    moved = {**features, "position": features["position"] + 1, "countdown": features["countdown"] + 1}
    torch.testing.assert_close(model(tokens, features), model(tokens, moved))  # unused features change nothing
    assert not torch.allclose(model(tokens, features), model(tokens, {**features, "time": features["time"] + 1}))
    with pytest.raises(MuseNetError, match="unknown side feature 'tempo'"):
        build_model("tiny", 300, side_features=["tempo"])
    with pytest.raises(MuseNetError, match="positions must be one of"):
        build_model("tiny", 300, positions="sinusoid")


def test_context_limit_and_bad_config():
    model = build_model("tiny", 50)
    with pytest.raises(MuseNetError, match="context"):
        model(torch.zeros(1, model.config.context + 1, dtype=torch.long))
    with pytest.raises(MuseNetError):
        build_model("tiny", 50, width=65)
    with pytest.raises(MuseNetError):
        build_model("huge", 50)


def test_save_load_gives_identical_outputs(tmp_path):
    vocab = default_vocab()
    model = build_model("tiny", vocab.size).eval()
    tokens, features = random_inputs(vocab=vocab.size)
    save_checkpoint(tmp_path / "ckpt", model, vocab, {"note": "test"})
    loaded, loaded_vocab, metadata = load_checkpoint(tmp_path / "ckpt")
    assert loaded_vocab == vocab and metadata["note"] == "test"
    torch.testing.assert_close(model(tokens, features), loaded(tokens, features), atol=0, rtol=0)
    save_checkpoint(tmp_path / "half", model, vocab, dtype=torch.bfloat16)
    sizes = [(tmp_path / name / "model.safetensors").stat().st_size for name in ("half", "ckpt")]
    assert sizes[0] < sizes[1] * 0.6
    half, _, _ = load_checkpoint(tmp_path / "half")
    assert (half(tokens, features) - model(tokens, features)).abs().max() < 0.05
    with pytest.raises(MuseNetError, match="no checkpoint"):
        load_checkpoint(tmp_path)


def test_note_factors_are_shared_by_on_and_off_and_fold_away(tmp_path):
    vocab = default_vocab()
    model = build_model("tiny", vocab.size, note_factors=True)
    model.set_note_factors(vocab)
    on, off, drum = (vocab.token_id(w) for w in ("piano:v64:C4", "piano:v0:C4", "drums:v64:C2"))
    assert model.pitch_of_token[on] == model.pitch_of_token[off] == 60
    assert model.family_of_token[on] == model.family_of_token[off] != model.family_of_token[drum]
    assert model.loudness_of_token[off] == 0 and model.loudness_of_token[on] == 4
    tokens, features = random_inputs(vocab=vocab.size)
    plain = build_model("tiny", vocab.size).eval()
    model.load_state_dict(plain.state_dict(), strict=False)
    torch.testing.assert_close(model.eval()(tokens, features), plain(tokens, features), atol=0, rtol=0)  # zeros
    for embedding in model.factor_embeddings.values():
        torch.nn.init.normal_(embedding.weight, std=0.1)
    factored = model(tokens, features)
    assert not torch.allclose(factored, plain(tokens, features))
    save_checkpoint(tmp_path / "ckpt", model, vocab)
    loaded, _, _ = load_checkpoint(tmp_path / "ckpt")  # folded into the token table: a plain model
    assert not loaded.config.note_factors and not hasattr(loaded, "factor_embeddings")
    torch.testing.assert_close(loaded(tokens, features), factored, atol=1e-5, rtol=1e-5)


def test_named_sizes():
    counts = {}
    for name in ("tiny", "small", "base"):
        counts[name] = build_model(name, default_vocab().size).parameter_count()
    assert counts["tiny"] < 1e6 and 5e6 <= counts["small"] <= 10e6 and counts["base"] > 50e6
    with torch.device("meta"):  # OpenAI's shape builds (without allocating memory)
        musenet = build_model("musenet", default_vocab().size)
    assert musenet.config.layers == 72 and musenet.config.heads == 24 and musenet.config.context == 4096
    assert 1.9e9 < musenet.parameter_count() < 2.2e9
    assert set(SIZES) == {"tiny", "small", "base", "musenet"}


def test_tiny_model_overfits_a_tiny_corpus():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    pattern = torch.from_numpy(rng.integers(0, 40, 16))
    tokens = pattern.repeat(4)[None, :].repeat(4, 1)
    model = build_model("tiny", 40, side_features=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 40), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.8  # the repeated part becomes predictable (the first 16 tokens cannot be)

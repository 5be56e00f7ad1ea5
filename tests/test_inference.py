"""The sampler's forward pass (`inference.py`) against the model's own, in float32 and int8."""

import pytest
import torch

from musenet import Composer
from musenet.encoding import encode_notes
from musenet.inference import Decoder
from musenet.model import FEATURES, build_model
from musenet.notes import read_midi
from musenet.quantize import quantize_int8
from musenet.sequence import side_features


def random_inputs(batch=2, length=40, vocab=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (batch, length), generator=g)
    features = {name: torch.randint(0, 40, (batch, length), generator=g) for name in FEATURES}
    return tokens, features


def decoded(decoder, tokens, features, cache, cuts, head=None, rows=None):
    """The decoder's logits after each piece of `tokens` between `cuts`, as a sampler reads them."""
    out = []
    for start, end in zip(cuts[:-1], cuts[1:], strict=True):
        piece = {k: v[:, start:end] for k, v in features.items()} if features is not None else None
        out.append(decoder.forward(tokens[:, start:end], piece, cache, head, rows))
    return out


@pytest.mark.parametrize("positions", ["learned", "rotary", "alibi"])
@pytest.mark.parametrize(("side_features", "time_heads"), [(True, 0), (False, 0), (True, 1)])
@pytest.mark.parametrize("relative_span", [0, 8])
def test_float32_decoder_computes_what_the_model_computes(positions, side_features, time_heads, relative_span):
    """A window read at once, then tokens one and three at a time: the model's logits there."""
    torch.manual_seed(0)
    model = build_model("tiny", 300, positions=positions, side_features=side_features, time_heads=time_heads,
                        relative_span=relative_span).eval()
    tokens, features = random_inputs()
    with torch.inference_mode():
        full = model(tokens, features)
    cuts = [0, 12, 13, 14, 17, 20, 21, 40]
    got = decoded(Decoder(model), tokens, features, model.new_cache(), cuts)
    for end, logits in zip(cuts[1:], got, strict=True):
        torch.testing.assert_close(logits, full[:, end - 1], atol=1e-5, rtol=1e-5)


def test_the_head_may_score_only_some_rows():
    torch.manual_seed(0)
    model = build_model("tiny", 300).eval()
    tokens, features = random_inputs()
    decoder, rows = Decoder(model), torch.tensor([3, 7, 150, 299])
    whole = decoded(decoder, tokens, features, model.new_cache(), [0, 30, 31])
    some = decoded(decoder, tokens, features, model.new_cache(), [0, 30, 31], decoder.head_for(rows), rows)
    for a, b in zip(whole, some, strict=True):
        torch.testing.assert_close(b[:, rows], a[:, rows])
        others = torch.ones(300, dtype=torch.bool)
        others[rows] = False
        assert bool(torch.isneginf(b[:, others]).all())


def test_int8_decoder_reads_attention_in_bfloat16_and_keeps_the_distribution():
    torch.manual_seed(0)
    model = build_model("tiny", 300).eval()
    int8 = Decoder(quantize_int8(model))
    tokens, features = random_inputs()
    cache = model.new_cache()
    got = decoded(int8, tokens, features, cache, [0, 20, *range(21, 41)])
    assert cache.keys[0].dtype == torch.bfloat16  # half the bytes to stream per step
    with torch.inference_mode():
        full = model(tokens, features)
    p = torch.log_softmax(full[:, 19:], -1)
    q = torch.log_softmax(torch.stack(got, 1), -1)
    assert float((p.exp() * (p - q)).sum(-1).mean()) < 0.01  # KL in nats per token


def test_the_bundled_model_in_int8_keeps_its_distribution_on_real_music(shared_midi):
    """KL from float32's full forward pass on windows of real piano and band MIDI (never
    trained on), under 0.01 nats per token: for the int8 model's own forward pass (the
    evaluation and the critic read it) and for what the sampler reads (the int8 decoder: half
    a window at once, then a token at a time, attention in bfloat16)."""
    plain, int8 = Composer.load(precision="float32"), Composer.load(precision="int8")
    vocab, context = plain.vocab, plain.model.config.context
    files = [f for folder in ("one-track", "multitrack") for f in sorted((shared_midi / folder).glob("*.mid"))[:2]]
    kls = {"model": [], "sampler": []}

    def kl(p, q):
        return float((p.exp() * (p - q)).sum(-1).mean())

    for path in files:
        tokens = encode_notes(read_midi(path), vocab, "pop")[:context]
        features = {k: torch.from_numpy(v[None]) for k, v in side_features(tokens, vocab, 60.0).items()}
        tokens, half = torch.from_numpy(tokens[None]), len(tokens) // 2
        with torch.inference_mode():
            p = torch.log_softmax(plain.model(tokens, features)[0].float(), -1)
            q = torch.log_softmax(int8.model(tokens, features)[0].float(), -1)
        steps = decoded(int8.sampler.decoder, tokens, features, int8.model.new_cache(),
                        [0, *range(half, tokens.shape[1])])
        kls["model"].append(kl(p, q))
        kls["sampler"].append(kl(p[half - 1: -1], torch.log_softmax(torch.cat(steps), -1)))
    assert len(kls["model"]) == 4 and max(kls["model"] + kls["sampler"]) < 0.01, kls

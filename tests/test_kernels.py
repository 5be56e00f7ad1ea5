"""The compiled decode step (`kernels.py`): built for this CPU, cached, and computing what
`Decoder.forward` computes (float32: to rounding; int8: within the sampler's KL bound)."""

import threading

import numpy as np
import pytest
import torch
from server_helpers import make_tiny_model

from musenet import Composer, kernels
from musenet.errors import MuseNetError
from musenet.inference import Decoder
from musenet.model import FEATURES, build_model
from musenet.quantize import quantize_int8


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test builds into its own folder, so no other test finds (and decodes with) its packages."""
    monkeypatch.setenv("MUSENET_CACHE", str(tmp_path / "cache"))


def inputs(batch, length=40, vocab=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (batch, length), generator=g)
    features = {name: torch.randint(0, 40, (batch, length), generator=g) for name in FEATURES}
    return tokens, features


def stepped(decoder, tokens, features, prefill=20):
    """Logits after each token from `prefill` on: the window read at once, then one token a call."""
    cache = decoder.model.new_cache()
    out = [decoder.forward(tokens[:, :prefill], {k: v[:, :prefill] for k, v in features.items()}, cache)]
    for i in range(prefill, tokens.shape[1] - 1):
        out.append(decoder.step(tokens[:, i], {k: v[:, i: i + 1] for k, v in features.items()}, cache))
    assert cache.length == tokens.shape[1] - 1
    return torch.stack(out, 1)


@pytest.mark.parametrize(("positions", "relative_span"), [("learned", 0), ("rotary", 0), ("rotary", 8)])
def test_the_compiled_step_computes_what_the_decoder_computes(positions, relative_span):
    """float32, side features and a time head, relative attention over distances up to 8
    (shorter than the 40 tokens read); batches of 2 and 3 from one package."""
    torch.manual_seed(0)
    model = build_model("tiny", 300, positions=positions, time_heads=1, relative_span=relative_span).eval()
    eager, compiled = Decoder(model), Decoder(model)
    assert not compiled.use_kernel()  # not built yet: nothing to load
    assert compiled.use_kernel(build=True) and compiled.kernel is not None
    for batch in (2, 3):
        tokens, features = inputs(batch, seed=batch)
        torch.testing.assert_close(stepped(compiled, tokens, features), stepped(eager, tokens, features),
                                   atol=1e-4, rtol=1e-4)


def test_the_int8_step_keeps_the_distribution_and_is_found_again():
    torch.manual_seed(0)
    model = build_model("tiny", 300, time_heads=1).eval()
    int8 = quantize_int8(model)
    built = Decoder(int8)
    assert built.use_kernel(build=True) and built.cache_dtype == torch.bfloat16
    tokens, features = inputs(2)
    with torch.inference_mode():
        p = torch.log_softmax(model(tokens, features)[:, 19:-1], -1)
    q = torch.log_softmax(stepped(built, tokens, features), -1)
    assert float((p.exp() * (p - q)).sum(-1).mean()) < 0.01  # KL in nats per token

    def no_build(*args):
        raise AssertionError("the package should have been loaded, not built again")

    later = Decoder(quantize_int8(model))  # a new process would do the same: same weights, same file
    original, kernels.build = kernels.build, no_build
    try:
        assert later.use_kernel(build=True)
    finally:
        kernels.build = original
    torch.testing.assert_close(stepped(later, tokens, features), stepped(built, tokens, features))


def test_without_a_compiler_or_for_alibi_composing_goes_on(monkeypatch, capsys):
    torch.manual_seed(0)
    assert not Decoder(build_model("tiny", 300, positions="alibi").eval()).use_kernel(build=True)

    def broken(*args):
        raise RuntimeError("no C++ compiler found\nmore lines")

    monkeypatch.setattr(kernels, "build", broken)
    decoder = Decoder(build_model("tiny", 300).eval())
    assert not decoder.use_kernel(build=True) and decoder.kernel is None
    assert "could not build the compiled decode step (no C++ compiler found)" in capsys.readouterr().err
    tokens, features = inputs(2)
    assert stepped(decoder, tokens, features).shape == (2, 20, 300)  # `forward` serves


def test_a_composer_loads_it_and_composes_through_it(tmp_path):
    """`Composer.load(compiled=...)`: off and auto (nothing built) decode eagerly, on builds;
    the whole sampler on a random-weight model gives valid pieces, the window sliding past
    the context (96 tokens) and refilling the cache; sidecars say "compiled step"."""
    model_dir = make_tiny_model(tmp_path)
    with pytest.raises(MuseNetError, match="compiled must be one of"):
        Composer.load(model_dir, compiled="yes")
    assert Composer.load(model_dir, compiled="auto").sampler.decoder.kernel is None
    composer = Composer.load(model_dir, precision="float32", compiled="on")
    decoder = composer.sampler.decoder
    assert decoder.kernel is not None and composer.model_label.endswith("(float32, compiled step)")
    assert Composer.load(model_dir, precision="float32").sampler.decoder.kernel is not None  # auto: now built
    assert Composer.load(model_dir, compiled="off").sampler.decoder.kernel is None
    calls, kernel = [], decoder.kernel
    decoder.kernel = lambda *args: calls.append(1) or kernel(*args)
    pieces = composer.generate(style="pop", instruments=["piano", "drums"], seconds=20, candidates=2, seed=1,
                               max_tokens=300)
    for piece in pieces:
        assert piece.tokens[-1] == composer.vocab.END and len(piece.tokens) > 100
    assert len(calls) > 200

    # one composer, several threads (the co-composer's workers): each piece as if composed alone
    decoder.kernel = kernel
    request = dict(style="pop", instruments=["piano", "drums"], seconds=10)
    alone = {seed: composer.generate(seed=seed, **request)[0].tokens for seed in (3, 4, 5)}
    together = {}

    def compose(seed):
        together[seed] = composer.generate(seed=seed, **request)[0].tokens

    threads = [threading.Thread(target=compose, args=(seed,)) for seed in alone]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(np.array_equal(together[seed], alone[seed]) for seed in alone)


def test_the_compiled_state_update_takes_the_same_tokens_as_the_eager_one(tmp_path):
    """Same model, same seed: the pieces composed with the compiled update (the step eager)
    are the eager rules' token for token, and so are accompaniments (a plan's rules)."""
    composer = Composer.load(make_tiny_model(tmp_path), precision="float32", compiled="on")
    sampler = composer.sampler
    assert sampler.update is not None
    sampler.decoder.kernel = sampler.chooser = None  # the same logits on both sides, the eager rules (choose.py apart)
    settings = dict(style="pop", instruments=["piano", "bass", "drums"], seconds=15, candidates=3, seed=2)
    compiled = [p.tokens for p in composer.generate(**settings)]
    sampler.update = None
    eager = [p.tokens for p in composer.generate(**settings)]
    assert len(compiled) == 3 and all(np.array_equal(a, b) for a, b in zip(compiled, eager, strict=True))

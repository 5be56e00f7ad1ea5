"""The compiled chooser (`choose.py`, `choose.c`): the eager rules' mask to the bit at every
step of real composing runs, and a token from the same distribution with the same draw."""

import pytest
import torch

from musenet import Composer, choose, kernels
from musenet.rules import allowed_tokens, entrances, instrument_filter, release_boost, requested_families, sample_tokens
from musenet.settings import Settings


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSENET_CACHE", str(tmp_path / "cache"))


def load_chooser(build=True):
    return kernels.load_or_build(choose.library_path(), choose.build_library, build, "the compiled chooser",
                                 choose.Library)


REQUESTS = [  # strict band (batch 2), soft, no nucleus and a temperature, any family, entrances every second,
    # the family nucleus with min-p, the family nucleus alone, min-p alone
    dict(style="pop", instruments=["voice", "piano", "bass", "drums"], seconds=30, candidates=2, seed=1),
    dict(style="pop", instruments=["voice", "guitar"], instrument_mode="soft", seconds=20, seed=4),
    dict(style="bach", instruments=["strings", "piano"], seconds=20, top_p=1.0, temperature=1.3, seed=2),
    dict(style="irish", instruments="any", seconds=20, seed=5),
    dict(style="pop", instruments=["brass", "synth", "winds", "bass"], max_family_silence=1.0, seconds=20,
         top_p=0.5, seed=6),
    dict(style="pop", instruments=["voice", "piano", "bass", "drums"], seconds=20, nucleus="family", min_p=0.2,
         candidates=2, seed=7),
    dict(style="pop", instruments=["piano", "bass", "guitar"], seconds=15, nucleus="family", top_p=0.9, seed=8),
    dict(style="irish", instruments="any", seconds=15, top_p=1.0, min_p=0.1, seed=9),
]


def test_the_chooser_masks_as_the_rules_and_draws_from_the_same_distribution(monkeypatch):
    composer = Composer.load(compiled="off")  # the bundled model; the step and update eager, as they are
    composer.sampler.chooser = load_chooser()
    assert composer.sampler.chooser is not None
    seen = {"steps": 0, "ties": 0, "rows": 0}
    chosen_by_c = choose.Chooser.__call__

    def beside_the_rules(self, logits, state, draw):
        self.keep_masks = True
        token = chosen_by_c(self, logits, state, draw)
        s, t = self.settings, self.tables
        mask = entrances(allowed_tokens(state, s, t, instrument_filter(s, t), False), state, s, t,
                         requested_families(s, "cpu"))
        eager = sample_tokens(logits, mask, s, None, t, draw)
        live = ~state.finished
        ids = torch.from_numpy(self.arrays[0])
        assert torch.equal(torch.from_numpy(self.masks).bool()[live], mask[live][:, ids])
        assert int(mask[live].sum()) == int(self.masks[live.numpy()].sum())  # nothing allowed outside the rows
        logits = release_boost(logits / s.temperature, mask, t).masked_fill(~mask, float("-inf"))
        probability = torch.softmax(logits, dim=-1)
        rows = torch.arange(len(token))[live]
        # the same token, or one exactly as likely (equal logits: int8's bfloat16 ties them often)
        assert torch.equal(probability[rows, token[live]], probability[rows, eager[live]])
        seen["steps"] += 1
        seen["rows"] += len(rows)
        seen["ties"] += int((token[live] != eager[live]).sum())
        return token

    monkeypatch.setattr(choose.Chooser, "__call__", beside_the_rules)
    for request in REQUESTS:
        pieces = composer.generate(**request)
        assert all(piece.tokens[-1] == composer.vocab.END for piece in pieces)
    assert seen["steps"] > 1000 and seen["ties"] < seen["rows"] * 0.15, seen


def test_without_a_c_compiler_composing_goes_on(monkeypatch, capsys):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(choose.shutil, "which", lambda name: None)
    assert load_chooser() is None
    assert "could not build the compiled chooser (no C compiler" in capsys.readouterr().err
    assert load_chooser(build=False) is None  # nothing built, nothing found


def test_what_the_chooser_covers():
    assert choose.Chooser.covers(Settings(), None)
    assert choose.Chooser.covers(Settings(nucleus="family", min_p=0.2), None)
    assert not choose.Chooser.covers(Settings(top_k=20), None)
    assert not choose.Chooser.covers(Settings(), plan=object())


def test_auto_builds_the_chooser_alone_and_quietly_without_a_compiler(monkeypatch, capsys):
    composer = Composer.load(compiled="auto")  # nothing built in this cache: the chooser only (well under 1 s)
    assert composer.sampler.chooser is not None and composer.sampler.decoder.kernel is None
    assert composer.sampler.update is None
    monkeypatch.setenv("MUSENET_CACHE", str(choose.library_path().parents[2] / "elsewhere"))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(choose.shutil, "which", lambda name: None)
    composer = Composer.load(compiled="auto")  # nothing asked for: no line about a missing compiler
    assert composer.sampler.chooser is None and capsys.readouterr().err == ""
    assert len(composer.generate(style="pop", instruments=["piano"], seconds=5)[0].tokens) > 10


def test_a_compiler_without_march_native_still_builds_it(tmp_path, monkeypatch):
    picky = tmp_path / "picky-cc"
    picky.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = "-march=native" ] && exit 1; done\nexec cc "$@"\n')
    picky.chmod(0o755)
    monkeypatch.setenv("CC", str(picky))
    assert load_chooser() is not None

"""A kept part read beside the sequence (channel.py): the grid of its side features, the same
from tokens (training) and from notes (composing); the training split; the sampler feeding
them; accompanying with the melody out of the sequence."""

from dataclasses import fields

import numpy as np
import pytest
import torch

from musenet import Composer
from musenet.augment import Augment
from musenet.build import build
from musenet.channel import LOOK_AHEAD, grid_of_table, grid_of_tokens, kept_grid, split_kept
from musenet.checkpoint import save_checkpoint
from musenet.dataset import Dataset
from musenet.encoding import encode_notes
from musenet.instruments import DRUMS, FAMILY_ID
from musenet.model import ModelConfig, build_model
from musenet.notes import read_midi
from musenet.sequence import KEPT_FEATURES, header_families, header_length, side_features
from musenet.song import parts
from musenet.vocab import default_vocab


def test_the_grid_of_hand_made_notes():
    # C4 0-4, E4 2-6, G4 2-3, C5 10-30 (grid steps), 20 steps
    grid = kept_grid(np.array([0, 2, 2, 10]), np.array([4, 6, 3, 30]), np.array([60, 64, 67, 72]), 20)
    c, e, g = 1 + 0, 1 + 4, 1 + 7
    assert grid.top.tolist() == [c + 12, c, g + 12, e, e, e, 0, 0, 0, 0, c + 12] + [c] * 9  # + 12 at an onset
    assert grid.low.tolist() == [c] * 4 + [e] * 2 + [0] * 4 + [c] * 10
    assert grid.next.tolist()[:3] == [g, g, c]  # the highest note of the next onset ...
    assert grid.next.tolist()[10:] == [0] * 10  # ... within a beat (none after the last)
    far = kept_grid(np.array([0, LOOK_AHEAD + 2]), np.array([1, LOOK_AHEAD + 3]), np.array([60, 62]), 20)
    assert far.next[0] == 0 and far.next[2] == 1 + 2
    features = grid.at([0, 2, 19, 20, -1])
    assert features["kept_top"].tolist() == [c + 12, g + 12, c, 0, 0]  # 0 outside the grid
    sizes = {f.name: f.default for f in fields(ModelConfig)}  # every value has its bucket in the embedding
    assert all(int(grid.at(np.arange(20))[name].max()) < sizes[f"{name}_buckets"] for name in features)


def test_the_grid_from_tokens_is_the_grid_from_notes(shared_midi):
    """Training reads the kept part off its tokens, composing off its notes: the same grid."""
    vocab = default_vocab()
    song = read_midi(shared_midi / "multitrack" / "Mr. Blue Sky.mid")
    part = song.select(np.flatnonzero((song.family != DRUMS) & (song.seconds(song.onset) < 30)))
    tokens = encode_notes(part, vocab)
    body = tokens[header_length(tokens, vocab):-1]
    from_notes = grid_of_table(part, vocab)
    length = int(vocab.tables["wait"][body].sum()) + 1
    from_tokens = grid_of_tokens(body, vocab, length)
    for name in KEPT_FEATURES:
        np.testing.assert_array_equal(from_tokens.at(np.arange(length))[name],
                                      from_notes.at(np.arange(length))[name], err_msg=name)
    assert (from_notes.top > 0).mean() > 0.5


@pytest.fixture(scope="module")
def band_data(tmp_path_factory):
    """A dataset built from the band songs of ../shared/midi (every split)."""
    from conftest import SHARED_MIDI

    if not SHARED_MIDI.is_dir():
        pytest.skip("../shared/midi is not beside this checkout")
    out = tmp_path_factory.mktemp("band") / "data"
    build(str(SHARED_MIDI / "multitrack"), out, workers=1, progress=False)
    return Dataset(out, split=None)


def test_a_split_window_loses_the_kept_families_and_keeps_the_clock(band_data):
    data = band_data
    vocab = data.vocab
    rng = np.random.default_rng(0)
    split = 0
    for row in data.rows:
        for start in range(0, 4000, 400):
            window = data.window(row, start, 200).tokens
            out, grid = split_kept(window, vocab, rng, origin=7)
            if grid is None:
                assert np.array_equal(out, window)
                continue
            split += 1
            gone = set(header_families(window, vocab)) - set(header_families(out, vocab))
            assert gone and DRUMS not in gone and len(header_families(out, vocab)) >= 1
            body, rest = window[header_length(window, vocab):], out[header_length(out, vocab):]
            family = vocab.tables["family"]
            assert not np.isin(family[rest], list(gone)).any()
            assert vocab.tables["wait"][body].sum() == vocab.tables["wait"][rest].sum()  # the clock
            others = body[(family[body] >= 0) & ~np.isin(family[body], list(gone))]
            np.testing.assert_array_equal(rest[family[rest] >= 0], others)
            waits = vocab.tables["wait"][body]
            steps = 7 + np.cumsum(waits) - waits
            struck = np.isin(family[body], list(gone)) & (vocab.tables["velocity"][body] > 0)
            assert grid.origin == 7 and struck.any()
            assert (grid.at(steps[struck])["kept_top"] > 12).all()  # a kept onset there
            features = side_features(out, vocab, 60.0, start_step=7, kept=grid)
            assert (features["kept_top"][: header_length(out, vocab)] == 0).all()
    assert split, "no window of the test data could be split"


def test_dataset_windows_carry_the_channel_and_zeros_without_it(band_data):
    data = band_data
    always = Augment(transpose=0, volume=0.0, stretch=0.0, kept_channel=1.0)
    rng = np.random.default_rng(1)
    windows = [data.window(row, start, 200, always, rng) for row in data.rows for start in (0, 600)]
    assert any((w.features["kept_top"] > 0).any() for w in windows)
    plain = data.window(data.rows[0], 0, 200)
    assert all(not plain.features[name].any() for name in KEPT_FEATURES)


def test_a_model_reads_no_channel_as_nothing_added():
    """Bucket 0 of the kept embeddings is zero and stays so: without a kept part the model
    computes what it would without those embeddings."""
    vocab = default_vocab()
    torch.manual_seed(0)
    model = build_model("tiny", vocab.size, side_features=["time", "chord", *KEPT_FEATURES]).eval()
    for name in KEPT_FEATURES:
        assert not model.feature_embeddings[name].weight[0].any()
    tokens = torch.randint(0, 200, (1, 20))
    features = {name: torch.zeros(1, 20, dtype=torch.long) for name in ("time", "chord", *KEPT_FEATURES)}
    plain = build_model("tiny", vocab.size, side_features=["time", "chord"]).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if "kept" not in k})
    torch.testing.assert_close(model(tokens, features), plain(tokens, features))
    model.train()
    loss = model(tokens, {**features, "kept_top": torch.full((1, 20), 3)}).logsumexp(-1).mean()
    loss.backward()
    assert not model.feature_embeddings["kept_top"].weight.grad[0].any()


@pytest.fixture(scope="module")
def beside_composer(tmp_path_factory):
    vocab = default_vocab()
    torch.manual_seed(0)
    model = build_model("tiny", vocab.size, context=1024, side_features=["time", "chord", *KEPT_FEATURES])
    with torch.no_grad():  # make the channel count, so that reading it wrong would show
        for name in KEPT_FEATURES:
            model.feature_embeddings[name].weight[1:].normal_(0, 1.0)
    folder = save_checkpoint(tmp_path_factory.mktemp("beside") / "tiny", model, vocab,
                             {"train": {"augment": {"kept_channel": 0.5}}})
    return Composer.load(folder)


def test_accompanying_reads_the_melody_beside_the_sequence(beside_composer, shared_midi):
    composer, vocab = beside_composer, beside_composer.vocab
    assert composer.reads_beside and not Composer.load(None).reads_beside
    song = shared_midi / "multitrack" / "Mr. Blue Sky.mid"
    melody, _ = parts(song, ["piano"])  # it plays from 1.4 s
    decoder, fed = composer.sampler.decoder, []
    forward = decoder.forward
    decoder.forward = lambda tokens, features, *args: fed.append((tokens, features)) or forward(
        tokens, features, *args)
    pieces = composer.accompany(song, ["piano"], ["strings", "bass"], seconds=8, candidates=2, seed=3)
    decoder.forward = forward
    kept = melody.select(np.flatnonzero(melody.seconds(melody.onset) < 8))
    piano = FAMILY_ID["piano"]
    grid = grid_of_table(kept, vocab)
    for row, piece in enumerate(pieces):
        mine = piece.table.select(np.flatnonzero(piece.table.family == piano))
        for key in ("onset", "duration", "pitch", "velocity"):
            np.testing.assert_array_equal(np.sort(getattr(mine, key)), np.sort(getattr(kept, key)))
        assert piano not in header_families(piece.tokens, vocab)  # the kept part is not in the sequence
        assert not (vocab.tables["family"][piece.tokens] == piano).any()
        # what the model read beside each token: the grid at the step after it
        stream = fed[0][0][row].tolist() + [int(t[row, 0]) for t, _ in fed[1:]]
        got = {name: torch.cat([f[name][row] for _, f in fed]).numpy() for name in KEPT_FEATURES}
        want = side_features(np.array(stream), vocab, 8.0, kept=grid)
        assert len(stream) < composer.model.config.context  # one window: the reference reads it whole
        for name in KEPT_FEATURES:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        assert (got["kept_top"] > 0).any()
    inside = composer.accompany(song, ["piano"], ["strings", "bass"], seconds=8, candidates=1, seed=3, beside=False)
    assert (vocab.tables["family"][inside[0].tokens] == piano).any()  # the earlier way: in the sequence


def test_cli_accompany_says_where_the_kept_parts_were_read(beside_composer, shared_midi, tmp_path):
    import json

    from musenet.cli import main

    song, model = str(shared_midi / "multitrack" / "Mr. Blue Sky.mid"), beside_composer.model_path
    for flags, beside in (([], True), (["--in-sequence"], False)):
        out = tmp_path / str(beside)
        assert main(["accompany", song, "--keep", "piano", "--add", "bass", "--seconds", "4", "--candidates", "1",
                     "--model", model, "--out", str(out), *flags]) == 0
        assert json.loads((out / "accompany-1.json").read_text())["task"]["beside"] is beside

"""Hints (hints.py): events known to come, read before `start`. The training transformations
move real events into the hint without changing the music's clock or features; the sampler
gives a hint-reading model the kept parts ahead; the evaluation scores with them."""

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from test_dataset import midi_folder, write_song  # noqa: F401  (a fixture and its helper)

from musenet import Composer
from musenet.augment import Augment
from musenet.build import build
from musenet.checkpoint import save_checkpoint
from musenet.dataset import Dataset
from musenet.encoding import decode_tokens, encode_notes
from musenet.evaluate.keep import sampler_masks, token_bits
from musenet.fixed import grid_step
from musenet.hints import (
    HINT_SHARE,
    accompany,
    events_only,
    fill_middle,
    hint_for,
    hint_tokens,
    knows_hints,
)
from musenet.instruments import FAMILY_ID
from musenet.model import build_model
from musenet.notes import read_midi
from musenet.rules import TokenTables, opening_state
from musenet.sequence import elapsed_seconds, header_length, hint_mask, side_features
from musenet.song import parts
from musenet.vocab import default_vocab


@pytest.fixture(scope="module")
def song_tokens(tmp_path_factory):
    path = tmp_path_factory.mktemp("song") / "song.mid"
    write_song(path, 7)
    vocab = default_vocab()
    return encode_notes(read_midi(path), vocab, "pop")[:300], vocab


def body_events(tokens, vocab):
    head = header_length(tokens, vocab)
    return events_only(tokens[head:], vocab)


def test_fill_middle_moves_the_tail_into_the_hint_and_leaves_the_body_as_it_was(song_tokens):
    tokens, vocab = song_tokens
    rng = np.random.default_rng(0)
    for _ in range(10):
        out = fill_middle(tokens, vocab, rng)
        hint = hint_mask(out, vocab)
        assert hint.any() and np.flatnonzero(hint).max() < np.flatnonzero(out == vocab.START)[0]
        body = out[~hint]
        assert np.array_equal(body, tokens[: len(body)])               # the body is the window's beginning
        steps, events = events_only(out[hint], vocab)                  # the hint is the rest, at its own times
        all_steps, all_events = body_events(tokens, vocab)
        tail = len(all_events) - len(events)
        assert tail > 0 and np.array_equal(events, all_events[tail:]) and np.array_equal(steps, all_steps[tail:])
        features, plain = side_features(out, vocab, 60.0, 2.0), side_features(body, vocab, 60.0, 2.0)
        # the hint changes no feature but `ahead`, which counts down to it from every body token
        assert all(np.array_equal(features[k][~hint], plain[k]) for k in features if k != "ahead")
        body_ahead = features["ahead"][header_length(out, vocab):]
        assert not plain["ahead"].any() and (body_ahead >= 1).all() and body_ahead[-1] == 1
        assert np.array_equal(features["time"][hint & (vocab.tables["family"][out] >= 0)], steps)
        assert elapsed_seconds(out, vocab)[-1] == elapsed_seconds(body, vocab)[-1]  # nor the clock
        table, plain_table = decode_tokens(out, vocab), decode_tokens(body, vocab)
        assert np.array_equal(table.onset, plain_table.onset) and np.array_equal(table.pitch, plain_table.pitch)
        tables = TokenTables(vocab, "cpu")
        a, b = opening_state(out, 1, tables, "cpu"), opening_state(body, 1, tables, "cpu")
        assert torch.equal(a.sounding, b.sounding) and torch.equal(a.seconds, b.seconds)


def test_accompany_hints_some_named_families_notes_from_the_window_start(song_tokens):
    tokens, vocab = song_tokens
    rng = np.random.default_rng(1)
    named = set(tokens[(tokens >= vocab.family_offset) & (tokens < vocab.tempo_offset)] - vocab.family_offset)
    seen = set()
    for _ in range(10):
        out = accompany(tokens, vocab, rng)
        hint = hint_mask(out, vocab)
        assert np.array_equal(out[~hint], tokens) and 0 < hint.sum() <= len(tokens) * HINT_SHARE
        steps, events = events_only(out[hint], vocab)
        families = set(vocab.tables["family"][events].tolist())
        assert families < named                                        # a proper subset
        seen.add(frozenset(families))
        all_steps, all_events = body_events(tokens, vocab)
        mine = np.isin(vocab.tables["family"][all_events], list(families))
        assert np.array_equal(events, all_events[mine][: len(events)])
        assert np.array_equal(steps, all_steps[mine][: len(events)])
    assert len(seen) > 1


def test_hint_for_recounts_from_the_window_and_cuts_at_an_instant(song_tokens):
    tokens, vocab = song_tokens
    steps, events = body_events(tokens, vocab)
    hint = hint_for(steps, events, 96, vocab, 40)
    assert 0 < len(hint) <= 40 and vocab.tables["wait"][hint[-1]] == 0
    got_steps, got = events_only(hint, vocab)
    later = steps >= 96
    assert np.array_equal(got, events[later][: len(got)]) and np.array_equal(got_steps, steps[later][: len(got)] - 96)
    assert len(hint_tokens(steps, events, vocab, 0)) == 0


def test_training_windows_get_hints_only_on_a_rows_first_piece(midi_folder, tmp_path):  # noqa: F811
    build(str(midi_folder), tmp_path / "data", workers=1, progress=False)
    data = Dataset(tmp_path / "data", split=None)
    vocab = data.vocab
    batch = data.sample(np.random.default_rng(0), batch=8, context=255,
                        augment=Augment(transpose=0, volume=0, stretch=0, fill_middle=0.5, accompany=0.5))
    hinted = 0
    for row in range(8):
        tokens = batch["tokens"][row]
        hint = hint_mask(tokens, vocab)
        hinted += bool(hint.any())
        starts = np.flatnonzero(tokens == vocab.START)
        for s in starts[1:]:  # a packed piece after the first has a plain header
            style_at = np.flatnonzero(tokens[:s] >= vocab.style_offset).max()
            assert (vocab.tables["family"][tokens[style_at:s]] < 0).all()
    assert hinted >= 4


def test_knows_hints_reads_the_training_config():
    assert knows_hints({"train": {"augment": {"fill_middle": 0.2}}})
    assert not knows_hints({"train": {"augment": {"transpose": 2}}}) and not knows_hints({})


@pytest.fixture(scope="module")
def hinting(tmp_path_factory):
    torch.manual_seed(0)
    vocab = default_vocab()
    model = build_model("tiny", vocab.size, context=160)
    path = save_checkpoint(tmp_path_factory.mktemp("model") / "tiny", model, vocab,
                           {"train": {"augment": {"fill_middle": 0.2, "accompany": 0.2}}})
    return Composer.load(path)


@contextmanager
def reads_of(composer):
    """The token arrays (batch, length) the sampler's forward pass reads, in order."""
    seen, forward = [], composer.sampler.decoder.forward
    composer.sampler.decoder.forward = lambda tokens, *args: seen.append(tokens.clone()) or forward(tokens, *args)
    try:
        yield seen
    finally:
        del composer.sampler.decoder.forward


def test_a_hint_reading_model_reads_the_kept_part_ahead_and_keeps_it_exactly(hinting, shared_midi):
    song = shared_midi / "multitrack" / "Mr. Blue Sky.mid"
    melody, _ = parts(song, ["Piano"])  # the part that plays from the first bar
    with reads_of(hinting) as seen:
        pieces = hinting.accompany(song, ["Piano"], ["voice", "bass"], seconds=10, candidates=2, seed=1)
        plain = hinting.accompany(song, ["Piano"], ["voice", "bass"], seconds=10, candidates=2, seed=1, hints=False)
    vocab = hinting.vocab
    reads = [x for x in seen if x.shape[1] > 1]  # the window reads (one token per step otherwise)
    hinted = [x for x in reads if hint_mask(x[0].numpy(), vocab).any()]
    # slides re-read the hint; the run with hints=False reads none
    assert hinting.reads_hints and len(hinted) >= 2 and len(hinted) < len(reads)
    for x in hinted:  # the hint holds the melody's notes only
        window = x[0].numpy()
        family = vocab.tables["family"][window[hint_mask(window, vocab)]]
        assert set(family[family >= 0].tolist()) == set(melody.family.tolist())
    kept = melody.select(np.flatnonzero(melody.seconds(melody.onset) < 10))
    for piece in pieces:
        table = piece.table
        rows = set(zip(np.round(table.onset, 6), table.pitch.tolist(), table.family.tolist(), strict=True))
        assert set(zip(np.round(kept.onset, 6), kept.pitch.tolist(), kept.family.tolist(), strict=True)) <= rows
    assert [p.text for p in pieces] != [p.text for p in plain]  # the hint changes what the model writes


def test_token_bits_with_a_hint_scores_the_same_tokens(song_tokens):
    tokens, vocab = song_tokens
    torch.manual_seed(0)
    model = build_model("tiny", vocab.size, context=96).eval()
    plain = token_bits(model, vocab, tokens, "cpu")
    steps, events = body_events(tokens, vocab)
    hinted = token_bits(model, vocab, tokens, "cpu", hint=(steps, events), budget=32)
    assert plain.shape == hinted.shape == (len(tokens) - 1,)
    assert np.isfinite(hinted).all() and not np.allclose(plain, hinted)


def test_sampler_masks_allow_every_real_token_and_renormalise_the_bits(song_tokens):
    tokens, vocab = song_tokens
    t = vocab.tables
    head = header_length(tokens, vocab)
    allowed, scored = sampler_masks(tokens, vocab, ["piano", "strings", "drums"], kept="piano")
    assert allowed.shape == (len(tokens) - 1, vocab.size) and allowed[np.arange(len(tokens) - 1), tokens[1:]].all()
    family = t["family"][tokens[1:]]
    assert not scored[: head - 1].any()
    kept = family == FAMILY_ID["piano"]
    assert kept.any() and not scored[kept].any() and scored[(family == FAMILY_ID["strings"])].all()
    body = allowed[head - 1:][scored[head - 1:]]
    # a kept note stands only for itself: allowed where it is the next kept event, in the same instant
    step = np.cumsum(t["wait"][tokens]) - t["wait"][tokens]  # the grid step each token sits at
    for row in np.flatnonzero(scored[head - 1:]) + head - 1:
        kept_allowed = np.flatnonzero(allowed[row] & (t["family"] == FAMILY_ID["piano"]))
        nxt = row + 1 + np.argmax(kept[row:])
        if kept[row:].any() and step[nxt] == step[row + 1]:
            assert kept_allowed.tolist() == [tokens[nxt]]
        else:
            assert len(kept_allowed) == 0
    assert not body[:, t["tempo"] > 0].any()                         # nor a tempo change under a kept part
    waits = np.flatnonzero(t["wait"] > 0)
    assert (~body[:, waits]).any()                                   # no wait may pass the next kept note
    torch.manual_seed(0)
    model = build_model("tiny", vocab.size, context=96).eval()
    free = token_bits(model, vocab, tokens, "cpu")
    masked = token_bits(model, vocab, tokens, "cpu", allowed=allowed)
    assert np.isfinite(masked).all() and (masked[scored] <= free[scored] + 1e-4).all()
    assert masked[scored].sum() < free[scored].sum() - 1
    np.testing.assert_allclose(masked[~scored], free[~scored], rtol=1e-5)  # given tokens: not renormalised


def test_infilling_reads_what_follows_the_span_and_keeps_both_sides(hinting, shared_midi):
    song = shared_midi / "one-track" / "Maestro_1.mid"
    whole = read_midi(song)
    onset = whole.seconds(whole.onset)
    outside = whole.select(np.flatnonzero((onset < 4) | (onset >= 6)))
    with reads_of(hinting) as seen:
        pieces = hinting.infill(song, 4.0, 6.0, candidates=2, seed=3, right_seconds=2.0)
    vocab = hinting.vocab
    first = seen[0][0].numpy()
    hint = hint_mask(first, vocab)
    steps, events = events_only(first[hint], vocab)
    encoded = encode_notes(outside, vocab, None)  # the right side: the kept events from the span's end
    right_steps, right = body_events(encoded, vocab)
    after = right_steps >= grid_step(outside, 6.0, vocab)
    n = len(events)
    assert n > 0 and np.array_equal(events, right[after][:n])
    assert np.array_equal(np.diff(steps), np.diff(right_steps[after][:n]))
    for piece in pieces:
        table = piece.table
        rows = set(zip(np.round(table.onset, 6), table.pitch.tolist(), strict=True))
        assert set(zip(np.round(outside.onset, 6), outside.pitch.tolist(), strict=True)) <= rows


def test_the_sampler_counts_ahead_to_the_hints_next_event_as_training_does(shared_midi, tmp_path):
    """A model that reads `ahead` gets, at every step of an accompaniment, the feature that
    `sequence.side_features` gives the window it read plus the tokens fed since."""
    torch.manual_seed(0)
    vocab = default_vocab()
    model = build_model("tiny", vocab.size, context=160, side_features=["time", "chord", "ahead"])
    path = save_checkpoint(tmp_path / "tiny", model, vocab,
                           {"train": {"augment": {"fill_middle": 0.2, "accompany": 0.2}}})
    composer = Composer.load(path)
    decoder, fed = composer.sampler.decoder, []
    forward = decoder.forward
    decoder.forward = lambda tokens, features, *args: fed.append((tokens, features)) or forward(
        tokens, features, *args)
    song = shared_midi / "multitrack" / "Mr. Blue Sky.mid"
    composer.accompany(song, ["Piano"], ["voice", "bass"], seconds=10, candidates=2, seed=1)
    reads = [i for i, (tokens, _) in enumerate(fed) if tokens.shape[1] > 1]
    assert len(reads) >= 2
    checked = 0
    for begin, end in zip(reads, [*reads[1:], len(fed)], strict=True):
        for row in range(2):
            window = fed[begin][0][row].numpy()
            tokens = np.concatenate([window, [int(t[row, 0]) for t, _ in fed[begin + 1: end]]])
            want = side_features(tokens, vocab, 10.0)["ahead"]
            got = torch.cat([f["ahead"][row] for _, f in fed[begin:end]]).numpy()
            np.testing.assert_array_equal(got, want)
            checked += int((want > 0).sum())
    assert checked > 50  # the kept part's next notes were ahead most of the time

"""Composing with a tiny random-weight model: masks, prompts, lengths, determinism, files."""

import io
import json

import mido
import numpy as np
import pytest
import symusic
import torch
from helpers import make_score

from musenet import Composer, MuseNetError
from musenet.augment import unconditioned
from musenet.checkpoint import save_checkpoint
from musenet.cli import main
from musenet.encoding import encode_notes
from musenet.instruments import DRUMS, FAMILIES
from musenet.model import build_model
from musenet.notes import read_midi, write_midi
from musenet.quantize import Int8Linear
from musenet.rules import (
    DecodeState,
    TokenTables,
    advance,
    allowed_tokens,
    entrances,
    guide,
    opening_state,
    requested_families,
    sample_tokens,
)
from musenet.sequence import (
    HELD_FOR_BUCKETS,
    HELD_STEP_SECONDS,
    header_length,
    seconds_per_step,
    side_features,
    token_seconds,
)
from musenet.settings import DEFAULT_GUIDANCE, Settings
from musenet.vocab import default_vocab


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    vocab = default_vocab()
    model = build_model("tiny", vocab.size, context=96)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny", model, vocab)


@pytest.fixture(scope="module")
def composer(model_dir):
    return Composer.load(model_dir)


def assert_grammar(tokens, vocab):
    """Every note-off closes a sounding note, no key is struck twice while sounding, `end` last."""
    t = vocab.tables
    sounding = set()
    assert tokens[-1] == vocab.END and vocab.END not in tokens[:-1].tolist()
    for token in tokens.tolist():
        family = t["family"][token]
        if family < 0 or family == DRUMS:
            continue
        key = (family, t["pitch"][token])
        if t["velocity"][token] == 0:
            assert key in sounding, f"note-off of a silent note {vocab.names[token]}"
            sounding.remove(key)
        else:
            assert key not in sounding, f"re-strike of a sounding note {vocab.names[token]}"
            sounding.add(key)
    assert not sounding, "notes left sounding"


def test_strict_instruments_grammar_and_length(composer):
    vocab = composer.vocab
    pieces = composer.generate(style="irish", instruments=["strings", "guitar"], seconds=12, candidates=4, seed=3)
    assert len(pieces) == 4
    for piece in pieces:
        assert set(piece.families()) <= {"strings", "guitar"}
        assert piece.text.startswith("irish strings guitar start tempo:")
        assert_grammar(piece.tokens, vocab)
        total = token_seconds(piece.tokens, vocab)[-1]
        assert 0.9 * 12 <= total <= 1.1 * 12, total
        assert piece.seconds <= 1.1 * 12


def note_seconds(table):
    return table.seconds(table.onset + table.duration) - table.seconds(table.onset)


def test_no_note_is_held_past_max_note_seconds(composer):
    free = composer.generate(style="bach", seconds=10, candidates=2, seed=2)
    assert max(note_seconds(p.table).max() for p in free) > 1.0  # untrained, it holds notes for long
    held = composer.generate(style="bach", seconds=10, candidates=2, seed=2, max_note_seconds=1.0)
    for piece in held:
        assert note_seconds(piece.table).max() <= 1.0 + 1e-6
        assert_grammar(piece.tokens, composer.vocab)
        assert piece.seconds >= 0.9 * 10


def test_the_state_after_an_opening_is_what_token_by_token_gives(composer, shared_midi):
    """`opening_state` over a whole prompt equals `advance` token by token, to the bit."""
    vocab = composer.vocab
    tables = TokenTables(vocab, "cpu")
    for path in [*sorted((shared_midi / "multitrack").glob("*.mid"))[:2], *sorted((shared_midi / "one-track").glob(
            "*.mid"))[:1]]:
        for cut in (40, 700, 2000):
            opening = encode_notes(read_midi(path), vocab, "pop")[:cut]
            stepped = DecodeState.new(2, "cpu")
            for token in opening:
                advance(stepped, torch.full((2,), int(token)), tables)
            whole = opening_state(opening, 2, tables, "cpu")
            for name in ("sounding", "polyphony", "rest_seconds", "seconds", "steps", "instant_ons", "instant_drums",
                         "tempo", "finished", "family_last"):
                assert torch.equal(getattr(whole, name), getattr(stepped, name)), (path.name, cut, name)
            assert torch.equal(whole.onset[whole.sounding], stepped.onset[stepped.sounding])


def test_a_silent_requested_family_is_brought_in_the_model_choosing_the_note(composer):
    vocab = composer.vocab
    tables = TokenTables(vocab, "cpu")
    settings = Settings(instruments=["piano", "drums"], max_family_silence=4.0)
    requested = requested_families(settings, "cpu")
    state = DecodeState.new(2, "cpu")
    mask = allowed_tokens(state, settings, tables, torch.ones(vocab.size, dtype=torch.bool), False)
    piano_on = vocab.note_tokens(np.array([FAMILIES.index("piano")]), np.array([60]), np.array([80]))[0]
    drum_on = vocab.note_tokens(np.array([DRUMS]), np.array([36]), np.array([80]))[0]
    for token in (piano_on, drum_on):  # both play at 0 s
        advance(state, torch.tensor([token, token]), tables)
    state.seconds[:] = torch.tensor([3.9, 4.1])  # the piano sounds on; drums were struck 3.9 / 4.1 s ago
    narrowed = entrances(mask, state, settings, tables, requested)
    waits = tables.wait > 0
    assert torch.equal(narrowed[0] & ~waits, mask[0] & ~waits)  # not yet due: everything but long waits
    wait_seconds = tables.wait[narrowed[0] & waits] * seconds_per_step(vocab, state.tempo[:1])
    assert len(wait_seconds) and float(wait_seconds.max()) <= 0.1 + 1e-9  # none carries it past 4 s
    due = narrowed[1]
    assert due.any() and bool((tables.is_on & tables.is_drum)[due].all())  # any drum note-on, nothing else
    assert torch.equal(due, mask[1] & tables.is_on & tables.is_drum)
    state.seconds[1] = 0.0
    state.sounding[:] = False
    state.seconds[:] = 10.0  # now the piano is silent too: either family may enter
    narrowed = entrances(mask, state, settings, tables, requested)
    assert set(tables.family[narrowed[0]].unique().tolist()) == {FAMILIES.index("piano"), DRUMS}
    full = mask & ~tables.is_on[None, :]  # polyphony full: nothing can enter, the mask stays
    assert torch.equal(entrances(full, state, settings, tables, requested), full)
    for off in (Settings(instruments=["piano"], max_family_silence=0), Settings(instruments=["piano"],
                instrument_mode="soft"), Settings(instruments="any")):
        assert requested_families(off, "cpu") is None


def test_strict_mode_brings_in_a_family_the_model_would_never_play(composer, monkeypatch):
    vocab, tables = composer.vocab, composer.sampler.tables
    decoder = composer.sampler.decoder
    forward = decoder.forward
    never = tables.is_on & tables.is_drum

    def no_drums(*args, **kwargs):
        return forward(*args, **kwargs).masked_fill(never, -1e4)

    monkeypatch.setattr(decoder, "forward", no_drums)
    request = dict(style="pop", instruments=["piano", "drums"], seconds=30, candidates=2, seed=4)
    for piece in composer.generate(**request):
        hits = piece.table.seconds(piece.table.onset[piece.table.family == DRUMS])
        assert len(hits) >= 3 and hits[0] <= 2.5, hits  # 2 s in, then at most 8 s apart
        assert np.diff(np.r_[hits, piece.seconds]).max() <= 8.5, hits
        assert_grammar(piece.tokens, vocab)
    for piece in composer.generate(**request, max_family_silence=0):
        assert "drums" not in piece.families()


def test_soft_mode_only_suggests(composer):
    pieces = composer.generate(style="pop", instruments=["piano"], seconds=10, candidates=4, seed=1,
                               instrument_mode="soft")
    played = set().union(*(p.families() for p in pieces))
    assert "piano" in played and played - {"piano"}, "a random model in soft mode plays other families too"


def test_same_seed_same_tokens_other_seed_other_tokens(composer):
    a = composer.generate(style="bach", seconds=8, candidates=2, seed=7)
    b = composer.generate(style="bach", seconds=8, candidates=2, seed=7)
    c = composer.generate(style="bach", seconds=8, candidates=2, seed=8)
    assert all(np.array_equal(x.tokens, y.tokens) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].tokens, c[0].tokens)


@pytest.mark.parametrize("seconds", [5, 30])
def test_length_lands_within_ten_percent_with_a_sliding_window(composer, seconds):
    pieces = composer.generate(style="pop", seconds=seconds, candidates=2, seed=seconds)
    for piece in pieces:
        assert len(piece.tokens) > 0
        total = token_seconds(piece.tokens, composer.vocab)[-1]
        assert abs(total - seconds) <= 0.1 * seconds, total
    assert max(len(p.tokens) for p in pieces) > 96 or seconds == 5  # longer than the context: the window slid


def test_prompt_comes_back_verbatim_and_style_blends(composer, tmp_path):
    prompt = make_score([{"program": 0, "notes": [(0, 1, 60, 80), (1, 1, 64, 80), (2, 2, 67, 90), (2, 2, 48, 70),
                                                   (4, 1, 72, 80)]}], tempos=[(0, 90)])
    path = tmp_path / "prompt.mid"
    write_midi(read_midi(prompt), path)
    for notes in (4, None):
        pieces = composer.generate(prompt=str(path), style="pop", instruments=["bass", "drums"], seconds=10,
                                   candidates=2, seed=2, prompt_notes=notes)
        original = read_midi(path).sorted()
        if notes:
            original = original.select(np.arange(notes))
        for piece in pieces:
            got = piece.table
            head = np.lexsort((got.pitch, got.family, got.onset))[: len(original)]
            got = got.select(np.sort(head))
            for field in ("onset", "duration"):
                np.testing.assert_allclose(getattr(got, field), getattr(original, field))
            np.testing.assert_array_equal(got.pitch, original.pitch)
            np.testing.assert_array_equal(got.family, original.family)
            assert set(piece.families()) <= {"piano", "bass", "drums"}  # the prompt's piano, then the band
            assert piece.text.startswith("pop piano bass drums start tempo:90 ")


def test_a_continuation_of_a_long_prompt_composes_most_of_what_was_asked(composer):
    prompt = make_score([{"program": 0, "notes": [(b, 1, 60 + b % 12, 80) for b in range(30)]}], tempos=[(0, 90)])
    begun = 20.0  # 30 beats at 90 bpm: `end` may not come before 90% of the 4 new seconds
    for piece in composer.generate(prompt=prompt, style="pop", seconds=24, candidates=4, seed=5):
        assert begun + 0.9 * 4 - 0.05 <= token_seconds(piece.tokens, composer.vocab)[-1] <= 24 * 1.1


def test_end_is_masked_until_ninety_percent_of_the_new_music(composer):
    vocab = composer.vocab
    tables = TokenTables(vocab, "cpu")
    state = DecodeState.new(1, "cpu")
    state.earliest_end = 20.0 + 0.9 * 4  # a 20 s prompt, 24 s asked for
    allowed = torch.ones(vocab.size, dtype=torch.bool)
    for seconds, may_end in ((21.7, False), (23.5, False), (23.7, True)):  # 21.7 s is past 90% of 24 s
        state.seconds[:] = seconds
        assert bool(allowed_tokens(state, Settings(seconds=24), tables, allowed, False)[0, vocab.END]) == may_end


def test_sampler_features_follow_the_reference_through_sliding_windows(model_dir):
    """The sampler's incremental side features equal `sequence.side_features` over each window
    the model reads, on pieces long enough that the window slides several times."""
    composer = Composer.load(model_dir)
    decoder, vocab, fed = composer.sampler.decoder, composer.vocab, []
    forward = decoder.forward
    decoder.forward = lambda tokens, features, *args: fed.append((tokens, features)) or forward(
        tokens, features, *args)
    seconds = 16.0
    composer.generate(style="pop", seconds=seconds, candidates=2, seed=11)
    reads = [i for i, (tokens, _) in enumerate(fed) if tokens.shape[1] > 1]
    assert len(reads) >= 3, "the window should slide"
    for row in range(2):
        stream = fed[0][0][row].tolist() + [int(tokens[row, 0]) for tokens, _ in fed if tokens.shape[1] == 1]
        clock = token_seconds(np.array(stream), vocab)
        for begin, end in zip(reads, [*reads[1:], len(fed)], strict=True):
            window = fed[begin][0][row].numpy()
            tokens = np.concatenate([window, [int(t[row, 0]) for t, _ in fed[begin + 1: end]]])
            fed_before = len(fed[0][0][row]) + (begin - reads.index(begin))  # stream tokens before this read
            body = len(window) - header_length(window, vocab)
            steps_before = int(vocab.tables["wait"][np.array(stream[: fed_before - body])].sum())
            start_seconds = float(clock[fed_before - body])
            want = side_features(tokens, vocab, seconds, start_seconds=start_seconds, start_step=steps_before)
            got = {name: torch.cat([f[name][row] for _, f in fed[begin:end]]).numpy() for name in want}
            # `held`: a note struck before the window is known to the sampler while it sounds, to
            # `side_features` only once its note-off is in what it reads (the window as read,
            # then as it grows); both count it from the window's start, and only there may they differ
            read = side_features(window, vocab, seconds, start_seconds=start_seconds, start_step=steps_before)
            since_window = np.floor((token_seconds(tokens, vocab, start_seconds=start_seconds) - start_seconds)
                                    / HELD_STEP_SECONDS + 1e-6).clip(0, HELD_FOR_BUCKETS - 1)
            differ = (got["held"] != want["held"]) | (got["held_for"] != want["held_for"])
            differ[: len(window)] = False
            assert (got["held_for"][differ] == since_window[differ]).all()
            for name, values in want.items():
                values = np.concatenate([read[name], np.where(differ, got[name], values)[len(window):]])
                np.testing.assert_array_equal(got[name], values, err_msg=name)


def test_one_composer_serves_several_threads(composer):
    from concurrent.futures import ThreadPoolExecutor

    requests = [dict(style="irish", instruments=["strings"], seconds=6, candidates=2, seed=seed) for seed in range(4)]
    alone = [composer.generate(**request) for request in requests]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda request: composer.generate(**request), requests))
    for a, b in zip(alone, together, strict=True):
        assert all(np.array_equal(x.tokens, y.tokens) for x, y in zip(a, b, strict=True))


def test_bad_settings_are_one_line_errors(composer, model_dir, capsys):
    with pytest.raises(MuseNetError, match="unknown style"):
        composer.generate(style="dubstep")
    with pytest.raises(MuseNetError, match="unknown instrument"):
        composer.generate(instruments=["kazoo"])
    assert main(["generate", "--model", str(model_dir), "--temperature", "0"]) == 1
    assert "temperature" in capsys.readouterr().err
    assert main(["generate", "--model", str(model_dir), "--prompt-notes", "3"]) == 1
    assert "need --prompt" in capsys.readouterr().err


def test_cli_writes_midi_and_sidecar_byte_identical_per_seed(model_dir, tmp_path, capsys):
    args = ["generate", "--model", str(model_dir), "--style", "scottish", "--instruments", "strings,winds",
            "--seconds", "8", "--candidates", "2", "--seed", "5"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "piece-1.mid" in out and "piece-2.mid" in out
    for name in ("piece-1.mid", "piece-2.mid", "piece-1.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    sidecar = json.loads((tmp_path / "a" / "piece-1.json").read_text())
    assert sidecar["settings"]["seed"] == 5 and sidecar["settings"]["style"] == "scottish"
    assert sidecar["model"] in (f"{model_dir} (int8)", f"{model_dir} (float32)")  # the precision, auto's choice
    for name in ("piece-1.mid", "piece-2.mid"):  # every output reads in symusic and mido
        data = (tmp_path / "a" / name).read_bytes()
        assert symusic.Score.from_midi(data).note_num() > 0
        midi = mido.MidiFile(file=io.BytesIO(data))
        assert 7 <= midi.length <= 9.5
        names = {track.name for track in midi.tracks} - {""}
        assert names <= {"strings", "winds"}


def test_cli_composes_with_a_family_nucleus_and_records_it(model_dir, tmp_path):
    args = ["generate", "--model", str(model_dir), "--style", "pop", "--instruments", "piano,bass",
            "--seconds", "6", "--seed", "2", "--nucleus", "family"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "piece-1.mid").read_bytes() == (tmp_path / "b" / "piece-1.mid").read_bytes()
    assert json.loads((tmp_path / "a" / "piece-1.json").read_text())["settings"]["nucleus"] == "family"
    assert symusic.Score.from_midi((tmp_path / "a" / "piece-1.mid").read_bytes()).note_num() > 0


def test_styles_command(model_dir, capsys):
    assert main(["styles", "--model", str(model_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("irish") for line in lines) and len(lines) == len(default_vocab().styles)


@pytest.mark.slow
def test_four_minute_piece(composer):
    piece = composer.generate(style="pop", instruments=list(FAMILIES), seconds=240, seed=0)[0]
    assert abs(token_seconds(piece.tokens, composer.vocab)[-1] - 240) <= 24
    assert_grammar(piece.tokens, composer.vocab)


def test_cli_wav_and_pianoroll(model_dir, tmp_path):
    render = pytest.importorskip("musenet.render")
    try:
        render.fluidsynth_program()
        render.find_soundfont()
    except MuseNetError as err:
        pytest.skip(str(err))
    assert main(["generate", "--model", str(model_dir), "--style", "pop", "--instruments", "piano,drums",
                 "--seconds", "6", "--out", str(tmp_path), "--wav", "--png"]) == 0
    midi_seconds = render.midi_seconds(tmp_path / "piece-1.mid")
    assert abs(render.wav_seconds(tmp_path / "piece-1.wav") - (midi_seconds + render.RELEASE_SECONDS)) < 0.05
    assert (tmp_path / "piece-1.png").read_bytes()[:4] == b"\x89PNG"


def test_export_and_the_bundled_model(model_dir, tmp_path, monkeypatch, capsys):
    from musenet import composer as composer_module

    assert main(["export", str(model_dir), "--out", str(tmp_path / "small")]) == 0
    assert "bf16" in capsys.readouterr().out
    exported = Composer.load(tmp_path / "small")
    piece = exported.generate(style="bach", seconds=4, seed=0)[0]
    assert piece.seconds > 0
    monkeypatch.setattr(composer_module, "bundled_model_path", lambda: None)
    with pytest.raises(MuseNetError, match="no bundled model"):
        Composer.load()
    monkeypatch.setattr(composer_module, "bundled_model_path", lambda: tmp_path / "small")
    assert Composer.load().model_path == str(tmp_path / "small")


@pytest.mark.parametrize(("top_p", "min_p", "expected"), [
    (1.0, 0.0, [0.5, 0.3, 0.15, 0.05, 0.0]), (0.8, 0.0, [0.625, 0.375, 0, 0, 0]),
    (1.0, 0.2, [0.526, 0.316, 0.158, 0, 0]),  # min-p: nothing below 0.2 x 0.5 (0.05 goes)
    (0.8, 0.2, [0.625, 0.375, 0, 0, 0])])  # then the nucleus of what is left
def test_sampler_draws_the_nucleus_distribution(composer, top_p, min_p, expected):
    vocab, rows = composer.vocab, 6000
    tables = TokenTables(vocab, "cpu")
    ids = torch.from_numpy(np.flatnonzero(vocab.tables["wait"] > 0)[:5])  # five tokens that are not notes
    logits = torch.full((rows, vocab.size), -30.0)
    logits[:, ids] = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.4]).log()
    mask = torch.zeros(rows, vocab.size, dtype=torch.bool)
    mask[:, ids[:4]] = True  # the fifth is masked
    tokens = sample_tokens(logits, mask, Settings(top_p=top_p, min_p=min_p), torch.Generator().manual_seed(0), tables)
    shares = np.bincount(torch.searchsorted(ids, tokens).numpy(), minlength=5) / rows
    assert shares == pytest.approx(expected, abs=0.025) and shares[4] == 0 and bool(torch.isin(tokens, ids).all())


@pytest.mark.parametrize("spread", [0.5, 3.0, 30.0])  # flat: a nucleus of thousands; peaked: a few tokens
def test_top_p_looks_at_the_likeliest_first_and_draws_what_a_full_sort_draws(composer, spread):
    vocab, rows = composer.vocab, 64
    tables = TokenTables(vocab, "cpu")
    logits = torch.randn(rows, vocab.size, generator=torch.Generator().manual_seed(1)) * spread
    mask = torch.rand(rows, vocab.size, generator=torch.Generator().manual_seed(2)) < 0.9
    mask &= ~tables.is_off[None, :]  # no release boost: the reference below is plain top-p
    settings = Settings(top_p=0.9)
    got = sample_tokens(logits, mask, settings, torch.Generator().manual_seed(3), tables)
    probabilities = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
    ordered, order = torch.sort(probabilities, descending=True, dim=-1)
    cumulative = ordered.cumsum(dim=-1)
    kept = (((cumulative - ordered) < 0.9) & (ordered > 0)).sum(dim=-1, keepdim=True)
    draw = torch.rand(rows, 1, generator=torch.Generator().manual_seed(3))
    index = torch.searchsorted(cumulative, draw * cumulative.gather(1, kept - 1), right=True).clamp_max(kept - 1)
    assert torch.equal(got, order.gather(1, index)[:, 0])


def test_a_family_nucleus_draws_the_family_at_the_models_odds_and_cuts_the_tail_within_it(composer):
    vocab, rows = composer.vocab, 6000
    tables = TokenTables(vocab, "cpu")
    bass = FAMILIES.index("bass")
    wait = int(np.flatnonzero(vocab.tables["wait"] > 0)[0])
    pitches = np.arange(28, 28 + 40)
    ons = torch.from_numpy(vocab.note_tokens(np.full(40, bass), pitches, np.full(40, 5)))
    logits = torch.full((rows, vocab.size), -50.0)
    # a wait at 0.9; bass note-ons 0.1 in all: one at 0.05, 39 sharing the other 0.05
    logits[:, wait] = np.log(0.9)
    logits[:, ons] = torch.tensor([0.05] + [0.05 / 39] * 39).log()
    mask = torch.zeros(rows, vocab.size, dtype=torch.bool)
    mask[:, ons] = True
    mask[:, wait] = True
    plain = sample_tokens(logits, mask, Settings(top_p=0.85), torch.Generator().manual_seed(0), tables)
    assert bool((plain == wait).all())  # one nucleus over every token: the wait alone
    tokens = sample_tokens(logits, mask, Settings(top_p=0.85, nucleus="family"), torch.Generator().manual_seed(0),
                           tables)
    notes = tokens[tokens != wait]
    assert len(notes) / rows == pytest.approx(0.1, abs=0.015)  # the family at the model's own odds
    # within it the nucleus: the likeliest note (half the family's mass) and 28 of the others
    # (0.5 + 28 x 0.5/39 crosses 0.85), so the likeliest is drawn 0.5 / 0.859 of the time
    assert bool(torch.isin(notes, ons).all()) and len(torch.unique(notes)) <= 29
    assert (notes == ons[0]).float().mean().item() == pytest.approx(0.582, abs=0.05)
    # min-p 0.5 within the family drawn: the likeliest bass note alone (the others are 1/39 of it)
    tokens = sample_tokens(logits, mask, Settings(top_p=1.0, min_p=0.5, nucleus="family"),
                           torch.Generator().manual_seed(0), tables)
    notes = tokens[tokens != wait]
    assert len(notes) / rows == pytest.approx(0.1, abs=0.015) and bool((notes == ons[0]).all())
    with pytest.raises(MuseNetError, match="nucleus must be all or family"):
        Settings(nucleus="group").check(vocab)


def test_note_off_probability_goes_to_a_lone_sounding_note(composer):
    vocab, rows = composer.vocab, 4000
    tables = TokenTables(vocab, "cpu")
    strings = FAMILIES.index("strings")
    sounding_off, silent_off = vocab.note_tokens(np.array([strings, strings]), np.array([60, 64]), np.zeros(2, int))
    wait = int(np.flatnonzero(vocab.tables["wait"] > 0)[0])
    logits = torch.full((rows, vocab.size), -30.0)
    logits[:, [sounding_off, silent_off, wait]] = torch.tensor([0.1, 0.6, 0.3]).log()
    mask = torch.zeros(rows, vocab.size, dtype=torch.bool)
    mask[:, [sounding_off, wait]] = True  # only C4 sounds: E4 cannot be released
    tokens = sample_tokens(logits, mask, Settings(top_p=1.0), torch.Generator().manual_seed(0), tables)
    share = (tokens == int(sounding_off)).float().mean().item()
    assert share == pytest.approx(0.7, abs=0.03)  # the model's whole "release now", not 0.1 / 0.4
    mask[:, silent_off] = True  # both sound: which to release is the model's call, as it gave it
    tokens = sample_tokens(logits, mask, Settings(top_p=1.0), torch.Generator().manual_seed(0), tables)
    assert (tokens == int(sounding_off)).float().mean().item() == pytest.approx(0.1, abs=0.03)


def test_int8_decoding_composes_nearly_the_same_distribution(model_dir):
    plain, int8 = Composer.load(model_dir, precision="float32"), Composer.load(model_dir, precision="int8")
    assert isinstance(int8.model.head, Int8Linear) and int8.model_label.endswith("(int8)")
    tokens = torch.randint(0, plain.vocab.size, (1, 64))
    with torch.inference_mode():
        p = torch.log_softmax(plain.model(tokens), -1)
        q = torch.log_softmax(int8.model(tokens), -1)
    assert float((p.exp() * (p - q)).sum(-1).mean()) < 0.01  # KL in nats per token
    first, again = (int8.generate(style="bach", seconds=6, candidates=2, seed=4) for _ in range(2))
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.tokens, b.tokens)
        assert_grammar(a.tokens, int8.vocab)
    with pytest.raises(MuseNetError, match="precision must be"):
        Composer.load(model_dir, precision="int4")


def test_without_instruments_a_style_gets_its_usual_ensemble(model_dir):
    composer = Composer.load(model_dir)
    composer.metadata = {**composer.metadata, "ensembles": {"bach": ["voice"]}}
    usual = composer.generate(style="bach", seconds=4, candidates=2, seed=1)
    assert all(set(p.families()) <= {"voice"} and p.settings.instruments == ["voice"] for p in usual)
    anything = composer.generate(style="bach", seconds=4, candidates=2, seed=1, instruments="any")
    assert set().union(*(p.families() for p in anything)) - {"voice"}, "an untrained model plays other families"
    assert composer.usual_instruments("irish") == "any"  # a style the model's data did not describe
    prompt = make_score([{"program": 40, "notes": [(0, 1, 60, 80), (1, 1, 64, 80)]}])
    assert composer.usual_instruments("bach", read_midi(prompt)) == ["strings"]  # a prompt keeps its own


def test_a_prompt_longer_than_the_piece_is_refused(composer):
    prompt = make_score([{"program": 0, "notes": [(b, 1, 60, 80) for b in range(20)]}], tempos=[(0, 120)])
    with pytest.raises(MuseNetError, match="prompt lasts 10.0 s.*counts the whole piece"):
        composer.generate(prompt=prompt, style="pop", seconds=8)


def test_only_styles_the_model_learnt_are_offered(model_dir):
    composer = Composer.load(model_dir)
    assert composer.styles == composer.vocab.styles  # a model that does not say what it learnt
    composer.metadata = {**composer.metadata, "ensembles": {"bach": ["voice"], "irish": ["strings"]}}
    assert composer.styles == ("bach", "irish")
    with pytest.raises(MuseNetError, match="never learnt the style 'pop'"):
        composer.generate(style="pop", seconds=2)


def test_auto_precision_is_int8_on_a_cpu_where_the_kernel_runs(monkeypatch):
    from musenet import quantize

    quantize.int8_kernel_works.cache_clear()
    assert quantize.decoding_precision("auto", torch.device("cpu")) == "int8"
    assert quantize.decoding_precision("auto", torch.device("cuda")) == "float32"

    def missing(*args):
        raise NotImplementedError("no int8 kernel for this CPU")

    monkeypatch.setattr(torch, "_weight_int8pack_mm", missing)
    quantize.int8_kernel_works.cache_clear()
    try:
        assert quantize.decoding_precision("auto", torch.device("cpu")) == "float32"
    finally:
        quantize.int8_kernel_works.cache_clear()


def test_guidance_moves_the_logits_away_from_the_unconditioned_ones():
    conditioned = torch.tensor([[1.0, 2.0, float("-inf")]])
    bare = torch.tensor([[1.5, 0.0, 3.0]])
    assert torch.equal(guide(conditioned, bare, 1.0), conditioned)
    assert torch.equal(guide(conditioned, bare, 3.0), torch.tensor([[0.0, 6.0, float("-inf")]]))


@pytest.fixture(scope="module")
def guided_dir(tmp_path_factory):
    torch.manual_seed(1)
    vocab = default_vocab()
    model = build_model("tiny", vocab.size, context=96)
    return save_checkpoint(tmp_path_factory.mktemp("guided") / "tiny", model, vocab,
                           {"train": {"augment": {"unconditioned": 0.1}}})


def test_a_guided_draw_reads_a_twin_without_style_and_families_through_sliding_windows(guided_dir):
    """Every read and step of the twin is the candidate's own window with the header's style
    and family tokens gone, and the draw takes `guide` of the two logits."""
    composer = Composer.load(guided_dir, compiled="off")
    decoder, vocab, fed = composer.sampler.decoder, composer.vocab, []
    forward = decoder.forward
    decoder.forward = lambda tokens, features, *args: fed.append(tokens.clone()) or forward(tokens, features, *args)
    pieces = composer.generate(style="pop", instruments=["piano", "bass"], seconds=16, candidates=2, seed=3,
                               guidance=3.0)
    assert len(fed) % 2 == 0  # each read and each step: the candidates', then their twins'
    reads = 0
    for mine, twin in zip(fed[::2], fed[1::2], strict=True):
        if mine.shape[1] == 1:  # a step: the same new token
            assert torch.equal(mine, twin)
            continue
        reads += 1
        for row in range(2):
            window, bare = mine[row].numpy(), twin[row].numpy()
            assert header_length(window, vocab) - header_length(bare, vocab) == 3  # pop, piano, bass
            np.testing.assert_array_equal(unconditioned(window, vocab), bare)
    assert reads >= 3, "the window should slide"
    assert_grammar(pieces[0].tokens, vocab)
    again = composer.generate(style="pop", instruments=["piano", "bass"], seconds=16, candidates=2, seed=3,
                              guidance=3.0)
    plain = composer.generate(style="pop", instruments=["piano", "bass"], seconds=16, candidates=2, seed=3,
                              guidance=1.0)
    assert np.array_equal(again[0].tokens, pieces[0].tokens)
    assert not np.array_equal(plain[0].tokens, pieces[0].tokens)


def test_guidance_needs_a_model_that_learnt_unconditioned_headers(composer, model_dir, guided_dir, tmp_path, capsys):
    with pytest.raises(MuseNetError, match="cannot be guided"):
        composer.generate(style="pop", seconds=4, guidance=2.0)
    assert main(["generate", "--model", str(model_dir), "--guidance", "2", "--out", str(tmp_path)]) == 1
    assert "cannot be guided" in capsys.readouterr().err
    assert main(["generate", "--model", str(guided_dir), "--guidance", "11", "--out", str(tmp_path)]) == 1
    assert "guidance must be between 0 and 10" in capsys.readouterr().err
    assert main(["generate", "--model", str(guided_dir), "--style", "pop", "--seconds", "4", "--guidance", "2",
                 "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "piece-1.json").read_text())["settings"]["guidance"] == 2.0
    # left unsaid: the default weight where the model learnt unconditioned headers, else off
    for model, weight in ((guided_dir, DEFAULT_GUIDANCE), (model_dir, 1.0)):
        assert main(["generate", "--model", str(model), "--style", "pop", "--seconds", "4",
                     "--out", str(tmp_path)]) == 0
        assert json.loads((tmp_path / "piece-1.json").read_text())["settings"]["guidance"] == weight

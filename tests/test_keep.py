"""Accompanying and infilling with a tiny random-weight model, on real songs: kept notes come
back exactly, the new notes stay in their families and span, the seams are clean."""

import json

import numpy as np
import pytest
import torch
from helpers import CORPORA

from musenet import Composer, MuseNetError
from musenet.checkpoint import save_checkpoint
from musenet.cli import main
from musenet.encoding import instant_rank
from musenet.evaluate.keep import accompaniment_chords
from musenet.fixed import plan
from musenet.instruments import DRUMS, FAMILIES
from musenet.model import build_model
from musenet.notes import NoteTable, read_midi
from musenet.settings import Settings
from musenet.song import bars_to_seconds, parts
from musenet.vocab import Vocab, default_vocab, to_text


def tiny_composer(folder, vocab) -> Composer:
    torch.manual_seed(0)
    model = build_model("tiny", vocab.size, context=96)  # a short context: the window slides often
    return Composer.load(save_checkpoint(folder / "tiny", model, vocab))


@pytest.fixture(scope="module")
def composer(tmp_path_factory):
    return tiny_composer(tmp_path_factory.mktemp("model"), default_vocab())


@pytest.fixture(scope="module")
def top_first_composer(tmp_path_factory):
    """A model whose vocabulary orders an instant from the highest pitch down."""
    return tiny_composer(tmp_path_factory.mktemp("top"), Vocab(instant_order="top-first"))


def notes_of(table: NoteTable) -> set:
    """Every note as (onset, duration, pitch, velocity, family), rounded past float noise."""
    return set(zip(np.round(table.onset, 6), np.round(table.duration, 6), table.pitch.tolist(),
                   table.velocity.tolist(), table.family.tolist(), strict=True))


def test_parts_by_family_track_name_and_number(shared_midi):
    song = shared_midi / "multitrack" / "Mr. Blue Sky.mid"
    whole = read_midi(song)
    melody, rest = parts(song, ["Melody"])
    assert len(melody) == 437 and len(melody) + len(rest) == len(whole)
    assert notes_of(melody) | notes_of(rest) == notes_of(whole)
    by_number, _ = parts(song, ["0", "2"])
    bass, _ = parts(song, ["bass"])
    assert len(by_number) == 437 + 507 and notes_of(bass) <= notes_of(by_number)
    with pytest.raises(MuseNetError, match="no part 'kazoo'.*0 Melody, 1 Piano"):
        parts(song, ["kazoo"])


def test_accompaniment_keeps_every_note_and_adds_only_the_asked_families(composer, shared_midi):
    song = shared_midi / "multitrack" / "Mr. Blue Sky.mid"
    melody, _ = parts(song, ["Melody"])
    pieces = composer.accompany(song, ["Melody"], ["piano", "bass", "drums"], seconds=12, candidates=2, seed=1)
    assert len(pieces) == 2
    kept = melody.select(np.flatnonzero(melody.seconds(melody.onset) < 12))
    added_families = {FAMILIES.index(f) for f in ("piano", "bass", "drums")}
    for piece in pieces:
        table = piece.table
        assert notes_of(kept) <= notes_of(table)                     # every kept note, exactly
        added = table.select(np.flatnonzero([n not in notes_of(kept) for n in notes_of_rows(table)]))
        assert len(added) and set(added.family.tolist()) <= added_families
        assert (added.seconds(added.onset) < 12.5).all()
        np.testing.assert_array_equal(table.tempo_qpm, melody.tempo_qpm)  # the song's own tempo map
    again = composer.accompany(song, ["Melody"], ["piano", "bass", "drums"], seconds=12, candidates=2, seed=1)
    assert [p.text for p in again] == [p.text for p in pieces]
    assert all(p.fit < 0 for p in pieces)  # the kept melody's log-probability beside each accompaniment
    ranked = composer.accompany(song, ["Melody"], ["piano", "bass", "drums"], seconds=12, candidates=2, seed=1,
                                rank=True)
    assert [p.fit for p in ranked] == sorted((p.fit for p in pieces), reverse=True)


@pytest.mark.parametrize("order", ["low-first", "top-first"])
def test_kept_notes_take_their_place_in_the_instant(order, request, shared_midi):
    """At an instant with kept events, the model may write first its own events that the
    encoding puts before them there (offs before ons, each by pitch, in the vocabulary's
    order), as training read them; nothing of its own that comes after a kept event of that
    instant is written before it; every kept note comes back."""
    composer = request.getfixturevalue("composer" if order == "low-first" else "top_first_composer")
    song = shared_midi / "multitrack" / "Mr. Blue Sky.mid"
    kept, _ = parts(song, ["Melody"])
    kept = kept.select(np.flatnonzero(kept.seconds(kept.onset) < 24))  # the melody enters at 16.5 s
    vocab = composer.vocab
    fixed = plan(kept, vocab, None, ["piano", "bass"], (0.0, 24.0))
    settings = Settings(instruments=["piano", "bass"], seconds=24, candidates=2, seed=2)
    rank, wait = instant_rank(vocab), vocab.tables["wait"]
    before_kept = 0
    for tokens, forced, _ in composer.sampler.keep(settings, fixed):
        start = int(np.argmax(tokens == vocab.START)) + 1
        body, forced = tokens[start:], forced[start:]
        instant = np.cumsum(wait[body] > 0)  # instants, counted by the waits between them
        melody = vocab.tables["family"][body] == FAMILIES.index("winds")  # the kept part's family
        for i in np.flatnonzero(forced & melody & (instant < instant[-1])):  # the last: the span's end releases
            own = np.flatnonzero((instant == instant[i]) & ~forced & (wait[body] == 0) & (np.arange(len(body)) < i))
            assert (rank[body[own]] < rank[body[i]]).all()
            before_kept += len(own)
    assert before_kept > 0  # and the model did write its own events before kept ones
    piece = composer.accompany(song, ["Melody"], ["piano", "bass"], seconds=20, candidates=1, seed=3)[0]
    start = kept.select(np.flatnonzero(kept.seconds(kept.onset) < 20))
    assert len(start) and notes_of(start) <= notes_of(piece.table)


def notes_of_rows(table: NoteTable) -> list:
    return list(zip(np.round(table.onset, 6), np.round(table.duration, 6), table.pitch.tolist(),
                    table.velocity.tolist(), table.family.tolist(), strict=True))


def test_infill_keeps_both_sides_and_closes_the_seams(composer, shared_midi):
    song = shared_midi / "one-track" / "Maestro_1.mid"
    whole = read_midi(song)
    onset = whole.seconds(whole.onset)
    outside = whole.select(np.flatnonzero((onset < 6) | (onset >= 10)))
    pieces = composer.infill(song, 6.0, 10.0, candidates=3, seed=2, right_seconds=3.0)
    assert [p.fit for p in pieces] == sorted((p.fit for p in pieces), reverse=True)  # best first
    first_after, rings = float(onset[onset > 10].min()), False  # 10.069 s
    fixed = plan(outside, composer.vocab, None, ["piano"], (6.0, 10.0), right_seconds=3.0)
    assert fixed.release[1] == pytest.approx(float(whole.beats(first_after)))  # not the span's end
    for piece in pieces:
        table = piece.table
        assert notes_of(outside) <= notes_of(table)
        assert len(table) - len(outside) == len(set(notes_of_rows(table)) - notes_of(outside)) > 0
        new = [row for row, n in enumerate(notes_of_rows(table)) if n not in notes_of(outside)]
        start, end = table.seconds(table.onset[new]), table.seconds(table.onset[new] + table.duration[new])
        # no stuck notes: those sounding at the span's end ring on only until the next kept note-on
        assert (start >= 6 - 1e-6).all() and (start < 10).all() and (end <= first_after + 1e-6).all()
        rings |= bool((end > 10 + 1e-6).any())
        assert piece.fit < 0
    assert rings  # (some do)
    unranked = composer.infill(song, 6.0, 10.0, candidates=3, seed=2, right_seconds=3.0, rank=False)
    assert sorted(p.fit for p in unranked) == sorted(p.fit for p in pieces)


def test_plan_splits_a_piece_at_the_span(composer):
    vocab = composer.vocab
    table = NoteTable(onset=np.array([0.0, 1.0, 2.0, 5.0]), duration=np.array([1.0, 2.0, 0.5, 1.0]),
                      pitch=np.array([60, 62, 36, 67]), velocity=np.array([80, 80, 100, 80]),
                      family=np.array([0, 0, DRUMS, 0]), tempo_qpm=np.array([120.0]))
    fixed = plan(table, vocab, None, ["bass"], (1.0, 2.0), right_seconds=1.0)  # beats 2 to 4 at 120 BPM
    assert to_text(fixed.opening, vocab) == ("unknown piano bass drums start tempo:120 piano:v80:C4 wait:12 "
                                             "piano:v0:C4 piano:v80:D4 wait:12")  # up to the span
    assert fixed.span == (24, 48)
    # in the span: events at their steps; after it (1 s = 2 beats): events and waits, in order
    assert to_text(fixed.tokens, vocab) == "drums:v96:C2 piano:v0:D4 wait:12 piano:v80:G4"
    assert fixed.steps.tolist() == [24, 36, 48, 48] and fixed.exact.tolist() == [False, False, True, True]
    assert table.beats(np.array([0.0, 1.0, 2.5])).tolist() == [0.0, 2.0, 5.0]
    right = plan(table, vocab, None, ["bass"], (0.5, 1.25), right_seconds=1.5)
    assert to_text(right.tokens[right.exact], vocab) == "wait:6 piano:v0:D4 wait:24 piano:v80:G4"


def test_bars_and_errors(composer, shared_midi):
    song = shared_midi / "multitrack" / "Mr. Blue Sky.mid"
    start, stop = bars_to_seconds(song, 2, 3)
    table = read_midi(song)
    assert stop > start > 0 and abs(float(table.beats(start)) - 4.0) < 1e-6
    with pytest.raises(MuseNetError, match="empty"):
        composer.infill(song, 5.0, 5.0)
    with pytest.raises(MuseNetError, match="after the song ends"):
        composer.infill(song, 10_000.0, 10_001.0)
    with pytest.raises(MuseNetError, match="unknown instrument"):
        composer.accompany(song, ["Melody"], ["kazoo"])


def test_cli_accompany_and_infill(composer, shared_midi, tmp_path, capsys):
    song = str(shared_midi / "multitrack" / "Girls Just Want to Have Fun.mid")
    model = composer.model_path
    assert main(["accompany", song, "--keep", "Melody,bass", "--add", "drums,guitar", "--seconds", "8",
                 "--candidates", "2", "--model", model, "--out", str(tmp_path)]) == 0
    sidecar = json.loads((tmp_path / "accompany-1.json").read_text())
    assert sidecar["task"] == {"task": "accompany", "keep": ["Melody", "bass"], "add": ["drums", "guitar"],
                               "harmony": 0.0, "chords": None,  # no harmoniser beside this model
                               "hints": False, "beside": False}  # a model that never learnt hints or the channel
    assert main(["accompany", song, "--keep", "Melody", "--add", "piano", "--seconds", "4", "--chords", "Am F C G",
                 "--model", model, "--out", str(tmp_path / "chords")]) == 0
    task = json.loads((tmp_path / "chords" / "accompany-1.json").read_text())["task"]
    assert task["chords"] == "Am F C G" and task["harmony"] == 3.0  # chords given: the default lean
    assert main(["accompany", song, "--keep", "Melody", "--add", "piano", "--harmony", "2", "--model", model,
                 "--out", str(tmp_path)]) == 1
    assert "no harmoniser" in capsys.readouterr().err
    assert main(["infill", song, "--bars", "3-4", "--candidates", "2", "--model", model, "--out", str(tmp_path)]) == 0
    sidecar = json.loads((tmp_path / "infill-2.json").read_text())
    assert sidecar["task"]["task"] == "infill" and sidecar["fit"] < 0
    assert main(["infill", song, "--from", "3", "--model", model, "--out", str(tmp_path)]) == 1
    assert "give the span" in capsys.readouterr().err


def test_evaluation_helpers(composer, shared_midi):
    from musenet.encoding import encode_notes
    from musenet.evaluate.keep import longest_silence, token_bits

    table = NoteTable(onset=np.array([0.0, 4.0, 5.0]), duration=np.array([2.0, 2.0, 1.0]), pitch=np.array([60, 62, 64]),
                      velocity=np.full(3, 80), family=np.zeros(3, np.int64), tempo_qpm=np.array([60.0]))
    assert longest_silence(table, 0.0, 6.0) == 2.0 and longest_silence(table, 1.0, 9.0) == 3.0
    model, vocab = composer.model, composer.vocab
    tokens = encode_notes(read_midi(shared_midi / "one-track" / "Maestro_1.mid"), vocab, "bach")[:400]
    bits = token_bits(model, vocab, tokens, composer.device)
    assert bits.shape == (len(tokens) - 1,) and (bits > 0).all()  # every token after the first, once
    short = tokens[:90]  # within the context: one window, the plain forward pass
    from musenet.sequence import sequence_seconds, side_features

    @torch.no_grad()
    def direct_bits(total_seconds: float) -> np.ndarray:
        features = side_features(short, vocab, total_seconds)
        inputs = {k: torch.from_numpy(v[None, :-1]) for k, v in features.items()}
        logp = torch.log_softmax(model(torch.from_numpy(short[None, :-1]), inputs).float(), -1)[0]
        return (-logp.gather(1, torch.from_numpy(short[1:, None]))[:, 0] / np.log(2)).numpy()

    direct = direct_bits(sequence_seconds(short, vocab))
    np.testing.assert_allclose(token_bits(model, vocab, short, composer.device), direct, rtol=1e-4)
    # scored as part of a longer piece (an infill's left side and middle): its length drives the side features
    longer = sequence_seconds(short, vocab) + 120.0
    as_part = token_bits(model, vocab, short, composer.device, total_seconds=longer)
    np.testing.assert_allclose(as_part, direct_bits(longer), rtol=1e-4)
    assert not np.allclose(as_part, direct, rtol=1e-3)


def test_accompaniment_chords_counts_real_and_composed_onsets(composer):
    if not (CORPORA / "pop909").is_dir():
        pytest.skip(f"{CORPORA} is absent")
    figures = accompaniment_chords(composer, CORPORA / "pop909", songs=1, seconds=4.0, candidates=2, hints=False)
    assert figures["songs"] == 1 and figures["composed_pieces"] == 2 and figures["kept_exact"]
    assert figures["real_onsets"] > 0 and figures["composed_onsets"] > 0
    assert 0 < figures["real"] <= 1 and 0 <= figures["composed"] <= 1

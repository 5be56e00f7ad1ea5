"""The harmoniser (melody -> chord tones a beat) and the sampler's lean towards them: features
against a slow loop, transposition equivariance, the lean keeping each family's note-on
probability, an accompaniment under a lean, and the bundled harmoniser on a real POP909 song."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import CORPORA
from test_keep import tiny_composer

from musenet import MuseNetError
from musenet.arrange import tones_at
from musenet.cli import main
from musenet.composer import bundled_model_path
from musenet.corpus.pop909 import MELODY, read_chords, read_song
from musenet.evaluate.harmony import held_out_songs
from musenet.fixed import plan
from musenet.harmoniser import (
    BLOCKS,
    CONTEXT_BEATS,
    FLOOR,
    HARMONISER_FILE,
    Harmoniser,
    beat_lean,
    beat_occupancy,
    chord_list,
    chord_symbol_tones,
    harmony_steps,
    lean_to_chords,
    melody_features,
    symbols_by_beat,
)
from musenet.instruments import DRUMS, FAMILY_ID
from musenet.notes import NoteTable
from musenet.rules import TokenTables
from musenet.settings import Settings
from musenet.song import parts
from musenet.vocab import STEPS_PER_BEAT, Vocab, default_vocab


def random_melody(rng, notes=40) -> NoteTable:
    onset = np.sort(rng.uniform(0, 20, notes))
    return NoteTable(onset, rng.uniform(0.05, 3.0, notes), rng.integers(40, 90, notes),
                     rng.integers(1, 128, notes), np.where(rng.random(notes) < 0.2, DRUMS, FAMILY_ID["voice"]))


def test_beat_occupancy_against_a_slow_loop():
    rng = np.random.default_rng(0)
    table = random_melody(rng)
    beats = 18  # notes run past the last beat: cut there
    sounding, struck = beat_occupancy(table, beats)
    slow, slow_struck = np.zeros((beats, 12)), np.zeros((beats, 12))
    for on, length, pitch, family in zip(table.onset, table.duration, table.pitch, table.family, strict=True):
        if family == DRUMS:
            continue
        for b in range(beats):
            slow[b, pitch % 12] += max(0.0, min(on + length, b + 1) - max(on, b))
        if on < beats:
            slow_struck[int(on), pitch % 12] = 1
    np.testing.assert_allclose(sounding, np.minimum(slow, 1.0), atol=1e-9)
    np.testing.assert_array_equal(struck, slow_struck)
    features = melody_features(table, beats)
    assert features.shape == (beats, BLOCKS, 12)
    np.testing.assert_allclose(features[5, CONTEXT_BEATS - 2], np.minimum(slow[3], 1.0), atol=1e-6)  # 2 beats back
    np.testing.assert_allclose(features[0, :CONTEXT_BEATS], 0)  # before the start: nothing


def test_transposing_the_melody_rolls_the_chord_tones():
    torch.manual_seed(0)
    harmoniser = Harmoniser(32).eval()
    table = random_melody(np.random.default_rng(1))
    up = replace(table, pitch=table.pitch + 5)
    np.testing.assert_allclose(harmoniser.chord_tones(up), np.roll(harmoniser.chord_tones(table), 5, axis=1),
                               atol=1e-5)


def test_the_lean_moves_pitches_within_a_family_and_keeps_its_total():
    vocab = default_vocab()
    tables = TokenTables(vocab, "cpu")
    torch.manual_seed(0)
    logits = torch.randn(3, vocab.size) * 3
    bias = torch.log(torch.rand(3, 12).clamp_min(0.05))
    leant = lean_to_chords(logits, bias, tables)
    p, q = torch.softmax(logits.double(), -1), torch.softmax(leant.double(), -1)
    ons = torch.zeros(vocab.size, dtype=torch.bool)
    ons[tables.melodic_on_ids] = True
    np.testing.assert_allclose(q[:, ~ons], p[:, ~ons], rtol=1e-5)  # waits, note-offs, drums: as they were
    for family in range(len(FAMILY_ID)):
        mine = tables.melodic_on_ids[tables.melodic_on_family == family]
        if len(mine) == 0:
            continue
        np.testing.assert_allclose(q[:, mine].sum(1), p[:, mine].sum(1), rtol=1e-4)
        pc = tables.melodic_on_class[tables.melodic_on_family == family]
        ratio = (q[:, mine] / p[:, mine]).log() - bias[:, pc].double()  # the same factor for the whole family
        np.testing.assert_allclose(ratio - ratio[:, :1], 0, atol=1e-4)


def test_an_accompaniment_under_a_strong_lean_plays_the_chord(tmp_path, shared_midi):
    """A random-weight model told (through the plan's harmony) that only C, E and G belong:
    its added melodic notes keep to them; the kept melody is untouched; without the lean
    they do not."""
    composer = tiny_composer(tmp_path, default_vocab())
    song = shared_midi / "multitrack" / "Mr. Blue Sky.mid"
    kept, _ = parts(song, ["Melody"])
    kept = kept.select(np.flatnonzero(kept.seconds(kept.onset) < 24))
    fixed = plan(kept, composer.vocab, None, ["piano", "bass"], (0.0, 24.0))
    triad = np.full(12, -30.0, np.float32)
    triad[[0, 4, 7]] = 0.0
    settings = Settings(instruments=["piano", "bass"], seconds=24, candidates=2, seed=2)
    shares = {}
    for name, harmony in (("leant", np.tile(triad, (fixed.span[1] + 1, 1))), ("plain", None)):
        classes = []
        for tokens, forced, _ in composer.sampler.keep(settings, replace(fixed, harmony=harmony)):
            is_on = (composer.vocab.tables["velocity"][tokens] > 0) & (composer.vocab.tables["family"][tokens] >= 0)
            classes += (composer.vocab.tables["pitch"][tokens[is_on & ~forced]] % 12).tolist()
        shares[name] = np.isin(classes, [0, 4, 7]).mean()
        assert len(classes) > 10
    assert shares["leant"] == 1.0 and shares["plain"] < 0.6
    with pytest.raises(MuseNetError, match="no harmoniser"):
        composer.accompany(song, ["Melody"], ["piano"], seconds=4, harmony=1.0)
    with pytest.raises(MuseNetError, match="0 or more"):
        composer.accompany(song, ["Melody"], ["piano"], seconds=4, harmony=-1.0)


def test_save_load_and_a_damaged_file(tmp_path):
    torch.manual_seed(0)
    harmoniser = Harmoniser(16).eval()
    harmoniser.save(tmp_path, {"note": "test"})
    again = Harmoniser.load(tmp_path)
    assert again.hidden == 16 and again.trained == {"note": "test"}
    table = random_melody(np.random.default_rng(2))
    np.testing.assert_allclose(again.chord_tones(table), harmoniser.chord_tones(table))
    assert Harmoniser.load(tmp_path / "nowhere") is None
    (tmp_path / HARMONISER_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(MuseNetError, match="not a harmoniser file"):
        Harmoniser.load(tmp_path)


@pytest.mark.skipif(not (CORPORA / "pop909").is_dir(), reason="needs ../shared/corpora/pop909")
def test_the_bundled_harmoniser_hears_a_held_out_songs_chords():
    """On a POP909 test song (never trained on), the chord tones annotated at each beat get
    clearly more probability than the other pitch classes; harmony_steps spreads the beats
    over the grid."""
    harmoniser = Harmoniser.load(bundled_model_path())
    assert harmoniser is not None
    path, _ = held_out_songs(CORPORA / "pop909", 1)[0]
    table, roles = read_song(path)
    melody = table.select(np.flatnonzero(roles == MELODY))
    beats = int(np.ceil((melody.onset + melody.duration).max())) + 1
    p = harmoniser.chord_tones(melody, beats)
    chords = read_chords(path.parent)
    tones = tones_at(chords, melody.seconds(np.arange(beats) + 0.5))
    p, tones = p[tones.any(axis=1)], tones[tones.any(axis=1)]
    assert p[tones].mean() > p[~tones].mean() + 0.25
    steps = harmony_steps(harmoniser, melody, default_vocab())
    assert len(steps) == (beats + 1) * STEPS_PER_BEAT
    np.testing.assert_allclose(np.exp(steps[3 * STEPS_PER_BEAT + 5]), np.clip(harmoniser.chord_tones(
        melody, beats)[3], 0.02, 1), rtol=1e-5)


def test_chord_symbols_bar_by_bar(tmp_path, shared_midi):
    """Chord symbols as lead sheets write them; one a bar on the grid, repeated; an
    accompaniment under them keeps every added melodic note to the bar's chord."""
    assert np.flatnonzero(chord_symbol_tones("Bbmaj7")).tolist() == [2, 5, 9, 10]
    assert np.flatnonzero(chord_symbol_tones("D/F#")).tolist() == [2, 6, 9]
    assert not chord_symbol_tones("N").any()
    for symbol, tones in (("C-7", [0, 3, 7, 10]), ("Cmaj9", [0, 2, 4, 7, 11]), ("C°7", [0, 3, 6, 9]),
                          ("Gb/Bb", [1, 6, 10]), ("Cmmaj7", [0, 3, 7, 11])):  # lead-sheet spellings
        assert np.flatnonzero(chord_symbol_tones(symbol)).tolist() == tones, symbol
    assert chord_list("C G | Am, F  |N") == ["C", "G", "Am", "F", "N"]
    with pytest.raises(MuseNetError, match="give at least one chord symbol"):
        symbols_by_beat(chord_list(" | "), 4)
    with pytest.raises(MuseNetError, match="unknown chord symbol 'Hm'"):
        chord_symbol_tones("Hm")
    tones = symbols_by_beat(["C", "N", "Am"], 20, bar_beats=3.0)
    vocab = default_vocab()
    table = random_melody(np.random.default_rng(3))
    steps = beat_lean(tones, table, vocab)
    bar = 3 * STEPS_PER_BEAT
    assert len(steps) == 21 * STEPS_PER_BEAT
    for index, chord in ((0, [0, 4, 7]), (2, [0, 4, 9]), (3, [0, 4, 7])):  # the fourth bar: C again
        row = steps[index * bar + 5]
        assert np.flatnonzero(row == 0).tolist() == chord and np.allclose(np.delete(row, chord), np.log(FLOOR))
    assert (steps[bar: 2 * bar] == 0).all()  # N: no lean

    composer = tiny_composer(tmp_path, vocab)
    song = shared_midi / "multitrack" / "Mr. Blue Sky.mid"
    pieces = composer.accompany(song, ["Melody"], ["piano", "bass"], seconds=10, candidates=2, seed=4,
                                chords=["C", "F"], harmony=30.0)
    for piece in pieces:
        added = piece.table.select(np.flatnonzero(np.isin(piece.table.family, [FAMILY_ID["piano"],
                                                                                FAMILY_ID["bass"]])))
        assert len(added) > 5
        chord = np.where((np.floor(added.onset / 4 + 1e-9) % 2) == 0, 0, 5)  # C or F, by bar
        assert np.isin((added.pitch - chord) % 12, [0, 4, 7]).all()
    with pytest.raises(MuseNetError, match="unknown chord symbol"):
        composer.accompany(song, ["Melody"], ["piano"], seconds=4, chords=["C", "Q7"])


def test_composing_over_chords(tmp_path):
    """`generate` with chords: every melodic note keeps to its bar's chord under a strong
    lean, from the command line too (the sidecar records them); harmony without chords, and
    chords for a model that reads time in seconds, are refused in one line."""
    composer = tiny_composer(tmp_path, default_vocab())
    pieces = composer.generate(style="pop", instruments=["piano", "bass"], seconds=12, candidates=2, seed=5,
                               chords=["Am", "F"], harmony=30.0)
    for piece in pieces:
        table = piece.table.select(np.flatnonzero(~piece.table.drum))
        assert len(table) > 5
        root = np.where((np.floor(table.onset / 4 + 1e-9) % 2) == 0, 9, 5)  # A minor, then F major, a bar each
        third = np.where(root == 9, 3, 4)
        assert np.all(np.isin((table.pitch - root) % 12, [0, 7]) | ((table.pitch - root) % 12 == third))
    with pytest.raises(MuseNetError, match="harmony leans towards chords"):
        composer.generate(seconds=4, harmony=2.0)
    seconds_mode = tiny_composer(tmp_path / "seconds", Vocab(time_mode="seconds"))
    with pytest.raises(MuseNetError, match="need a model in beat mode"):
        seconds_mode.generate(seconds=4, chords=["C"])
    assert main(["generate", "--style", "pop", "--instruments", "piano", "--seconds", "6", "--chords", "C G",
                 "--model", composer.model_path, "--out", str(tmp_path / "out"), "--candidates", "1"]) == 0
    task = json.loads((tmp_path / "out" / "piece-1.json").read_text())["task"]
    assert task == {"task": "generate", "chords": "C G", "harmony": 3.0}


@pytest.mark.slow
@pytest.mark.skipif(not (CORPORA / "pop909").is_dir(), reason="needs ../shared/corpora/pop909")
def test_fitting_a_harmoniser_from_the_command_line(tmp_path, capsys):
    """`musenet harmoniser` (one pass) learns: held-out chord tones cost well under the 0.82
    bits a pitch class of guessing each at its base rate; the composer finds the file and
    accompanies with the default lean."""
    model = tiny_composer(tmp_path, default_vocab()).model_path
    assert main(["harmoniser", model, "--corpora", str(CORPORA), "--epochs", "1"]) == 0
    assert "valid:" in capsys.readouterr().out
    harmoniser = Harmoniser.load(model)
    assert harmoniser.trained["valid"]["bits_per_class"] < 0.6
    assert harmoniser.trained["valid"]["p_tones"] > harmoniser.trained["valid"]["p_others"] + 0.3
    from musenet import Composer

    composer = Composer.load(model)
    assert composer.harmoniser is not None and composer.harmony(None) == 3.0


def test_rewriting_a_span_over_chords(tmp_path, shared_midi, capsys):
    """infill with chords: the new span's notes keep to them under a strong lean; the command
    line records them; harmony without chords is refused."""
    composer = tiny_composer(tmp_path, default_vocab())
    song = shared_midi / "one-track" / "Maestro_1.mid"
    for piece in composer.infill(song, 3.0, 6.0, candidates=2, seed=1, chords=["C"], harmony=30.0):
        table = piece.table
        onset = table.seconds(table.onset)
        new = table.select(np.flatnonzero((onset >= 3.0) & (onset < 6.0) & ~table.drum))
        assert len(new) > 3 and np.isin(new.pitch % 12, [0, 4, 7]).all()
    with pytest.raises(MuseNetError, match="harmony leans towards chords"):
        composer.infill(song, 3.0, 6.0, harmony=2.0)
    assert main(["infill", str(song), "--from", "3", "--to", "5", "--chords", "Dm G", "--candidates", "1",
                 "--model", composer.model_path, "--out", str(tmp_path / "out")]) == 0
    task = json.loads((tmp_path / "out" / "infill-1.json").read_text())["task"]
    assert task["chords"] == "Dm G" and task["harmony"] == 3.0

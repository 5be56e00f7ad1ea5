"""Round trips on MIDI made by others (../shared/midi) and on works from music21's corpus."""

import numpy as np
import pytest
from helpers import assert_round_trip

from musenet import MidiError
from musenet.encoding import encode_notes, in_instant_order
from musenet.notes import read_midi
from musenet.vocab import Vocab, default_vocab


@pytest.mark.parametrize("mode", ["beat", "seconds"])
def test_round_trip_every_shared_file(shared_midi, mode):
    files = sorted((shared_midi / "one-track").glob("*.mid")) + sorted((shared_midi / "multitrack").glob("*.mid"))
    files = [f for f in files if f.name != "empty.mid"]
    assert len(files) >= 20
    for path in files:
        assert_round_trip(read_midi(path), default_vocab(mode))


def test_shared_bad_files_give_clear_errors(shared_midi):
    with pytest.raises(MidiError, match=r"corrupted MIDI in track 4 \(bytes 5,924-17,025\): a controller is set "
                       r"to 168, but MIDI values stop at 127"):
        read_midi(shared_midi / "corrupted" / "ValueError_Control168.mid")
    with pytest.raises(MidiError, match="empty.mid: no notes"):
        read_midi(shared_midi / "one-track" / "empty.mid")


@pytest.mark.parametrize(("work", "number"), [("bach/bwv66.6", None), ("essenFolksong/altdeu10", 1),
                                              ("ryansMammoth/7thRegimentReel", None)])
def test_round_trip_music21_corpus_works(tmp_path, work, number):
    music21 = pytest.importorskip("music21")
    try:  # one tune of a collection file, not all 313 of altdeu10 (20 s on a cold music21 cache)
        score = music21.corpus.parse(work, number=number)
    except Exception:  # noqa: BLE001 - the corpus layout differs between music21 versions
        pytest.skip(f"{work} not in this music21 corpus")
    if isinstance(score, music21.stream.Opus):
        score = score.scores[0]
    path = tmp_path / "work.mid"
    score.write("midi", fp=str(path))
    table = read_midi(path)
    assert len(table) >= 20
    for mode in ("beat", "seconds"):
        assert_round_trip(table, default_vocab(mode))
    assert np.allclose(table.onset * 12, np.round(table.onset * 12))  # scores sit on the beat grid


def test_damaged_files_are_explained_in_words(shared_midi):
    """Bytes damaged or cut off give a sentence naming the track, never the reader's own words."""
    rng = np.random.default_rng(0)
    data = (shared_midi / "multitrack" / "Funkytown.mid").read_bytes()
    messages = set()
    for _ in range(60):
        damaged = bytearray(data)
        at = rng.integers(14, len(data), 3)
        damaged[at[0]] = rng.integers(128, 256)
        cut = bytes(damaged[: at[1]]) if rng.random() < 0.3 else bytes(damaged)
        try:
            read_midi(cut)
        except MidiError as err:
            messages.add(str(err))
    assert len(messages) >= 5
    for message in messages:
        assert not any(word in message for word in ("Get ", "MiniMidi", "Invaild", "iostream")), message
        assert "track" in message or "header" in message or "no notes" in message, message


def test_an_instants_order_can_be_changed_after_encoding(shared_midi):
    """`in_instant_order` turns a sequence of one instant order into what `encode_notes`
    writes in the other, both ways, and leaves one already in order as it is."""
    low, top = default_vocab(), Vocab(instant_order="top-first")
    for path in sorted((shared_midi / "multitrack").glob("*.mid"))[:3]:
        table = read_midi(path)
        low_tokens, top_tokens = encode_notes(table, low, "pop"), encode_notes(table, top, "pop")
        assert not np.array_equal(low_tokens, top_tokens)
        np.testing.assert_array_equal(in_instant_order(low_tokens, top), top_tokens)
        np.testing.assert_array_equal(in_instant_order(top_tokens, low), low_tokens)
        np.testing.assert_array_equal(in_instant_order(top_tokens, top), top_tokens)

import numpy as np
import pytest

from musenet import MuseNetError, from_text, to_text
from musenet.vocab import TEMPOS, VELOCITIES, Vocab, default_vocab, parse_pitch, pitch_name, velocity_bins


@pytest.mark.parametrize("mode", ["beat", "seconds"])
def test_names_are_unique_and_text_round_trips(mode):
    vocab = default_vocab(mode)
    assert len(set(vocab.names)) == vocab.size
    ids = np.arange(vocab.size)
    assert (from_text(to_text(ids, vocab), vocab) == ids).all()


def test_layout_and_size():
    beat, seconds = default_vocab("beat"), default_vocab("seconds")
    assert beat.names[beat.START] == "start" and beat.names[beat.END] == "end"
    assert beat.names[beat.wait_offset] == "wait:1" and beat.names[beat.note_offset - 1] == "wait:48"
    assert seconds.names[seconds.note_offset - 1] == "wait:100"
    assert beat.n_tempos == len(TEMPOS) and seconds.n_tempos == 0
    assert beat.size < 8000  # kept small: ranges per family, 8 velocity bins


@pytest.mark.parametrize("mode", ["beat", "seconds"])
def test_blocks_tile_the_ids_in_order(mode):
    vocab = default_vocab(mode)
    blocks = vocab.blocks()
    assert blocks[0][1] == 0 and blocks[-1][2] == vocab.size
    assert all(a[2] == b[1] for a, b in zip(blocks, blocks[1:], strict=False))
    tempo = next(stop - start for name, start, stop in blocks if name == "tempo buckets")
    assert tempo == vocab.n_tempos


def test_text_form_in_musenet_style():
    vocab = default_vocab()
    ids = from_text("bach piano strings start tempo:95 piano:v80:G4 strings:v80:D5 wait:12 piano:v0:G4 end")
    assert to_text(ids) == "bach piano strings start tempo:95 piano:v80:G4 strings:v80:D5 wait:12 piano:v0:G4 end"
    # velocities snap to their bin and flats are read
    assert to_text(from_text("piano:v72:Bb3 drums:v100:C2")) == "piano:v64:A#3 drums:v96:C2"
    assert vocab.token_id("piano:v0:C4") != vocab.token_id("piano:v16:C4")


@pytest.mark.parametrize("text, message", [
    ("bach flute start", "word 2"),
    ("piano:v80:H4", "pitch name"),
    ("piano:v80:C9", "range"),
    ("drums:v0:C2", "no note-off"),
    ("wait:49", "unknown token"),
])
def test_from_text_errors_name_the_word(text, message):
    with pytest.raises(MuseNetError, match=message):
        from_text(text)


def test_pitch_names():
    assert pitch_name(60) == "C4" and pitch_name(0) == "C-1" and pitch_name(127) == "G9"
    assert all(parse_pitch(pitch_name(p)) == p for p in range(128))


def test_velocity_bins_nearest():
    bins = velocity_bins(np.arange(1, 128))
    assert bins.min() == 1 and bins.max() == len(VELOCITIES)
    values = np.array(VELOCITIES)[bins - 1]
    assert np.all(np.abs(values - np.arange(1, 128)) <= 16)
    assert list(np.array(VELOCITIES)[velocity_bins(np.array(VELOCITIES)) - 1]) == list(VELOCITIES)


def test_json_save_load(tmp_path):
    vocab = Vocab("seconds", styles=("jazz", "folk"))
    assert vocab.styles[0] == "unknown"
    vocab.save(tmp_path / "vocab.json")
    loaded = Vocab.load(tmp_path / "vocab.json")
    assert loaded == vocab and loaded.size == vocab.size
    data = vocab.to_dict()
    data["size"] += 1
    with pytest.raises(MuseNetError):
        Vocab.from_dict(data)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(MuseNetError, match="bad.json"):
        Vocab.load(tmp_path / "bad.json")


def test_the_instant_order_is_saved_and_a_file_without_it_is_low_first(tmp_path):
    top = Vocab(styles=("jazz",), instant_order="top-first")
    top.save(tmp_path / "top.json")
    assert Vocab.load(tmp_path / "top.json") == top and top.size == Vocab(styles=("jazz",)).size
    low = Vocab(styles=("jazz",)).to_dict()
    assert "instant_order" not in low  # files written before the choice load as they are
    assert Vocab.from_dict(low).instant_order == "low-first"
    with pytest.raises(MuseNetError, match="instant order"):
        Vocab(instant_order="sideways")


@pytest.mark.parametrize("styles", [("piano",), ("Bad Name",), ("start",)])
def test_bad_style_names(styles):
    with pytest.raises(MuseNetError):
        Vocab(styles=styles)


def test_unknown_style_is_an_error():
    with pytest.raises(MuseNetError, match="unknown style"):
        default_vocab().style_token("polka-dubstep")

"""Audio (FluidSynth) and piano-roll rendering.

The synthesis tests need the `fluidsynth` program and a General MIDI SoundFont (Debian:
apt-get install fluidsynth fluid-soundfont-gm) and are skipped without them.
"""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from musenet import MidiError, MuseNetError, render
from musenet.instruments import FAMILY_ID
from musenet.notes import NoteTable, midi_bytes, to_score, write_midi

# The WAV lasts the MIDI's length plus the kept release (1 s); frames are whole, so allow a frame or two.
LENGTH_TOLERANCE = 0.01
FIRST_ONSET = 0.5  # seconds of silence before the first note, to check that audio and MIDI line up


def short_table() -> NoteTable:
    """About 3 s: a piano tune, a strings chord and a drum beat, 120 BPM then 90 BPM from beat 4."""
    piano = [(1, 1, 72), (2, 1, 74), (3, 1, 76), (4, 1.5, 79)]
    strings = [(1, 3, 60), (1, 3, 64), (4, 1.5, 55)]
    drums = [(1 + i / 2, 0.25, 36 if i % 2 == 0 else 38) for i in range(8)] + [(1, 0.25, 42), (5, 0.25, 49)]
    rows = [(*n, FAMILY_ID["piano"]) for n in piano] + [(*n, FAMILY_ID["strings"]) for n in strings]
    rows += [(*n, FAMILY_ID["drums"]) for n in drums]
    onset, duration, pitch, family = (np.array(column) for column in zip(*rows, strict=True))
    return NoteTable(
        onset=onset.astype(np.float64), duration=duration.astype(np.float64), pitch=pitch.astype(np.int64),
        velocity=np.full(len(onset), 96, np.int64), family=family.astype(np.int64),
        tempo_time=np.array([0.0, 4.0]), tempo_qpm=np.array([120.0, 90.0]),
    ).sorted()


@pytest.fixture(scope="module")
def soundfont() -> Path:
    if shutil.which("fluidsynth") is None:
        pytest.skip("the fluidsynth program is not installed (apt-get install fluidsynth)")
    try:
        return render.find_soundfont()
    except MuseNetError:
        pytest.skip("no General MIDI SoundFont installed (apt-get install fluid-soundfont-gm)")


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as handle:
        assert handle.getsampwidth() == 2 and handle.getnchannels() == 2
        frames = np.frombuffer(handle.readframes(handle.getnframes()), "<i2").reshape(-1, 2)
        return frames.astype(np.float64) / 32768.0, handle.getframerate()


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


def test_short_table_is_what_the_tests_assume():
    table = short_table()
    assert render.midi_seconds(table) == pytest.approx(2.0 + 1.5 * 60 / 90)  # beat 4 at 2 s, then 1.5 beats at 90
    assert render.midi_seconds(midi_bytes(table)) == pytest.approx(render.midi_seconds(table), abs=1e-3)
    assert float(table.seconds(table.onset).min()) == pytest.approx(FIRST_ONSET)


def test_render_wav_matches_the_midi(soundfont, tmp_path):
    table = short_table()
    out = render.render_wav(table, tmp_path / "piece.wav", soundfont=soundfont)
    assert out == tmp_path / "piece.wav"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["piece.wav"]  # no temporary files left
    samples, rate = read_wav(out)
    assert rate == 44100
    midi_length = render.midi_seconds(table)
    assert render.wav_seconds(out) == pytest.approx(midi_length + render.RELEASE_SECONDS, abs=LENGTH_TOLERANCE)
    assert np.abs(samples).max() == pytest.approx(render.PEAK, abs=1e-3)  # normalised to -1 dBFS, not clipped
    assert rms(samples[: int((FIRST_ONSET - 0.05) * rate)]) < 1e-4  # silent before the first note
    assert rms(samples[int(FIRST_ONSET * rate): int(midi_length * rate)]) > 0.02  # and sounding while it plays
    assert np.abs(samples[-10:]).max() < 5e-3  # faded out at the cut (the last 10 of 2205 fade frames)


def test_render_wav_takes_score_bytes_and_path(soundfont, tmp_path):
    table = short_table()
    length = render.midi_seconds(table) + render.RELEASE_SECONDS
    write_midi(table, tmp_path / "in.mid")
    sources = {"score": to_score(table), "bytes": midi_bytes(table), "path": tmp_path / "in.mid"}
    for name, source in sources.items():
        out = render.render_wav(source, tmp_path / "out" / f"{name}.wav", soundfont=str(soundfont), sample_rate=22050)
        samples, rate = read_wav(out)
        assert rate == 22050, name
        assert len(samples) / rate == pytest.approx(length, abs=LENGTH_TOLERANCE), name
        assert rms(samples) > 0.01, name


def test_render_wav_failure_leaves_the_old_file(soundfont, tmp_path):
    out = tmp_path / "piece.wav"
    out.write_bytes(b"old")
    broken = tmp_path / "broken.sf2"
    broken.write_bytes(b"RIFF" + (100).to_bytes(4, "little") + b"sfbk" + b"\0" * 100)  # header passes, body does not
    with pytest.raises(MuseNetError) as info:
        render.render_wav(short_table(), out, soundfont=broken)
    assert "fluidsynth failed" in str(info.value) and "\n" not in str(info.value)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.sf2", "piece.wav"]


def test_render_wav_rejects_bad_midi(soundfont, tmp_path):
    with pytest.raises(MidiError, match="not a MIDI file"):
        render.render_wav(b"not midi at all", tmp_path / "x.wav", soundfont=soundfont)
    with pytest.raises(MidiError, match="no notes"):
        render.render_wav(short_table().select(np.zeros(0, np.int64)), tmp_path / "x.wav", soundfont=soundfont)
    with pytest.raises(MuseNetError, match="sample rate"):
        render.render_wav(short_table(), tmp_path / "x.wav", soundfont=soundfont, sample_rate=1000)
    assert not any(tmp_path.iterdir())


def fake_soundfont(path: Path) -> Path:
    path.write_bytes(b"RIFF" + (4).to_bytes(4, "little") + b"sfbk")
    return path


def test_find_soundfont_order(tmp_path, monkeypatch):
    first, second, third = (fake_soundfont(tmp_path / f"{n}.sf2") for n in ("first", "second", "third"))
    monkeypatch.setattr(render, "SOUNDFONT_PATHS", (str(tmp_path / "missing.sf2"), str(third)))
    monkeypatch.delenv(render.SOUNDFONT_ENV, raising=False)
    assert render.find_soundfont() == third
    monkeypatch.setenv(render.SOUNDFONT_ENV, str(second))
    assert render.find_soundfont() == second
    assert render.find_soundfont(str(first)) == first
    with pytest.raises(MuseNetError, match="no such SoundFont"):
        render.find_soundfont(tmp_path / "nope.sf2")
    monkeypatch.setenv(render.SOUNDFONT_ENV, str(tmp_path / "gone.sf2"))
    with pytest.raises(MuseNetError, match="MUSENET_SOUNDFONT"):  # a wrong setting is an error, not skipped
        render.find_soundfont()
    (tmp_path / "text.sf2").write_text("hello")
    with pytest.raises(MuseNetError, match="not a SoundFont"):
        render.find_soundfont(tmp_path / "text.sf2")


def test_missing_soundfont_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "SOUNDFONT_PATHS", (str(tmp_path / "none.sf2"), str(tmp_path / "sf3/none.sf3")))
    monkeypatch.delenv(render.SOUNDFONT_ENV, raising=False)
    with pytest.raises(MuseNetError) as info:
        render.find_soundfont()
    message = str(info.value)
    assert "\n" not in message
    assert "apt-get install fluidsynth fluid-soundfont-gm" in message and "--soundfont" in message


def test_missing_fluidsynth_is_one_line(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(MuseNetError) as info:
        render.render_wav(short_table(), tmp_path / "x.wav", soundfont=fake_soundfont(tmp_path / "f.sf2"))
    message = str(info.value)
    assert "\n" not in message and "apt-get install fluidsynth" in message
    assert not (tmp_path / "x.wav").exists()


def test_wav_seconds(tmp_path):
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(8000)
        handle.writeframes(np.zeros(12000, "<i2").tobytes())
    assert render.wav_seconds(path) == 1.5
    (tmp_path / "bad.wav").write_bytes(b"nope")
    with pytest.raises(MuseNetError, match="not a readable WAV"):
        render.wav_seconds(tmp_path / "bad.wav")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_pianoroll_png(tmp_path):
    out = render.pianoroll_png(short_table(), tmp_path / "rolls" / "piece.png", title="a test")
    data = out.read_bytes()
    assert png_size(data) == (1200, 500)
    assert 5_000 < len(data) < 1_000_000
    assert sorted(p.name for p in out.parent.iterdir()) == ["piece.png"]


def test_pianoroll_legend_names_the_families_present():
    table = short_table()
    fig, families = render.pianoroll_figure(table, title="a test")
    assert families == ["piano", "strings", "drums"]
    ax = fig.axes[0]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == families
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title() == "a test"
    assert ax.get_xlim()[1] >= render.midi_seconds(table)  # x is seconds through the tempo map, not beats
    only_strings = table.select(table.family == FAMILY_ID["strings"])
    fig, families = render.pianoroll_figure(only_strings)
    assert families == ["strings"]
    assert [text.get_text() for text in fig.axes[0].get_legend().get_texts()] == ["strings"]


def test_pianoroll_of_no_notes(tmp_path):
    empty = short_table().select(np.zeros(0, np.int64))
    fig, families = render.pianoroll_figure(empty)
    assert families == [] and fig.axes[0].get_legend() is None
    assert png_size(render.pianoroll_png(empty, tmp_path / "empty.png").read_bytes()) == (1200, 500)

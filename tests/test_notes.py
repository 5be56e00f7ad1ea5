import io

import mido
import numpy as np
import pytest
from helpers import make_score

from musenet import MidiError
from musenet import notes as notes_module
from musenet.instruments import DRUMS, FAMILY_ID
from musenet.notes import MAX_PEDAL_BEATS, midi_bytes, read_midi, to_score, write_midi


def vlq(n: int) -> bytes:
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


def smf(*tracks: bytes, fmt: int = 1, division: int = 480) -> bytes:
    """A Standard MIDI File from raw track event bytes (end-of-track added)."""
    head = b"MThd" + (6).to_bytes(4, "big") + fmt.to_bytes(2, "big") + len(tracks).to_bytes(2, "big")
    head += division.to_bytes(2, "big")
    body = b""
    for events in tracks:
        events += b"\x00\xff\x2f\x00"
        body += b"MTrk" + len(events).to_bytes(4, "big") + events
    return head + body


NOTE = b"\x00\x90\x3c\x50" + vlq(480) + b"\x80\x3c\x00"
TEMPO_120 = b"\x00\xff\x51\x03" + (500000).to_bytes(3, "big")


def test_read_bytes_and_path_give_the_same_table(tmp_path):
    data = smf(TEMPO_120 + NOTE)
    path = tmp_path / "one.mid"
    path.write_bytes(data)
    for table in (read_midi(data), read_midi(path), read_midi(str(path))):
        assert len(table) == 1 and table.pitch[0] == 60 and table.velocity[0] == 80
        assert table.onset[0] == 0 and table.duration[0] == 1.0 and table.family[0] == FAMILY_ID["piano"]


BAD_FILES = {
    "empty file": b"",
    "not a MIDI file": b"hello, I am a text file and not music at all",
    "corrupted MIDI": smf(TEMPO_120 + NOTE)[:30],  # truncated
    "corrupted MIDI ": smf(b"\x00\xb0\x07\xa8" + NOTE),  # controller value 168 > 127
    "no notes": smf(TEMPO_120),
    "format 2": smf(NOTE, NOTE, fmt=2),
    "SMPTE": smf(NOTE, division=0xE250),
    "absurd tempo": smf(b"\x00\xff\x51\x03\x00\x00\x01" + NOTE),
    "hours long": smf(vlq(0x0FFFFFFF) + b"\x90\x3c\x50" + vlq(10) + b"\x80\x3c\x00", division=1),
}


@pytest.mark.parametrize("reason", list(BAD_FILES))
def test_bad_input_is_one_line_error_naming_the_file(tmp_path, reason):
    path = tmp_path / "bad.mid"
    path.write_bytes(BAD_FILES[reason])
    with pytest.raises(MidiError) as info:
        read_midi(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and reason.strip() in message


def test_over_size_limit_and_missing_file(tmp_path, monkeypatch):
    monkeypatch.setattr(notes_module, "MAX_FILE_BYTES", 100)
    path = tmp_path / "big.mid"
    path.write_bytes(smf(TEMPO_120 + NOTE * 20))
    with pytest.raises(MidiError, match="limit"):
        read_midi(path)
    with pytest.raises(MidiError, match="limit"):
        read_midi(path.read_bytes())
    with pytest.raises(MidiError, match="cannot read"):
        read_midi(tmp_path / "missing.mid")
    with pytest.raises(MidiError, match="give a path"):
        read_midi(12)


def test_tempo_map_kept_and_seconds():
    score = make_score([{"program": 0, "notes": [(0, 1, 60, 80), (4, 1, 62, 80)]}], tempos=[(0, 120), (2, 60)])
    table = read_midi(score)
    np.testing.assert_allclose(table.tempo_time, [0, 2])
    np.testing.assert_allclose(table.tempo_qpm, [120, 60])
    np.testing.assert_allclose(table.seconds(np.array([0, 2, 4])), [0, 1, 3])


def test_sustain_pedal_extends_notes_to_the_pedal_release():
    data = smf(TEMPO_120 + b"\x00\xb0\x40\x7f" + NOTE + vlq(960) + b"\xb0\x40\x00")
    table = read_midi(data)
    assert table.duration[0] == 3.0  # key up after 1 beat, pedal up after 3


def test_a_pedal_held_for_minutes_is_not_read_as_pedalling():
    held = vlq(960) + b"\xb0\x40\x00"  # pedal up 3 beats after the note's release ...
    assert read_midi(smf(TEMPO_120 + b"\x00\xb0\x40\x7f" + NOTE + held)).duration[0] == 3.0
    longer = vlq(480 * MAX_PEDAL_BEATS) + b"\xb0\x40\x00"  # ... or pressed for over MAX_PEDAL_BEATS
    assert read_midi(smf(TEMPO_120 + b"\x00\xb0\x40\x7f" + NOTE + longer)).duration[0] == 1.0


def test_write_one_track_per_family_and_drums_on_channel_10(tmp_path):
    tracks = [{"program": p, "notes": [(0, 1, 60, 80)]} for p in (0, 1, 40, 41, 33)]
    tracks.append({"is_drum": True, "program": 0, "notes": [(0, 0.25, 36, 100), (1, 0.25, 38, 90)]})
    table = read_midi(make_score(tracks))
    write_midi(table, tmp_path / "out.mid")
    midi = mido.MidiFile(tmp_path / "out.mid")
    channels = {}
    for track in midi.tracks:
        for msg in track:
            if msg.type == "program_change":
                channels[track.name] = (msg.channel, msg.program)
    assert channels == {"piano": (0, 0), "strings": (1, 48), "bass": (2, 33), "drums": (9, 0)}
    again = read_midi(tmp_path / "out.mid")
    assert len(again) == 7 and (again.family == DRUMS).sum() == 2


def test_sixteen_channels_written_by_mido():
    """A format-0 file using all 16 channels, written by another library, reads with the right families."""
    programs = [0, 40, 73, 61, 52, 46, 25, 33, 81, 0, 1, 41, 71, 56, 24, 32]
    track = mido.MidiTrack()
    for channel, program in enumerate(programs):
        track.append(mido.Message("program_change", channel=channel, program=program, time=0))
    for channel in range(16):
        track.append(mido.Message("note_on", channel=channel, note=50 + channel, velocity=90, time=0))
    for i, channel in enumerate(range(16)):
        track.append(mido.Message("note_off", channel=channel, note=50 + channel, time=480 if i == 0 else 0))
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    table = read_midi(buffer.getvalue())
    assert len(table) == 16
    by_pitch = dict(zip(table.pitch.tolist(), table.family.tolist(), strict=True))
    assert by_pitch[59] == DRUMS
    assert by_pitch[50] == FAMILY_ID["piano"] and by_pitch[51] == FAMILY_ID["strings"]
    assert by_pitch[64] == FAMILY_ID["guitar"] and by_pitch[65] == FAMILY_ID["bass"]


def test_to_score_is_readable_by_mido():
    table = read_midi(make_score([{"program": 0, "notes": [(0, 1, 60, 80)]}]))
    data = midi_bytes(to_score(table))
    assert mido.MidiFile(file=io.BytesIO(data)).length == pytest.approx(0.5, abs=0.01)

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_score

import musenet
from musenet.cli import main
from musenet.notes import read_midi, write_midi


@pytest.fixture
def song(tmp_path):
    path = tmp_path / "song.mid"
    write_midi(read_midi(make_score([
        {"program": 0, "notes": [(0, 1, 60, 80), (1, 1, 64, 80)]},
        {"is_drum": True, "notes": [(0, 0.25, 36, 100)]},
    ])), path)
    return path


def test_tokens_prints_text_and_decode_writes_midi(song, tmp_path, capsys):
    assert main(["tokens", str(song), "--style", "bach"]) == 0
    text = capsys.readouterr().out.strip()
    assert text.startswith("bach piano drums start tempo:120 ") and text.endswith(" end")
    (tmp_path / "song.txt").write_text(text)
    out = tmp_path / "again.mid"
    assert main(["tokens", "--decode", str(tmp_path / "song.txt"), "-o", str(out)]) == 0
    assert "3 notes" in capsys.readouterr().out
    assert main(["tokens", str(out), "--style", "bach"]) == 0
    assert capsys.readouterr().out.strip() == text


def test_seconds_mode(song, capsys):
    assert main(["tokens", str(song), "--time", "seconds"]) == 0
    text = capsys.readouterr().out
    assert "tempo:" not in text and "wait:50" in text  # 1 beat at 120 BPM = 50 steps of 10 ms


def test_instruments_and_vocab(capsys):
    assert main(["instruments"]) == 0
    assert "Orchestral Harp" in capsys.readouterr().out
    assert main(["vocab"]) == 0
    assert "tokens" in capsys.readouterr().out
    assert main(["vocab", "--json", "--time", "seconds"]) == 0
    assert '"time_mode": "seconds"' in capsys.readouterr().out


def test_version_is_the_projects(capsys):
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert musenet.__version__ == re.search(r'^version = "(.+)"', pyproject, re.M).group(1)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"musenet {musenet.__version__}"


@pytest.mark.parametrize("args, message", [
    (["tokens", "MISSING.mid"], "MISSING.mid: cannot read"),
    (["tokens", "SONG", "--style", "nope"], "unknown style"),
    (["tokens", "--decode", "SONG"], "needs -o"),
])
def test_errors_are_one_line_exit_1(song, capsys, args, message):
    args = [str(song) if a == "SONG" else a for a in args]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("musenet: error:")


def test_bad_file_via_the_real_command(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x10\x00\x00\x90")
    result = subprocess.run([sys.executable, "-m", "musenet", "tokens", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "bad.mid: corrupted MIDI" in result.stderr
    help_text = subprocess.run([sys.executable, "-m", "musenet", "--help"], capture_output=True, text=True).stdout
    assert "tokens" in help_text and "instruments" in help_text

"""The README's promises: its Quickstart runs, and its tables match the code."""

import re
import shlex
from pathlib import Path

import pytest

from musenet.cli import main
from musenet.instruments import family_table
from musenet.vocab import default_vocab

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_quickstart_musenet_commands_run(tmp_path, monkeypatch, capsys):
    quickstart = README.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quickstart.splitlines() if line.startswith("musenet ")]
    assert len(commands) >= 4
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").mkdir()
    example = Path(__file__).parents[1] / "examples" / "ode-to-joy.txt"
    (tmp_path / "examples" / "ode-to-joy.txt").write_text(example.read_text())
    for command in commands:
        if command.startswith("musenet serve"):  # runs until stopped: check that it parses, not that it serves
            with pytest.raises(SystemExit) as parsed:
                main([*shlex.split(command)[1:], "--help"])
            assert parsed.value.code == 0
            continue
        assert main(shlex.split(command)[1:]) == 0, command
    assert (tmp_path / "ode.mid").stat().st_size > 100
    assert "bach piano strings start" in capsys.readouterr().out


def test_tables_and_sizes_match_the_code():
    assert family_table(markdown=True) in README
    for mode in ("beat", "seconds"):
        assert f"{default_vocab(mode).size:,} tokens in `{mode}` mode" in README
    assert re.search(r"\| command \| what it does \|", README)

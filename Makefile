# make test   set up .venv on a fresh machine (CPU torch where there is no GPU) and run the tests
# make lint   ruff over the code
# make demo   set up, then compose a piece with the bundled model: MIDI, WAV and a piano roll in demo/
# make bench  the tokenizer benchmark against MidiTok on ../shared/midi
VENV ?= .venv
PY := $(VENV)/bin/python
MIDI_DIR ?= ../shared/midi

.PHONY: setup test test-slow lint demo bench clean

setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV) test
	touch $@

test: setup lint
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

lint: setup
	$(PY) -m ruff check src tests benchmarks

demo: setup
	$(PY) -m musenet generate --style irish --instruments strings,guitar --seconds 45 --seed 1 \
		--wav --png --out demo
	@echo "demo: listen to demo/piece-1.wav, look at demo/piece-1.png, open demo/piece-1.mid in any MIDI player"

bench: setup
	bash scripts/setup.sh $(VENV) test,bench
	$(PY) benchmarks/tokenizer.py $(MIDI_DIR)
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

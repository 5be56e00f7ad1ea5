# make test   set up .venv on a fresh machine (CPU torch where there is no GPU) and run the tests
# make lint   ruff over the code
# make bench  the tokenizer benchmark against MidiTok on ../shared/midi
VENV ?= .venv
PY := $(VENV)/bin/python
MIDI_DIR ?= ../shared/midi

.PHONY: setup test test-slow lint bench clean

setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV) test,bench
	touch $@

test: setup lint
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

lint: setup
	$(PY) -m ruff check src tests benchmarks

bench: setup
	$(PY) benchmarks/tokenizer.py $(MIDI_DIR)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

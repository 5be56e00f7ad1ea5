#!/usr/bin/env bash
# Fingerprints of what `musenet generate` writes for fixed seeds, to check that a refactor
# changes no byte: run it before and after and compare the printed checksums.
# Covers: no prompt with a sliding window (2 candidates x 70 s), a multitrack prompt, a
# 6-note prompt in soft mode with top-k and top-p 1, and both precisions (float32, int8).
# Usage: scripts/generation-fingerprint.sh OUT_DIR [SHARED_MIDI_DIR]   (default ../shared/midi)
set -euo pipefail
out=${1:?usage: scripts/generation-fingerprint.sh OUT_DIR [SHARED_MIDI_DIR]}
midi=${2:-../shared/midi}
generate=(${PYTHON:-.venv/bin/python} -m musenet generate --compiled off)  # the same bytes whether or not a compiled step was built
mkdir -p "$out"
"${generate[@]}" --style irish --instruments strings,guitar --seconds 70 --seed 3 --candidates 2 \
  --out "$out/noprompt" >/dev/null
"${generate[@]}" --prompt "$midi/multitrack/Funkytown.mid" --prompt-seconds 8 --instruments piano,drums,bass,guitar \
  --seconds 40 --seed 4 --candidates 2 --out "$out/prompt" >/dev/null
"${generate[@]}" --prompt "$midi/one-track/Maestro_1.mid" --prompt-notes 6 --style bach --instruments any --seconds 20 \
  --seed 5 --top-p 1 --top-k 30 --temperature 0.9 --instrument-mode soft --out "$out/prompt-soft" >/dev/null
"${generate[@]}" --style bach --seconds 15 --seed 6 --precision int8 --out "$out/int8" >/dev/null
"${generate[@]}" --style pop --instruments voice,piano,bass,drums --seconds 30 --seed 7 --precision float32 \
  --out "$out/float32" >/dev/null
(cd "$out" && md5sum -- */*.mid */*.json)

#!/usr/bin/env bash
# Set up a fresh machine for musenet: a virtual environment with the package and its
# test extras, and a CPU build of torch where no NVIDIA GPU is present (a plain
# `pip install torch` pulls several GB of CUDA packages).
# Usage: scripts/setup.sh [VENV_DIR] [EXTRAS]     (defaults: .venv test)
set -euo pipefail
venv=${1:-.venv}
extras=${2:-test}
torch_spec="torch>=2.2,<3"

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { echo "musenet needs Python 3.10 or newer ($python is $("$python" --version 2>&1))" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip setuptools wheel

if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found: installing torch with CUDA"
    "${pip[@]}" install -q "$torch_spec"
  elif "${pip[@]}" install -q --no-index --no-deps "$torch_spec" 2>/dev/null; then
    echo "setup: no GPU: installed the local CPU build of torch"
  else
    echo "setup: no GPU: installing the CPU build of torch from the PyTorch index"
    "${pip[@]}" install -q "$torch_spec" --index-url https://download.pytorch.org/whl/cpu \
      --extra-index-url https://pypi.org/simple
  fi
fi

# System packages (FluidSynth and a General MIDI SoundFont for audio; Chromium for the web
# co-composer's browser test, driven by Playwright; g++ to build the compiled decode step,
# kernels.py), with apt when we can.
apt_packages=(${MUSENET_APT_PACKAGES-fluidsynth fluid-soundfont-gm chromium g++})
if [ ${#apt_packages[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      "${missing[@]}"; } \
      || echo "setup: could not apt-get install ${missing[*]}; install them by hand" >&2
  fi
fi

"${pip[@]}" install -q -e ".[$extras]"
"$venv/bin/python" -c 'import musenet, torch; print(f"setup: musenet {musenet.__version__}, torch {torch.__version__}")'

# The bundled model's compiled decoder for this CPU (kernels.py; about 30 s once, instant
# when found again), so that composing uses it from the first piece. Composing works without
# it (MUSENET_NO_COMPILE=1 skips it).
if [ -z "${MUSENET_NO_COMPILE:-}" ]; then
  "$venv/bin/python" -m musenet compile \
    || echo "setup: no compiled decoder for this CPU (see above); composing works without it" >&2
fi

#!/usr/bin/env bash
# Pack what a training run on a lent GPU machine needs into .gpu/ (.gitignore'd; the device
# tool's `carry` takes it there): a built dataset, xz-compressed, and the wheels that machine
# lacks (symusic and its two small pure-Python dependencies, for its Python 3.12). About 15 MB
# for data/band2, well under the 64 MiB a call may carry with the tree.
# Usage: scripts/gpu-kit.sh DATA_DIR        (then: scripts/gpu-train.sh, run there; KIT=DIR packs
# into DIR instead of .gpu)
set -euo pipefail
data=$(cd "${1:?usage: scripts/gpu-kit.sh DATA_DIR}" && pwd)
kit=${KIT:-.gpu}
[ "$kit" = .gpu ] || kit=$(mkdir -p "$kit" && cd "$kit" && pwd)
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
rm -rf "$kit"
mkdir -p "$kit/wheels"
(cd "$data" && tar -cf - vocab.json manifest.json index.npz tokens-*.bin) | xz -T2 -6 > "$kit/data.tar.xz"
symusic=$("$python" -c 'import symusic; print(symusic.__version__)')
"$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$kit/wheels" \
  "symusic==$symusic" pySmartDL platformdirs
du -sh "$kit" "$kit"/*

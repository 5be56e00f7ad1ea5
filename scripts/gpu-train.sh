#!/usr/bin/env bash
# A training run on a lent GPU machine, from the kit of scripts/gpu-kit.sh to an exported
# model in $OUT (what comes back: the model, its metrics, the log's tail). Through the device
# tool, in the repository root, carrying .gpu:
#   bash scripts/gpu-train.sh CONFIG MINUTES [musenet train options, e.g. --init src/musenet/default_model]
# MINUTES is the training's wall-clock budget (`musenet train --minutes`); leave room in the
# call's timeout for start-up (about a minute), the final evaluation and the export.
# Tested on a CPU with: PYTHON=.venv/bin/python OUT=/tmp/out bash scripts/gpu-train.sh CONFIG 0.5 (KIT=DIR
# reads the kit from DIR instead of .gpu)
set -euo pipefail
config=${1:?usage: gpu-train.sh CONFIG MINUTES [train options]}
minutes=${2:?usage: gpu-train.sh CONFIG MINUTES [train options]}
shift 2
kit=${KIT:-.gpu}
[ "$kit" = .gpu ] || kit=$(cd "$kit" && pwd)
[ ! -f "$config" ] || config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
out=${OUT:?OUT: the folder whose files come back}
work=$(mktemp -d)
if ! "$python" -c 'import symusic' 2>/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work/site" "$kit"/wheels/*.whl
  export PYTHONPATH="$work/site"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$work/data" "$out"
xz -dc "$kit/data.tar.xz" | tar -C "$work/data" -xf -
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available() and torch.cuda.get_device_name())'
"$python" -m musenet train --data "$work/data" --config "$config" --out "$work/run" --minutes "$minutes" "$@" \
  > "$out/train.log" 2>&1 || { tail -c 3000 "$out/train.log"; exit 1; }
"$python" -m musenet export "$work/run" --out "$out/model"
cp "$work/run/metrics.jsonl" "$out/"
tr '\r' '\n' < "$out/train.log" | grep -v 'training:' | tail -20
tail -3 "$out/metrics.jsonl"
ls -la "$out/model"

#!/usr/bin/env bash
# Which onnxruntime versions load the ONNX files medquant writes: the tiny
# BiomedCLIP fixture exported (FP32 vision + text) and quantized with each
# `quantize onnx` weight option and static QDQ, each run in every listed onnxruntime (one
# throwaway venv per version under $MEDQUANT_CACHE/ort-compat/, pip-installed
# once) and compared with the pinned onnxruntime's outputs. Prints a markdown
# table (docs/formats.md).
#
# Usage: bench/ort_compat.sh [path/to/medquant] [--versions "1.16.3 1.24.4"]
# (default: 1.15.1, the oldest with Python 3.11 wheels, to 1.30.0; ~2 minutes
# per version for the first install)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/env.sh
source "$here/../scripts/env.sh"
bin="${MEDQUANT_BIN:-$MEDQUANT_ROOT/build/release/src/cli/medquant}"
if [[ $# -gt 0 && "$1" != --* ]]; then bin="$1"; shift; fi
versions="1.15.1 1.16.3 1.17.3 1.18.1 1.20.1 1.22.1 1.23.2 1.24.4 1.26.0 1.28.0 1.30.0"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --versions) versions="$2"; shift 2 ;;
    *) echo "error: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x "$bin" ]] || { echo "error: medquant binary not found at $bin (build first, or pass its path)" >&2; exit 1; }
fixture="$MEDQUANT_ROOT/tests/fixtures/tiny-biomedclip"
work="$(mktemp -d "${TMPDIR:-/tmp}/ort_compat.XXXXXX")"
trap 'rm -rf "$work"' EXIT

mq() { "$bin" -q "$@" > /dev/null; }
mq export biomedclip "$fixture" -o "$work"
v="$work/biomedclip_vision.onnx"
mq quantize onnx "$v" -o "$work/int8_qint8.onnx"
mq quantize onnx "$v" -o "$work/int8_qint8_per_channel.onnx" --per-channel
mq quantize onnx "$v" -o "$work/int8_qint8_reduce_range.onnx" --reduce-range
mq quantize onnx "$v" -o "$work/int8_quint8.onnx" --weight-type quint8
mq quantize onnx "$v" -o "$work/int8_quint8_conv.onnx" --weight-type quint8 --op-types MatMul,Conv
mq quantize onnx "$v" -o "$work/int8_qint8_conv.onnx" --op-types MatMul,Conv 2> /dev/null
mq quantize onnx "$v" -o "$work/int8_static_matmul.onnx" --static --calib "$fixture/images" --op-types MatMul
mq quantize onnx "$v" -o "$work/int8_static_default_ops.onnx" --static --calib "$fixture/images"
mq quantize onnx "$work/biomedclip_text.onnx" -o "$work/text_int8_qint8.onnx"
models=("$work/biomedclip_vision.onnx" "$work/biomedclip_text.onnx" "$work"/int8_*.onnx "$work/text_int8_qint8.onnx")

# Inputs, and the expected outputs from the pinned onnxruntime.
"$MEDQUANT_VENV/bin/python" - "$work" "${models[@]}" <<'EOF'
import os, sys
import numpy as np, onnxruntime as ort
folder, models = sys.argv[1], sys.argv[2:]
rng = np.random.default_rng(0)
text = ort.InferenceSession(models[1]).get_inputs()
size = ort.InferenceSession(models[0]).get_inputs()[0].shape
inputs = {"pixel_values": rng.standard_normal(size).astype(np.float32),
          "input_ids": rng.integers(5, 100, text[0].shape).astype(np.int64),
          "attention_mask": np.ones(text[1].shape, np.int64)}
np.savez(os.path.join(folder, "inputs.npz"), **inputs)
for m in models:
    s = ort.InferenceSession(m)
    out = s.run(None, {i.name: inputs[i.name] for i in s.get_inputs()})[0]
    np.save(os.path.join(folder, os.path.splitext(os.path.basename(m))[0] + ".expected.npy"), out)
EOF
pinned=$("$MEDQUANT_VENV/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)')

for ver in $versions; do
  venv="$MEDQUANT_CACHE/ort-compat/onnxruntime-$ver"
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import onnxruntime' 2> /dev/null; then
    echo "installing onnxruntime $ver into $venv ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" -q install "onnxruntime==$ver" "numpy<2" >&2
  fi
  "$venv/bin/python" "$here/ort_compat.py" "$work" "${models[@]}" > "$work/result-$ver.tsv"
done

# One row per version, one column per file.
{
  echo "Each cell: the file loads and runs (max abs difference of its output to onnxruntime $pinned's), or the load error."
  echo
  printf '| onnxruntime |'
  for m in "${models[@]}"; do printf ' %s |' "$(basename "$m" .onnx)"; done
  printf '\n| --- |'
  for _ in "${models[@]}"; do printf ' --- |'; done
  printf '\n'
  for ver in $versions; do
    printf '| %s |' "$ver"
    for m in "${models[@]}"; do
      stem=$(basename "$m" .onnx)
      IFS=$'\t' read -r _ status detail < <(grep -P "^$stem\t" "$work/result-$ver.tsv")
      if [[ $status == ok ]]; then printf ' ok (%s) |' "$detail"
      else detail=${detail#*NOT_IMPLEMENTED : } detail=${detail%% node with name*}; printf ' **fails**: %s |' "${detail//|/\\|}"; fi
    done
    printf '\n'
  done
}

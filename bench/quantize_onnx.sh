#!/usr/bin/env bash
# medquant quantize onnx vs onnxruntime quantize_dynamic on a ViT-B/16-shaped
# encoder: wall time, peak RSS, output size, cosine to FP32 (bench/quantize_onnx.py);
# --static: quantize_static (QDQ) with 32 calibration inputs instead.
# Usage: bench/quantize_onnx.sh [path/to/medquant] [--static] [--out row.json]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/env.sh
source "$here/../scripts/env.sh"
bin="${MEDQUANT_BIN:-$MEDQUANT_ROOT/build/release/src/cli/medquant}"
if [[ $# -gt 0 && "$1" != --* ]]; then bin="$1"; shift; fi
[[ -x "$bin" ]] || { echo "error: medquant binary not found at $bin (build first, or pass its path)" >&2; exit 1; }
exec "$MEDQUANT_VENV/bin/python" "$here/quantize_onnx.py" --medquant "$bin" "$@"

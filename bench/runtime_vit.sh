#!/usr/bin/env bash
# medquant's ONNX executor vs ONNX Runtime on a ViT-B/16 vision encoder, FP32
# and INT8, 1 and 2 threads (bench/runtime_vit.py). JSON rows on stdout.
# Usage: bench/runtime_vit.sh [path/to/medquant] [--runs N] [--threads 1,2] [--models all|fp32,qdq,...] [--out rows.json]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/env.sh
source "$here/../scripts/env.sh"
bin="${MEDQUANT_BIN:-$MEDQUANT_ROOT/build/release/src/cli/medquant}"
if [[ $# -gt 0 && "$1" != --* ]]; then bin="$1"; shift; fi
[[ -x "$bin" ]] || { echo "error: medquant binary not found at $bin (build first, or pass its path)" >&2; exit 1; }
exec "$MEDQUANT_VENV/bin/python" "$here/runtime_vit.py" --medquant "$bin" "$@"

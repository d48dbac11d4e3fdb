#!/usr/bin/env bash
# `medquant classify` vs the same with ONNX Runtime in Python, FP32 and INT8
# vision models, on the tiny fixture and (if present) full-size BiomedCLIP
# (bench/classify.py explains what is timed). JSON rows on stdout.
# Usage: bench/classify.sh [path/to/medquant] [--runs N] [--threads 1,2] [--no-full] [--out rows.json]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/env.sh
source "$here/../scripts/env.sh"
bin="${MEDQUANT_BIN:-$MEDQUANT_ROOT/build/release/src/cli/medquant}"
if [[ $# -gt 0 && "$1" != --* ]]; then bin="$1"; shift; fi
[[ -x "$bin" ]] || { echo "error: medquant binary not found at $bin (build first, or pass its path)" >&2; exit 1; }
MEDQUANT_CACHE="$MEDQUANT_CACHE" exec "$MEDQUANT_VENV/bin/python" "$here/classify.py" --medquant "$bin" "$@"

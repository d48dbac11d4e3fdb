#!/usr/bin/env bash
# Set up, build, and run medquant's main job on the bundled tiny models
# (`medquant demo`): BiomedCLIP checkpoint -> ONNX FP32 -> INT8 + labels,
# Gemma 3 checkpoint -> GGUF Q4_K_S + F16 mmproj, each validated, then
# test-all on the deployment folder with a report. Re-running skips the steps
# whose outputs are up to date.
# Usage: scripts/demo.sh [output-dir]      (default: build/demo)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup-deps.sh
source scripts/env.sh
cmake --preset release -DMEDQUANT_LLAMA_PREFIX="$MEDQUANT_LLAMA_PREFIX" -DMEDQUANT_VENV="$MEDQUANT_VENV" >/dev/null
cmake --build --preset release
mq="$repo/build/release/src/cli/medquant"
out="$(mkdir -p "${1:-$repo/build/demo}" && cd "${1:-$repo/build/demo}" && pwd)"

echo "== $("$mq" --version)"
"$mq" demo -o "$out"

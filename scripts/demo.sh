#!/usr/bin/env bash
# Set up, build, and run medquant's main job on the bundled tiny models.
# Usage: scripts/demo.sh [output-dir]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup-deps.sh
source scripts/env.sh
cmake --preset release -DMEDQUANT_LLAMA_PREFIX="$MEDQUANT_LLAMA_PREFIX" -DMEDQUANT_VENV="$MEDQUANT_VENV" >/dev/null
cmake --build --preset release
mq="$repo/build/release/src/cli/medquant"
fixtures="$repo/tests/fixtures"

echo "== medquant $("$mq" --version)"
shopt -s nullglob
for f in "$fixtures"/*/*.safetensors "$fixtures"/*/*.gguf "$fixtures"/*/*.onnx; do
  echo
  echo "== medquant inspect ${f#"$repo"/}"
  "$mq" inspect "$f"
done

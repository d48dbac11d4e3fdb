#!/usr/bin/env bash
# Every benchmark: medquant and its peer side by side in one run, each on the
# same input, figures and ratios printed (rows also appended to the JSONL
# file given by --out). The big inputs (Gemma-3-4B- and BiomedCLIP-shaped
# random checkpoints) are made once into $MEDQUANT_CACHE/bench/; the ones that
# need torch (export, convert) use tools/.venv (tools/setup-venv.sh).
# Usage: scripts/bench.sh [NAME...]   names: quant quantize_gguf quantize_onnx
#                                     runtime_vit export_biomedclip convert_gguf classify validate
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup-deps.sh
source scripts/env.sh
cmake --preset release -DMEDQUANT_LLAMA_PREFIX="$MEDQUANT_LLAMA_PREFIX" -DMEDQUANT_VENV="$MEDQUANT_VENV" >/dev/null
cmake --build --preset release
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(quant quantize_gguf quantize_onnx runtime_vit export_biomedclip convert_gguf classify validate)
for name in "${names[@]}"; do
  echo "== bench $name"
  if [[ "$name" == quant ]]; then
    build/release/bench/bench_quant
  else
    bash "bench/$name.sh"
  fi
done

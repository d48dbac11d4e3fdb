#!/usr/bin/env bash
# Set up, build, and run medquant's main job on the bundled tiny models:
# BiomedCLIP checkpoint -> ONNX FP32 -> INT8, Gemma 3 checkpoint -> GGUF BF16
# + mmproj -> Q4_K_S, then validate every build (test-all) with a report.
# Usage: scripts/demo.sh [output-dir]      (default: build/demo)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup-deps.sh
source scripts/env.sh
cmake --preset release -DMEDQUANT_LLAMA_PREFIX="$MEDQUANT_LLAMA_PREFIX" -DMEDQUANT_VENV="$MEDQUANT_VENV" >/dev/null
cmake --build --preset release
mq="$repo/build/release/src/cli/medquant"
fixtures="$repo/tests/fixtures"
out="$(mkdir -p "${1:-$repo/build/demo}" && cd "${1:-$repo/build/demo}" && pwd)"
clip="$out/models/biomedclip"
gemma="$out/models/medgemma"
mkdir -p "$clip" "$gemma"

step() { echo; echo "== $*"; }

echo "== $("$mq" --version)"

step "verify the checkpoints"
"$mq" verify "$fixtures/tiny-biomedclip"
"$mq" verify "$fixtures/tiny-gemma3"

step "BiomedCLIP: checkpoint -> ONNX FP32 (L2-normalised embeddings)"
"$mq" export biomedclip "$fixtures/tiny-biomedclip" -o "$clip"

step "BiomedCLIP: ONNX FP32 -> INT8 (dynamic, like onnxruntime's quantize_dynamic)"
"$mq" quantize onnx "$clip/biomedclip_vision.onnx" -o "$clip/biomedclip_vision_int8.onnx"

step "BiomedCLIP: embed the 30 built-in medical labels, classify the sample images (FP32 and INT8)"
"$mq" embed-labels --text "$clip/biomedclip_text.onnx" --vocab "$fixtures/tiny-biomedclip/vocab.txt" \
  -o "$clip/labels.json"
"$mq" classify "$fixtures"/tiny-biomedclip/images/* --vision "$clip/biomedclip_vision.onnx" \
  --labels "$clip/labels.json" --top 3
"$mq" classify "$fixtures"/tiny-biomedclip/images/* --vision "$clip/biomedclip_vision_int8.onnx" \
  --labels "$clip/labels.json" --top 3

step "MedGemma: Hugging Face checkpoint -> GGUF BF16 text model + F16 vision projector"
"$mq" -q convert gguf "$fixtures/tiny-gemma3" -o "$gemma/tiny-gemma3-bf16.gguf" \
  --mmproj "$gemma/mmproj-tiny-gemma3-f16.gguf" --mmproj-outtype f16
"$mq" inspect "$gemma/mmproj-tiny-gemma3-f16.gguf" | head -n 12

step "MedGemma: GGUF BF16 -> Q4_K_S (byte-identical to llama-quantize)"
"$mq" -q quantize gguf "$gemma/tiny-gemma3-bf16.gguf" -o "$gemma/tiny-gemma3-q4_k_s.gguf" --type Q4_K_S
"$mq" inspect "$gemma/tiny-gemma3-q4_k_s.gguf" | tail -n 3

step "validate every build against its reference (test-all)"
"$mq" test-all "$out" --ctx 64 --report "$out/report"

#!/usr/bin/env bash
# medquant convert gguf vs llama.cpp's convert_hf_to_gguf.py (the pinned one,
# run in tools/.venv, which has torch) on a MedGemma-4B-shaped Hugging Face
# checkpoint (random bf16, 2 shards, ~8.6 GB, made once by
# bench/make_gemma3_4b_hf.py into $MEDQUANT_CACHE/bench/hf/, never committed):
#
#   bf16     text model, both converters
#   q4_k_s   medquant in one pass vs the converter to BF16 then llama-quantize
#            Q4_K_S (times added, peak RSS the larger of the two)
#   mmproj   the vision projector, f16
#
# Wall time and peak RSS from GNU time, the sha256 of each output; the page
# cache is warmed with the checkpoint before every run. 2 threads.
#
# Usage: bench/convert_gguf.sh [path/to/medquant] [--rows "bf16 q4_k_s mmproj"] [--out rows.jsonl]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/env.sh
source "$here/../scripts/env.sh"
bin="${MEDQUANT_BIN:-$MEDQUANT_ROOT/build/release/src/cli/medquant}"
if [[ $# -gt 0 && "$1" != --* ]]; then bin="$1"; shift; fi
rows="bf16 q4_k_s mmproj"
out_json=""
threads=2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rows) rows="$2"; shift 2 ;;
    --out) out_json="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    *) echo "error: unknown argument $1" >&2; exit 2 ;;
  esac
done
tools_py="$MEDQUANT_ROOT/tools/.venv/bin/python"
convert="$MEDQUANT_LLAMA_PREFIX/share/llama.cpp/convert_hf_to_gguf.py"
gguf_py="$MEDQUANT_LLAMA_PREFIX/share/llama.cpp/gguf-py"
quantize="$MEDQUANT_LLAMA_PREFIX/bin/llama-quantize"
[[ -x "$bin" ]] || { echo "error: medquant binary not found at $bin (build first, or pass its path)" >&2; exit 1; }
[[ -x "$tools_py" ]] || { echo "error: $tools_py not found (tools/setup-venv.sh: the converter needs torch)" >&2; exit 1; }
[[ -f "$convert" && -x "$quantize" ]] || { echo "error: llama.cpp not found under $MEDQUANT_LLAMA_PREFIX (scripts/setup-deps.sh)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "error: /usr/bin/time (GNU time) is needed for peak RSS" >&2; exit 1; }

dir="$MEDQUANT_CACHE/bench/hf"
model="$dir/medgemma-4b-it"  # the folder name gives general.name / basename / size label
mkdir -p "$dir"
if [[ ! -f "$model/model.safetensors.index.json" ]]; then
  echo "generating $model (once, ~8.6 GB) ..." >&2
  "$tools_py" "$here/make_gemma3_4b_hf.py" "$model"
fi
work="$(mktemp -d "$MEDQUANT_CACHE/bench/convert.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Runs a command under GNU time; sets secs and rss_mb.
measure() {
  local log="$work/time.log"
  cat "$model"/*.safetensors > /dev/null  # same warm page cache for every run
  /usr/bin/time -v "$@" > "$work/stdout.log" 2> "$log" || { tail -30 "$log" >&2; exit 1; }
  local wall
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")
  secs=$(awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }' <<< "$wall")
  rss_mb=$(awk '/Maximum resident set size/ { printf "%.0f", $NF / 1024 }' "$log")
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
reference_convert() {  # reference_convert OUT OUTTYPE [--mmproj]
  measure env PYTHONPATH="$gguf_py" HF_HUB_OFFLINE=1 "$tools_py" "$convert" "$model" --outfile "$1" --outtype "$2" ${3:-}
}
row() {  # row NAME MEDQUANT_S REF_S MEDQUANT_MB REF_MB MEDQUANT_SHA REF_SHA
  local same speedup
  same=$([[ "$6" == "$7" ]] && echo yes || echo NO)
  speedup=$(awk -v a="$3" -v b="$2" 'BEGIN { printf "%.2f", a / b }')
  printf '%-8s  %12.2f  %12.2f  %6sx  %12s  %12s  %s\n' "$1" "$2" "$3" "$speedup" "$4" "$5" "$same"
  if [[ -n "$out_json" ]]; then
    printf '{"bench":"convert_gguf","model":"medgemma-4b-shaped-bf16","row":"%s","threads":%s,"medquant_s":%s,"reference_s":%s,"speedup":%s,"medquant_rss_mb":%s,"reference_rss_mb":%s,"medquant_sha256":"%s","reference_sha256":"%s","identical":%s}\n' \
      "$1" "$threads" "$2" "$3" "$speedup" "$4" "$5" "$6" "$7" "$([[ $same == yes ]] && echo true || echo false)" >> "$out_json"
  fi
}

printf '%-8s  %12s  %12s  %7s  %12s  %12s  %s\n' row "medquant s" "reference s" speedup "medquant MB" "reference MB" "same bytes"
ref_bf16="" ref_bf16_s=0 ref_bf16_mb=0
need_ref_bf16() {
  [[ -n "$ref_bf16" ]] && return
  ref_bf16="$work/ref-bf16.gguf"
  reference_convert "$ref_bf16" bf16
  ref_bf16_s=$secs ref_bf16_mb=$rss_mb
}
for r in $rows; do
  case "$r" in
    bf16)
      measure "$bin" --threads "$threads" -q convert gguf "$model" -o "$work/mq-bf16.gguf" --outtype bf16
      m_s=$secs m_mb=$rss_mb m_sha=$(sha "$work/mq-bf16.gguf"); rm -f "$work/mq-bf16.gguf"
      need_ref_bf16
      row bf16 "$m_s" "$ref_bf16_s" "$m_mb" "$ref_bf16_mb" "$m_sha" "$(sha "$ref_bf16")"
      ;;
    q4_k_s)
      measure "$bin" --threads "$threads" -q convert gguf "$model" -o "$work/mq-q4ks.gguf" --outtype q4_k_s
      m_s=$secs m_mb=$rss_mb m_sha=$(sha "$work/mq-q4ks.gguf"); rm -f "$work/mq-q4ks.gguf"
      need_ref_bf16
      measure "$quantize" "$ref_bf16" "$work/ref-q4ks.gguf" Q4_K_S "$threads"
      r_s=$(awk -v a="$ref_bf16_s" -v b="$secs" 'BEGIN { print a + b }')
      r_mb=$(( rss_mb > ref_bf16_mb ? rss_mb : ref_bf16_mb ))
      r_sha=$(sha "$work/ref-q4ks.gguf"); rm -f "$work/ref-q4ks.gguf"
      row q4_k_s "$m_s" "$r_s" "$m_mb" "$r_mb" "$m_sha" "$r_sha"
      ;;
    mmproj)
      measure "$bin" --threads "$threads" -q convert gguf "$model" --mmproj "$work/mq-mmproj.gguf" --mmproj-outtype f16
      m_s=$secs m_mb=$rss_mb m_sha=$(sha "$work/mq-mmproj.gguf"); rm -f "$work/mq-mmproj.gguf"
      reference_convert "$work/ref-mmproj.gguf" f16 --mmproj
      r_s=$secs r_mb=$rss_mb r_sha=$(sha "$work/ref-mmproj.gguf"); rm -f "$work/ref-mmproj.gguf"
      row mmproj "$m_s" "$r_s" "$m_mb" "$r_mb" "$m_sha" "$r_sha"
      ;;
    *) echo "error: unknown row $r (bf16, q4_k_s, mmproj)" >&2; exit 2 ;;
  esac
done

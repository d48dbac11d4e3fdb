#!/usr/bin/env bash
# medquant quantize gguf vs llama-quantize (the pinned llama.cpp) on a
# Gemma-3-4B-shaped random bf16 GGUF (~7.8 GB, made once by
# bench/make_gemma3_4b_gguf.py into $MEDQUANT_CACHE/bench/, never committed),
# both with 2 threads: wall time, peak RSS (/usr/bin/time -v), output sha256.
#
# Usage: bench/quantize_gguf.sh [path/to/medquant] [--types "Q4_K_S Q4_K_M Q8_0"] [--out rows.jsonl]
# Prints a table; with --out, appends one JSON row per type.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/env.sh
source "$here/../scripts/env.sh"
bin="${MEDQUANT_BIN:-$MEDQUANT_ROOT/build/release/src/cli/medquant}"
if [[ $# -gt 0 && "$1" != --* ]]; then bin="$1"; shift; fi
types="Q4_K_S Q4_K_M Q8_0"
out_json=""
threads=2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --types) types="$2"; shift 2 ;;
    --out) out_json="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    *) echo "error: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x "$bin" ]] || { echo "error: medquant binary not found at $bin (build first, or pass its path)" >&2; exit 1; }
quantize="$MEDQUANT_LLAMA_PREFIX/bin/llama-quantize"
[[ -x "$quantize" ]] || { echo "error: $quantize not found (run scripts/setup-deps.sh)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "error: /usr/bin/time (GNU time) is needed for peak RSS" >&2; exit 1; }

dir="$MEDQUANT_CACHE/bench"
mkdir -p "$dir"
model="$dir/gemma3-4b-shaped-bf16.gguf"
if [[ ! -f "$model" ]]; then
  echo "generating $model (once, ~7.8 GB) ..." >&2
  "$MEDQUANT_VENV/bin/python" "$here/make_gemma3_4b_gguf.py" "$model"
fi
work="$(mktemp -d "$dir/run.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Runs a command under GNU time; sets secs and rss_mb.
measure() {
  local log="$work/time.log"
  cat "$model" > /dev/null  # same warm page cache for both tools
  /usr/bin/time -v "$@" > "$work/stdout.log" 2> "$log" || { cat "$log" >&2; exit 1; }
  local wall
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")
  secs=$(awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }' <<< "$wall")
  rss_mb=$(awk '/Maximum resident set size/ { printf "%.0f", $NF / 1024 }' "$log")
}

printf '%-7s  %12s  %12s  %7s  %12s  %12s  %s\n' type "medquant s" "llama s" speedup "medquant MB" "llama MB" "same bytes"
for t in $types; do
  measure "$bin" --threads "$threads" -q quantize gguf "$model" -o "$work/medquant.gguf" --type "$t"
  m_secs=$secs m_rss=$rss_mb
  m_sha=$(sha256sum "$work/medquant.gguf" | cut -d' ' -f1)
  rm -f "$work/medquant.gguf"
  measure "$quantize" "$model" "$work/llama.gguf" "$t" "$threads"
  l_secs=$secs l_rss=$rss_mb
  l_sha=$(sha256sum "$work/llama.gguf" | cut -d' ' -f1)
  rm -f "$work/llama.gguf"
  same=$([[ "$m_sha" == "$l_sha" ]] && echo yes || echo NO)
  speedup=$(awk -v a="$l_secs" -v b="$m_secs" 'BEGIN { printf "%.2f", a / b }')
  printf '%-7s  %12.2f  %12.2f  %6sx  %12s  %12s  %s\n' "$t" "$m_secs" "$l_secs" "$speedup" "$m_rss" "$l_rss" "$same"
  if [[ -n "$out_json" ]]; then
    printf '{"bench":"quantize_gguf","model":"gemma3-4b-shaped-bf16","type":"%s","threads":%s,"medquant_s":%s,"llama_quantize_s":%s,"speedup":%s,"medquant_rss_mb":%s,"llama_quantize_rss_mb":%s,"medquant_sha256":"%s","llama_quantize_sha256":"%s","identical":%s}\n' \
      "$t" "$threads" "$m_secs" "$l_secs" "$speedup" "$m_rss" "$l_rss" "$m_sha" "$l_sha" \
      "$([[ $same == yes ]] && echo true || echo false)" >> "$out_json"
  fi
done

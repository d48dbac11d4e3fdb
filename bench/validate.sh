#!/usr/bin/env bash
# The validation suite on full-size shapes, with its peer where one exists:
#
#   onnx    ViT-B/16 BiomedCLIP-shaped vision tower, FP32 (medquant export
#           biomedclip) vs INT8 (medquant quantize onnx): `validate onnx` on
#           32 synthetic images (--images N to change)
#   gguf    Gemma-3-4B-shaped text model, BF16 vs Q4_K_S (medquant convert
#           gguf): `validate gguf` on the shipped medical text sample, vs the
#           pinned `llama-perplexity --kl-divergence-base` then
#           `--kl-divergence` on the same files, text, context and threads
#           (random weights make PPL meaningless; KLD, top-1 agreement,
#           tokens/s, wall time and peak RSS are the real pipeline cost)
#   mmproj  the 4B's SigLIP vision projector, F32 vs F16: `validate gguf` on
#           synthetic images (libmtmd; no peer prints image embeddings)
#
# The big inputs are made once into $MEDQUANT_CACHE/bench/validate/ (never
# committed): the checkpoints of bench/make_biomedclip_checkpoint.py and
# bench/make_gemma3_4b_hf.py, converted by medquant. Wall time and peak RSS
# from GNU time, one run each; 2 threads.
#
# Usage: bench/validate.sh [path/to/medquant] [--rows "onnx gguf mmproj"] [--threads N]
#          [--images N] [--ctx N] [--chunks N] [--mm-images N] [--out rows.jsonl]
# Each row's whole report is kept as $MEDQUANT_CACHE/bench/validate/last-<row>.json.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/env.sh
source "$here/../scripts/env.sh"
bin="${MEDQUANT_BIN:-$MEDQUANT_ROOT/build/release/src/cli/medquant}"
if [[ $# -gt 0 && "$1" != --* ]]; then bin="$1"; shift; fi
rows="onnx gguf mmproj" threads=2 images=32 ctx=128 chunks=2 mm_images=2 out_json=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rows) rows="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --images) images="$2"; shift 2 ;;
    --ctx) ctx="$2"; shift 2 ;;
    --chunks) chunks="$2"; shift 2 ;;
    --mm-images) mm_images="$2"; shift 2 ;;
    --out) out_json="$2"; shift 2 ;;
    *) echo "error: unknown argument $1" >&2; exit 2 ;;
  esac
done
perplexity="$MEDQUANT_LLAMA_PREFIX/bin/llama-perplexity"
tools_py="$MEDQUANT_ROOT/tools/.venv/bin/python"
text="$MEDQUANT_ROOT/data/medical_sample.txt"
[[ -x "$bin" ]] || { echo "error: medquant binary not found at $bin (build first, or pass its path)" >&2; exit 1; }
[[ -x "$perplexity" ]] || { echo "error: llama-perplexity not found under $MEDQUANT_LLAMA_PREFIX (scripts/setup-deps.sh)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "error: /usr/bin/time (GNU time) is needed for peak RSS" >&2; exit 1; }

dir="$MEDQUANT_CACHE/bench/validate"
mkdir -p "$dir"
work="$(mktemp -d "$dir/run.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Runs a command under GNU time; sets secs and rss_mb; stdout in $work/stdout.log.
measure() {
  local log="$work/time.log"
  /usr/bin/time -v "$@" > "$work/stdout.log" 2> "$log" || {
    local rc=$?
    # validate exits 1 on FAIL with its JSON on stdout: a result, not an error.
    [[ $rc == 1 && -s "$work/stdout.log" && "$(head -c1 "$work/stdout.log")" == "{" ]] || { tail -30 "$log" >&2; exit 1; }
  }
  local wall
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")
  secs=$(awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }' <<< "$wall")
  rss_mb=$(awk '/Maximum resident set size/ { printf "%.0f", $NF / 1024 }' "$log")
}
once() {  # once FILE CMD...: make FILE with CMD (writing FILE.tmp) unless it exists
  local f="$1"; shift
  [[ -f "$f" ]] && return
  echo "making $f (once) ..." >&2
  "$@"
}
emit() {  # emit JSON-OBJECT: one row to --out and the table
  echo "$1" >> "$work/rows.jsonl"
  [[ -n "$out_json" ]] && echo "$1" >> "$out_json"
  cp "$work/report.json" "$dir/last-$(jq -r .row <<< "$1").json"  # the whole report of the row
  return 0
}
echo "$(date -u +%FT%TZ)  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $threads threads" >&2

for r in $rows; do
  case "$r" in
    onnx)
      ckpt="$MEDQUANT_CACHE/bench/biomedclip-vit_b16-bert_base"
      if [[ ! -f "$ckpt/.complete" ]]; then
        [[ -x "$tools_py" ]] || "$MEDQUANT_ROOT/tools/setup-venv.sh"
        "$tools_py" "$here/make_biomedclip_checkpoint.py" "$ckpt" >&2
      fi
      fp32="$dir/biomedclip/biomedclip_vision.onnx" int8="$dir/biomedclip/biomedclip_vision_int8.onnx"
      once "$fp32" "$bin" --threads "$threads" -q export biomedclip "$ckpt" -o "$dir/biomedclip"
      once "$int8" "$bin" --threads "$threads" -q quantize onnx "$fp32" -o "$int8"
      measure "$bin" --threads "$threads" validate onnx --ref "$fp32" --cand "$int8" \
        --synthetic-images "$images" --runs 10 --warmup 2 --json
      cp "$work/stdout.log" "$work/report.json"
      jq -c --arg s "$secs" --arg mb "$rss_mb" --argjson t "$threads" '.validations[0] |
        {bench: "validate", row: "onnx", model: "biomedclip-vit_b16", threads: $t, status,
         medquant_s: ($s | tonumber), medquant_rss_mb: ($mb | tonumber), images: .metrics.inputs.count,
         cosine_mean: .metrics.cosine.mean, cosine_min: .metrics.cosine.min,
         ref_ms: .metrics.reference.latency_ms.median, cand_ms: .metrics.build.latency_ms.median,
         ref_rss_mb: (.metrics.reference.peak_rss_bytes / 1048576 | round),
         cand_rss_mb: (.metrics.build.peak_rss_bytes / 1048576 | round),
         ref_mb: (.metrics.reference.file_size / 1048576 | round),
         cand_mb: (.metrics.build.file_size / 1048576 | round)}' "$work/stdout.log" > "$work/row.json"
      row=$(cat "$work/row.json"); emit "$row"
      jq -r '"onnx    \(.status)  wall \(.medquant_s) s, peak RSS \(.medquant_rss_mb) MB; \(.images) images: cosine mean \(.cosine_mean) min \(.cosine_min); latency median \(.ref_ms|.*10|round/10) -> \(.cand_ms|.*10|round/10) ms; size \(.ref_mb) -> \(.cand_mb) MB; child RSS \(.ref_rss_mb) / \(.cand_rss_mb) MB"' "$work/row.json"
      ;;
    gguf|mmproj)
      model="$MEDQUANT_CACHE/bench/hf/medgemma-4b-it"
      if [[ ! -f "$model/model.safetensors.index.json" ]]; then
        [[ -x "$tools_py" ]] || "$MEDQUANT_ROOT/tools/setup-venv.sh"
        "$tools_py" "$here/make_gemma3_4b_hf.py" "$model" >&2
      fi
      bf16="$dir/medgemma-4b-bf16.gguf" q4="$dir/medgemma-4b-q4_k_s.gguf"
      mm32="$dir/mmproj-medgemma-4b-f32.gguf" mm16="$dir/mmproj-medgemma-4b-f16.gguf"
      once "$bf16" "$bin" --threads "$threads" -q convert gguf "$model" -o "$bf16" --outtype bf16 \
        --mmproj "$mm32" --mmproj-outtype f32
      once "$q4" "$bin" --threads "$threads" -q convert gguf "$model" -o "$q4" --outtype q4_k_s \
        --mmproj "$mm16" --mmproj-outtype f16
      if [[ $r == gguf ]]; then
        measure "$bin" --threads "$threads" validate gguf --ref "$bf16" --cand "$q4" --ctx "$ctx" \
          --chunks "$chunks" --bench-prompt 64 --bench-gen 8 --bench-reps 2 --bench-warmup 1 --json
        m_s=$secs m_mb=$rss_mb
        cp "$work/stdout.log" "$work/report.json"
        measure "$bin" --threads "$threads" validate gguf --ref "$bf16" --cand "$q4" --ctx "$ctx" \
          --chunks "$chunks" --skip-speed --json
        a_s=$secs
        measure "$perplexity" -m "$bf16" -f "$text" -c "$ctx" --chunks "$chunks" -t "$threads" -b 2048 \
          --kl-divergence-base "$work/base.kld"
        p1_s=$secs p1_mb=$rss_mb
        measure "$perplexity" -m "$q4" -f "$text" -c "$ctx" --chunks "$chunks" -t "$threads" -b 2048 \
          --kl-divergence-base "$work/base.kld" --kl-divergence
        p2_s=$secs p2_mb=$rss_mb
        peer_kld=$(sed -n 's/^Mean *KLD: *\([0-9.e+-]*\).*/\1/p' "$work/time.log" "$work/stdout.log" | head -1)
        peer_top=$(sed -n 's/^Same top p: *\([0-9.]*\).*/\1/p' "$work/time.log" "$work/stdout.log" | head -1)
        jq -c --arg ms "$m_s" --arg mmb "$m_mb" --arg acc "$a_s" --arg p1 "$p1_s" --arg p2 "$p2_s" \
          --arg p1mb "$p1_mb" --arg p2mb "$p2_mb" --arg pk "$peer_kld" --arg pt "$peer_top" \
          --argjson t "$threads" '.validations[0] | .metrics as $m |
          {bench: "validate", row: "gguf", model: "gemma3-4b-shaped", threads: $t, status,
           n_ctx: $m.evaluation.n_ctx, chunks: $m.evaluation.n_chunk, scored_tokens: $m.evaluation.scored_tokens,
           medquant_s: ($ms | tonumber), medquant_accuracy_only_s: ($acc | tonumber),
           peer_s: (($p1 | tonumber) + ($p2 | tonumber)),
           medquant_rss_mb: ($mmb | tonumber), peer_rss_mb: ([($p1mb | tonumber), ($p2mb | tonumber)] | max),
           kld_mean: $m.kl_divergence.mean, peer_kld_mean: ($pk | tonumber? // null),
           top1: $m.top1_agreement.value, peer_top1_pct: ($pt | tonumber? // null),
           ref_gen_tps: $m.reference.speed.generation.tokens_per_second,
           cand_gen_tps: $m.candidate.speed.generation.tokens_per_second,
           ref_pp_tps: $m.reference.speed.prompt.tokens_per_second,
           cand_pp_tps: $m.candidate.speed.prompt.tokens_per_second,
           ref_rss_mb: ($m.reference.peak_rss_bytes / 1048576 | round),
           cand_rss_mb: ($m.candidate.peak_rss_bytes / 1048576 | round),
           ref_bpw: $m.reference.bits_per_weight, cand_bpw: $m.candidate.bits_per_weight}' \
          "$work/report.json" > "$work/row.json"
        row=$(cat "$work/row.json"); emit "$row"
        jq -r '"gguf    \(.status)  ctx \(.n_ctx) x \(.chunks) chunks (\(.scored_tokens) scored): wall \(.medquant_s) s with speed runs, \(.medquant_accuracy_only_s) s accuracy only vs llama-perplexity \(.peer_s) s (base + kld); peak RSS \(.medquant_rss_mb) vs \(.peer_rss_mb) MB; KLD \(.kld_mean) (peer \(.peer_kld_mean)), top-1 \(.top1*100) % (peer \(.peer_top1_pct) %); gen \(.ref_gen_tps|.*10|round/10) -> \(.cand_gen_tps|.*10|round/10) tok/s, prompt \(.ref_pp_tps|.*10|round/10) -> \(.cand_pp_tps|.*10|round/10) tok/s; \(.ref_bpw|.*100|round/100) -> \(.cand_bpw|.*100|round/100) bpw"' "$work/row.json"
      else
        measure "$bin" --threads "$threads" validate gguf --ref "$mm32" --cand "$mm16" --model "$q4" \
          --synthetic-images "$mm_images" --warmup 0 --json
        cp "$work/stdout.log" "$work/report.json"
        jq -c --arg s "$secs" --arg mb "$rss_mb" --argjson t "$threads" '.validations[0] | .metrics as $m |
          {bench: "validate", row: "mmproj", model: "gemma3-4b-siglip-896", threads: $t, status,
           medquant_s: ($s | tonumber), medquant_rss_mb: ($mb | tonumber), images: $m.images.count,
           n_tokens: $m.n_tokens, n_embd: $m.n_embd, cosine_mean: $m.cosine.mean, cosine_min: $m.cosine.min,
           max_abs_diff: $m.max_abs_diff, ref_ms: $m.reference.encode_ms.median, cand_ms: $m.candidate.encode_ms.median,
           ref_load_ms: $m.reference.load_ms, cand_load_ms: $m.candidate.load_ms,
           ref_rss_mb: ($m.reference.peak_rss_bytes / 1048576 | round),
           cand_rss_mb: ($m.candidate.peak_rss_bytes / 1048576 | round),
           ref_mb: ($m.reference.file_size / 1048576 | round), cand_mb: ($m.candidate.file_size / 1048576 | round)}' \
          "$work/stdout.log" > "$work/row.json"
        row=$(cat "$work/row.json"); emit "$row"
        jq -r '"mmproj  \(.status)  wall \(.medquant_s) s; \(.images) images x \(.n_tokens) x \(.n_embd): cosine mean \(.cosine_mean) min \(.cosine_min), max |diff| \(.max_abs_diff); encode median \(.ref_ms|round) -> \(.cand_ms|round) ms; size \(.ref_mb) -> \(.cand_mb) MB; child RSS \(.ref_rss_mb) / \(.cand_rss_mb) MB"' "$work/row.json"
      fi
      ;;
    *) echo "error: unknown row $r (onnx, gguf, mmproj)" >&2; exit 2 ;;
  esac
done

# One table: wall time of medquant and its peer (where one exists), peak RSS, the key figures.
echo
printf '%-7s %-5s %16s %8s %8s %8s  %s\n' row status "medquant s" "peer s" "mq MB" "peer MB" figures
# gguf: medquant's wall time with speed runs, then (in brackets) accuracy only, like the peer's.
jq -r '[.row, .status, ((.medquant_s | tostring) + (if .medquant_accuracy_only_s then " (\(.medquant_accuracy_only_s))" else "" end)), ((.peer_s // "-") | tostring),
        (.medquant_rss_mb | tostring), ((.peer_rss_mb // "-") | tostring),
        (if .row == "gguf" then "KLD \(.kld_mean) (peer \(.peer_kld_mean)), top-1 \(.top1 * 100 | .*1000 | round / 1000)% (peer \(.peer_top1_pct)%), gen \(.ref_gen_tps | .*10 | round / 10) -> \(.cand_gen_tps | .*10 | round / 10) tok/s"
         else "cosine \(.cosine_mean) (min \(.cosine_min)), \(.images) images, \(.ref_ms | round) -> \(.cand_ms | round) ms, \(.ref_mb) -> \(.cand_mb) MB" end)]
       | @tsv' "$work/rows.jsonl" | while IFS=$'\t' read -r a b c d e f g; do
  printf '%-7s %-5s %16s %8s %8s %8s  %s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g"
done

#!/usr/bin/env bash
# Every quantization type medquant writes, measured the same way, printed as
# the markdown tables of docs/methodology.md:
#
# - GGUF: tests/fixtures/tiny-gemma3 converted to F32 (the reference), then
#   `quantize gguf --type T` for every mix (and Q4_K_S / Q3_K_S / Q2_K with an
#   importance matrix made by the pinned llama-imatrix), each validated against
#   the F32 file with `medquant validate gguf --json` (llama-perplexity's KLD,
#   PPL and top-1 agreement on the built-in medical text; prompt and
#   generation tokens/s).
# - ONNX: tests/fixtures/tiny-biomedclip exported to FP32, the vision tower
#   quantized with each `quantize onnx` option set, each validated with
#   `medquant validate onnx --json` (cosine on 16 seeded synthetic images,
#   zero-shot top-1 agreement over the 30 shipped labels, latency median).
# - With --big, also the benchmark shapes when their files exist in
#   $MEDQUANT_CACHE/bench/ (bench/make_gemma3_4b_hf.py,
#   bench/make_biomedclip_checkpoint.py): the Gemma-3-4B-shaped checkpoint
#   converted to BF16, which tensor gets which type in every mix and its size
#   (`quantize gguf --dry-run`), tokens/s of the --big-types builds (random
#   weights: accuracy figures mean nothing there, so only size and speed), and
#   the ONNX option sets on the full-size ViT-B/16 (cosine to FP32 does mean
#   something for a random network's embeddings; zero-shot does not).
#
# Usage: bench/quant_types.sh [path/to/medquant] [--threads N] [--big] [--big-types "Q4_K_S Q8_0"]
#                             [--skip-tiny] [--only gguf|onnx]
# Tiny fixtures only: ~4 minutes on an idle 2-core machine. --big adds the
# mix table (seconds), ~5 minutes per --big-types entry and ~2 for the ViT.
# --skip-tiny runs only the --big part; --only measures one of the two families.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/env.sh
source "$here/../scripts/env.sh"
bin="${MEDQUANT_BIN:-$MEDQUANT_ROOT/build/release/src/cli/medquant}"
if [[ $# -gt 0 && "$1" != --* ]]; then bin="$1"; shift; fi
threads=2
big=0
big_types="Q4_K_S Q8_0"
tiny=1
only=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --big) big=1; shift ;;
    --big-types) big_types="$2"; shift 2 ;;
    --skip-tiny) tiny=0; big=1; shift ;;
    --only) only="$2"; shift 2 ;;
    *) echo "error: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x "$bin" ]] || { echo "error: medquant binary not found at $bin (build first, or pass its path)" >&2; exit 1; }
py="$MEDQUANT_VENV/bin/python"
[[ -x "$py" ]] || py=python3
fixtures="$MEDQUANT_ROOT/tests/fixtures"
mq() { "$bin" -q --threads "$threads" "$@"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/quant_types.XXXXXX")"
trap 'rm -rf "$work"' EXIT

gguf_types="F16 BF16 Q8_0 Q6_K Q5_K_M Q5_K_S Q5_1 Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0 Q3_K_L Q3_K_M Q3_K_S Q2_K"
imatrix_types="Q4_K_S Q3_K_S Q2_K"

echo "<!-- $(date -u +%Y-%m-%d) | $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, --threads $threads | load average at start: $(cut -d' ' -f1-3 /proc/loadavg) | $("$bin" --version | head -1) | bench/quant_types.sh -->"
echo

onnx_sets=(
  "qint8 (default)|"
  "qint8 --per-channel|--per-channel"
  "qint8 --reduce-range|--reduce-range"
  "quint8|--weight-type quint8"
  "quint8 --per-channel|--weight-type quint8 --per-channel"
  "quint8 + Conv|--weight-type quint8 --op-types MatMul,Conv"
  # static QDQ, calibrated on the fixture's 3 images (validation uses 16 other, synthetic ones)
  "static, MatMul|--static --calib $fixtures/tiny-biomedclip/images --op-types MatMul"
  "static, ORT's default ops|--static --calib $fixtures/tiny-biomedclip/images"
)
onnx_rows() {  # onnx_rows <fp32.onnx> <labels.json or ""> <folder>: quantize + validate every set
  local ref=$1 labels=$2 out=$3 i=0 set name opts
  for set in "${onnx_sets[@]}"; do
    name=${set%%|*} opts=${set#*|}
    echo "  $name" >&2
    # shellcheck disable=SC2086  # the options are words
    mq quantize onnx "$ref" -o "$out/$i.onnx" $opts > /dev/null 2>&1
    mq validate onnx --ref "$ref" --cand "$out/$i.onnx" --name "$name" ${labels:+--labels "$labels"} --json > "$out/$i.json" || [[ $? -eq 1 && -s "$out/$i.json" ]]
    i=$((i + 1))
  done
}
onnx_table() {  # onnx_table <folder> <title>
  "$py" - "$1" "$2" "${onnx_sets[@]}" <<'EOF'
import json, sys
folder, title, sets = sys.argv[1], sys.argv[2], [s.split("|")[0] for s in sys.argv[3:]]
print(title)
print()
print("| weights | file MB | cosine mean | cosine min | zero-shot top-1 | latency ms (median) |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for i, name in enumerate(sets):
    m = json.load(open(f"{folder}/{i}.json"))["validations"][0]["metrics"]
    zs = m.get("zero_shot")
    top1 = f"{zs['top1_agreement'] * 100:.1f} %" if zs else "n/a"
    print(f"| {name} | {m['build']['file_size'] / 1e6:.3f} | {m['cosine']['mean']:.5f} | {m['cosine']['min']:.5f} "
          f"| {top1} | {m['build']['latency_ms']['median']:.2f} |")
r = m["reference"]
print(f"| FP32 (reference) | {r['file_size'] / 1e6:.3f} | | | | {r['latency_ms']['median']:.2f} |")
print()
EOF
}

if [[ $tiny -eq 1 && $only != onnx ]]; then
# --- GGUF on the tiny Gemma 3 -------------------------------------------------
echo "converting and quantizing tests/fixtures/tiny-gemma3 ..." >&2
g="$work/gguf"
mkdir -p "$g"
mq convert gguf "$fixtures/tiny-gemma3" -o "$g/F32.gguf" --outtype f32
"$MEDQUANT_LLAMA_PREFIX/bin/llama-imatrix" -m "$g/F32.gguf" -f "$MEDQUANT_ROOT/data/medical_sample.txt" \
  -c 128 -t "$threads" -o "$g/imatrix.gguf" > "$g/imatrix.log" 2>&1 \
  || { tail -20 "$g/imatrix.log" >&2; exit 1; }
rows=()
for t in $gguf_types; do rows+=("$t:$t:"); done
for t in $imatrix_types; do rows+=("$t+imatrix:$t:$g/imatrix.gguf"); done
for row in "${rows[@]}"; do
  IFS=: read -r name t imat <<<"$row"
  echo "  $name" >&2
  mq quantize gguf "$g/F32.gguf" -o "$g/$name.gguf" --type "$t" ${imat:+--imatrix "$imat"} > /dev/null
  # exit 1 only means a threshold failed: the figures are what we want
  mq validate gguf --ref "$g/F32.gguf" --cand "$g/$name.gguf" --name "$name" --json > "$g/$name.json" || [[ $? -eq 1 && -s "$g/$name.json" ]]
done
"$py" - "$g" "${rows[@]}" <<'EOF'
import json, sys
folder, rows = sys.argv[1], [r.split(":")[0] for r in sys.argv[2:]]
print("GGUF, tests/fixtures/tiny-gemma3 (4.1M weights; reference: its F32 GGUF, "
      "PPL %.1f on the built-in medical text):" % json.load(open(f"{folder}/{rows[0]}.json"))
      ["validations"][0]["metrics"]["perplexity"]["reference"]["value"])
print()
print("| type | bits/weight | file MB | KLD mean | KLD p99 | PPL Δ | top-1 agreement | prompt tok/s | gen tok/s |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
ref = None
for name in rows:
    v = json.load(open(f"{folder}/{name}.json"))["validations"][0]
    m = v["metrics"]
    c, ref = m["candidate"], m["reference"]
    kld, ppl = m["kl_divergence"], m["perplexity"]["ratio"]["value"]
    print(f"| {name} | {c['bits_per_weight']:.2f} | {c['file_size'] / 1e6:.2f} | {kld['mean']:.5f} | {kld['p99']:.5f} "
          f"| {(ppl - 1) * 100:+.2f} % | {m['top1_agreement']['value'] * 100:.1f} % "
          f"| {c['speed']['prompt']['tokens_per_second']:.0f} | {c['speed']['generation']['tokens_per_second']:.0f} |")
print(f"| F32 (reference) | 32.00 | {ref['file_size'] / 1e6:.2f} | | | | "
      f"| {ref['speed']['prompt']['tokens_per_second']:.0f} | {ref['speed']['generation']['tokens_per_second']:.0f} |")
print()
EOF
fi

if [[ $tiny -eq 1 && $only != gguf ]]; then
# --- ONNX on the tiny BiomedCLIP ----------------------------------------------
echo "exporting and quantizing tests/fixtures/tiny-biomedclip ..." >&2
o="$work/onnx"
mkdir -p "$o"
mq export biomedclip "$fixtures/tiny-biomedclip" -o "$o" > /dev/null
mq embed-labels --text "$o/biomedclip_text.onnx" --vocab "$fixtures/tiny-biomedclip/vocab.txt" -o "$o/labels.json" > /dev/null
onnx_rows "$o/biomedclip_vision.onnx" "$o/labels.json" "$o"
onnx_table "$o" "ONNX, tests/fixtures/tiny-biomedclip vision tower (16 seeded synthetic images, 30 labels):"
fi

if [[ $big -eq 0 ]]; then
  echo "<!-- load average at end: $(cut -d' ' -f1-3 /proc/loadavg) -->"
  exit 0
fi

# --- the benchmark shapes (random weights) -----------------------------------
bench="$MEDQUANT_CACHE/bench"
big_hf="$bench/hf/medgemma-4b-it"  # bench/convert_gguf.sh makes it there
if [[ $only == onnx ]]; then
  :
elif [[ -f "$big_hf/config.json" ]]; then
  echo "Gemma-3-4B-shaped checkpoint ($big_hf) ..." >&2
  b="$work/big"
  mkdir -p "$b"
  big_gguf="$b/BF16.gguf"  # with the 262144-piece tokenizer, so llama.cpp can run it
  mq convert gguf "$big_hf" -o "$big_gguf" --outtype bf16 > /dev/null
  for t in $gguf_types; do
    mq quantize gguf "$big_gguf" --type "$t" --dry-run --json > "$b/$t.plan.json"
  done
  echo "Which tensor gets which type, Gemma-3-4B shapes (\`quantize gguf --dry-run\`):"
  echo
  plans=()
  for t in $gguf_types; do [[ $t == F16 || $t == BF16 ]] || plans+=("$b/$t.plan.json"); done
  "$py" "$here/quant_mix_table.py" "${plans[@]}"
  echo
  for t in $big_types; do
    echo "  $t" >&2
    mq quantize gguf "$big_gguf" -o "$b/$t.gguf" --type "$t" > /dev/null
    # one short chunk: the accuracy part is required by validate but means nothing here
    mq validate gguf --ref "$big_gguf" --cand "$b/$t.gguf" --ctx 128 --chunks 1 --bench-prompt 64 --bench-gen 16 --bench-reps 2 --json > "$b/$t.json" || [[ $? -eq 1 && -s "$b/$t.json" ]]
    rm -f "$b/$t.gguf"
  done
  "$py" - "$b" "$gguf_types" "$big_types" <<'EOF'
import json, os, sys
folder, types, measured = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
print("GGUF, Gemma-3-4B-shaped text model (bench/make_gemma3_4b_hf.py: MedGemma 4B's tensor shapes, "
      "random BF16 weights; sizes from `quantize gguf --dry-run`, speed only for the types built):")
print()
print("| type | bits/weight | tensor GB | prompt tok/s | gen tok/s |")
print("| --- | ---: | ---: | ---: | ---: |")
ref = None
for t in types:
    p = json.load(open(f"{folder}/{t}.plan.json"))
    speed = ["", ""]
    if t in measured:
        m = json.load(open(f"{folder}/{t}.json"))["validations"][0]["metrics"]
        s, ref = m["candidate"]["speed"], m["reference"]
        speed = [f"{s['prompt']['tokens_per_second']:.1f}", f"{s['generation']['tokens_per_second']:.2f}"]
    print(f"| {t} | {p['bpw_out']:.2f} | {p['bytes_out'] / 1e9:.2f} | {speed[0]} | {speed[1]} |")
if ref:
    s = ref["speed"]
    print(f"| BF16 (input) | {ref['bits_per_weight']:.2f} | {ref['tensor_bytes'] / 1e9:.2f} "
          f"| {s['prompt']['tokens_per_second']:.1f} | {s['generation']['tokens_per_second']:.2f} |")
print()
EOF
else
  echo "($big_hf not found: make it with bench/make_gemma3_4b_hf.py)" >&2
fi

big_clip="$bench/biomedclip-vit_b16-bert_base"
if [[ $only == gguf ]]; then
  :
elif [[ -d "$big_clip" ]]; then
  echo "BiomedCLIP-shaped checkpoint ($big_clip) ..." >&2
  c="$work/bigclip"
  mkdir -p "$c"
  mq export biomedclip "$big_clip" -o "$c" > /dev/null
  onnx_rows "$c/biomedclip_vision.onnx" "" "$c"
  onnx_table "$c" "ONNX, full-size BiomedCLIP-shaped ViT-B/16 vision tower (bench/make_biomedclip_checkpoint.py, random weights; 16 seeded synthetic images):"
else
  echo "($big_clip not found: make it with bench/make_biomedclip_checkpoint.py)" >&2
fi
echo "<!-- load average at end: $(cut -d' ' -f1-3 /proc/loadavg) -->"

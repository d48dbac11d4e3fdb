#!/usr/bin/env bash
# Build the libFuzzer targets (tests/fuzz, the `fuzz` preset: clang with ASan +
# UBSan), replay their seed corpora, then run each fuzzer for N seconds.
# Usage: scripts/fuzz.sh [seconds per fuzzer, default 60] [fuzzer names...]
# New inputs go to build/fuzz/corpus/<name>/ (kept between runs, log beside it);
# a crash is written to build/fuzz/crashes/ and ends the script with exit 1.
# Needs clang/libFuzzer (Debian clang), which scripts/test.sh does not.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
source scripts/env.sh
seconds="${1:-60}"
shift || true
command -v clang++ >/dev/null || { echo "error: clang++ not found (apt-get install clang)" >&2; exit 1; }
cmake --preset fuzz -DMEDQUANT_LLAMA_PREFIX="$MEDQUANT_LLAMA_PREFIX" -DMEDQUANT_VENV="$MEDQUANT_VENV" >/dev/null
cmake --build --preset fuzz
ctest --preset fuzz
build=build/fuzz
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in "$build"/tests/fuzz/fuzz_*; do [ -x "$f" ] && names+=("${f##*/fuzz_}"); done
fi
mkdir -p "$build/crashes"
for name in "${names[@]}"; do
    mkdir -p "$build/corpus/$name"
    echo "== fuzz_$name: ${seconds}s"
    log="$build/corpus/$name.log"
    rc=0
    # -rss_limit_mb: ASan's shadow on top of an image at the decoders' pixel limit.
    "$build/tests/fuzz/fuzz_$name" -max_total_time="$seconds" -max_len=65536 -timeout=30 \
        -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$build/crashes/$name-" \
        "$build/corpus/$name" "$build/fuzz-seeds/$name" >"$log" 2>&1 || rc=$?
    grep -E '^(stat::number_of_executed_units|#[0-9]+ +DONE)' "$log" || true
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$log" >&2
        echo "fuzz_$name found a crash (exit $rc): see $build/crashes/ and $log" >&2
        exit 1
    fi
done

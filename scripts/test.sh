#!/usr/bin/env bash
# Set up everything (idempotent), build, and run every test (unit + peer).
# Usage: scripts/test.sh [ctest args...]   MEDQUANT_PRESET=dev for ASan/UBSan.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup-deps.sh
source scripts/env.sh
preset="${MEDQUANT_PRESET:-release}"
cmake --preset "$preset" -DMEDQUANT_LLAMA_PREFIX="$MEDQUANT_LLAMA_PREFIX" -DMEDQUANT_VENV="$MEDQUANT_VENV" >/dev/null
cmake --build --preset "$preset"
ctest --preset "$preset" -j2 "$@"

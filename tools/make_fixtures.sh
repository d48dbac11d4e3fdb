#!/usr/bin/env bash
# Regenerates every fixture under tests/fixtures/ (deterministic: same bytes each run).
# Usage: tools/make_fixtures.sh      (creates tools/.venv first if needed)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ -x "$here/.venv/bin/python" ]] || "$here/setup-venv.sh"
for gen in "$here"/make_tiny_*.py; do
  echo "== $(basename "$gen")"
  "$here/.venv/bin/python" "$gen"
done

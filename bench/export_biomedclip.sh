#!/usr/bin/env bash
# medquant export biomedclip vs open_clip + torch.onnx.export on a full-size
# BiomedCLIP-shaped checkpoint: wall time, peak RSS, output sizes, and ONNX
# Runtime outputs of both tools' files compared (bench/export_biomedclip.py).
# The checkpoint (~784 MB, random weights) is made once with tools/.venv into
# $MEDQUANT_CACHE/bench/ by bench/make_biomedclip_checkpoint.py.
# Usage: bench/export_biomedclip.sh [path/to/medquant] [--out row.json] [--workdir DIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/env.sh
source "$here/../scripts/env.sh"
bin="${MEDQUANT_BIN:-$MEDQUANT_ROOT/build/release/src/cli/medquant}"
if [[ $# -gt 0 && "$1" != --* ]]; then bin="$1"; shift; fi
[[ -x "$bin" ]] || { echo "error: medquant binary not found at $bin (build first, or pass its path)" >&2; exit 1; }
tools_python="$MEDQUANT_ROOT/tools/.venv/bin/python"
[[ -x "$tools_python" ]] || "$MEDQUANT_ROOT/tools/setup-venv.sh"
ckpt="$MEDQUANT_CACHE/bench/biomedclip-vit_b16-bert_base"
"$tools_python" "$here/make_biomedclip_checkpoint.py" "$ckpt" >&2
exec "$MEDQUANT_VENV/bin/python" "$here/export_biomedclip.py" --medquant "$bin" --checkpoint "$ckpt" \
  --tools-python "$tools_python" "$@"

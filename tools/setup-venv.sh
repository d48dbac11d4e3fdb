#!/usr/bin/env bash
# Creates tools/.venv with the pinned fixture-generator dependencies.
# Usage: tools/setup-venv.sh   (idempotent; re-run after editing requirements.txt)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
# constraints.txt pins every transitive dependency too (pip freeze of a good venv).
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" -c "$here/constraints.txt"
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
for p in ["torch", "torchvision", "transformers", "tokenizers", "open-clip-torch", "timm",
          "sentencepiece", "safetensors", "numpy", "pillow", "protobuf"]:
    print(f"{p}=={md.version(p)}")
PY

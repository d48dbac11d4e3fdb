#!/usr/bin/env python3
"""Expected GGUF tables for `medquant convert gguf`, made by llama.cpp's own
converter (the pinned convert_hf_to_gguf.py, with its bundled gguf-py) on the
tiny Gemma 3 fixtures and their variants (tests/peer/hf_variants.py).

For every case the converter's output file is read back into a table
(tests/peer/gguf_table.py: metadata keys in order with the sha256 of their
bytes, tensor names / types / shapes / offsets with the sha256 of their data,
file size and sha256) and written to tests/fixtures/expected-gguf/<case>.json.
The .gguf files themselves are not kept (size). One more table per text
model: llama-quantize Q4_K_S of the converter's own BF16 file.

Needs torch + transformers + sentencepiece (tools/.venv, see
tools/setup-venv.sh) and the llama.cpp prefix of scripts/setup-deps.sh:

    source scripts/env.sh
    tools/.venv/bin/python tools/make_expected_gguf.py --llama-prefix "$MEDQUANT_LLAMA_PREFIX"

Re-running rewrites the same JSON byte for byte (the converter is
deterministic for these inputs).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "peer"))
import gguf_table  # noqa: E402
import hf_variants  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
OUT = FIXTURES / "expected-gguf"

# (model folder, kind, outtype); kind "text" or "mmproj".
CASES = [
    *[("tiny-gemma3", "text", t) for t in ("f32", "f16", "bf16", "q8_0")],
    *[("tiny-gemma3", "mmproj", t) for t in ("f32", "f16", "bf16", "q8_0")],
    *[("tiny-gemma3-text", "text", t) for t in ("f32", "f16", "bf16")],
    ("tiny-gemma3-sharded", "text", "bf16"),
    ("tiny-gemma3-sharded", "mmproj", "f16"),
    ("tiny-gemma3-newlayout", "text", "bf16"),
    *[("tiny-gemma3-text-f16src", "text", t) for t in ("f32", "f16", "bf16")],
    *[("tiny-gemma3-text-f32src", "text", t) for t in ("f32", "f16", "bf16")],
    ("tiny-gemma3-text-lmhead", "text", "bf16"),
]
# llama-quantize of the converter's BF16 text model.
QUANTIZED = [("tiny-gemma3", "Q4_K_S"), ("tiny-gemma3-text", "Q4_K_S")]


def case_name(model: str, kind: str, outtype: str) -> str:
    return f"{model}.{kind}.{outtype}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-prefix", default=os.environ.get("MEDQUANT_LLAMA_PREFIX"), required=False)
    ap.add_argument("--keep", type=Path, help="keep the converted .gguf files in this folder")
    args = ap.parse_args()
    if not args.llama_prefix:
        ap.error("--llama-prefix (or MEDQUANT_LLAMA_PREFIX) is required")
    prefix = Path(args.llama_prefix)
    convert = prefix / "share" / "llama.cpp" / "convert_hf_to_gguf.py"
    gguf_py = prefix / "share" / "llama.cpp" / "gguf-py"
    quantize = prefix / "bin" / "llama-quantize"
    stamp = (prefix / ".medquant-stamp").read_text() if (prefix / ".medquant-stamp").exists() else ""
    env = dict(os.environ, PYTHONPATH=str(gguf_py), HF_HUB_OFFLINE="1")

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="expected-gguf-") as tmp_s:
        tmp = Path(tmp_s)
        work = args.keep or tmp
        work.mkdir(parents=True, exist_ok=True)
        models: dict[str, Path] = {}
        inputs: dict[str, dict[str, str]] = {}
        for name in hf_variants.VARIANTS:
            models[name] = hf_variants.make(name, FIXTURES, tmp / "variants")
            inputs[name] = hf_variants.weights_sha256(models[name])
        for name in ("tiny-gemma3", "tiny-gemma3-text"):
            models[name] = FIXTURES / name

        for model, kind, outtype in CASES:
            name = case_name(model, kind, outtype)
            out = work / f"{name}.gguf"
            cmd = [sys.executable, str(convert), str(models[model]), "--outfile", str(out),
                   "--outtype", outtype] + (["--mmproj"] if kind == "mmproj" else [])
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stdout, r.stderr, file=sys.stderr)
                raise SystemExit(f"{name}: convert_hf_to_gguf.py failed")
            table = gguf_table.read_table(out)
            doc = {
                "case": name,
                "made_by": "llama.cpp convert_hf_to_gguf.py" + (" --mmproj" if kind == "mmproj" else "")
                           + f" --outtype {outtype}",
                "llama_cpp": stamp.strip().splitlines(),
                "model": model,
                "kind": kind,
                "outtype": outtype,
                "inputs": inputs.get(model, {}),
                **table,
            }
            (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
            print(f"{name}: {len(table['kv'])} keys, {len(table['tensors'])} tensors, "
                  f"{table['file_size']} bytes")

        for model, qtype in QUANTIZED:
            src = work / f"{case_name(model, 'text', 'bf16')}.gguf"
            name = case_name(model, "text", qtype.lower())
            out = work / f"{name}.gguf"
            subprocess.run([str(quantize), str(src), str(out), qtype, "2"], check=True,
                           capture_output=True)
            table = gguf_table.read_table(out)
            doc = {"case": name,
                   "made_by": f"llama.cpp convert_hf_to_gguf.py --outtype bf16, then llama-quantize {qtype}",
                   "llama_cpp": stamp.strip().splitlines(), "model": model, "kind": "text",
                   "outtype": qtype.lower(), "inputs": {}, **table}
            (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
            print(f"{name}: {len(table['tensors'])} tensors, {table['file_size']} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

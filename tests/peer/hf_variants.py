"""Variants of the tiny Gemma 3 fixtures, as Hugging Face checkpoints are found
in the wild, built from the committed fixtures with numpy only.

Used twice, so that both sides convert the very same bytes:
- tools/make_expected_gguf.py runs llama.cpp's convert_hf_to_gguf.py on them
  (tools venv) and records the expected GGUF tables, with the sha256 of each
  variant's weight files;
- tests/peer/test_convert_gguf.py rebuilds them (peer venv), checks those
  sha256 and runs `medquant convert gguf` on them.

Variants (the folder name matters: llama.cpp's converter names the model
after it, general.name):
  tiny-gemma3-sharded      tiny-gemma3 in 2 shards + model.safetensors.index.json
  tiny-gemma3-newlayout    tiny-gemma3 with transformers' in-memory names
                           (model.language_model.*, model.vision_tower.*,
                           model.multi_modal_projector.*)
  tiny-gemma3-text-f16src  tiny-gemma3-text stored as F16 (bf16 -> f32 -> f16, RNE)
  tiny-gemma3-text-f32src  tiny-gemma3-text stored as F32 (exact)
  tiny-gemma3-text-lmhead  tiny-gemma3-text untied: lm_head.weight = the
                           embeddings reversed along the vocabulary, and
                           tie_word_embeddings false in config.json
  tiny-gemma3-card         tiny-gemma3 with a model card (README.md with
                           YAML front matter shaped like MedGemma's: license,
                           base_model, tags, a folded scalar, ...) and
                           "_name_or_path": "google/medgemma-4b-it" in
                           config.json, for the general.* heuristics

The safetensors files are written here by hand (sorted names, compact JSON
header padded with spaces to 8 bytes), so the bytes do not depend on the
version of any library.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import numpy as np

VARIANTS = {
    "tiny-gemma3-sharded": "tiny-gemma3",
    "tiny-gemma3-newlayout": "tiny-gemma3",
    "tiny-gemma3-text-f16src": "tiny-gemma3-text",
    "tiny-gemma3-text-f32src": "tiny-gemma3-text",
    "tiny-gemma3-text-lmhead": "tiny-gemma3-text",
    "tiny-gemma3-card": "tiny-gemma3",
}

MODEL_CARD = """---
license: other
license_name: health-ai-developer-foundations
license_link: https://developers.google.com/health-ai-developer-foundations/terms
library_name: transformers
pipeline_tag: image-text-to-text
extra_gated_heading: Access MedGemma on Hugging Face
extra_gated_prompt: >-
  To access MedGemma on Hugging Face, you're required to review and
  agree to the terms of use.
extra_gated_button_content: Acknowledge license
base_model: google/gemma-3-4b-pt
language:
- en
tags:
- medical
- radiology
- clinical-reasoning
- no
datasets:
- https://huggingface.co/datasets/tiny/xray-reports
- rad-org/ct-findings-v2
---

# Tiny MedGemma-shaped test model

Random weights; not a model.
"""

_NP = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def read_safetensors(path: Path) -> dict[str, tuple[str, list[int], bytes]]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = (info["dtype"], list(info["shape"]), data[8 + n + b : 8 + n + e])
    return out


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    names = sorted(tensors)
    for name in names:
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in names:
            f.write(tensors[name][2])


def _to_f32(dtype: str, raw: bytes) -> np.ndarray:
    if dtype == "BF16":
        return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(raw, _NP[dtype]).astype(np.float32)


def _copy_side_files(src: Path, dst: Path) -> None:
    for p in sorted(src.iterdir()):
        if p.is_file() and not p.name.endswith(".safetensors") and not p.name.endswith(".index.json"):
            shutil.copy2(p, dst / p.name)
        elif p.is_dir() and p.name == "images":
            shutil.copytree(p, dst / p.name, dirs_exist_ok=True)


def make(name: str, fixtures: Path, out_root: Path) -> Path:
    """Builds variant `name` under out_root/name (replacing it) and returns the folder."""
    src = fixtures / VARIANTS[name]
    dst = out_root / name
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    _copy_side_files(src, dst)
    tensors = read_safetensors(src / "model.safetensors")

    if name == "tiny-gemma3-sharded":
        names = sorted(tensors)
        # Split so that both shards hold text layers and the vision tower is in the second.
        first = {n: tensors[n] for n in names if n.startswith("language_model.model.layers.")
                 and int(n.split(".")[3]) < 3}
        second = {n: tensors[n] for n in names if n not in first}
        shards = [("model-00001-of-00002.safetensors", first), ("model-00002-of-00002.safetensors", second)]
        weight_map = {}
        for fname, part in shards:
            write_safetensors(dst / fname, part)
            weight_map.update({n: fname for n in part})
        total = sum(len(t[2]) for t in tensors.values())
        index = {"metadata": {"total_size": total},
                 "weight_map": {n: weight_map[n] for n in sorted(weight_map)}}
        (dst / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    elif name == "tiny-gemma3-newlayout":
        renamed = {}
        for n, t in tensors.items():
            if n.startswith("language_model.model."):
                n = "model.language_model." + n[len("language_model.model."):]
            else:
                n = "model." + n
            renamed[n] = t
        write_safetensors(dst / "model.safetensors", renamed)
    elif name in ("tiny-gemma3-text-f16src", "tiny-gemma3-text-f32src"):
        want = "F16" if name.endswith("f16src") else "F32"
        conv = {}
        for n, (dtype, shape, raw) in tensors.items():
            x = _to_f32(dtype, raw)
            y = x.astype(np.float16) if want == "F16" else x
            conv[n] = (want, shape, np.ascontiguousarray(y).tobytes())
        write_safetensors(dst / "model.safetensors", conv)
        cfg = json.loads((dst / "config.json").read_text())
        cfg["dtype"] = "float16" if want == "F16" else "float32"
        (dst / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    elif name == "tiny-gemma3-text-lmhead":
        dtype, shape, raw = tensors["model.embed_tokens.weight"]
        emb = np.frombuffer(raw, np.uint16).reshape(shape)
        tensors = dict(tensors)
        tensors["lm_head.weight"] = (dtype, shape, np.ascontiguousarray(emb[::-1]).tobytes())
        write_safetensors(dst / "model.safetensors", tensors)
        cfg = json.loads((dst / "config.json").read_text())
        cfg["tie_word_embeddings"] = False
        (dst / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    elif name == "tiny-gemma3-card":
        shutil.copy2(src / "model.safetensors", dst / "model.safetensors")
        (dst / "README.md").write_text(MODEL_CARD)
        cfg = json.loads((dst / "config.json").read_text())
        cfg["_name_or_path"] = "google/medgemma-4b-it"
        (dst / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    else:
        raise KeyError(f"unknown variant {name}")
    return dst


def weights_sha256(folder: Path) -> dict[str, str]:
    """sha256 of every weight file (and index) of a checkpoint folder."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name.endswith(".safetensors") or p.name.endswith(".index.json") or p.name in ("config.json", "README.md"):
            out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out

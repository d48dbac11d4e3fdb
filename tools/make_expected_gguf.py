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
    ("tiny-gemma3-card", "text", "bf16"),
    ("tiny-gemma3-card", "mmproj", "f16"),
]
# gguf-py's naming heuristics (Metadata.get_model_id_components, id_to_title,
# utility.size_label) on model ids as they appear on the hub and as folder
# names, for the unit tests: model_names.json.
MODEL_IDS = [
    "google/medgemma-4b-it", "google/medgemma-27b-text-it", "google/gemma-3-4b-pt", "medgemma-4b-it",
    "tiny-gemma3", "tiny-gemma3-text-f16src", "google/gemma-3n-E4B-it", "meta-llama/Llama-2-7b-hf",
    "mistralai/Mixtral-8x7B-Instruct-v0.1", "Qwen/Qwen3-235B-A22B-Instruct-2507", "bigscience/bloom-7b1",
    "TheBloke/Mistral-7B-Instruct-v0.2-GGUF", "microsoft/Phi-4-mini-instruct", "./models/gemma",
    "Some Model Name", "medgemma-4b-it-Q4_K_M", "unsloth/medgemma-4b-it-bf16", "org/x-v1.5-128k-chat",
    "google/gemma-3-1b-it", "HuggingFaceTB/SmolLM2-1.7B-Instruct", "nomic-ai/nomic-embed-text-v1.5",
    "ibm-granite/granite-3.1-8b-instruct", "a-b--c", "3b-model", "model-v2-small-large", "x-iq4_xs-fp16",
    "org/name-1_5B-lora", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "tiiuae/falcon-mamba-7b",
]
TOTAL_PARAMS = [0, 4_100_000, 3_880_000_000, 7_000_000_000, -1_000_000_000, 412_000]
SIZES = [0, 1, 999, 1000, 1001, 412_352, 4_100_864, 999_999_999, 1_000_000_001, 3_880_263_936,
         26_000_000_000, 1_500_000_000_000, 9_950_000, 10_500_000, 99_500_000, 100_000_000]
# llama-quantize of the converter's BF16 text model.
QUANTIZED = [("tiny-gemma3", "Q4_K_S"), ("tiny-gemma3-text", "Q4_K_S")]


# config.json files as the hub has them, minimal ones relying on transformers'
# defaults (google/gemma-3-4b-it's, which MedGemma 4B's mirrors), and the values
# transformers' AutoConfig reads from them: config_defaults.json.
CONFIGS = {
    "gemma-3-4b-it": {
        "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999,
        "eoi_token_index": 256000, "eos_token_id": [1, 106], "image_token_index": 262144,
        "initializer_range": 0.02, "mm_tokens_per_image": 256, "model_type": "gemma3",
        "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                        "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                        "sliding_window": 1024},
        "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
        "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                          "model_type": "siglip_vision_model", "num_attention_heads": 16,
                          "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": False},
    },
    "gemma-3-1b-it": {
        "architectures": ["Gemma3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "attn_logit_softcapping": None, "bos_token_id": 2, "cache_implementation": "hybrid",
        "eos_token_id": [1, 106], "final_logit_softcapping": None, "head_dim": 256,
        "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152, "initializer_range": 0.02,
        "intermediate_size": 6912, "max_position_embeddings": 32768, "model_type": "gemma3_text",
        "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 1, "pad_token_id": 0,
        "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000,
        "rope_scaling": None, "rope_theta": 1000000, "sliding_window": 512, "sliding_window_pattern": 6,
        "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0", "use_cache": True,
        "vocab_size": 262144,
    },
    "empty-multimodal": {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3"},
}
TEXT_KEYS = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "sliding_window",
             "rope_theta", "rope_local_base_freq", "rope_scaling", "final_logit_softcapping",
             "tie_word_embeddings"]
VISION_KEYS = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_channels",
               "image_size", "patch_size", "layer_norm_eps"]


def write_config_defaults(tmp: Path, stamp: str) -> None:
    from transformers import AutoConfig
    import transformers
    out = {"made_by": f"transformers {transformers.__version__} AutoConfig.from_pretrained(...).to_dict()",
           "configs": []}
    for name, cfg in CONFIGS.items():
        d = tmp / "configs" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(cfg))
        full = AutoConfig.from_pretrained(d).to_dict()
        text = {**full, **full["text_config"]} if "text_config" in full else full
        entry = {"name": name, "config": cfg, "text": {k: text.get(k) for k in TEXT_KEYS}}
        if "vision_config" in full:
            entry["vision"] = {k: full["vision_config"].get(k) for k in VISION_KEYS}
            entry["mm_tokens_per_image"] = full.get("mm_tokens_per_image")
        out["configs"].append(entry)
    (OUT / "config_defaults.json").write_text(json.dumps(out, indent=1) + "\n")


def case_name(model: str, kind: str, outtype: str) -> str:
    return f"{model}.{kind}.{outtype}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-prefix", default=os.environ.get("MEDQUANT_LLAMA_PREFIX"), required=False)
    ap.add_argument("--keep", type=Path, help="keep the converted .gguf files in this folder")
    ap.add_argument("--names-only", action="store_true",
                    help="only model_names.json and config_defaults.json (no conversions)")
    args = ap.parse_args()
    if not args.llama_prefix:
        ap.error("--llama-prefix (or MEDQUANT_LLAMA_PREFIX) is required")
    prefix = Path(args.llama_prefix)
    convert = prefix / "share" / "llama.cpp" / "convert_hf_to_gguf.py"
    gguf_py = prefix / "share" / "llama.cpp" / "gguf-py"
    quantize = prefix / "bin" / "llama-quantize"
    stamp = (prefix / ".medquant-stamp").read_text() if (prefix / ".medquant-stamp").exists() else ""
    # The pin only (the stamp's build recipe lines change without changing the converter).
    stamp = "\n".join(l for l in stamp.splitlines() if l.startswith(("llama-cpp-python ", "llama.cpp ")))
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

        for model, kind, outtype in ([] if args.names_only else CASES):
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

        sys.path.insert(0, str(gguf_py))
        from gguf.metadata import Metadata  # the pinned gguf-py, as the converter uses it
        from gguf.utility import size_label
        names = {"made_by": "gguf-py Metadata.get_model_id_components / id_to_title, utility.size_label",
                 "llama_cpp": stamp.strip().splitlines(), "model_ids": [], "size_labels": []}
        for model_id in MODEL_IDS:
            for total in TOTAL_PARAMS:
                c = Metadata.get_model_id_components(model_id, total)
                names["model_ids"].append({"id": model_id, "total_params": total, "components": list(c),
                                           "title": Metadata.id_to_title(c[0]) if c[0] is not None else None})
        for n in SIZES:
            names["size_labels"].append({"params": n, "label": size_label(n, n, 0, 0)})
        (OUT / "model_names.json").write_text(json.dumps(names, indent=1, ensure_ascii=False) + "\n")
        write_config_defaults(tmp, stamp)
        if args.names_only:
            return 0

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

#!/usr/bin/env python3
"""Writes a MedGemma-4B-shaped Hugging Face checkpoint with random bf16
weights (about 8.6 GB) for bench/convert_gguf.sh: the real tensor names,
shapes and config of google/medgemma-4b-it — Gemma3ForConditionalGeneration,
text 2560 hidden / 34 layers / 8 heads / 4 KV heads / head dim 256 / FFN
10240 / vocab 262208, SigLIP 1152 / 27 layers / 16 heads / FFN 4304 at
896 px, projector 1152 -> 2560 — saved as the hub has it: two shards
(5 GB max, HF's default), model.safetensors.index.json, the hub's
minimal config.json, generation_config.json, preprocessor / processor
configs, tokenizer_config.json with the chat template, special_tokens_map.json.

tokenizer.model has MedGemma's size (262144 pieces): the tiny fixture's
SentencePiece model (its specials, byte pieces and merges) extended with
synthetic normal pieces; tokenizer_config.json adds <image_soft_token> at
262144 as the real one does.

Values: N(0, 0.02) rounded to bf16 (norm weights N(0, 0.1)). A pool of 2^26
values is made once and each tensor is cut from it at a random offset, so
the 4.3 G values are written at disk speed; nothing is held in memory beyond
one tensor slice (~128 MB).

    tools/.venv/bin/python bench/make_gemma3_4b_hf.py OUT_DIR
(sentencepiece's protobuf module is needed for the tokenizer: the tools venv.)
"""
from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "tiny-gemma3"

T_HIDDEN, T_LAYERS, T_HEADS, T_KV, T_HEAD_DIM, T_FFN, VOCAB = 2560, 34, 8, 4, 256, 10240, 262208
V_HIDDEN, V_LAYERS, V_FFN, V_IMAGE, V_PATCH = 1152, 27, 4304, 896, 14
SHARD_MAX = 5_000_000_000  # HF save_pretrained's default max_shard_size "5GB"

CONFIG = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "boi_token_index": 255999, "eoi_token_index": 256000, "eos_token_id": [1, 106],
    "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
    "model_type": "gemma3",
    "text_config": {"hidden_size": T_HIDDEN, "intermediate_size": T_FFN, "model_type": "gemma3_text",
                    "num_hidden_layers": T_LAYERS, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                    "sliding_window": 1024},
    "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
    "vision_config": {"hidden_size": V_HIDDEN, "image_size": V_IMAGE, "intermediate_size": V_FFN,
                      "model_type": "siglip_vision_model", "num_attention_heads": 16,
                      "num_hidden_layers": V_LAYERS, "patch_size": V_PATCH, "vision_use_head": False},
}


def tensors():
    """(name, shape, is_norm_or_bias) in HF's state-dict order."""
    t = "language_model.model."
    yield t + "embed_tokens.weight", (VOCAB, T_HIDDEN), False
    for i in range(T_LAYERS):
        p = f"{t}layers.{i}."
        yield p + "input_layernorm.weight", (T_HIDDEN,), True
        yield p + "mlp.down_proj.weight", (T_HIDDEN, T_FFN), False
        yield p + "mlp.gate_proj.weight", (T_FFN, T_HIDDEN), False
        yield p + "mlp.up_proj.weight", (T_FFN, T_HIDDEN), False
        yield p + "post_attention_layernorm.weight", (T_HIDDEN,), True
        yield p + "post_feedforward_layernorm.weight", (T_HIDDEN,), True
        yield p + "pre_feedforward_layernorm.weight", (T_HIDDEN,), True
        yield p + "self_attn.k_norm.weight", (T_HEAD_DIM,), True
        yield p + "self_attn.k_proj.weight", (T_KV * T_HEAD_DIM, T_HIDDEN), False
        yield p + "self_attn.o_proj.weight", (T_HIDDEN, T_HEADS * T_HEAD_DIM), False
        yield p + "self_attn.q_norm.weight", (T_HEAD_DIM,), True
        yield p + "self_attn.q_proj.weight", (T_HEADS * T_HEAD_DIM, T_HIDDEN), False
        yield p + "self_attn.v_proj.weight", (T_KV * T_HEAD_DIM, T_HIDDEN), False
    yield t + "norm.weight", (T_HIDDEN,), True
    yield "multi_modal_projector.mm_input_projection_weight", (V_HIDDEN, T_HIDDEN), False
    yield "multi_modal_projector.mm_soft_emb_norm.weight", (V_HIDDEN,), True
    v = "vision_tower.vision_model."
    yield v + "embeddings.patch_embedding.bias", (V_HIDDEN,), True
    yield v + "embeddings.patch_embedding.weight", (V_HIDDEN, 3, V_PATCH, V_PATCH), False
    yield v + "embeddings.position_embedding.weight", ((V_IMAGE // V_PATCH) ** 2, V_HIDDEN), False
    for i in range(V_LAYERS):
        p = f"{v}encoder.layers.{i}."
        for n in ("layer_norm1", "layer_norm2"):
            yield p + n + ".bias", (V_HIDDEN,), True
            yield p + n + ".weight", (V_HIDDEN,), True
        yield p + "mlp.fc1.bias", (V_FFN,), True
        yield p + "mlp.fc1.weight", (V_FFN, V_HIDDEN), False
        yield p + "mlp.fc2.bias", (V_HIDDEN,), True
        yield p + "mlp.fc2.weight", (V_HIDDEN, V_FFN), False
        for n in ("k_proj", "out_proj", "q_proj", "v_proj"):
            yield p + f"self_attn.{n}.bias", (V_HIDDEN,), True
            yield p + f"self_attn.{n}.weight", (V_HIDDEN, V_HIDDEN), False
    yield v + "post_layernorm.bias", (V_HIDDEN,), True
    yield v + "post_layernorm.weight", (V_HIDDEN,), True


def bf16_pool(rng, n: int, std: float) -> np.ndarray:
    x = rng.standard_normal(n, dtype=np.float32) * np.float32(std)
    u = x.view(np.uint32)
    return ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)


def write_shard(path: Path, items, pools, rng) -> dict[str, str]:
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, small in items:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name, shape, small in items:
            pool = pools[small]
            left = int(np.prod(shape))
            while left:
                k = min(left, len(pool) // 2)
                start = int(rng.integers(0, len(pool) - k))
                f.write(pool[start : start + k].tobytes())
                left -= k
    return {name: path.name for name, _, _ in items}


def write_tokenizer(out: Path) -> None:
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = pb.ModelProto()
    m.ParseFromString((FIXTURE / "tokenizer.model").read_bytes())
    # MedGemma has <image_soft_token> at 262144 only (added below); a second
    # copy at the fixture's id 9 makes the vocabulary ambiguous and llama.cpp
    # aborts loading it (llama-vocab.cpp: id_to_token.size() == token_to_id.size()).
    for p in m.pieces:
        if p.piece == "<image_soft_token>":
            p.piece = "<unused_image_soft_token>"
    base = len(m.pieces)
    for i in range(base, 262144):
        p = m.pieces.add()
        p.piece = f"\u2581syn{i}"
        p.score = float(-40.0 - i * 1e-4)
    (out / "tokenizer.model").write_bytes(m.SerializeToString())
    tc = json.loads((FIXTURE / "tokenizer_config.json").read_text())
    for entry in tc["added_tokens_decoder"].values():
        if entry["content"] == "<image_soft_token>":
            entry["content"] = "<unused_image_soft_token>"
    tc["added_tokens_decoder"]["262144"] = {"content": "<image_soft_token>", "lstrip": False,
                                            "normalized": False, "rstrip": False, "single_word": False,
                                            "special": True}
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2))


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    rng = np.random.default_rng(20250610)
    pools = {False: bf16_pool(rng, 1 << 26, 0.02), True: bf16_pool(rng, 1 << 20, 0.1)}

    items = list(tensors())
    shards, cur, size = [], [], 0
    for it in items:
        n = int(np.prod(it[1])) * 2
        if cur and size + n > SHARD_MAX:
            shards.append(cur)
            cur, size = [], 0
        cur.append(it)
        size += n
    shards.append(cur)
    weight_map: dict[str, str] = {}
    total = 0
    for k, part in enumerate(shards):
        name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        print(f"writing {name} ({len(part)} tensors)", file=sys.stderr)
        weight_map.update(write_shard(tmp / name, part, pools, rng))
        total += sum(int(np.prod(s)) * 2 for _, s, _ in part)
    (tmp / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))
    (tmp / "config.json").write_text(json.dumps(CONFIG, indent=2))
    for f in ("generation_config.json", "preprocessor_config.json", "processor_config.json",
              "special_tokens_map.json", "chat_template.json"):
        shutil.copy2(FIXTURE / f, tmp / f)
    write_tokenizer(tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    print(f"{out}: {len(items)} tensors, {total / 1e9:.2f} GB in {len(shards)} shards", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

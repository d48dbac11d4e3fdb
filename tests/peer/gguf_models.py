"""GGUF models for the peer tests, written with the `gguf` package.

- gemma3_gguf(): the tiny Gemma 3 fixture (text model of tests/fixtures/
  tiny-gemma3 or tiny-gemma3-text) as an F16, BF16 or F32 GGUF that llama.cpp
  loads and runs, converted the way convert_hf_to_gguf.py does (gguf tensor
  names, norms + 1, SentencePiece vocabulary, 1-D tensors in F32). Only a
  stand-in until `medquant convert gguf` lands: the quantize tests need an
  input, not a converter check.
- synthetic_llama_gguf(): a llama-architecture GGUF with random weights whose
  row lengths include ones that are not multiples of 256 (and one not a
  multiple of 32), an untied output.weight and a position embedding, to reach
  llama.cpp's fallback and special-tensor rules. llama-quantize reads only its
  metadata and tensor list, so it needs no tokenizer.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import gguf
import numpy as np


def _read_safetensors(path: Path) -> dict[str, tuple[str, list[int], bytes]]:
    """name -> (dtype, shape, raw bytes); no framework needed (bf16 stays raw)."""
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], data[base + b : base + e])
    return out


def _to_f32(dtype: str, shape: list[int], raw: bytes) -> np.ndarray:
    if dtype == "BF16":
        u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
        return u.view(np.float32).reshape(shape)
    if dtype == "F16":
        return np.frombuffer(raw, dtype=np.float16).astype(np.float32).reshape(shape)
    if dtype == "F32":
        return np.frombuffer(raw, dtype=np.float32).reshape(shape).copy()
    raise ValueError(f"unsupported dtype {dtype}")


def _f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """Round to nearest even, as ggml_fp32_to_bf16 (NaN kept quiet)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, ((u >> 16) | 64).astype(np.uint16), rounded)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return v, i


def _sentencepiece_pieces(path: Path) -> list[tuple[str, float, int]]:
    """(piece, score, type) from a SentencePiece ModelProto, fields 1/2/3."""
    buf = path.read_bytes()
    pieces = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 2:
            n, i = _varint(buf, i)
            body = buf[i : i + n]
            i += n
            if field == 1:
                piece, score, ptype = "", 0.0, 1
                j = 0
                while j < len(body):
                    k, j = _varint(body, j)
                    f, w = k >> 3, k & 7
                    if w == 2:
                        m, j = _varint(body, j)
                        if f == 1:
                            piece = body[j : j + m].decode("utf-8")
                        j += m
                    elif w == 5:
                        if f == 2:
                            score = struct.unpack("<f", body[j : j + 4])[0]
                        j += 4
                    elif w == 0:
                        v, j = _varint(body, j)
                        if f == 3:
                            ptype = v
                    elif w == 1:
                        j += 8
                pieces.append((piece, score, ptype))
        elif wire == 0:
            _, i = _varint(buf, i)
        elif wire == 5:
            i += 4
        elif wire == 1:
            i += 8
        else:
            raise ValueError(f"{path}: unexpected protobuf wire type {wire}")
    return pieces


_OUT_TYPES = {
    "f32": gguf.GGMLQuantizationType.F32,
    "f16": gguf.GGMLQuantizationType.F16,
    "bf16": gguf.GGMLQuantizationType.BF16,
}
_FILE_TYPES = {"f32": 0, "f16": 1, "bf16": 32}


def _add(writer: gguf.GGUFWriter, name: str, x: np.ndarray, outtype: str) -> None:
    # convert_hf_to_gguf keeps 1-D tensors (norms, biases) in F32.
    if x.ndim <= 1 or outtype == "f32":
        writer.add_tensor(name, np.ascontiguousarray(x, dtype=np.float32))
    elif outtype == "f16":
        writer.add_tensor(name, x.astype(np.float16))
    else:
        writer.add_tensor(name, _f32_to_bf16(x), raw_shape=x.shape,
                          raw_dtype=gguf.GGMLQuantizationType.BF16)


def gemma3_gguf(fixture: Path, out: Path, outtype: str = "f16") -> Path:
    config = json.loads((fixture / "config.json").read_text())
    text = config.get("text_config", config)
    n_layer = text["num_hidden_layers"]
    tensors = _read_safetensors(fixture / "model.safetensors")

    w = gguf.GGUFWriter(str(out), "gemma3")
    w.add_name(fixture.name)
    w.add_context_length(text.get("max_position_embeddings", 131072))
    w.add_embedding_length(text["hidden_size"])
    w.add_block_count(n_layer)
    w.add_feed_forward_length(text["intermediate_size"])
    w.add_head_count(text["num_attention_heads"])
    w.add_head_count_kv(text["num_key_value_heads"])
    w.add_layer_norm_rms_eps(text.get("rms_norm_eps", 1e-6))
    w.add_key_length(text.get("head_dim", 256))
    w.add_value_length(text.get("head_dim", 256))
    w.add_rope_freq_base(text.get("rope_theta", 1_000_000.0))
    if text.get("sliding_window_pattern") != 1:
        w.add_sliding_window(text["sliding_window"])
    scaling = text.get("rope_scaling") or {}
    if scaling.get("rope_type") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(scaling["factor"])
    w.add_file_type(_FILE_TYPES[outtype])

    pieces = _sentencepiece_pieces(fixture / "tokenizer.model")
    tokens = [p for p, _, _ in pieces]
    scores = [s for _, s, _ in pieces]
    types = [t for _, _, t in pieces]
    for i in range(len(tokens), text["vocab_size"]):  # as _set_vocab_sentencepiece pads
        tokens.append(f"[PAD{i}]")
        scores.append(-1000.0)
        types.append(gguf.TokenType.UNUSED)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(config.get("bos_token_id", text.get("bos_token_id", 2)))
    w.add_eos_token_id(text.get("eos_token_id", 1) if isinstance(text.get("eos_token_id", 1), int) else 1)
    w.add_pad_token_id(text.get("pad_token_id", 0))
    w.add_unk_token_id(3)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)

    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, n_layer)
    for hf_name, (dtype, shape, raw) in tensors.items():
        name = hf_name.removeprefix("language_model.")
        if not name.startswith("model.") or "vision" in name:
            continue
        new_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise KeyError(f"no gguf name for {hf_name}")
        x = _to_f32(dtype, shape, raw)
        if name.endswith("norm.weight"):
            x = x + 1.0  # Gemma3RMSNorm multiplies by (1 + w)
        if new_name == "token_embd.weight":
            x = x[: len(tokens)]
        _add(w, new_name, x, outtype)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def synthetic_llama_gguf(out: Path, outtype: str = "f16", seed: int = 0) -> Path:
    """Rows of 320 (32 x 10), 864 (32 x 27), 100 and 256; 4 layers, GQA 4."""
    rng = np.random.default_rng(seed)
    n_embd, n_ff, n_vocab, n_layer, n_head, n_head_kv = 320, 864, 500, 4, 8, 2
    head_dim = n_embd // n_head

    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name("synthetic-llama")
    w.add_context_length(256)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(n_vocab)
    w.add_file_type(_FILE_TYPES[outtype])
    w.add_array("synthetic.bools", [True, False, True])
    w.add_uint64("synthetic.big", 1 << 40)
    w.add_string("split.count.note", "a key that is not a split key")

    def rand(*shape, scale=0.02):
        # numpy shape is ggml's reversed: (rows, row length)
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    _add(w, "token_embd.weight", rand(n_vocab, n_embd), outtype)
    _add(w, "position_embd.weight", rand(64, n_embd), outtype)
    _add(w, "output_norm.weight", 1 + rand(n_embd), outtype)
    _add(w, "output.weight", rand(n_vocab, n_embd), outtype)
    for i in range(n_layer):
        b = f"blk.{i}."
        _add(w, b + "attn_norm.weight", 1 + rand(n_embd), outtype)
        _add(w, b + "attn_q.weight", rand(n_embd, n_embd), outtype)
        _add(w, b + "attn_k.weight", rand(n_head_kv * head_dim, n_embd), outtype)
        _add(w, b + "attn_v.weight", rand(n_head_kv * head_dim, n_embd), outtype)
        _add(w, b + "attn_output.weight", rand(n_embd, n_embd), outtype)
        _add(w, b + "ffn_norm.weight", 1 + rand(n_embd), outtype)
        _add(w, b + "ffn_gate.weight", rand(n_ff, n_embd), outtype)
        _add(w, b + "ffn_up.weight", rand(n_ff, n_embd), outtype)
        _add(w, b + "ffn_down.weight", rand(n_embd, n_ff), outtype)
    # Rows that fit no quantized block (-> F16), and one that fits 256.
    _add(w, "blk.0.odd_proj.weight", rand(8, 100), outtype)
    _add(w, "blk.1.wide_proj.weight", rand(4, 256), outtype)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out

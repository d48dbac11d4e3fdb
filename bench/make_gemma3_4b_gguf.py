#!/usr/bin/env python3
"""Writes a Gemma-3-4B-shaped GGUF with random bf16 weights (about 7.8 GB) for
bench/quantize_gguf.sh: hidden 2560, 34 layers, 8 heads, 4 KV heads, head
dim 256, FFN 10240, vocab 262208; norms in f32 as convert_hf_to_gguf writes
them. Streamed tensor by tensor (never more than ~130 MB in memory).

Values: N(0, 0.02) rounded to bf16. To keep generation fast, a pool of 2^26
of them is made once and each tensor is cut from it at a random offset.

    make_gemma3_4b_gguf.py OUT.gguf
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, FFN, VOCAB = 2560, 34, 8, 4, 256, 10240, 262208
ALIGN = 32
BF16, F32 = 30, 0


def tensors():
    """(name, ne innermost first, ggml type) in the order convert_hf_to_gguf writes."""
    yield "token_embd.weight", (HIDDEN, VOCAB), BF16
    for i in range(LAYERS):
        b = f"blk.{i}."
        yield b + "attn_norm.weight", (HIDDEN,), F32
        yield b + "ffn_down.weight", (FFN, HIDDEN), BF16
        yield b + "ffn_gate.weight", (HIDDEN, FFN), BF16
        yield b + "ffn_up.weight", (HIDDEN, FFN), BF16
        yield b + "post_attention_norm.weight", (HIDDEN,), F32
        yield b + "post_ffw_norm.weight", (HIDDEN,), F32
        yield b + "ffn_norm.weight", (HIDDEN,), F32
        yield b + "attn_k_norm.weight", (HEAD_DIM,), F32
        yield b + "attn_k.weight", (HIDDEN, KV_HEADS * HEAD_DIM), BF16
        yield b + "attn_output.weight", (HEADS * HEAD_DIM, HIDDEN), BF16
        yield b + "attn_q_norm.weight", (HEAD_DIM,), F32
        yield b + "attn_q.weight", (HIDDEN, HEADS * HEAD_DIM), BF16
        yield b + "attn_v.weight", (HIDDEN, KV_HEADS * HEAD_DIM), BF16
    yield "output_norm.weight", (HIDDEN,), F32


def s(x: str) -> bytes:
    b = x.encode()
    return struct.pack("<Q", len(b)) + b


def kv_u32(k, v):
    return s(k) + struct.pack("<II", 4, v)


def kv_f32(k, v):
    return s(k) + struct.pack("<If", 6, v)


def kv_str(k, v):
    return s(k) + struct.pack("<I", 8) + s(v)


def main(out: Path) -> None:
    kvs = [
        kv_str("general.architecture", "gemma3"),
        kv_str("general.name", "gemma-3-4b-shaped random bf16"),
        kv_u32("gemma3.context_length", 131072),
        kv_u32("gemma3.embedding_length", HIDDEN),
        kv_u32("gemma3.block_count", LAYERS),
        kv_u32("gemma3.feed_forward_length", FFN),
        kv_u32("gemma3.attention.head_count", HEADS),
        kv_u32("gemma3.attention.head_count_kv", KV_HEADS),
        kv_f32("gemma3.attention.layer_norm_rms_epsilon", 1e-6),
        kv_u32("gemma3.attention.key_length", HEAD_DIM),
        kv_u32("gemma3.attention.value_length", HEAD_DIM),
        kv_f32("gemma3.rope.freq_base", 1e6),
        kv_u32("gemma3.attention.sliding_window", 1024),
        kv_u32("general.file_type", 32),
    ]
    infos, offset, plan = [], 0, []
    for name, ne, t in tensors():
        n = int(np.prod(ne))
        nbytes = n * (2 if t == BF16 else 4)
        infos.append(s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<q", x) for x in ne)
                     + struct.pack("<IQ", t, offset))
        plan.append((name, n, t, nbytes))
        offset += (nbytes + ALIGN - 1) // ALIGN * ALIGN
    header = b"GGUF" + struct.pack("<Iqq", 3, len(infos), len(kvs)) + b"".join(kvs) + b"".join(infos)
    header += b"\0" * (-len(header) % ALIGN)

    rng = np.random.default_rng(2025)
    pool_f32 = (rng.standard_normal(1 << 26, dtype=np.float32) * 0.02)
    u = pool_f32.view(np.uint32)
    pool = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)  # round to nearest even
    pool = np.concatenate([pool, pool])  # so any slice of up to 2^26 values wraps for free
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as f:
        f.write(header)
        for name, n, t, nbytes in plan:
            if t == F32:
                f.write((1.0 + rng.standard_normal(n, dtype=np.float32) * 0.1).astype("<f4").tobytes())
            else:
                done = 0
                while done < n:
                    k = min(n - done, 1 << 26)
                    start = int(rng.integers(0, 1 << 26))
                    f.write(pool[start : start + k].tobytes())
                    done += k
            f.write(b"\0" * (-nbytes % ALIGN))
    tmp.rename(out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))

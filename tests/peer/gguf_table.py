"""A GGUF file as a table that can be committed as JSON and compared: every
metadata key (in file order) with its type and the sha256 of its serialized
bytes, every tensor with its type, shape, offset and the sha256 of its data,
and the size and sha256 of the whole file.

Pure Python (struct + hashlib), so the tools venv (which makes the expected
tables from llama.cpp's own converter output) and the peer venv (which
checks medquant's files) read files the same way, whatever version of the
`gguf` package either has.
"""
from __future__ import annotations

import hashlib
import struct
from pathlib import Path

VALUE_TYPES = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool",
               8: "str", 9: "arr", 10: "u64", 11: "i64", 12: "f64"}
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}
# ggml type id -> (name, values per block, bytes per block), for the types medquant writes.
GGML_TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
              6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 10: ("Q2_K", 256, 84),
              11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
              14: ("Q6_K", 256, 210), 30: ("BF16", 1, 2)}
SHOWN_ARRAY = 8  # arrays longer than this are summarised (count + first values)


class _Cursor:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def string(self) -> str:
        n = self.take("<Q")
        s = self.data[self.pos : self.pos + n]
        self.pos += n
        return s.decode("utf-8", errors="surrogateescape")


def _value(c: _Cursor, t: int):
    if t == 8:
        return c.string()
    return c.take(_SCALAR[t])


def _shown(v):
    if isinstance(v, float):
        return repr(v)  # exact round trip of f32/f64 values
    if isinstance(v, str) and len(v) > 120:
        return v[:120] + f"... ({len(v)} chars)"
    return v


def read_table(path: str | Path) -> dict:
    data = Path(path).read_bytes()
    c = _Cursor(data)
    assert data[:4] == b"GGUF", f"{path}: not a GGUF file"
    c.pos = 4
    version = c.take("<I")
    n_tensors, n_kv = c.take("<q"), c.take("<q")
    kvs = []
    alignment = 32
    for _ in range(n_kv):
        start = c.pos
        key = c.string()
        t = c.take("<I")
        entry: dict = {"key": key, "type": VALUE_TYPES[t]}
        if t == 9:
            et, n = c.take("<I"), c.take("<Q")
            values = [_value(c, et) for _ in range(n)]
            entry["type"] = f"arr[{VALUE_TYPES[et]}]"
            entry["count"] = n
            entry["value"] = [_shown(v) for v in values[:SHOWN_ARRAY]]
        else:
            v = _value(c, t)
            entry["value"] = _shown(v)
            if key == "general.alignment":
                alignment = v
        entry["sha256"] = hashlib.sha256(data[start : c.pos]).hexdigest()
        kvs.append(entry)
    infos = []
    for _ in range(n_tensors):
        name = c.string()
        n_dims = c.take("<I")
        ne = [c.take("<q") for _ in range(n_dims)]
        t = c.take("<I")
        offset = c.take("<Q")
        infos.append((name, n_dims, ne, t, offset))
    data_start = c.pos + (-c.pos % alignment)
    tensors = []
    for name, n_dims, ne, t, offset in infos:
        tname, bs, ts = GGML_TYPES[t]
        n = 1
        for d in ne:
            n *= d
        nbytes = n // bs * ts
        raw = data[data_start + offset : data_start + offset + nbytes]
        assert len(raw) == nbytes, f"{path}: tensor {name} runs past the end"
        tensors.append({"name": name, "type": tname, "n_dims": n_dims, "ne": ne, "offset": offset,
                        "nbytes": nbytes, "sha256": hashlib.sha256(raw).hexdigest()})
    return {"version": version, "file_size": len(data), "file_sha256": hashlib.sha256(data).hexdigest(),
            "kv": kvs, "tensors": tensors}


def differences(ours: dict, expected: dict, limit: int = 20) -> list[str]:
    """What differs between two tables, in words (empty if the files are equal)."""
    out: list[str] = []
    ka = [k["key"] for k in ours["kv"]]
    kb = [k["key"] for k in expected["kv"]]
    if ka != kb:
        out.append(f"metadata keys differ:\n  ours     {ka}\n  expected {kb}")
    eb = {k["key"]: k for k in expected["kv"]}
    for k in ours["kv"]:
        e = eb.get(k["key"])
        if e is not None and e["sha256"] != k["sha256"]:
            out.append(f"metadata {k['key']}: ours {k['type']} {k['value']!r}"
                       f"{' (' + str(k.get('count')) + ' values)' if 'count' in k else ''}, "
                       f"expected {e['type']} {e['value']!r}"
                       f"{' (' + str(e.get('count')) + ' values)' if 'count' in e else ''}")
    ta = [(t["name"], t["type"], t["ne"], t["n_dims"]) for t in ours["tensors"]]
    tb = [(t["name"], t["type"], t["ne"], t["n_dims"]) for t in expected["tensors"]]
    if ta != tb:
        for i, (x, y) in enumerate(zip(ta, tb)):
            if x != y:
                out.append(f"tensor #{i}: ours {x}, expected {y}")
                break
        if len(ta) != len(tb):
            out.append(f"{len(ta)} tensors, expected {len(tb)}")
    tbn = {t["name"]: t for t in expected["tensors"]}
    for t in ours["tensors"]:
        e = tbn.get(t["name"])
        if e is not None and e["type"] == t["type"] and e["sha256"] != t["sha256"]:
            out.append(f"data of {t['name']} ({t['type']}) differs")
    if not out and (ours["file_sha256"] != expected["file_sha256"]):
        out.append(f"files differ ({ours['file_size']} vs {expected['file_size']} bytes) although "
                   "every key and tensor is equal")
    return out[:limit]

#!/usr/bin/env python3
"""Builds tests/fixtures/torch/: small torch.save checkpoints and what torch
itself reads from them, for the C++ reader (src/checkpoint/torch_zip.*).

Good files are written by torch.save and described by torch.load (weights
only): per tensor its dtype, shape, stride, storage offset, contiguity,
whether it is a Parameter, which tensors share a storage, and the sha256 of
its elements in row-major order (`t.contiguous()` bytes). Broken and
malicious files are derived from good ones (or written with pickle by hand)
and are listed with the error torch gives and a phrase our reader's error
must contain. Everything goes into expected.json.

Also writes tiny_biomedclip_tensors.json: the same description of every
tensor of tests/fixtures/tiny-biomedclip/open_clip_pytorch_model.bin.

Run:  tools/.venv/bin/python tools/make_torch_fixtures.py
"""
from __future__ import annotations

import collections
import hashlib
import io
import pickle
import struct
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_common as fc  # noqa: E402

import torch  # noqa: E402

OUT = fc.FIXTURES / "torch"
BIOMEDCLIP = fc.FIXTURES / "tiny-biomedclip" / "open_clip_pytorch_model.bin"

DTYPE_NAMES = {
    torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16", torch.float64: "f64",
    torch.int8: "i8", torch.uint8: "u8", torch.int16: "i16", torch.int32: "i32",
    torch.int64: "i64", torch.bool: "bool", torch.uint16: "u16", torch.uint32: "u32",
    torch.uint64: "u64", torch.float8_e4m3fn: "f8_e4m3", torch.float8_e5m2: "f8_e5m2",
}


def tensor_bytes(t: torch.Tensor) -> bytes:
    c = t.detach().contiguous().reshape(-1)
    return c.view(torch.uint8).numpy().tobytes() if c.numel() else b""


def describe(obj) -> dict:
    """Flattens like the C++ reader (dotted names) and describes every leaf."""
    tensors, metadata = [], {}
    storages: dict[int, int] = {}

    def walk(v, name):
        if isinstance(v, torch.Tensor):
            ptr = v.untyped_storage().data_ptr() if v.untyped_storage().nbytes() else -len(tensors) - 1
            group = storages.setdefault(ptr, len(storages))
            tensors.append({
                "name": name, "dtype": DTYPE_NAMES[v.dtype], "shape": list(v.shape),
                "stride": list(v.stride()), "storage_offset": v.storage_offset(),
                "contiguous": v.is_contiguous(), "is_parameter": isinstance(v, torch.nn.Parameter),
                "requires_grad": v.requires_grad, "storage_group": group,
                "storage_nbytes": v.untyped_storage().nbytes(),
                "sha256": hashlib.sha256(tensor_bytes(v)).hexdigest(),
            })
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{name}.{k}" if name else str(k))
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                walk(x, f"{name}.{i}" if name else str(i))
        else:
            metadata[name] = repr(v)

    walk(obj, "")
    return {"tensors": tensors, "metadata": metadata}


def save(name: str, obj, **kw) -> Path:
    path = OUT / name
    torch.save(obj, path, **kw)
    return path


# ---- good files ----------------------------------------------------------------

def good_files() -> dict[str, object]:
    g = torch.Generator().manual_seed(1234)
    out = {}

    def rnd(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=g).to(dtype)

    # Every dtype a state dict holds, a scalar and an empty tensor.
    out["dtypes.pt"] = collections.OrderedDict([
        ("f32", rnd(3, 4)),
        ("f16", rnd(5, 2, dtype=torch.float16)),
        ("bf16", rnd(7, dtype=torch.bfloat16)),
        ("f64", rnd(2, 2, dtype=torch.float64)),
        ("i64", torch.arange(-5, 7, dtype=torch.int64).reshape(3, 4)),
        ("i32", torch.tensor([-2**31, 2**31 - 1, 0], dtype=torch.int32)),
        ("i16", torch.tensor([-300, 300], dtype=torch.int16)),
        ("i8", torch.tensor([-128, 127, 3], dtype=torch.int8)),
        ("u8", torch.tensor([0, 255, 17], dtype=torch.uint8)),
        ("bool", torch.tensor([True, False, True])),
        ("u16", torch.tensor([0, 65535, 1234], dtype=torch.uint16)),        # _rebuild_tensor_v3
        ("f8e4m3", rnd(6).to(torch.float8_e4m3fn)),                          # _rebuild_tensor_v3
        ("scalar", torch.tensor(3.5)),
        ("empty", torch.zeros(0, 4)),
    ])

    # Views: offset, transpose, shared storage, stride 0, Parameter, nesting.
    base = rnd(6, 5)
    tied = rnd(4, 3)
    emb = torch.nn.Parameter(rnd(8, 4))
    frozen = torch.nn.Parameter(rnd(2, 3), requires_grad=False)
    out["views.pt"] = collections.OrderedDict([
        ("base", base),
        ("rows", base[2:5]),                  # contiguous, storage offset 10
        ("col", base[:, 1]),                  # stride 5, offset 1
        ("transposed", base.t()),             # non-contiguous
        ("block", base[1:4, 2:4]),            # non-contiguous with offset
        ("expanded", rnd(1, 3).expand(4, 3)),  # stride 0
        ("encoder.weight", tied),
        ("decoder.weight", tied),              # same storage (tied weights)
        ("emb", emb),
        ("frozen", frozen),
        ("half_t", rnd(3, 4, dtype=torch.float16).t()),
    ])

    # A training checkpoint: nested dicts, lists, numbers, strings.
    out["nested.pt"] = {
        "model": collections.OrderedDict([
            ("encoder", collections.OrderedDict([("w", rnd(2, 2)), ("b", rnd(2))])),
            ("head.weight", rnd(3, 2)),
        ]),
        "epoch": 7,
        "lr": 0.001,
        "name": "adamw",
        "done": True,
        "best": None,
        "big": 2**40,
        "neg": -3,
        "history": [rnd(2), rnd(1)],
        "shape": (3, 4),
    }

    # A nn.Module state dict as it comes (with _metadata), and pickle protocol 4.
    mod = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2))
    with torch.no_grad():
        for p in mod.parameters():
            p.copy_(rnd(*p.shape))
    out["module.pt"] = mod.state_dict()
    out["protocol4.pt"] = (mod.state_dict(), {"pickle_protocol": 4})

    # Parameter with a Python attribute (_rebuild_parameter_with_state) and a
    # plain tensor with one (_rebuild_from_type_v2).
    p = torch.nn.Parameter(rnd(2, 2))
    p.note = "x"
    t = rnd(3)
    t.note = "y"
    out["attrs.pt"] = collections.OrderedDict([("param", p), ("tensor", t)])
    return out


# ---- hand-made pickles --------------------------------------------------------

class Storage:
    """Pickles as a persistent id ('storage', torch.FloatStorage, key, 'cpu', numel)."""

    def __init__(self, key, numel, type_=torch.FloatStorage):
        self.key, self.numel, self.type = key, numel, type_


class Rebuild:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.type, obj.key, "cpu", obj.numel)
        return None


def dumps(obj, protocol=2) -> bytes:
    buf = io.BytesIO()
    TorchPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def zwrite(z: zipfile.ZipFile, name: str, data: bytes | str) -> None:
    """writestr with a fixed timestamp, so that re-runs write the same bytes."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = z.compression
    z.writestr(info, data)


def write_archive(path: Path, pkl: bytes, records: dict[str, bytes], *,
                  compress: bool = False, version: bytes = b"3\n", extra: dict | None = None):
    """A zip laid out as torch.save does (folder/data.pkl, folder/data/N, folder/version)."""
    stem = "archive"
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as z:
        zwrite(z, f"{stem}/data.pkl", pkl)
        zwrite(z, f"{stem}/byteorder", b"little")
        for k, v in records.items():
            zwrite(z, f"{stem}/data/{k}", v)
        if version is not None:
            zwrite(z, f"{stem}/version", version)
        for k, v in (extra or {}).items():
            zwrite(z, f"{stem}/{k}", v)


def to_zip64(src: bytes) -> bytes:
    """Rewrites a stored zip's central directory the way big archives need it:
    every size and offset saturated to 0xFFFFFFFF with the real values in a
    zip64 extra field, plus the zip64 end record and locator."""
    eocd = src.rindex(b"PK\x05\x06")
    count, cd_size, cd_off = struct.unpack_from("<HII", src, eocd + 10)
    out_cd = b""
    p = cd_off
    for _ in range(count):
        (sig, vmade, vneed, flags, method, mtime, mdate, crc, csize, usize, nlen, elen, clen,
         disk, iattr, eattr, hoff) = struct.unpack_from("<IHHHHHHIIIHHHHHII", src, p)
        name = src[p + 46:p + 46 + nlen]
        extra = struct.pack("<HHQQQ", 1, 24, usize, csize, hoff)
        out_cd += struct.pack("<IHHHHHHIIIHHHHHII", sig, 45, 45, flags, method, mtime, mdate, crc,
                              0xFFFFFFFF, 0xFFFFFFFF, nlen, len(extra), 0, disk, iattr, eattr,
                              0xFFFFFFFF) + name + extra
        p += 46 + nlen + elen + clen
    body = src[:cd_off]
    new_cd_off = len(body)
    z64_off = new_cd_off + len(out_cd)
    z64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, len(out_cd), new_cd_off)
    loc = struct.pack("<IIQI", 0x07064B50, 0, z64_off, 1)
    eocd_rec = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + out_cd + z64 + loc + eocd_rec


def torch_error(path: Path) -> str:
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
    return ""


def bad_files(good: Path) -> list[dict]:
    """Broken and malicious files. `error` is a phrase our message must contain."""
    out = []
    src = good.read_bytes()
    floats = struct.pack("<4f", 1, 2, 3, 4)

    def add(name, data: bytes | None, error: str, why: str, torch_reads_it: bool = False):
        """torch_error: what torch.load(weights_only=True) says ("" if it reads the file;
        it is laxer than we are about some zip damage, e.g. a wrong directory offset)."""
        path = OUT / name
        if data is not None:
            path.write_bytes(data)
        terr = torch_error(path)
        if torch_reads_it:
            assert not terr, (name, terr)
        out.append({"file": name, "error": error, "why": why, "torch_error": terr})

    # The classic exploit, by hand: GLOBAL 'os system', then call it.
    write_archive(OUT / "bad_os_system.pt",
                  b"\x80\x02cos\nsystem\nX\x0a\x00\x00\x00echo pwned\x85R.", {})
    add("bad_os_system.pt", None, "refusing to unpickle global 'os.system'",
        "pickle calls os.system")
    # What Python's pickler writes for os.system on Linux.
    write_archive(OUT / "bad_posix_system.pt",
                  dumps({"w": Evil(__import__("os").system, "echo pwned")}), {})
    add("bad_posix_system.pt", None, "refusing to unpickle global 'posix.system'",
        "pickle calls os.system (pickled as posix.system)")
    write_archive(OUT / "bad_eval.pt", b"\x80\x02cbuiltins\neval\nX\x03\x00\x00\x001+1\x85R.", {})
    add("bad_eval.pt", None, "refusing to unpickle global 'builtins.eval'", "pickle calls eval")
    # Protocol 2 writes Python 3's builtins under their Python 2 name.
    write_archive(OUT / "bad_eval_p2.pt", dumps(collections.OrderedDict(w=Evil(eval, "1+1"))), {})
    add("bad_eval_p2.pt", None, "refusing to unpickle global '__builtin__.eval'",
        "pickle calls eval (pickled by Python as __builtin__.eval)")
    write_archive(OUT / "bad_stack_global.pt",
                  dumps(collections.OrderedDict(w=Evil(__import__("subprocess").call, "ls")), protocol=4), {})
    add("bad_stack_global.pt", None, "refusing to unpickle global 'subprocess.call'",
        "protocol 4 STACK_GLOBAL naming subprocess.call")
    add("bad_empty.pt", b"", "empty file", "0 bytes")
    add("bad_random.pt", bytes((i * 73 + 11) % 256 for i in range(300)), "not a zip archive",
        "random bytes")
    add("bad_truncated.pt", src[: len(src) // 2], "truncated", "first half of a good file")
    cd = src.rindex(b"PK\x01\x02")
    add("bad_central_dir.pt", src[:cd] + b"XX" + src[cd + 2:], "central directory entry",
        "a central directory signature overwritten")
    eocd = src.rindex(b"PK\x05\x06")
    broken = bytearray(src)
    struct.pack_into("<I", broken, eocd + 16, len(src) - 10)
    add("bad_cd_offset.pt", bytes(broken), "zip end records disagree on the central directory offset",
        "central directory offset in the end record changed (torch reads the zip64 one)")
    z64_end = src.rindex(b"PK\x06\x06")
    broken = bytearray(src)
    struct.pack_into("<Q", broken, z64_end + 48, len(src) - 10)
    struct.pack_into("<I", broken, eocd + 16, 0xFFFFFFFF)
    add("bad_cd_offset64.pt", bytes(broken), "runs past its end record",
        "central directory offset points past the end (both end records)")
    first_local = src.index(b"PK\x03\x04", 4)
    broken = bytearray(src)
    struct.pack_into("<I", broken, cd + 42, first_local + 3)  # a local header offset off by 3
    add("bad_local_offset.pt", bytes(broken), "local header", "local header offset off by 3 bytes")

    # Deflated entries: torch never writes them.
    with zipfile.ZipFile(io.BytesIO(src)) as z:
        entries = {i.filename: z.read(i) for i in z.infolist()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for k, v in entries.items():
            zwrite(z, k, v)
    add("bad_compressed.pt", buf.getvalue(), "is compressed (method 8, deflate)",
        "the same archive re-zipped with deflate", torch_reads_it=True)

    write_archive(OUT / "bad_storage_size.pt",
                  dumps(collections.OrderedDict(w=Rebuild(Storage("0", 10), 0, [10], [1]))),
                  {"0": floats})
    add("bad_storage_size.pt", None, "holds 16 bytes, but its torch.FloatStorage of 10 elements needs 40",
        "storage record shorter than its numel")
    write_archive(OUT / "bad_view_bounds.pt",
                  dumps(collections.OrderedDict(w=Rebuild(Storage("0", 4), 2, [2, 2], [2, 1]))),
                  {"0": floats})
    add("bad_view_bounds.pt", None, "reaches past the end of its storage",
        "a 2x2 view at offset 2 of a 4-element storage")
    write_archive(OUT / "bad_missing_record.pt",
                  dumps(collections.OrderedDict(w=Rebuild(Storage("7", 4), 0, [4], [1]))),
                  {"0": floats})
    add("bad_missing_record.pt", None, "has no record archive/data/7", "storage record absent")
    write_archive(OUT / "bad_overflow.pt",
                  dumps(collections.OrderedDict(w=Rebuild(Storage("0", 4), 0, [2**62, 8], [1, 1]))),
                  {"0": floats})
    add("bad_overflow.pt", None, "reaches past the end of its storage",
        "shape whose element count overflows 64 bits")
    write_archive(OUT / "bad_negative_stride.pt",
                  dumps(collections.OrderedDict(w=Rebuild(Storage("0", 4), 3, [4], [-1]))),
                  {"0": floats})
    add("bad_negative_stride.pt", None, "negative size or stride", "stride -1")
    # {'w': ((((...)))) 5000 deep}, by hand: Python's own pickler would recurse too deep.
    deep = b"\x80\x02}X\x01\x00\x00\x00w)" + b"\x85" * 5000 + b"s."
    write_archive(OUT / "bad_deep.pt", deep, {})
    add("bad_deep.pt", None, "nested deeper than", "5000 nested tuples")
    write_archive(OUT / "bad_no_stop.pt", dumps(collections.OrderedDict(w=1))[:-1], {})
    add("bad_no_stop.pt", None, "without STOP", "pickle cut before STOP")
    write_archive(OUT / "bad_no_version.pt", dumps({"w": 1}), {}, version=None)
    add("bad_no_version.pt", None, "no archive/version", "version record absent")
    with zipfile.ZipFile(OUT / "bad_not_torch.pt", "w") as z:
        zwrite(z, "hello.txt", "not a checkpoint")
    add("bad_not_torch.pt", None, "not a torch.save file", "a zip of something else")
    # The pre-1.6 format.
    torch.save({"w": torch.ones(2)}, OUT / "bad_legacy.pt", _use_new_zipfile_serialization=False)
    add("bad_legacy.pt", None, "legacy torch.save format", "torch < 1.6 format",
        torch_reads_it=True)
    return out


def main():
    fc.fresh_dir(OUT)
    expected = {"generator": "tools/make_torch_fixtures.py", "packages": fc.package_versions(),
                "good": {}, "bad": []}
    for name, obj in good_files().items():
        kw = {}
        if isinstance(obj, tuple):
            obj, kw = obj
        path = save(name, obj, **kw)
        loaded = torch.load(path, map_location="cpu", weights_only=False)  # our own files
        expected["good"][name] = describe(loaded)

    # zip64: the same archive with zip64 central directory records.
    z64 = OUT / "zip64.pt"
    z64.write_bytes(to_zip64((OUT / "module.pt").read_bytes()))
    with zipfile.ZipFile(z64) as z:
        assert z.testzip() is None
    loaded = torch.load(z64, map_location="cpu", weights_only=True)
    expected["good"]["zip64.pt"] = describe(loaded)
    assert expected["good"]["zip64.pt"] == expected["good"]["module.pt"]

    expected["bad"] = bad_files(OUT / "dtypes.pt")
    fc.write_json(OUT / "expected.json", expected, indent=None)

    sd = torch.load(BIOMEDCLIP, map_location="cpu", weights_only=True)
    fc.write_json(OUT / "tiny_biomedclip_tensors.json",
                  {"file": "tiny-biomedclip/open_clip_pytorch_model.bin",
                   "generator": "tools/make_torch_fixtures.py",
                   "file_sha256": fc.sha256_file(BIOMEDCLIP), **describe(sd)}, indent=None)
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total} bytes")


if __name__ == "__main__":
    main()

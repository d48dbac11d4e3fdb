"""medquant's torch.save reader (`medquant inspect` on .bin/.pt files) against
torch and against Python's own pickle.

torch is not installed here (CI has no torch): what torch.load reads from
each fixture was written by tools/make_torch_fixtures.py into
tests/fixtures/torch/expected.json and tiny_biomedclip_tensors.json. As a
second, independent reader this test also opens every good file with
zipfile + pickle (find_class limited to torch's rebuild functions, which are
stubbed) + numpy strides. For every tensor, `medquant inspect --json --hash`
must give the same name, dtype, shape, stride and sha256 of its elements in
row-major order. Every broken or malicious fixture must make medquant print
`error: ...` naming the problem and exit 1, never crash.
"""

import collections
import hashlib
import json
import os
import pickle
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

MEDQUANT = os.environ.get("MEDQUANT_BIN", "medquant")
FIXTURES = Path(os.environ.get("MEDQUANT_FIXTURES", Path(__file__).parents[1] / "fixtures"))
TORCH = FIXTURES / "torch"
EXPECTED = json.loads((TORCH / "expected.json").read_text())
BIOMEDCLIP = json.loads((TORCH / "tiny_biomedclip_tensors.json").read_text())

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "UntypedStorage": np.uint8,
}
TORCH_DTYPES = {"uint16": (np.uint16, "u16"), "float8_e4m3fn": (np.uint8, "f8_e4m3"),
                "float8_e5m2": (np.uint8, "f8_e5m2"), "uint32": (np.uint32, "u32"),
                "uint64": (np.uint64, "u64")}
OUR_NAMES = {"FloatStorage": "f32", "HalfStorage": "f16", "DoubleStorage": "f64",
             "BFloat16Storage": "bf16", "LongStorage": "i64", "IntStorage": "i32",
             "ShortStorage": "i16", "CharStorage": "i8", "ByteStorage": "u8", "BoolStorage": "bool"}


def run(*args):
    return subprocess.run([MEDQUANT, *map(str, args)], capture_output=True, text=True, timeout=300)


def inspect_json(path):
    r = run("inspect", "--json", "--hash", path)
    assert r.returncode == 0, f"medquant inspect {path} failed: {r.stderr}"
    return json.loads(r.stdout)


# ---- an independent reader: zipfile + restricted pickle + numpy ---------------

class Tensor:
    def __init__(self, array, dtype_name, stride, offset):
        self.array, self.dtype, self.stride, self.offset = array, dtype_name, stride, offset


def python_read(path):
    with zipfile.ZipFile(path) as z:
        prefix = z.namelist()[0].split("/")[0]
        storages = {}

        def load_storage(type_name, key, numel):
            if key not in storages:
                raw = z.read(f"{prefix}/data/{key}")
                storages[key] = np.frombuffer(raw, dtype=STORAGE_DTYPES[type_name])
                assert storages[key].size == numel
            return (type_name, storages[key])

        def rebuild(storage, offset, size, stride, requires_grad, hooks, dtype=None, metadata=None):
            type_name, flat = storage
            if isinstance(dtype, str):  # _rebuild_tensor_v3: a view of raw bytes
                np_dtype, name = TORCH_DTYPES[dtype]
                flat = flat.view(np_dtype)
            else:
                name = OUR_NAMES[type_name]
            item = flat.itemsize
            if int(np.prod(size)) == 0:
                arr = np.zeros(size, dtype=flat.dtype)
            else:
                arr = np.lib.stride_tricks.as_strided(
                    flat[offset:], shape=size, strides=[s * item for s in stride])
            return Tensor(arr, name, list(stride), offset)

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) == ("collections", "OrderedDict"):
                    return collections.OrderedDict
                if module == "torch._utils" and name == "_rebuild_tensor_v2":
                    return rebuild
                if module == "torch._utils" and name == "_rebuild_tensor_v3":
                    return rebuild
                if module == "torch._utils" and name.startswith("_rebuild_parameter"):
                    return lambda data, *rest: data
                if module == "torch._tensor" and name == "_rebuild_from_type_v2":
                    return lambda func, new_type, args, state: func(*args)
                if module in ("torch", "torch.storage") and name.endswith("Storage"):
                    return name
                if module == "torch" and name in TORCH_DTYPES:
                    return name
                if (module, name) in (("torch", "Tensor"), ("torch.nn.parameter", "Parameter")):
                    return name
                raise pickle.UnpicklingError(f"global {module}.{name}")

            def persistent_load(self, pid):
                _, type_name, key, _location, numel = pid
                return load_storage(type_name, key, numel)

        with z.open(f"{prefix}/data.pkl") as f:
            obj = Unpickler(f).load()

    out = []

    def walk(v, name):
        if isinstance(v, Tensor):
            out.append((name, v))
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{name}.{k}" if name else str(k))
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                walk(x, f"{name}.{i}" if name else str(i))

    walk(obj, "")
    return out


def good_files():
    return sorted(EXPECTED["good"])


@pytest.mark.parametrize("name", good_files())
def test_matches_torch(name):
    got = inspect_json(TORCH / name)
    want = EXPECTED["good"][name]
    assert [t["name"] for t in got["tensors"]] == [t["name"] for t in want["tensors"]]
    for g, w in zip(got["tensors"], want["tensors"]):
        assert g["dtype"] == w["dtype"], g["name"]
        assert g["shape"] == w["shape"], g["name"]
        assert g["sha256"] == w["sha256"], g["name"]
        assert g["contiguous"] == w["contiguous"], g["name"]
        assert g["parameter"] == w["is_parameter"], g["name"]
        if np.prod(w["shape"]) > 0:
            assert g["stride"] == w["stride"], g["name"]
            assert g["storage_offset"] == w["storage_offset"], g["name"]
    assert got["metadata"] == want["metadata"]


@pytest.mark.parametrize("name", good_files())
def test_matches_python_pickle(name):
    got = {t["name"]: t for t in inspect_json(TORCH / name)["tensors"]}
    ref = python_read(TORCH / name)
    assert [n for n, _ in ref] == list(got)
    for n, t in ref:
        assert got[n]["dtype"] == t.dtype, n
        assert got[n]["shape"] == list(t.array.shape), n
        if t.array.size:
            assert got[n]["stride"] == t.stride, n
        assert got[n]["sha256"] == hashlib.sha256(np.ascontiguousarray(t.array).tobytes()).hexdigest(), n


def test_tiny_biomedclip_checkpoint():
    path = FIXTURES / BIOMEDCLIP["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == BIOMEDCLIP["file_sha256"], \
        "fixture changed: re-run tools/make_torch_fixtures.py"
    got = inspect_json(path)
    assert got["format"] == "torch"
    assert len(got["tensors"]) == len(BIOMEDCLIP["tensors"]) == 72
    for g, w in zip(got["tensors"], BIOMEDCLIP["tensors"]):
        assert (g["name"], g["dtype"], g["shape"], g["sha256"]) == \
               (w["name"], w["dtype"], w["shape"], w["sha256"])
    ref = python_read(path)
    for (n, t), g in zip(ref, got["tensors"]):
        assert g["sha256"] == hashlib.sha256(np.ascontiguousarray(t.array).tobytes()).hexdigest(), n


@pytest.mark.parametrize("bad", EXPECTED["bad"], ids=lambda b: b["file"])
def test_broken_files_are_refused(bad):
    r = run("inspect", TORCH / bad["file"])
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("error: "), r.stderr
    assert bad["error"] in r.stderr

"""medquant's safetensors reader against the `safetensors` library.

For every *.safetensors fixture (and every sharded index), `medquant inspect
--json --hash` must list the same tensors, dtypes, shapes and offsets as the
reference reader, and the sha256 of each tensor's bytes must equal the hash
of the bytes the reference reads. A corpus of broken files must each make
the binary print `error: ...` and exit 1 (never crash), and the reference
library must refuse them too (so the corpus is really broken).
"""

import hashlib
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

MEDQUANT = os.environ.get("MEDQUANT_BIN", "medquant")
FIXTURES = Path(os.environ.get("MEDQUANT_FIXTURES", Path(__file__).parents[1] / "fixtures"))

# numpy can't hold these; their bytes are read straight from the file.
NUMPY_DTYPES = {"F64", "F32", "F16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"}


def run(*args):
    return subprocess.run([MEDQUANT, *map(str, args)], capture_output=True, text=True, timeout=300)


def inspect_json(path, *extra):
    r = run("inspect", "--json", *extra, path)
    assert r.returncode == 0, f"medquant inspect {path} failed: {r.stderr}"
    return json.loads(r.stdout)


def fixture_files():
    return sorted(FIXTURES.rglob("*.safetensors"))


def fixture_indexes():
    return sorted(FIXTURES.rglob("*.safetensors.index.json"))


def read_header(path):
    """The header, parsed here with struct + json (independent of both readers)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return n, header


def reference_tensors(path):
    """name -> (dtype, shape, absolute offset, nbytes, sha256) from the reference."""
    n, header = read_header(path)
    out = {}
    raw = Path(path).read_bytes()
    with safe_open(str(path), framework="numpy") as f:
        keys = list(f.keys())
        assert sorted(keys) == sorted(k for k in header if k != "__metadata__")
        for name in keys:
            sl = f.get_slice(name)
            dtype, shape = sl.get_dtype(), list(sl.get_shape())
            begin, end = header[name]["data_offsets"]
            assert header[name]["dtype"] == dtype and header[name]["shape"] == shape
            if dtype in NUMPY_DTYPES:
                data = np.ascontiguousarray(f.get_tensor(name)).tobytes()
                assert len(data) == end - begin
            else:
                data = raw[8 + n + begin : 8 + n + end]
            out[name] = (dtype, shape, 8 + n + begin, end - begin, hashlib.sha256(data).hexdigest())
        metadata = f.metadata() or {}
    return out, metadata


def test_fixtures_exist():
    # The peer test is only meaningful on real files: no fixtures is a failure.
    assert fixture_files(), f"no *.safetensors fixtures under {FIXTURES}"


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_tensor_table_and_bytes_match_reference(path):
    ref, ref_meta = reference_tensors(path)
    got = inspect_json(path, "--hash")
    assert got["format"] == "safetensors"
    assert got["metadata"] == ref_meta
    names = [t["name"] for t in got["tensors"]]
    assert sorted(names) == sorted(ref), "tensor names differ"
    offsets = [t["offset"] for t in got["tensors"]]
    assert offsets == sorted(offsets), "tensors not in file order"
    for t in got["tensors"]:
        dtype, shape, offset, nbytes, sha = ref[t["name"]]
        assert (t["dtype"], t["shape"], t["offset"], t["nbytes"]) == (dtype, shape, offset, nbytes), t["name"]
        assert t["sha256"] == sha, f"bytes of {t['name']} differ"
        assert Path(t["file"]).resolve() == path.resolve()
    totals = got["totals"]
    assert totals["tensors"] == len(ref)
    assert totals["bytes"] == sum(v[3] for v in ref.values())
    assert totals["parameters"] == sum(int(np.prod(v[1], dtype=np.int64)) for v in ref.values())


@pytest.mark.parametrize("path", fixture_files()[:3], ids=lambda p: str(p.relative_to(FIXTURES)))
def test_table_lists_every_tensor(path):
    r = run("inspect", path)
    assert r.returncode == 0, r.stderr
    ref, _ = reference_tensors(path)
    for name, (dtype, shape, *_rest) in ref.items():
        line = next((l for l in r.stdout.splitlines() if l.split()[:1] == [name]), None)
        assert line is not None, f"{name} missing from the table"
        assert dtype in line.split() and "[" + ", ".join(map(str, shape)) + "]" in line
    assert f"totals: {len(ref)} tensors" in r.stdout


@pytest.mark.parametrize("path", fixture_indexes(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_sharded_fixture_matches_reference(path):
    weight_map = json.loads(path.read_text())["weight_map"]
    got = inspect_json(path, "--hash")
    assert sorted(t["name"] for t in got["tensors"]) == sorted(weight_map)
    refs = {}
    for shard in sorted(set(weight_map.values())):
        refs.update(reference_tensors(path.parent / shard)[0])
    for t in got["tensors"]:
        assert Path(t["file"]).name == weight_map[t["name"]]
        assert t["sha256"] == refs[t["name"]][4]


def test_sharded_checkpoint_written_by_reference(tmp_path):
    """An index + two shards saved by the safetensors library, read as a folder."""
    rng = np.random.default_rng(0)
    a = {"model.embed.weight": rng.standard_normal((8, 4)).astype(np.float16),
         "model.norm.weight": rng.standard_normal(4).astype(np.float32)}
    b = {"lm_head.weight": rng.integers(-100, 100, (3, 5), dtype=np.int64),
         "flags": np.array([True, False, True])}
    save_file(a, tmp_path / "model-00001-of-00002.safetensors", metadata={"format": "np"})
    save_file(b, tmp_path / "model-00002-of-00002.safetensors", metadata={"format": "np"})
    wm = {**{k: "model-00001-of-00002.safetensors" for k in a}, **{k: "model-00002-of-00002.safetensors" for k in b}}
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 123}, "weight_map": wm}))
    got = inspect_json(tmp_path, "--hash")
    assert got["metadata"] == {"total_size": "123"}
    assert [Path(t["file"]).name for t in got["tensors"]][0] == "model-00001-of-00002.safetensors"
    for t in got["tensors"]:
        arr = {**a, **b}[t["name"]]
        assert t["shape"] == list(arr.shape)
        assert t["sha256"] == hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


# ---------------------------------------------------------------- broken files

def _file(header, data=b""):
    h = header if isinstance(header, bytes) else header.encode()
    return struct.pack("<Q", len(h)) + h + data


def _one(entry, data=bytes(64)):
    return _file(json.dumps({"w": entry}), data)


_GOOD = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}

# name -> (bytes, phrase the error must contain)
BROKEN = {
    "empty": (b"", "too short for the 8-byte"),
    "truncated_length": (b"\x10\x00\x00", "truncated: 3 bytes"),
    "length_zero": (struct.pack("<Q", 0), "bad header length 0"),
    "length_huge": (struct.pack("<Q", 1 << 40) + b"{}", "bad header length"),
    "length_beyond_file": (struct.pack("<Q", 1000) + b"{}", "runs past the end of the file"),
    "truncated_header": (_one(_GOOD, bytes(8))[:20], "runs past the end of the file"),
    "truncated_data": (_one(_GOOD, bytes(8))[:-1], "out of range"),
    "bad_json": (_file('{"w": [1,2,}'), "not valid JSON at byte"),
    "bad_utf8": (_file(b'{"w\xff": 1}'), "not valid JSON"),
    "nul_in_header": (_file(b"{}\x00\x00"), "NUL byte"),
    "not_object": (_file("[1, 2]"), "not a JSON object"),
    "entry_not_object": (_file('{"w": 3}'), "header entry is not an object"),
    "missing_dtype": (_one({"shape": [2], "data_offsets": [0, 8]}), 'missing "dtype"'),
    "missing_shape": (_one({"dtype": "F32", "data_offsets": [0, 8]}), 'missing "shape"'),
    "missing_offsets": (_one({"dtype": "F32", "shape": [2]}), 'missing "data_offsets"'),
    "unknown_dtype": (_one({**_GOOD, "dtype": "F17"}), 'unknown dtype "F17"'),
    "negative_dim": (_one({**_GOOD, "shape": [-2]}), "negative dimension -2"),
    "float_dim": (_one({**_GOOD, "shape": [2.0]}), "is not a non-negative integer"),
    "shape_span_mismatch": (_one({**_GOOD, "shape": [3]}), "= 12 bytes, but data_offsets [0, 8] span 8 bytes"),
    "shape_overflow": (_one({**_GOOD, "shape": [1 << 32, 1 << 32, 2]}), "overflows 64-bit"),
    "offsets_out_of_range": (_one({**_GOOD, "shape": [100], "data_offsets": [0, 400]}), "out of range"),
    "begin_after_end": (_one({**_GOOD, "data_offsets": [8, 0]}), "begin 8 > end 0"),
    "offsets_arity": (_one({**_GOOD, "data_offsets": [0]}), '"data_offsets" is not an array [begin, end]'),
    "overlap": (_file(json.dumps({"a": _GOOD, "b": {**_GOOD, "data_offsets": [4, 12]}}), bytes(12)), "overlap"),
    "duplicate_name": (_file('{"w": %s, "w": %s}' % (json.dumps(_GOOD), json.dumps({**_GOOD, "data_offsets": [8, 16]})), bytes(16)),
                       'key "w" appears twice'),
    "metadata_not_strings": (_file('{"__metadata__": {"format": 1}}'), "is not a string"),
}

# Where the reference library is more lenient than us, and why that's fine.
REFERENCE_ACCEPTS = {
    # serde_json keeps the last of two equal keys; we refuse the ambiguity.
    "duplicate_name",
}


@pytest.fixture(scope="module")
def broken_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("broken")
    for name, (data, _) in BROKEN.items():
        (d / f"{name}.safetensors").write_bytes(data)
    return d


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_file_gives_clear_error(broken_dir, name):
    path = broken_dir / f"{name}.safetensors"
    phrase = BROKEN[name][1]
    for args in (["inspect", path], ["inspect", "--json", "--hash", path]):
        r = run(*args)
        assert r.returncode == 1, f"exit {r.returncode} (negative = signal): {r.stderr}"
        assert r.stdout == ""
        assert r.stderr.startswith("error: "), r.stderr
        assert str(path) in r.stderr, "the message must name the file"
        assert phrase in r.stderr, r.stderr
        assert "internal" not in r.stderr


@pytest.mark.parametrize("name", sorted(set(BROKEN) - REFERENCE_ACCEPTS))
def test_reference_rejects_broken_file(broken_dir, name):
    with pytest.raises(Exception):
        with safe_open(str(broken_dir / f"{name}.safetensors"), framework="numpy") as f:
            for k in f.keys():
                f.get_slice(k)


def test_sharded_index_errors(tmp_path):
    save_file({"a": np.zeros(2, np.float32)}, tmp_path / "s1.safetensors")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}))
    r = run("inspect", index)
    assert r.returncode == 1 and r.stderr.startswith("error: ")
    assert 'shard "s2.safetensors"' in r.stderr and "is missing" in r.stderr
    index.write_text(json.dumps({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}}))
    r = run("inspect", index)
    assert r.returncode == 1 and 'tensor "b" is listed for shard "s1.safetensors"' in r.stderr


def test_unknown_and_missing_files(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello, not a model\n")
    r = run("inspect", junk)
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: {junk}: not a recognised model file (")
    r = run("inspect", tmp_path / "absent.safetensors")
    assert r.returncode == 1 and "no such file or directory" in r.stderr


def test_magic_detection_without_extension(tmp_path):
    path = tmp_path / "weights.bin"
    save_file({"x": np.arange(6, dtype=np.int32).reshape(2, 3)}, path)
    got = inspect_json(path)
    assert got["tensors"][0]["shape"] == [2, 3]

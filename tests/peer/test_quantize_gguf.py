"""`medquant quantize gguf` against the pinned llama.cpp's `llama-quantize`.

Inputs: the tiny Gemma 3 fixture as F16 and BF16 GGUF, and a synthetic
llama-architecture GGUF whose rows include lengths that are not multiples of
256 (and one not a multiple of 32), so that llama.cpp's fallback rules run
(see gguf_models.py). Importance matrices: made by `llama-imatrix` on the
fixture, in its GGUF and legacy .dat formats; for the synthetic model (which
has no tokenizer to run) one is written by hand in the GGUF imatrix layout.

For every --type, with and without an imatrix, the two outputs must have the
same tensor names, types, shapes and data bytes and the same metadata (read
back with the `gguf` package); and then the same bytes, file for file. The
same holds with llama-quantize's options (--pure, --tensor-type, ...).
llama.cpp must load medquant's Q4_K_S and Q8_0 files of the fixture and give
the same logits as with llama-quantize's files. The `gguf` package's
dequantizer must decode our blocks to what medquant decodes. Broken inputs
must give `error: ...` and exit 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import gguf_models  # noqa: E402

MEDQUANT = os.environ.get("MEDQUANT_BIN", "medquant")
FIXTURES = Path(os.environ.get("MEDQUANT_FIXTURES", Path(__file__).parents[1] / "fixtures"))
LLAMA_PREFIX = Path(os.environ.get("MEDQUANT_LLAMA_PREFIX", ""))
BUILD_DIR = Path(os.environ.get("MEDQUANT_BUILD_DIR", ""))
LLAMA_QUANTIZE = LLAMA_PREFIX / "bin" / "llama-quantize"
LLAMA_IMATRIX = LLAMA_PREFIX / "bin" / "llama-imatrix"
PEER_TOOL = BUILD_DIR / "tests" / "peer" / "gguf_peer_tool"

TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L",
         "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "F16", "BF16"]

pytestmark = pytest.mark.skipif(not LLAMA_QUANTIZE.exists(),
                                reason=f"llama-quantize not found under {LLAMA_PREFIX}")


def run(cmd, check=True, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def llama_quantize(src, dst, qtype, *opts):
    run([LLAMA_QUANTIZE, *opts, src, dst, qtype, 2])


def medquant_quantize(src, dst, qtype, *opts):
    return run([MEDQUANT, "--threads", 2, "quantize", "gguf", src, "-o", dst, "--type", qtype, *opts])


# ---------------------------------------------------------------- inputs


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("quantize-gguf")


@pytest.fixture(scope="session")
def models(work):
    m = {}
    for t in ("f16", "bf16"):
        m[f"gemma3-{t}"] = gguf_models.gemma3_gguf(FIXTURES / "tiny-gemma3", work / f"gemma3-{t}.gguf", t)
        m[f"llama-{t}"] = gguf_models.synthetic_llama_gguf(work / f"llama-{t}.gguf", t)
    m["gemma3-text-f16"] = gguf_models.gemma3_gguf(FIXTURES / "tiny-gemma3-text",
                                                   work / "gemma3-text-f16.gguf", "f16")
    return m


@pytest.fixture(scope="session")
def imatrices(work, models):
    """imatrix files by name; paths are relative (as a user would type them) and
    both tools run in `work`, so quantize.imatrix.file is the same string."""
    calib = work / "calib.txt"
    words = ("the patient presented with chest pain and shortness of breath after exercise "
             "the scan showed no fracture of the left femur blood pressure was normal").split()
    rng = np.random.default_rng(1)
    calib.write_text(" ".join(words[i] for i in rng.integers(0, len(words), 3000)))
    out = {}
    for fmt, name in (("gguf", "gemma3.imatrix.gguf"), ("dat", "gemma3.imatrix.dat")):
        run([LLAMA_IMATRIX, "-m", models["gemma3-f16"], "-f", calib, "-o", work / name,
             "--output-format", fmt, "-c", 128, "--chunks", 4, "-t", 2])
        out[f"gemma3-{fmt}"] = name
    out["llama-gguf"] = write_synthetic_imatrix(work / "llama.imatrix.gguf", models["llama-f16"])
    return out


def write_synthetic_imatrix(path, model_path):
    """In llama-imatrix's GGUF layout: W.in_sum2 / W.counts per weight, some
    counts zero, token_embd with a wrong size (llama-quantize ignores that one)."""
    r = gguf.GGUFReader(model_path)
    rng = np.random.default_rng(5)
    w = gguf.GGUFWriter(str(path), arch="imatrix")  # the package always writes an architecture
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", ["synthetic"])
    w.add_uint32("imatrix.chunk_count", 7)
    w.add_uint32("imatrix.chunk_size", 512)
    for i, t in enumerate(r.tensors):
        if len(t.shape) < 2 or t.name.endswith("norm.weight") or i % 5 == 4:
            continue  # some weights without importance data
        ne0 = int(t.shape[0]) + (3 if t.name == "token_embd.weight" else 0)
        w.add_tensor(t.name + ".in_sum2", (rng.random(ne0) * 50).astype(np.float32))
        w.add_tensor(t.name + ".counts", np.array([0.0 if i % 7 == 0 else 12.3], np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.name


# ---------------------------------------------------------------- comparison


def fields(reader):
    """Ordered metadata: key -> (value types, raw bytes of every part)."""
    out = {}
    for name, f in reader.fields.items():
        out[name] = ([int(t) for t in f.types], [bytes(np.asarray(p).tobytes()) for p in f.parts])
    return out


# Keys that name the tool that wrote a file; llama-quantize writes none, and
# neither does medquant, so the set is empty (kept so a difference would show).
TOOL_KEYS: set[str] = set()


def assert_same_gguf(ours: Path, ref: Path):
    a, b = gguf.GGUFReader(ours), gguf.GGUFReader(ref)
    ta = [(t.name, t.tensor_type.name, [int(x) for x in t.shape]) for t in a.tensors]
    tb = [(t.name, t.tensor_type.name, [int(x) for x in t.shape]) for t in b.tensors]
    assert ta == tb, "tensor names, types or shapes differ"
    for x, y in zip(a.tensors, b.tensors):
        assert x.data.tobytes() == y.data.tobytes(), f"data of {x.name} ({x.tensor_type.name}) differs"
    fa = {k: v for k, v in fields(a).items() if k not in TOOL_KEYS}
    fb = {k: v for k, v in fields(b).items() if k not in TOOL_KEYS}
    assert list(fa) == list(fb), "metadata keys or their order differ"
    for k in fa:
        assert fa[k] == fb[k], f"metadata {k} differs"
    # With all of that equal, the files must be equal byte for byte.
    assert ours.read_bytes() == ref.read_bytes()


def quantize_both(work, src, qtype, tag, *opts):
    ref, ours = work / f"ref-{tag}.gguf", work / f"ours-{tag}.gguf"
    for p in (ref, ours):
        p.unlink(missing_ok=True)
    run([LLAMA_QUANTIZE, *opts, src, ref, qtype, 2], cwd=work)
    run([MEDQUANT, "--threads", 2, "quantize", "gguf", src, "-o", ours, "--type", qtype, *opts],
        cwd=work)
    return ours, ref


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("model", ["gemma3-f16", "gemma3-bf16", "llama-f16", "llama-bf16"])
def test_same_as_llama_quantize(work, models, model, qtype):
    ours, ref = quantize_both(work, models[model], qtype, f"{model}-{qtype}")
    assert_same_gguf(ours, ref)


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("model,imatrix", [("gemma3-f16", "gemma3-gguf"), ("gemma3-bf16", "gemma3-gguf"),
                                           ("gemma3-f16", "gemma3-dat"), ("llama-f16", "llama-gguf"),
                                           ("llama-bf16", "llama-gguf")])
def test_same_as_llama_quantize_with_imatrix(work, models, imatrices, model, imatrix, qtype):
    ours, ref = quantize_both(work, models[model], qtype, f"{model}-{imatrix}-{qtype}",
                              "--imatrix", imatrices[imatrix])
    assert_same_gguf(ours, ref)
    keys = {f.name for f in gguf.GGUFReader(ours).fields.values()}
    assert {"quantize.imatrix.file", "quantize.imatrix.entries_count"} <= keys


OPTION_CASES = [
    ("llama-f16", "Q4_K_M", ["--pure"]),
    ("llama-f16", "Q4_K_M", ["--leave-output-tensor"]),
    ("llama-f16", "Q3_K_M", ["--output-tensor-type", "q8_0", "--token-embedding-type", "q4_0"]),
    ("gemma3-f16", "Q4_K_S", ["--output-tensor-type", "q5_k"]),  # tied: token_embd follows it
    ("gemma3-f16", "Q4_K_S", ["--token-embedding-type", "q8_0"]),
    ("gemma3-f16", "Q4_K_M", ["--tensor-type", "attn_v=q8_0", "--tensor-type", "FFN_DOWN=q5_k"]),
    ("gemma3-bf16", "Q5_K_M", ["--tensor-type", r"blk\.[0-2]\.ffn_(up|gate)=q3_k"]),
    ("llama-bf16", "Q2_K", ["--tensor-type", "attn=q6_k", "--tensor-type", "attn_v=q4_0"]),
    ("llama-f16", "Q4_0", ["--pure", "--tensor-type", "ffn_down=q8_0"]),
    ("llama-f16", "F16", ["--tensor-type", "attn_v=q8_0"]),  # ignored for a float mix, as llama.cpp
]


@pytest.mark.parametrize("model,qtype,opts", OPTION_CASES)
def test_options_as_llama_quantize(work, models, model, qtype, opts):
    ours, ref = quantize_both(work, models[model], qtype, f"opt-{model}-{qtype}-{hash(tuple(opts))}",
                              *opts)
    assert_same_gguf(ours, ref)


def test_include_exclude_weights(work, models, imatrices):
    for opts in (["--include-weights", "attn"], ["--exclude-weights", "ffn_down"]):
        ours, ref = quantize_both(work, models["gemma3-f16"], "Q4_K_M", f"incl-{opts[0]}",
                                  "--imatrix", imatrices["gemma3-gguf"], *opts)
        assert_same_gguf(ours, ref)


def test_requantize(work, models):
    q8 = work / "requant-src-q8_0.gguf"
    llama_quantize(models["gemma3-f16"], q8, "Q8_0")
    out = work / "requant-refused.gguf"
    r = run([MEDQUANT, "quantize", "gguf", q8, "-o", out, "--type", "Q4_K_S"], check=False)
    assert r.returncode == 1 and "requantizing" in r.stderr and "--allow-requantize" in r.stderr
    assert not out.exists()
    assert run([LLAMA_QUANTIZE, q8, work / "requant-refused-ref.gguf", "Q4_K_S"], check=False).returncode != 0
    ours, ref = quantize_both(work, q8, "Q4_K_S", "requant", "--allow-requantize")
    assert_same_gguf(ours, ref)


def test_dry_run_writes_nothing_and_predicts_the_size(work, models):
    out = work / "dry.gguf"
    r = run([MEDQUANT, "quantize", "gguf", models["llama-f16"], "-o", out, "--type", "Q4_K_M",
             "--dry-run", "--json"])
    assert not out.exists()
    plan = json.loads(r.stdout)
    ours, ref = quantize_both(work, models["llama-f16"], "Q4_K_M", "dry-ref")
    reader = gguf.GGUFReader(ref)
    assert [t["name"] for t in plan["tensors"]] == [t.name for t in reader.tensors]
    assert [t["to"].lower() for t in plan["tensors"]] == [t.tensor_type.name.lower() for t in reader.tensors]
    assert plan["bytes_out"] == sum(int(t.n_bytes) for t in reader.tensors)
    assert plan["n_fallback"] > 0  # the odd rows
    text = run([MEDQUANT, "quantize", "gguf", models["llama-f16"], "--type", "Q4_K_M", "--dry-run"]).stdout
    assert "blk.0.odd_proj.weight" in text and "bpw" in text


def test_summary_reports_the_error_of_every_quantized_tensor(work, models):
    out = work / "summary.gguf"
    r = run([MEDQUANT, "quantize", "gguf", models["gemma3-f16"], "-o", out, "--type", "Q4_K_S", "--json"])
    report = json.loads(r.stdout)
    src = {t.name: t for t in gguf.GGUFReader(models["gemma3-f16"]).tensors}
    dst = {t.name: t for t in gguf.GGUFReader(out).tensors}
    for t in report["tensors"]:
        if not t["quantized"]:
            continue
        x = np.asarray(src[t["name"]].data, dtype=np.float32).reshape(-1)
        d = gguf.quants.dequantize(dst[t["name"]].data, dst[t["name"]].tensor_type).reshape(-1)
        rmse = float(np.sqrt(np.mean((d.astype(np.float64) - x) ** 2)))
        assert t["stats"]["rmse"] == pytest.approx(rmse, rel=1e-6, abs=1e-12), t["name"]


@pytest.mark.parametrize("qtype", TYPES)
def test_gguf_package_decodes_our_blocks_as_we_do(work, models, qtype):
    if not PEER_TOOL.exists():
        pytest.skip(f"{PEER_TOOL} not built")
    ours = work / f"ours-decode-{qtype}.gguf"
    medquant_quantize(models["llama-f16"], ours, qtype)
    reader = gguf.GGUFReader(ours)
    seen = set()
    for t in reader.tensors:
        if t.tensor_type in seen:
            continue
        seen.add(t.tensor_type)
        out = work / "decoded.f32"
        run([PEER_TOOL, "dequant", ours, t.name, out])
        mine = np.fromfile(out, dtype=np.float32)
        theirs = gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1).astype(np.float32)
        np.testing.assert_array_equal(mine, theirs, err_msg=f"{t.name} {t.tensor_type.name}")


@pytest.mark.parametrize("qtype", ["Q4_K_S", "Q8_0"])
@pytest.mark.parametrize("model", ["gemma3-f16", "gemma3-text-f16"])
def test_llama_cpp_runs_our_files_with_the_same_logits(work, models, model, qtype):
    if not PEER_TOOL.exists():
        pytest.skip(f"{PEER_TOOL} not built")
    ours, ref = quantize_both(work, models[model], qtype, f"run-{model}-{qtype}")
    prompt = "The patient presented with chest pain and"
    results = []
    for f in (ours, ref):
        logits = work / f"{f.stem}.logits"
        r = run([PEER_TOOL, "generate", f, logits, 8, prompt])
        results.append((r.stdout.split(), np.fromfile(logits, dtype=np.float32)))
    (tok_a, log_a), (tok_b, log_b) = results
    assert len(tok_a) == 8 and np.isfinite(log_a).all()
    assert tok_a == tok_b
    np.testing.assert_array_equal(log_a, log_b)


# ---------------------------------------------------------------- broken input


def test_broken_inputs_give_clear_errors(work, models):
    good = Path(models["llama-f16"]).read_bytes()
    header_end = gguf.GGUFReader(models["llama-f16"]).data_offset
    cases = {
        "truncated-header": good[: header_end // 2],
        "truncated-data": good[: len(good) - 4096],
        "bad-magic": b"GGML" + good[4:],
        "huge-kv-count": good[:16] + struct.pack("<q", 2**62) + good[24:],
    }
    for name, data in cases.items():
        src = work / f"broken-{name}.gguf"
        src.write_bytes(data)
        out = work / f"broken-{name}-out.gguf"
        for cmd in (["quantize", "gguf", src, "-o", out, "--type", "Q4_K_S"], ["inspect", src]):
            r = run([MEDQUANT, *cmd], check=False)
            assert r.returncode == 1, (name, cmd, r.stderr)
            assert r.stderr.startswith("error: ") and str(src) in r.stderr, r.stderr
        assert not out.exists()


def test_refuses_one_shard_of_a_split_model(work):
    src = work / "shard-00001-of-00002.gguf"
    w = gguf.GGUFWriter(str(src), "llama")
    w.add_uint16("split.no", 0)
    w.add_uint16("split.count", 2)
    w.add_int32("split.tensors.count", 2)
    w.add_uint32("llama.block_count", 1)
    w.add_tensor("blk.0.ffn_up.weight", np.zeros((4, 256), np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    r = run([MEDQUANT, "quantize", "gguf", src, "-o", work / "shard-q.gguf", "--type", "Q8_0"], check=False)
    assert r.returncode == 1 and "split in 2 files" in r.stderr, r.stderr


def test_inspect_agrees_with_the_gguf_package(work, models):
    path = work / "inspect-q4ks.gguf"
    medquant_quantize(models["gemma3-f16"], path, "Q4_K_S")
    info = json.loads(run([MEDQUANT, "inspect", "--json", path]).stdout)
    reader = gguf.GGUFReader(path)
    assert info["data_offset"] == reader.data_offset
    assert [(t["name"], t["type"].lower(), t["shape"], t["offset"], t["nbytes"]) for t in info["tensors"]] == [
        (t.name, t.tensor_type.name.lower(), [int(x) for x in t.shape], int(t.data_offset), int(t.n_bytes))
        for t in reader.tensors]
    keys = [k for k in reader.fields if not k.startswith("GGUF.")]
    assert list(info["metadata"]) == keys
    assert info["metadata"]["general.file_type"]["value"] == 14
    assert info["metadata"]["tokenizer.ggml.tokens"]["count"] == 2048
    text = run([MEDQUANT, "inspect", path]).stdout
    assert "bits per weight" in text and "(2048 values)" in text
    hashed = json.loads(run([MEDQUANT, "inspect", "--json", "--hash", path]).stdout)
    assert [t["sha256"] for t in hashed["tensors"]] == [
        hashlib.sha256(t.data.tobytes()).hexdigest() for t in reader.tensors]

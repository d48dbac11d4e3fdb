"""`medquant validate gguf` on vision projectors (mmproj) and in `test-all`.

Files: `medquant convert gguf tests/fixtures/tiny-gemma3` writes the text model
(F32) with its projector as F32, F16 and Q8_0 (`--mmproj-outtype`).

- Oracle: the reference projector's embeddings of the fixture image (what
  `--dump-embeddings` writes) equal transformers' `get_image_features` of the
  same image (tiny-gemma3/reference/image_features.npy, computed by
  tools/make_tiny_gemma3.py), and are bit for bit what llama.cpp's libmtmd
  gives when called directly (tests/peer/convert_peer_tool.cpp `image`, which
  decodes the file with stb_image instead of medquant's PNG decoder).
- Every figure of the JSON report (row cosines mean / min / p1, per image,
  max |difference|) equals numpy on the dumped embeddings.
- Honest F16 and Q8_0 projectors pass; a projector whose vision weights the
  test scrambles fails with exit 1 and names the metric.
- Bad input (no --model, a text model as --cand) gives a clear error.
- test-all validates the projector against its F32 reference, or lists it as
  SKIP with the reason when there is none.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import gguf
import numpy as np
import pytest

MEDQUANT = os.environ.get("MEDQUANT_BIN", "medquant")
FIXTURES = Path(os.environ.get("MEDQUANT_FIXTURES", Path(__file__).parents[1] / "fixtures"))
BUILD_DIR = Path(os.environ.get("MEDQUANT_BUILD_DIR", "."))
PEER_TOOL = BUILD_DIR / "tests" / "peer" / "convert_peer_tool"
TINY = FIXTURES / "tiny-gemma3"
IMAGES = TINY / "images"
THREADS = 2


def run(cmd, check=True):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("validate-mmproj")


@pytest.fixture(scope="module")
def files(work):
    f = {"text": work / "tiny-f32.gguf"}
    for t in ("f32", "f16", "q8_0"):
        f[t] = work / f"mmproj-tiny-{t}.gguf"
        text = f["text"] if t == "f32" else work / "unused-text.gguf"
        run([MEDQUANT, "-q", "convert", "gguf", TINY, "-o", text, "--outtype", "f32",
             "--mmproj", f[t], "--mmproj-outtype", t])
    return f


def validate(files, cand, *extra, check=True):
    return run([MEDQUANT, "--threads", THREADS, "validate", "gguf", "--ref", files["f32"], "--cand", cand,
                "--model", files["text"], *extra], check=check)


def scrambled(work, files):
    """The F16 projector with the rows of every vision-block matrix permuted:
    a file libmtmd loads and runs, with weights in the wrong places."""
    path = work / "mmproj-tiny-scrambled.gguf"
    shutil.copyfile(files["f16"], path)
    reader = gguf.GGUFReader(path, "r+")
    rng = np.random.default_rng(11)
    n = 0
    for t in reader.tensors:
        if t.name.startswith("v.blk.") and len(t.data.shape) == 2:
            t.data[:] = t.data[rng.permutation(t.data.shape[0])]
            n += 1
    reader.data.flush()
    del reader
    assert n > 0
    return path


def test_reference_embeddings_equal_transformers_and_libmtmd(work, files):
    dump = work / "dump-oracle"
    r = validate(files, files["f16"], "--images", IMAGES, "--dump-embeddings", dump, "--skip-speed", "--json")
    report = json.loads(r.stdout)
    ours = np.load(dump / "reference.npy")
    assert ours.shape == (1, 256, 256)
    want = np.load(TINY / "reference" / "image_features.npy")
    got = ours[0]
    rel = float(np.abs(got - want).max() / np.abs(want).max())
    cos = float((got * want).sum() / np.linalg.norm(got) / np.linalg.norm(want))
    assert rel <= 1e-3 and cos > 0.99998, f"vs transformers: max error {rel:.2e}, cosine {cos:.6f}"
    if PEER_TOOL.exists():  # built with the peer tests (tests/peer/CMakeLists.txt)
        out = work / "libmtmd.f32"
        p = run([PEER_TOOL, "image", files["text"], files["f32"], IMAGES / "rgb_896x896.png", out])
        n, n_embd = map(int, p.stdout.split())
        direct = np.fromfile(out, "<f4").reshape(n, n_embd)
        # Same library, same image bytes; only the thread count may reorder sums.
        np.testing.assert_allclose(got, direct, rtol=0, atol=1e-5 * np.abs(direct).max())
    v = report["validations"][0]
    assert v["kind"] == "mmproj" and v["status"] == "PASS"
    assert v["metrics"]["images"]["names"] == ["rgb_896x896.png"]


@pytest.mark.parametrize("build", ["f16", "q8_0"])
def test_honest_builds_pass_with_numpy_figures(work, files, build):
    dump = work / f"dump-{build}"
    report_dir = work / f"report-{build}"
    r = validate(files, files[build], "--synthetic-images", 3, "--warmup", 0, "--dump-embeddings", dump,
                 "--report", report_dir, "--json")
    v = json.loads(r.stdout)["validations"][0]
    assert v["status"] == "PASS" and v["kind"] == "mmproj"
    a = np.load(dump / "reference.npy").astype(np.float64)
    b = np.load(dump / "candidate.npy").astype(np.float64)
    assert a.shape == b.shape == (3, 256, 256)
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    m = v["metrics"]
    assert m["n_tokens"] == 256 and m["n_embd"] == 256 and m["images"]["count"] == 3
    assert m["reference"]["file_type"] == "F32" and m["candidate"]["file_type"] == build.upper()
    assert m["cosine"]["mean"] == pytest.approx(cos.mean(), abs=1e-12)
    assert m["cosine"]["min"] == pytest.approx(cos.min(), abs=1e-12)
    assert m["cosine"]["p1"] == pytest.approx(np.percentile(cos.ravel(), 1), abs=1e-12)
    assert m["cosine"]["per_image_mean"] == pytest.approx(cos.mean(1).tolist(), abs=1e-12)
    assert m["max_abs_diff"] == pytest.approx(np.abs(a - b).max(), rel=1e-12)
    assert m["relative_max_diff"] == pytest.approx(np.abs(a - b).max() / np.abs(a).max(), rel=1e-12)
    # Build-type defaults: float builds are held to 0.999, quantized to 0.99.
    limits = {c["metric"]: c["limit"] for c in v["checks"]}
    assert limits == ({"cosine_mean": 0.999, "cosine_min": 0.99} if build == "f16"
                      else {"cosine_mean": 0.99, "cosine_min": 0.95})
    # One timed encode per image in each model's own process.
    for side in ("reference", "candidate"):
        assert len(m[side]["encode_ms"]["runs"]) == 3 and m[side]["peak_rss_bytes"] > 0
    saved = json.loads((report_dir / "report.json").read_text())
    assert saved["validations"][0]["metrics"]["cosine"] == m["cosine"]
    html = (report_dir / "report.html").read_text()
    assert f"{m['cosine']['mean']:.6f}" in html and 'id="v0-cosine_histogram"' in html


def test_scrambled_projector_fails_naming_the_metric(work, files):
    bad = scrambled(work, files)
    r = validate(files, bad, "--synthetic-images", 2, "--skip-speed", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "[FAIL] cosine_mean" in r.stdout
    assert "validation failed: cosine_mean" in r.stderr.splitlines()[-1]


def test_bad_inputs_give_clear_errors(work, files):
    r = run([MEDQUANT, "validate", "gguf", "--ref", files["f32"], "--cand", files["f16"]], check=False)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "--model" in r.stderr
    r = validate(files, files["text"], "--skip-speed", check=False)
    assert r.returncode == 1 and "not a vision projector" in r.stderr and str(files["text"]) in r.stderr
    empty = work / "no-images"
    empty.mkdir(exist_ok=True)
    r = validate(files, files["f16"], "--images", empty, "--skip-speed", check=False)
    assert r.returncode == 1 and "no .png/.jpg/.jpeg images" in r.stderr


def test_test_all_validates_the_projector(work, files):
    root = work / "edge"
    gemma = root / "models" / "medgemma"
    gemma.mkdir(parents=True)
    shutil.copyfile(files["text"], gemma / "medgemma-tiny-f32.gguf")
    shutil.copyfile(files["f16"], gemma / "mmproj-medgemma-tiny-f16.gguf")
    # Without a reference projector: SKIP, with the reason.
    r = run([MEDQUANT, "--threads", THREADS, "test-all", root, "--skip-speed"], check=False)
    assert "[SKIP] MedGemma vision projector (mmproj-medgemma-tiny-f16.gguf) - no F32/BF16 reference " \
           "projector beside it" in r.stdout.splitlines(), r.stdout
    shutil.copyfile(files["f32"], gemma / "mmproj-medgemma-tiny-f32.gguf")
    r = run([MEDQUANT, "--threads", THREADS, "test-all", root, "--skip-speed"], check=False)
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stdout + r.stderr
    assert any(l.startswith("[PASS] MedGemma vision projector F16 - cosine ") for l in lines), lines
    shutil.copyfile(scrambled(work, files), gemma / "mmproj-medgemma-tiny-f16.gguf")
    r = run([MEDQUANT, "--threads", THREADS, "test-all", root, "--skip-speed"], check=False)
    assert r.returncode == 1 and any(l.startswith("[FAIL] MedGemma vision projector F16") and "cosine_mean" in l
                                     for l in r.stdout.splitlines()), r.stdout

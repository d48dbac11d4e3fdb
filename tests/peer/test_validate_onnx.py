"""medquant validate onnx against ONNX Runtime and numpy.

The tiny BiomedCLIP fixture is exported with `medquant export biomedclip`,
quantized with `medquant quantize onnx`, and its label set made with
`medquant embed-labels`. The honest INT8 build must pass; a build whose
quantized weights were scrambled with the onnx package must fail with exit 1
naming the failing metric; the cosine figures of the report must equal
numpy's cosine of ONNX Runtime's outputs of the two models on the same
preprocessed inputs (--dump-embeddings) within 1e-5; the report files must
be written; `test-all` must print the BiomedCLIP INT8 line.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

BIN = os.environ.get("MEDQUANT_BIN", "medquant")
FIXTURES = Path(os.environ.get("MEDQUANT_FIXTURES", Path(__file__).resolve().parents[1] / "fixtures"))
CLIP = FIXTURES / "tiny-biomedclip"
REF_IMAGES = [Path(i["file"]).name for i in json.loads((CLIP / "reference" / "reference.json").read_text())["images"]]


def run(*args, check=True):
    p = subprocess.run([BIN, "-q", *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"medquant {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    d = tmp_path_factory.mktemp("vonnx")
    run("export", "biomedclip", CLIP, "-o", d)
    run("quantize", "onnx", d / "biomedclip_vision.onnx", "-o", d / "biomedclip_vision_int8.onnx")
    run("quantize", "onnx", d / "biomedclip_text.onnx", "-o", d / "biomedclip_text_int8.onnx")
    run("embed-labels", "--text", d / "biomedclip_text.onnx", "--vocab", CLIP / "vocab.txt", "-o",
        d / "labels.json")
    # A broken build: every quantized weight tensor's values permuted.
    m = onnx.load(str(d / "biomedclip_vision_int8.onnx"))
    rng = np.random.default_rng(1234)
    scrambled = 0
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype in (np.int8, np.uint8) and a.size > 64:
            b = rng.permutation(a.reshape(-1)).reshape(a.shape)
            t.CopyFrom(numpy_helper.from_array(b, t.name))
            scrambled += 1
    assert scrambled > 0
    onnx.save(m, str(d / "broken_int8.onnx"))
    return d


def ort_embeddings(path, inputs):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    batch = s.get_inputs()[0].shape[0]
    assert batch == 1
    return np.concatenate([s.run(None, {name: inputs[i:i + 1]})[0] for i in range(len(inputs))])


def cosines(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_honest_int8_passes_and_matches_ort(builds, tmp_path):
    d = builds
    rep, dump = tmp_path / "report", tmp_path / "dump"
    p = run("validate", "onnx", "--ref", d / "biomedclip_vision.onnx", "--cand", d / "biomedclip_vision_int8.onnx",
            "--labels", d / "labels.json", "--runs", 3, "--warmup", 1, "--report", rep, "--dump-embeddings", dump)
    assert "PASS" in p.stdout
    for f in ("report.json", "report.md", "report.html"):
        assert (rep / f).stat().st_size > 0
    report = json.loads((rep / "report.json").read_text())
    v = report["validations"][0]
    assert v["kind"] == "onnx" and v["status"] == "PASS"
    m = v["metrics"]
    ours = np.array(m["cosine"]["values"])
    assert len(ours) == 16  # the synthetic set

    inputs = np.load(dump / "inputs.npy")
    assert inputs.shape == (16, 3, 224, 224) or inputs.shape[0] == 16
    ref = ort_embeddings(d / "biomedclip_vision.onnx", inputs)
    cand = ort_embeddings(d / "biomedclip_vision_int8.onnx", inputs)
    ours_ref, ours_cand = np.load(dump / "reference.npy"), np.load(dump / "candidate.npy")
    # The arithmetic: the reported cosines are numpy's of the dumped outputs.
    assert np.abs(ours - cosines(ours_ref, ours_cand)).max() <= 1e-12
    # The executor: FP32 outputs are ORT's to float rounding. INT8 outputs
    # are ORT's except where an activation sits on a rounding boundary of the
    # dynamic quantization and float-rounding differences upstream move it one
    # level (a few elements of some rows, up to ~5e-3 on this tiny model).
    assert np.abs(ours_ref - ref).max() < 1e-5
    assert np.abs(ours_cand - cand).max() < 1e-2
    cos = cosines(ref, cand)
    # The figures the checks use equal numpy's cosine of ORT's outputs.
    assert abs(m["cosine"]["mean"] - cos.mean()) <= 1e-5
    assert abs(m["cosine"]["min"] - cos.min()) <= 1e-5
    assert abs(m["cosine"]["p1"] - np.percentile(cos, 1)) <= 1e-5
    assert np.abs(ours - cos).max() <= 1e-4, (ours, cos)
    assert 0 <= m["zero_shot"]["top1_agreement"] <= 1
    assert m["reference"]["latency_ms"]["median"] > 0 and m["build"]["peak_rss_bytes"] > 0
    html = (rep / "report.html").read_text()
    for slot in ("latency", "size", "cosine_histogram", "zero_shot_confusion"):
        assert f'id="v0-{slot}"' in html  # every ONNX slot filled
    assert "not available" not in html and "<svg" in html
    assert "cosine_mean" in (rep / "report.md").read_text()

def test_images_folder(builds, tmp_path):
    d = builds
    p = run("validate", "onnx", "--ref", d / "biomedclip_vision.onnx", "--cand", d / "biomedclip_vision_int8.onnx",
            "--images", CLIP / "images", "--skip-speed", "--json", "--dump-embeddings", tmp_path)
    v = json.loads(p.stdout)["validations"][0]
    assert v["metrics"]["inputs"]["count"] == 3
    # the dumped inputs are the fixture's open_clip-preprocessed pixels
    ref_pixels = np.load(CLIP / "reference" / "pixel_values.npy")
    ours = np.load(tmp_path / "inputs.npy")
    order = sorted(range(3), key=lambda i: REF_IMAGES[i])  # medquant reads the folder sorted by name
    assert ours.shape == ref_pixels.shape
    assert np.array_equal(ours, ref_pixels[order])


def test_broken_build_fails_naming_metric(builds):
    d = builds
    p = run("validate", "onnx", "--ref", d / "biomedclip_vision.onnx", "--cand", d / "broken_int8.onnx",
            "--labels", d / "labels.json", "--skip-speed", check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "cosine_mean" in p.stderr
    assert "[FAIL] cosine_mean" in p.stdout


def test_thresholds_flags(builds):
    d = builds
    p = run("validate", "onnx", "--ref", d / "biomedclip_vision.onnx", "--cand", d / "biomedclip_vision_int8.onnx",
            "--skip-speed", "--min-cosine-mean", "1.5", check=False)
    assert p.returncode == 1 and "cosine_mean" in p.stderr


def test_text_model(builds):
    d = builds
    p = run("validate", "onnx", "--ref", d / "biomedclip_text.onnx", "--cand", d / "biomedclip_text_int8.onnx",
            "--vocab", CLIP / "vocab.txt", "--runs", 2, "--json", "--min-cosine-mean", 0, "--min-cosine-min", 0)
    v = json.loads(p.stdout)["validations"][0]
    assert v["metrics"]["tower"] == "text"
    assert v["metrics"]["inputs"]["count"] == 16
    assert 0.5 < v["metrics"]["cosine"]["mean"] <= 1.0 + 1e-9


def test_test_all_line(builds, tmp_path):
    dep = tmp_path / "edge_deployment"
    models = dep / "models" / "biomedclip"
    models.mkdir(parents=True)
    for f in ("biomedclip_vision.onnx", "biomedclip_vision_int8.onnx", "labels.json"):
        shutil.copy(builds / f, models / f)
    p = run("test-all", dep, "--report", tmp_path / "rep")
    line = next(x for x in p.stdout.splitlines() if "BiomedCLIP INT8" in x)
    assert line.startswith("[PASS] BiomedCLIP INT8 - cosine "), line
    assert "top-1 " in line and ("faster" in line or "slower" in line)
    assert "smaller" in line
    assert (tmp_path / "rep" / "report.html").exists()


def test_test_all_fails_broken_and_unreadable_builds(builds, tmp_path):
    for name, int8 in (("broken", builds / "broken_int8.onnx"), ("junk", None)):
        models = tmp_path / name / "models" / "biomedclip"
        models.mkdir(parents=True)
        shutil.copy(builds / "biomedclip_vision.onnx", models / "biomedclip_vision.onnx")
        if int8:
            shutil.copy(int8, models / "biomedclip_vision_int8.onnx")
        else:
            (models / "biomedclip_vision_int8.onnx").write_bytes(b"not an onnx model")
        p = run("test-all", tmp_path / name, check=False)
        assert p.returncode == 1, p.stdout + p.stderr
        line = next(x for x in p.stdout.splitlines() if "BiomedCLIP INT8" in x)
        if int8:
            assert line.startswith("[FAIL] BiomedCLIP INT8 - cosine ") and "failed: cosine_mean" in line, line
        else:
            assert line.startswith("[FAIL] BiomedCLIP INT8 - error: ") and "biomedclip_vision_int8.onnx" in line, line

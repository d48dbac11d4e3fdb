"""medquant pipeline / demo end to end, held against ONNX Runtime and llama.cpp.

`medquant -q demo -o DIR` runs both pipelines on the tiny fixtures and
test-all: it must pass, and every file of the deployment layout must load in
its runtime (ONNX Runtime for the .onnx files, which must give L2-normalised
embeddings; libllama for the text GGUFs, whose unquantized reference must
reproduce transformers' logits; libmtmd for the projector; the gguf package
reads them all). Re-running the pipelines skips every step; another --labels
file redoes only embed-labels and validate; a pipeline killed (SIGKILL) while
a step is writing leaves only complete files in models/, and the re-run
completes and passes test-all.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gguf
import numpy as np
import onnxruntime as ort
import pytest

BIN = os.environ.get("MEDQUANT_BIN", "medquant")
FIXTURES = Path(os.environ.get("MEDQUANT_FIXTURES", Path(__file__).resolve().parents[1] / "fixtures"))
BUILD_DIR = Path(os.environ.get("MEDQUANT_BUILD_DIR", ""))
PEER_TOOL = BUILD_DIR / "tests" / "peer" / "convert_peer_tool"
CLIP = FIXTURES / "tiny-biomedclip"
GEMMA = FIXTURES / "tiny-gemma3"
sys.path.insert(0, str(Path(__file__).parent))
from mock_hub import MockHub, files_of_folder  # noqa: E402

LABELS_TXT = Path(__file__).resolve().parents[2] / "data" / "biomedclip_labels.txt"

CLIP_FILES = ["biomedclip_vision_int8.onnx", "biomedclip_vision.onnx", "biomedclip_text.onnx", "labels.json"]
GEMMA_FILES = ["medgemma-4b-q4_k_s.gguf", "mmproj-medgemma-4b-f16.gguf"]
CLIP_STEPS = ["verify", "export", "quantize", "embed-labels", "validate"]
GEMMA_STEPS = ["verify", "convert", "reference", "validate"]
STEP_LINE = re.compile(r"^(biomedclip|medgemma): (skip )?([a-z-]+)[:,( ].*, [0-9.]+ s$")


def run(*args, check=True):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"medquant {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def clip_pipeline(out, *extra):
    return run("pipeline", "biomedclip", "--from", CLIP, "-o", out, "--images", CLIP / "images", *extra)


def gemma_pipeline(out, *extra):
    return run("pipeline", "medgemma", "--from", GEMMA, "-o", out, "--ctx", 64, *extra)


def steps(stderr):
    """{(pipeline, step): 'ran' | 'skipped'} from the log lines."""
    found = {}
    for line in stderr.splitlines():
        m = STEP_LINE.match(line)
        if m:
            found[(m.group(1), m.group(3))] = "skipped" if m.group(2) else "ran"
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    p = run("-q", "demo", "-o", out)
    return out, p


def test_demo_passes_test_all(demo):
    out, p = demo
    assert "ALL TESTS PASSED" in p.stdout
    assert "[PASS] BiomedCLIP INT8" in p.stdout and "[PASS] MedGemma Q4_K_S" in p.stdout
    assert "[PASS] MedGemma vision projector F16" in p.stdout  # against the F32 projector in .medquant/work
    assert p.stderr == ""  # -q: no log lines
    html = out / "report" / "report.html"
    assert f"report: {html}" in p.stdout and html.stat().st_size > 0
    for sub in ("biomedclip", "medgemma"):
        rep = json.loads((out / "report" / sub / "report.json").read_text())
        assert [v["status"] for v in rep["validations"]] == ["PASS"]


def test_layout_files_load_in_onnx_runtime(demo):
    out, _ = demo
    d = out / "models" / "biomedclip"
    assert sorted(f.name for f in d.iterdir()) == sorted(CLIP_FILES)
    for name in CLIP_FILES[:3]:
        s = ort.InferenceSession(str(d / name), providers=["CPUExecutionProvider"])
        feeds = {}
        for i in s.get_inputs():
            assert all(isinstance(n, int) for n in i.shape), f"{name}: dynamic shape {i.shape}"  # static batch
            if i.type == "tensor(float)":
                feeds[i.name] = np.random.default_rng(0).standard_normal(i.shape).astype(np.float32)
            else:  # input_ids / attention_mask
                feeds[i.name] = np.ones(i.shape, np.int64)
        (emb,) = s.run(None, feeds)
        assert np.allclose(np.linalg.norm(emb, axis=-1), 1.0, atol=1e-5), f"{name}: not L2-normalised"
    labels = json.loads((d / "labels.json").read_text())
    names = [l.strip() for l in LABELS_TXT.read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert [l["name"] for l in labels["labels"]] == names and len(names) == 30


def test_layout_files_load_in_llama_cpp(demo, tmp_path):
    out, _ = demo
    d = out / "models" / "medgemma"
    assert sorted(f.name for f in d.iterdir()) == sorted(GEMMA_FILES)
    assert not any((out / "models").rglob(".*"))  # no temporaries left
    work = out / ".medquant" / "work"
    assert sorted(f.name for f in work.iterdir()) == ["medgemma-4b-reference.gguf", "mmproj-medgemma-4b-f32.gguf"]
    for f in [*d.iterdir(), *work.iterdir()]:
        assert len(gguf.GGUFReader(f).tensors) > 0
    ftype = gguf.GGUFReader(d / GEMMA_FILES[0]).fields["general.file_type"]
    assert int(ftype.parts[ftype.data[0]][0]) == gguf.LlamaFileType.MOSTLY_Q4_K_S

    assert PEER_TOOL.exists(), f"{PEER_TOOL} not built"
    ids = np.load(GEMMA / "reference" / "input_ids_plain.npy")
    ref_logits = np.load(GEMMA / "reference" / "logits_plain.npy")
    ids.astype("<i4").tofile(tmp_path / "ids.i32")
    for model, tol in ((out / ".medquant" / "work" / "medgemma-4b-reference.gguf", 6e-3), (d / GEMMA_FILES[0], None)):
        subprocess.run([PEER_TOOL, "logits", model, tmp_path / "ids.i32", tmp_path / "l.f32"], check=True,
                       capture_output=True)
        got = np.fromfile(tmp_path / "l.f32", "<f4").reshape(ref_logits.shape)
        assert np.isfinite(got).all()
        if tol:  # the BF16 reference: transformers' logits (bound of test_convert_gguf)
            assert np.abs(got - ref_logits).max() / np.abs(ref_logits).max() <= tol
    r = subprocess.run([PEER_TOOL, "image", d / GEMMA_FILES[0], d / GEMMA_FILES[1],
                        GEMMA / "images" / "rgb_896x896.png", tmp_path / "img.f32"],
                       check=True, capture_output=True, text=True)
    n, n_embd = map(int, r.stdout.split())
    ref = np.load(GEMMA / "reference" / "image_features.npy")
    got = np.fromfile(tmp_path / "img.f32", "<f4").reshape(n, n_embd)
    assert got.shape == ref.shape
    assert float((got * ref).sum() / np.linalg.norm(got) / np.linalg.norm(ref)) > 0.9999


def test_rerun_skips_every_step(demo):
    out, _ = demo
    before = {f: f.stat().st_mtime_ns for f in (out / "models").rglob("*") if f.is_file()}
    c = clip_pipeline(out)
    g = gemma_pipeline(out)
    assert steps(c.stderr) == {("biomedclip", s): "skipped" for s in CLIP_STEPS}, c.stderr
    assert steps(g.stderr) == {("medgemma", s): "skipped" for s in GEMMA_STEPS}, g.stderr
    assert "PASS: every step up to date" in c.stdout and "PASS: every step up to date" in g.stdout
    assert {f: f.stat().st_mtime_ns for f in (out / "models").rglob("*") if f.is_file()} == before
    # --force redoes them all.
    f = clip_pipeline(out, "--force")
    assert steps(f.stderr) == {("biomedclip", s): "ran" for s in CLIP_STEPS}, f.stderr


def test_other_labels_redo_only_embed_labels_and_validate(demo, tmp_path):
    out = tmp_path / "deploy"
    shutil.copytree(demo[0], out)
    names = [l.strip() for l in LABELS_TXT.read_text().splitlines() if l.strip() and not l.startswith("#")]
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(names[:-1]) + "\n")  # one label fewer
    p = clip_pipeline(out, "--labels", labels)
    assert steps(p.stderr) == {("biomedclip", "verify"): "skipped", ("biomedclip", "export"): "skipped",
                               ("biomedclip", "quantize"): "skipped", ("biomedclip", "embed-labels"): "ran",
                               ("biomedclip", "validate"): "ran"}, p.stderr
    got = json.loads((out / "models" / "biomedclip" / "labels.json").read_text())
    assert [l["name"] for l in got["labels"]] == names[:-1]
    # One changed byte in the labels file redoes the same two; unchanged, nothing.
    labels.write_text("\n".join(names[:-1]).replace("X", "x", 1) + "\n")
    assert {s for (_, s), v in steps(clip_pipeline(out, "--labels", labels).stderr).items() if v == "ran"} == \
        {"embed-labels", "validate"}
    assert all(v == "skipped" for v in steps(clip_pipeline(out, "--labels", labels).stderr).values())


def test_killed_mid_step_leaves_no_half_file_and_rerun_completes(tmp_path):
    out = tmp_path / "deploy"
    staging = out / ".medquant" / "tmp"
    killed_in = None
    # Kill as soon as a step has started writing (a file in its staging folder).
    p = subprocess.Popen([BIN, "pipeline", "medgemma", "--from", GEMMA, "-o", out, "--ctx", "64"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while p.poll() is None and time.monotonic() < deadline:
        written = [f for f in staging.rglob("*") if f.is_file()] if staging.exists() else []
        if written:
            p.send_signal(signal.SIGKILL)
            killed_in = written[0].parent.name
            break
        time.sleep(0.001)
    p.wait()
    assert killed_in is not None and p.returncode == -signal.SIGKILL, "the pipeline ended before it was killed"

    models = out / "models"
    for f in (models.rglob("*") if models.exists() else []):
        if f.is_file():  # only complete files under their final names, which load
            assert not f.name.startswith(".") and ".tmp" not in f.name, f
            assert f.name in GEMMA_FILES, f
            assert len(gguf.GGUFReader(f).tensors) > 0

    r = gemma_pipeline(out)
    ran = {s for (_, s), v in steps(r.stderr).items() if v == "ran"}
    assert killed_in.split("-", 1)[1] in ran, (killed_in, r.stderr)  # the killed step was redone
    assert not any(staging.rglob("*.tmp*")) if staging.exists() else True
    assert sorted(f.name for f in (models / "medgemma").iterdir()) == sorted(GEMMA_FILES)
    t = run("-q", "test-all", out, "--ctx", 64)
    assert "ALL TESTS PASSED" in t.stdout


def test_clear_errors_and_nothing_in_the_layout(tmp_path):
    out = tmp_path / "deploy"
    p = run("pipeline", "medgemma", "--from", tmp_path / "missing", "-o", out, check=False)
    assert p.returncode == 1 and f"error: --from {tmp_path / 'missing'}: no such folder" in p.stderr
    p = run("pipeline", "medgemma", "--from", GEMMA, "-o", out, "--type", "Q9_K", check=False)
    assert p.returncode == 1 and "error: --type Q9_K: not a quantized type" in p.stderr
    assert not out.exists()
    # A failing step is named; nothing lands in models/.
    p = run("pipeline", "biomedclip", "--from", GEMMA, "-o", out, check=False)
    assert p.returncode == 1 and "error: biomedclip step export: " in p.stderr, p.stderr
    assert not (out / "models").exists()


def test_from_a_hub_repo_id(demo, tmp_path):
    """--from org/name: fetched through the hub client (a mock hub on 127.0.0.1), then the same steps."""
    hub = MockHub().start()
    try:
        sha = hub.add_repo("medquant-test/tiny-biomedclip").commit(files_of_folder(CLIP))
        env = {k: v for k, v in os.environ.items()
               if not k.lower().endswith("_proxy") and not k.startswith(("HF_", "HUGGING"))}
        env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf"), NO_PROXY="*", no_proxy="*")
        out = tmp_path / "deploy"
        cmd = [BIN, "pipeline", "biomedclip", "--from", "medquant-test/tiny-biomedclip", "-o", out]
        p = subprocess.run([*map(str, cmd)], env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
        assert f"fetch medquant-test/tiny-biomedclip@{sha}:" in p.stderr
        assert {s for (_, s), v in steps(p.stderr).items() if v == "ran"} == set(CLIP_STEPS)
        for name in CLIP_FILES[:3]:  # the same encoders as from the local folder
            ours = ort.InferenceSession(str(out / "models" / "biomedclip" / name), providers=["CPUExecutionProvider"])
            local = ort.InferenceSession(str(demo[0] / "models" / "biomedclip" / name), providers=["CPUExecutionProvider"])
            i = ours.get_inputs()
            feeds = {x.name: (np.ones(x.shape, np.int64) if x.type != "tensor(float)" else
                              np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)) for x in i}
            assert np.array_equal(ours.run(None, feeds)[0], local.run(None, feeds)[0]), name
        again = subprocess.run([*map(str, cmd)], env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0 and all(v == "skipped" for v in steps(again.stderr).values()), again.stderr
        missing = subprocess.run([*map(str, [BIN, "pipeline", "biomedclip", "--from", "medquant-test/nope", "-o",
                                             tmp_path / "x"])], env=env, capture_output=True, text=True, timeout=600)
        assert missing.returncode == 1 and "error: fetch medquant-test/nope" in missing.stderr, missing.stderr
    finally:
        hub.stop()

"""medquant embed-labels / classify against open_clip's references and ONNX Runtime.

The tiny-biomedclip fixture is exported with `medquant export biomedclip` into a
temporary folder, then:
- embed-labels on the fixture's label prompts with the single template "{}"
  reproduces open_clip's normalised encode_text (cosine >= 0.99999), and
  labels.json carries the schema's fields (text model sha256, logit_scale ...);
- classify on the fixture images gives softmax(exp(logit_scale) * ref image
  embedding . ref text embedding) within 1e-4 and the same top-K order, at
  static batch 1 and 2 (padded last batch), FP32, and for the INT8 model the
  same as ORT running that INT8 file;
- several templates are averaged as open_clip's build_zero_shot_classifier
  does (normalise each, mean, normalise), checked with numpy on ORT's outputs
  of the same text model;
- without --labels the 30 built-in labels and "this is a photo of {}" are used;
- bad input (labels.json of the wrong dim, from another checkpoint, corrupt
  JSON, missing label file, bad template, not-an-image) gives `error: ...`
  and exit 1.
Figures go to $MEDQUANT_BUILD_DIR/peer_zeroshot.json.
"""

import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

BIN = os.environ.get("MEDQUANT_BIN", "medquant")
FIXTURES = Path(os.environ.get("MEDQUANT_FIXTURES", Path(__file__).resolve().parents[1] / "fixtures"))
REPO = FIXTURES.parents[1]
CLIP = FIXTURES / "tiny-biomedclip"
REF = CLIP / "reference"
VOCAB = CLIP / "vocab.txt"
REFJ = json.loads((REF / "reference.json").read_text())
PROMPTS = REFJ["labels"]
IMAGES = [CLIP / im["file"] for im in REFJ["images"]]
RESULTS = {}


def run(*args, check=True):
    p = subprocess.run([BIN, "-q", *map(str, args)], capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"medquant {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return p


def run_error(*args):
    p = run(*args, check=False)
    assert p.returncode == 1, (args, p.returncode, p.stdout, p.stderr)
    assert p.stderr.startswith("error: "), p.stderr
    assert p.stdout == "", p.stdout
    assert "internal" not in p.stderr, p.stderr
    return p.stderr


def session(path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def normalize(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cosines(a, b):
    return (normalize(a) * normalize(b)).sum(-1)


@pytest.fixture(scope="session", autouse=True)
def write_results():
    yield
    d = os.environ.get("MEDQUANT_BUILD_DIR")
    if d:
        Path(d, "peer_zeroshot.json").write_text(json.dumps(RESULTS, indent=1, sort_keys=True))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = {}
    for batch in (1, 2):
        d = tmp_path_factory.mktemp(f"clip_b{batch}")
        run("export", "biomedclip", CLIP, "-o", d, "--batch", batch)
        out[batch] = d
    run("quantize", "onnx", out[1] / "biomedclip_vision.onnx", "-o", out[1] / "biomedclip_vision_int8.onnx")
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("zeroshot")


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prompt_labels(models, work):
    """labels.json of the fixture's prompts with the template "{}"."""
    out = work / "prompts.json"
    run("embed-labels", "--text", models[1] / "biomedclip_text.onnx", "--vocab", VOCAB,
        "--labels", write_lines(work / "prompts.txt", PROMPTS), "--template", "{}", "-o", out)
    return out


def token_ids(texts):
    """[N, 256] ids from `medquant tokenize` (checked against the fixture's ids below)."""
    p = run("tokenize", "--vocab", VOCAB, "--max-length", REFJ["context_length"], "--json", *texts)
    return np.array([row["ids"] for row in json.loads(p.stdout)], dtype=np.int64)


def ort_text(model, texts):
    s = session(model)
    ids = token_ids(texts)
    batch = s.get_inputs()[0].shape[0]
    rows = []
    for i in range(len(ids)):
        x = np.repeat(ids[i:i + 1], batch, axis=0)
        rows.append(s.run(None, {"input_ids": x, "attention_mask": (x != 0).astype(np.int64)})[0][0])
    return np.array(rows)


def test_tokenize_is_the_fixtures_tokenizer():
    np.testing.assert_array_equal(token_ids(PROMPTS), np.load(REF / "input_ids.npy"))


def test_single_template_is_open_clip_encode_text(models, prompt_labels):
    j = json.loads(prompt_labels.read_text())
    text_model = models[1] / "biomedclip_text.onnx"
    assert j["schema"] == "medquant.labels" and j["schema_version"] == 1
    assert j["model_name"] == "tiny-biomedclip"
    assert j["text_model"]["file"] == "biomedclip_text.onnx"
    assert j["text_model"]["sha256"] == hashlib.sha256(text_model.read_bytes()).hexdigest()
    assert len(j["text_model"]["source_sha256"]) == 64
    assert j["dim"] == 48
    assert j["templates"] == ["{}"]
    assert abs(j["logit_scale"] - REFJ["logit_scale"]) <= 1e-6
    assert abs(j["logit_scale_exp"] - REFJ["logit_scale_exp"]) <= 1e-5 * REFJ["logit_scale_exp"]
    assert abs(np.exp(j["logit_scale"]) - j["logit_scale_exp"]) <= 1e-9 * j["logit_scale_exp"]
    assert [label["name"] for label in j["labels"]] == PROMPTS
    emb = np.array([label["embedding"] for label in j["labels"]])
    ref = np.load(REF / "text_features_normalized.npy")
    cos = cosines(emb, ref)
    diff = float(np.abs(emb - ref).max())
    RESULTS["embed_single_template"] = {"min_cosine": float(cos.min()), "max_abs": diff}
    assert cos.min() >= 0.99999, cos
    assert diff <= 1e-4
    assert np.abs(np.linalg.norm(emb, axis=1) - 1).max() <= 1e-6


def reference_probabilities():
    img = np.load(REF / "image_features_normalized.npy").astype(np.float64)
    txt = np.load(REF / "text_features_normalized.npy").astype(np.float64)
    return softmax(REFJ["logit_scale_exp"] * img @ txt.T)


def classify_json(vision, labels, images=IMAGES, top=0):
    p = run("classify", *images, "--vision", vision, "--labels", labels, "--top", top, "--json")
    return json.loads(p.stdout)


def probabilities(result, names):
    out = np.zeros((len(result["images"]), len(names)))
    for i, im in enumerate(result["images"]):
        for e in im["top"]:
            out[i, names.index(e["label"])] = e["probability"]
    return out


@pytest.mark.parametrize("batch", [1, 2])
def test_classify_is_softmax_of_open_clip_logits(models, prompt_labels, batch):
    ref = reference_probabilities()
    res = classify_json(models[batch] / "biomedclip_vision.onnx", prompt_labels)
    assert [im["image"] for im in res["images"]] == [str(p) for p in IMAGES]
    got = probabilities(res, PROMPTS)
    diff = float(np.abs(got - ref).max())
    RESULTS[f"classify_b{batch}_max_abs_prob"] = diff
    assert diff <= 1e-4, diff
    # Logits are exp(logit_scale) * cosine, as open_clip's logits_per_image.
    logits = np.load(REF / "logits_per_image.npy")
    for i, im in enumerate(res["images"]):
        for e in im["top"]:
            assert abs(e["logit"] - logits[i, PROMPTS.index(e["label"])]) <= 1e-3
    # Top-K: the reference's order.
    top = classify_json(models[batch] / "biomedclip_vision.onnx", prompt_labels, top=5)
    for i, im in enumerate(top["images"]):
        want = [PROMPTS[k] for k in np.argsort(-ref[i], kind="stable")[:5]]
        assert [e["label"] for e in im["top"]] == want


def test_classify_text_output(models, prompt_labels):
    p = run("classify", IMAGES[0], "--vision", models[1] / "biomedclip_vision.onnx", "--labels", prompt_labels,
            "--top", 3)
    lines = p.stdout.splitlines()
    assert lines[0] == str(IMAGES[0]) and len(lines) == 4
    ref = reference_probabilities()[0]
    for line, k in zip(lines[1:], np.argsort(-ref)[:3]):
        prob, name = line.split(None, 1)
        assert name == PROMPTS[k] and abs(float(prob) - ref[k]) <= 1e-4


def test_classify_int8_matches_ort(models, prompt_labels, work):
    """The INT8 file through classify vs ORT on the same file. Dynamic quantization rounds each
    activation to 8 bits, so a 1-ulp difference before the rounding can flip one step; ORT's own
    fused and unfused graphs differ by that much, and medquant must be no further from ORT."""
    model = models[1] / "biomedclip_vision_int8.onnx"
    px = np.load(REF / "pixel_values.npy")
    txt = np.array([label["embedding"] for label in json.loads(prompt_labels.read_text())["labels"]])
    wants = []
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = level
        s = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        img = np.concatenate([s.run(None, {"pixel_values": px[i:i + 1]})[0] for i in range(len(px))])
        wants.append(softmax(REFJ["logit_scale_exp"] * cosines(img[:, None, :], txt[None, :, :])))
    spread = float(np.abs(wants[0] - wants[1]).max())
    got = probabilities(classify_json(model, prompt_labels), PROMPTS)
    diff = min(float(np.abs(got - w).max()) for w in wants)
    RESULTS["classify_int8"] = {"max_abs_prob_vs_ort": diff, "ort_fused_vs_unfused": spread,
                                "max_abs_prob_vs_open_clip_fp32": float(np.abs(got - reference_probabilities()).max())}
    assert diff <= max(5e-3, 2 * spread), (diff, spread)
    assert (got.argmax(1) == wants[0].argmax(1)).all()
    # And exactly what medquant's executor gives for that file (`medquant run`).
    rows = []
    for i in range(len(px)):
        d = work / f"int8_run_{i}"
        np.save(work / f"px{i}.npy", px[i:i + 1])
        run("run", model, "--input", f"pixel_values={work / f'px{i}.npy'}", "-o", d)
        rows.append(np.load(d / "image_embeds.npy")[0])
    mine = softmax(REFJ["logit_scale_exp"] * cosines(np.array(rows)[:, None, :], txt[None, :, :]))
    assert np.abs(got - mine).max() <= 1e-6


def test_templates_are_averaged_as_open_clip(models, work):
    labels = ["chest x-ray", "brain MRI", "pneumonia", "Sjögren's syndrome", "squamous cell carcinoma, H&E"]
    templates = ["this is a photo of {}", "an image of {}.", "{}", "a radiograph showing {{{}}}"]
    out = work / "multi.json"
    run("embed-labels", "--text", models[2] / "biomedclip_text.onnx", "--vocab", VOCAB,
        "--labels", write_lines(work / "multi.txt", labels), *sum((["--template", t] for t in templates), []),
        "-o", out)
    j = json.loads(out.read_text())
    assert j["templates"] == templates
    got = np.array([label["embedding"] for label in j["labels"]])
    # open_clip: texts = [template.format(c) for c in classnames for template in templates]; per class
    # F.normalize(encode_text) -> mean -> / norm.
    texts = [t.format(c) for c in labels for t in templates]
    emb = normalize(ort_text(models[1] / "biomedclip_text.onnx", texts)).reshape(len(labels), len(templates), -1)
    want = normalize(emb.mean(axis=1))
    cos = cosines(got, want)
    diff = float(np.abs(got - want).max())
    RESULTS["embed_multi_template"] = {"min_cosine": float(cos.min()), "max_abs": diff}
    assert cos.min() >= 0.99999, cos
    assert diff <= 1e-5, diff
    # And it is not the single-template result.
    single = normalize(emb[:, 0, :])
    assert cosines(got, single).max() < 0.9999


def test_default_labels_and_template(models, work):
    out = work / "default.json"
    run("embed-labels", "--text", models[1] / "biomedclip_text.onnx", "--vocab", VOCAB, "-o", out)
    j = json.loads(out.read_text())
    names = [line.strip() for line in (REPO / "data" / "biomedclip_labels.txt").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert len(names) == 30
    assert [label["name"] for label in j["labels"]] == names
    assert j["templates"] == ["this is a photo of {}"]
    got = np.array([label["embedding"] for label in j["labels"]])
    want = normalize(ort_text(models[1] / "biomedclip_text.onnx", [f"this is a photo of {n}" for n in names]))
    assert cosines(got, want).min() >= 0.99999
    # classify with them works on every fixture image
    res = classify_json(models[1] / "biomedclip_vision.onnx", out, top=3)
    assert all(len(im["top"]) == 3 for im in res["images"])


# ---- bad input ------------------------------------------------------------------------

def test_labels_of_another_dim_are_refused(models, prompt_labels, work):
    j = json.loads(prompt_labels.read_text())
    j["dim"] = 47
    for label in j["labels"]:
        label["embedding"] = label["embedding"][:47]
    bad = work / "dim47.json"
    bad.write_text(json.dumps(j))
    vision = models[1] / "biomedclip_vision.onnx"
    err = run_error("classify", IMAGES[0], "--vision", vision, "--labels", bad)
    assert str(bad) in err and str(vision) in err and "47" in err and "48" in err, err


def test_labels_of_another_checkpoint_are_refused(models, prompt_labels, work):
    j = json.loads(prompt_labels.read_text())
    j["text_model"]["source_sha256"] = "0" * 64
    other = work / "other.json"
    other.write_text(json.dumps(j))
    vision = models[1] / "biomedclip_vision.onnx"
    err = run_error("classify", IMAGES[0], "--vision", vision, "--labels", other)
    assert "checkpoint" in err and str(other) in err, err
    p = run("classify", IMAGES[0], "--vision", vision, "--labels", other, "--allow-model-mismatch")
    assert p.stdout.startswith(str(IMAGES[0]))


@pytest.mark.parametrize("kind", ["truncated", "empty", "not-json", "newer-version", "no-labels"])
def test_corrupt_labels_json(models, prompt_labels, work, kind):
    text = prompt_labels.read_text()
    bad = work / f"corrupt-{kind}.json"
    if kind == "truncated":
        bad.write_text(text[: len(text) // 2])
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "not-json":
        bad.write_bytes(IMAGES[0].read_bytes())
    elif kind == "newer-version":
        bad.write_text(text.replace('"schema_version": 1', '"schema_version": 2'))
    else:
        j = json.loads(text)
        del j["labels"]
        bad.write_text(json.dumps(j))
    err = run_error("classify", IMAGES[0], "--vision", models[1] / "biomedclip_vision.onnx", "--labels", bad)
    assert str(bad) in err, err


def test_missing_files(models, prompt_labels, work):
    text = models[1] / "biomedclip_text.onnx"
    missing = work / "no-such-labels.txt"
    err = run_error("embed-labels", "--text", text, "--vocab", VOCAB, "--labels", missing, "-o", work / "x.json")
    assert str(missing) in err
    assert not (work / "x.json").exists()
    err = run_error("classify", IMAGES[0], "--vision", models[1] / "biomedclip_vision.onnx",
                    "--labels", work / "no-such.json")
    assert "no-such.json" in err
    err = run_error("embed-labels", "--text", work / "no-such.onnx", "--vocab", VOCAB, "-o", work / "x.json")
    assert "no-such.onnx" in err
    err = run_error("embed-labels", "--text", text, "--vocab", VOCAB, "--template", "a photo of", "-o",
                    work / "x.json")
    assert "template 'a photo of'" in err
    err = run_error("embed-labels", "--text", text, "--vocab", VOCAB, "--labels",
                    write_lines(work / "comments.txt", ["# nothing"]), "-o", work / "x.json")
    assert "comments.txt" in err
    # the vision model where the text model belongs
    err = run_error("embed-labels", "--text", models[1] / "biomedclip_vision.onnx", "--vocab", VOCAB,
                    "-o", work / "x.json")
    assert "vision" in err
    assert not (work / "x.json").exists()


@pytest.mark.parametrize("kind", ["text", "empty", "truncated-png", "truncated-jpeg"])
def test_not_an_image(models, prompt_labels, work, kind):
    bad = work / f"bad-{kind}.png"
    if kind == "text":
        bad.write_text("this is not an image\n")
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "truncated-png":
        bad.write_bytes(IMAGES[0].read_bytes()[:200])
    else:
        bad = work / "bad.jpg"
        bad.write_bytes(IMAGES[2].read_bytes()[:300])
    err = run_error("classify", IMAGES[0], bad, "--vision", models[1] / "biomedclip_vision.onnx",
                    "--labels", prompt_labels)
    assert str(bad) in err, err

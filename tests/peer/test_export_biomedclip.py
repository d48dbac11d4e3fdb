"""medquant export biomedclip / bert against the upstream models' own outputs.

The ONNX files medquant writes from tests/fixtures/tiny-biomedclip are run in
ONNX Runtime and must reproduce open_clip's encode_image / encode_text
reference outputs (cosine >= 0.99999, max abs <= 1e-4), at batch 1 and 3,
normalised and not (--no-l2norm); they must pass onnx.checker (full check),
carry the metadata the later steps need, let ORT fuse GELU, and quantize with
`medquant quantize onnx` into files ORT runs with cosine >= 0.99 to FP32.
Broken or unsupported checkpoints must give a clear error and leave no file.
`medquant export bert` on tests/fixtures/tiny-bert (BertModel safetensors,
BertForMaskedLM pytorch_model.bin) must reproduce transformers' CLS and mean
pooled outputs. Figures go to $MEDQUANT_BUILD_DIR/peer_export_biomedclip.json.
"""

import collections
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from safetensors.numpy import save_file

BIN = os.environ.get("MEDQUANT_BIN", "medquant")
FIXTURES = Path(os.environ.get("MEDQUANT_FIXTURES", Path(__file__).resolve().parents[1] / "fixtures"))
CLIP = FIXTURES / "tiny-biomedclip"
REF = CLIP / "reference"
BERT = FIXTURES / "tiny-bert"
RESULTS = {}

COS_MIN, ABS_MAX = 0.99999, 1e-4


def run(*args, check=True):
    p = subprocess.run([BIN, "-q", *map(str, args)], capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"medquant {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return p


def session(path, level=None, optimized=None):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if level is not None:
        so.graph_optimization_level = level
    if optimized:
        so.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def cosines(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def assert_close(out, ref, key):
    cos = cosines(out, ref)
    diff = float(np.abs(out.astype(np.float64) - ref).max())
    RESULTS[key] = {"min_cosine": float(cos.min()), "max_abs": diff}
    assert cos.min() >= COS_MIN, (key, cos)
    assert diff <= ABS_MAX, (key, diff)


@pytest.fixture(scope="session", autouse=True)
def write_results():
    yield
    d = os.environ.get("MEDQUANT_BUILD_DIR")
    if d:
        Path(d, "peer_export_biomedclip.json").write_text(json.dumps(RESULTS, indent=1, sort_keys=True))


# ---- exports of the fixture, made once ----------------------------------------

@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    out = {}
    for batch in (1, 3):
        for l2 in (True, False):
            d = tmp_path_factory.mktemp(f"clip_b{batch}_{'l2' if l2 else 'raw'}")
            run("export", "biomedclip", CLIP, "-o", d, "--batch", batch, *([] if l2 else ["--no-l2norm"]))
            out[(batch, l2)] = d
    return out


def vision_reference(l2):
    return np.load(REF / ("image_features_normalized.npy" if l2 else "image_features.npy"))


def text_reference(l2):
    return np.load(REF / ("text_features_normalized.npy" if l2 else "text_features.npy"))


def run_vision(path, batch):
    s = session(path)
    px = np.load(REF / "pixel_values.npy")
    return np.concatenate([s.run(None, {"pixel_values": px[i:i + batch]})[0] for i in range(0, len(px), batch)])


def run_text(path, batch):
    s = session(path)
    ids, mask = np.load(REF / "input_ids.npy"), np.load(REF / "attention_mask.npy")
    return np.concatenate([s.run(None, {"input_ids": ids[i:i + batch], "attention_mask": mask[i:i + batch]})[0]
                           for i in range(0, len(ids), batch)])


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("l2", [True, False], ids=["l2norm", "no-l2norm"])
def test_vision_matches_open_clip(exports, batch, l2):
    out = run_vision(exports[(batch, l2)] / "biomedclip_vision.onnx", batch)
    assert_close(out, vision_reference(l2), f"vision_b{batch}_{'l2' if l2 else 'raw'}")


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("l2", [True, False], ids=["l2norm", "no-l2norm"])
def test_text_matches_open_clip(exports, batch, l2):
    out = run_text(exports[(batch, l2)] / "biomedclip_text.onnx", batch)
    assert_close(out, text_reference(l2), f"text_b{batch}_{'l2' if l2 else 'raw'}")


def test_zero_shot_logits(exports):
    img = run_vision(exports[(3, True)] / "biomedclip_vision.onnx", 3)
    txt = run_text(exports[(3, True)] / "biomedclip_text.onnx", 3)
    meta = {p.key: p.value for p in onnx.load(str(exports[(3, True)] / "biomedclip_vision.onnx")).metadata_props}
    logits = float(meta["logit_scale_exp"]) * img @ txt.T
    ref = np.load(REF / "logits_per_image.npy")
    np.testing.assert_allclose(logits, ref, atol=1e-3 * np.abs(ref).max())
    assert (logits.argmax(1) == ref.argmax(1)).all()


@pytest.mark.parametrize("tower", ["vision", "text"])
def test_checker_io_and_metadata(exports, tower):
    path = exports[(3, True)] / f"biomedclip_{tower}.onnx"
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    assert {(o.domain or "ai.onnx"): o.version for o in m.opset_import} == {"ai.onnx": 17}
    ref = json.loads((REF / "reference.json").read_text())

    def io(values):
        return [(v.name, v.type.tensor_type.elem_type, [d.dim_value for d in v.type.tensor_type.shape.dim])
                for v in values]
    F, I64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    if tower == "vision":
        assert io(m.graph.input) == [("pixel_values", F, [3, 3, 224, 224])]
        assert io(m.graph.output) == [("image_embeds", F, [3, 48])]
    else:
        assert io(m.graph.input) == [("input_ids", I64, [3, 256]), ("attention_mask", I64, [3, 256])]
        assert io(m.graph.output) == [("text_embeds", F, [3, 48])]
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["source_sha256"] == hashlib.sha256((CLIP / "open_clip_pytorch_model.bin").read_bytes()).hexdigest()
    assert meta["source_file"] == "open_clip_pytorch_model.bin"
    assert meta["tower"] == tower
    assert float(meta["logit_scale"]) == pytest.approx(ref["logit_scale"], abs=1e-6)
    assert float(meta["logit_scale_exp"]) == pytest.approx(ref["logit_scale_exp"], rel=1e-6)
    assert json.loads(meta["image_mean"]) == pytest.approx(ref["preprocess"]["mean"])
    assert json.loads(meta["image_std"]) == pytest.approx(ref["preprocess"]["std"])
    assert meta["image_size"] == "224" and meta["image_interpolation"] == "bicubic"
    assert meta["context_length"] == str(ref["context_length"])
    assert meta["tokenizer"] == "bert_wordpiece"
    assert meta["tokenizer_vocab_sha256"] == hashlib.sha256((CLIP / "vocab.txt").read_bytes()).hexdigest()
    assert (meta["cls_token_id"], meta["sep_token_id"], meta["pad_token_id"]) == ("2", "3", "0")
    assert meta["l2_normalized"] == "true" and meta["embed_dim"] == "48"
    assert meta["model_name"] == "tiny-biomedclip"
    # Every Linear is a MatMul with an [in, out] float initializer as B.
    inits = {t.name: t for t in m.graph.initializer}
    matmuls = [n for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    assert len(matmuls) == 2 * 6 + (1 if tower == "vision" else 2)
    for n in matmuls:
        assert len(inits[n.input[1]].dims) == 2 and inits[n.input[1]].data_type == F


@pytest.mark.parametrize("tower", ["vision", "text"])
def test_ort_fuses_gelu_and_layernorm(exports, tower, tmp_path):
    opt = tmp_path / "opt.onnx"
    session(exports[(1, True)] / f"biomedclip_{tower}.onnx", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, opt)
    ops = collections.Counter(n.op_type for n in onnx.load(str(opt)).graph.node)
    assert ops["Erf"] == 0, ops  # every x*0.5*(1+erf(x/sqrt2)) became one Gelu
    assert ops["Gelu"] + ops["BiasGelu"] == (2 if tower == "vision" else 3), ops
    assert ops["LayerNormalization"] + ops["SkipLayerNormalization"] == 5, ops


@pytest.mark.parametrize("tower", ["vision", "text"])
def test_quantized_runs_in_ort(exports, tower, tmp_path):
    fp32 = exports[(3, True)] / f"biomedclip_{tower}.onnx"
    int8 = tmp_path / f"biomedclip_{tower}_int8.onnx"
    run("quantize", "onnx", fp32, "-o", int8)
    m = onnx.load(str(int8))
    onnx.checker.check_model(m, full_check=True)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    assert ops["MatMulInteger"] == 2 * 6 + (1 if tower == "vision" else 2), ops  # every weight MatMul
    runner = run_vision if tower == "vision" else run_text
    a, b = runner(fp32, 3), runner(int8, 3)
    cos = cosines(a, b)
    RESULTS[f"int8_{tower}"] = {"min_cosine_vs_fp32": float(cos.min()), "mean_cosine_vs_fp32": float(cos.mean()),
                                "fp32_bytes": fp32.stat().st_size, "int8_bytes": int8.stat().st_size}
    assert cos.min() >= 0.99, cos
    # ORT replaces every MatMulInteger chain by its fused kernels.
    opt = tmp_path / "opt.onnx"
    session(int8, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, opt)
    fused = collections.Counter(n.op_type for n in onnx.load(str(opt)).graph.node)
    assert fused["MatMulInteger"] == 0, fused


# ---- other forms of the same checkpoint ----------------------------------------

def read_torch_state_dict(path):
    """Float32/int64 state dict of a torch.save zip, with numpy only."""
    kinds = {"FloatStorage": np.float32, "LongStorage": np.int64}
    with zipfile.ZipFile(path) as z:
        prefix = z.namelist()[0].split("/")[0]

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) == ("collections", "OrderedDict"):
                    return collections.OrderedDict
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    def rebuild(storage, offset, size, stride, *rest):
                        item = storage.itemsize
                        return np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                                               strides=[s * item for s in stride]).copy()
                    return rebuild
                if module == "torch" and name in kinds:
                    return kinds[name]
                raise pickle.UnpicklingError(f"{module}.{name}")

            def persistent_load(self, pid):
                _, kind, key, _, _ = pid
                return np.frombuffer(z.read(f"{prefix}/data/{key}"), dtype=kind)

        with z.open(f"{prefix}/data.pkl") as f:
            return dict(Unpickler(f).load())


@pytest.fixture(scope="module")
def state_dict():
    return read_torch_state_dict(CLIP / "open_clip_pytorch_model.bin")


def copy_fixture(dst, state=None):
    """The tiny BiomedCLIP folder; with `state`, its weights as safetensors instead of the .bin."""
    shutil.copytree(CLIP, dst, ignore=shutil.ignore_patterns("reference", "images"))
    if state is not None:
        (dst / "open_clip_pytorch_model.bin").unlink()
        save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(dst / "open_clip_model.safetensors"))
    return dst


def test_safetensors_and_fp16_checkpoints(tmp_path, state_dict):
    src = copy_fixture(tmp_path / "st", state_dict)
    run("export", "biomedclip", src, "-o", tmp_path / "out")
    assert_close(run_vision(tmp_path / "out" / "biomedclip_vision.onnx", 1), vision_reference(True), "vision_safetensors")
    assert_close(run_text(tmp_path / "out" / "biomedclip_text.onnx", 1), text_reference(True), "text_safetensors")
    half = {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in state_dict.items()}
    src16 = copy_fixture(tmp_path / "f16", half)
    run("export", "biomedclip", src16, "-o", tmp_path / "out16", "--batch", "3")
    for tower, runner, ref in (("vision", run_vision, vision_reference(True)), ("text", run_text, text_reference(True))):
        cos = cosines(runner(tmp_path / "out16" / f"biomedclip_{tower}.onnx", 3), ref)
        RESULTS[f"{tower}_fp16_checkpoint"] = {"min_cosine": float(cos.min())}
        assert cos.min() >= 0.999, cos  # the weights themselves were rounded to fp16


# ---- bad input: a clear error and no output ----------------------------------------

def expect_refused(src, out, *messages):
    p = run("export", "biomedclip", src, "-o", out, check=False)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.startswith("error: "), p.stderr
    for m in messages:
        assert m in p.stderr, p.stderr
    left = list(out.iterdir()) if out.exists() else []
    assert left == [], left  # no model, no temporary
    return p.stderr


def edit_json(path, fn):
    j = json.loads(path.read_text())
    fn(j)
    path.write_text(json.dumps(j))


def test_corrupt_zip(tmp_path):
    src = copy_fixture(tmp_path / "src")
    data = (src / "open_clip_pytorch_model.bin").read_bytes()
    (src / "open_clip_pytorch_model.bin").write_bytes(data[: len(data) * 2 // 3])
    expect_refused(src, tmp_path / "out", "open_clip_pytorch_model.bin")
    broken = bytearray(data)
    cd = data.rfind(b"PK\x01\x02")  # a central directory header
    broken[cd:cd + 4] = b"XXXX"
    (src / "open_clip_pytorch_model.bin").write_bytes(bytes(broken))
    expect_refused(src, tmp_path / "out2", "open_clip_pytorch_model.bin")
    (src / "open_clip_pytorch_model.bin").write_bytes(b"not a checkpoint at all")
    expect_refused(src, tmp_path / "out3", "open_clip_pytorch_model.bin")


def test_missing_keys(tmp_path, state_dict):
    sd = dict(state_dict)
    del sd["visual.trunk.blocks.1.attn.proj.bias"]
    src = copy_fixture(tmp_path / "src", sd)
    expect_refused(src, tmp_path / "out", "'visual.trunk.blocks.1.attn.proj.bias'", "missing")
    sd = dict(state_dict)
    del sd["text.proj.2.weight"]
    src = copy_fixture(tmp_path / "src2", sd)
    expect_refused(src, tmp_path / "out2", "'text.proj.2.weight'", "missing")
    src = copy_fixture(tmp_path / "src3")
    (src / "open_clip_config.json").unlink()
    expect_refused(src, tmp_path / "out3", "open_clip_config.json")


def test_shape_mismatch_between_config_and_weights(tmp_path, state_dict):
    src = copy_fixture(tmp_path / "src")
    edit_json(src / "open_clip_config.json", lambda j: j["model_cfg"]["vision_cfg"].update(width=128))
    expect_refused(src, tmp_path / "out", "shape mismatch between config and weights", "vision_cfg.width is 128")
    src = copy_fixture(tmp_path / "src2")
    edit_json(src / "text_config.json", lambda j: j.update(hidden_size=96))
    expect_refused(src, tmp_path / "out2", "shape mismatch", "hidden_size is 96")
    src = copy_fixture(tmp_path / "src3")
    edit_json(src / "open_clip_config.json", lambda j: j["model_cfg"].update(embed_dim=64))
    expect_refused(src, tmp_path / "out3", "embed_dim is 64")
    sd = dict(state_dict)
    sd["visual.trunk.blocks.0.mlp.fc1.weight"] = sd["visual.trunk.blocks.0.mlp.fc1.weight"][:128]
    src = copy_fixture(tmp_path / "src4", sd)
    expect_refused(src, tmp_path / "out4", "visual.trunk.blocks.0.mlp.fc1.weight", "[128, 64]")
    sd = dict(state_dict)
    sd["visual.trunk.blocks.0.ls1.gamma"] = np.ones(64, np.float32)  # layer scale: another ViT
    src = copy_fixture(tmp_path / "src5", sd)
    expect_refused(src, tmp_path / "out5", "'visual.trunk.blocks.0.ls1.gamma'", "not part of the model")


@pytest.mark.parametrize("edit,message", [
    (lambda j: j["model_cfg"]["vision_cfg"].update(timm_model_name="convnext_tiny"), "not a plain timm ViT"),
    (lambda j: j["model_cfg"]["vision_cfg"].update(timm_pool="abs_attn"), "attention pooling"),
    (lambda j: j["model_cfg"]["vision_cfg"].update(timm_proj="mlp"), "timm_proj 'mlp'"),
    (lambda j: j["model_cfg"]["text_cfg"].update(hf_pooler_type="max_pooler"), "hf_pooler_type 'max_pooler'"),
    (lambda j: j["model_cfg"]["text_cfg"].update(hf_proj_type="transformer"), "hf_proj_type 'transformer'"),
], ids=["non-vit", "attn-pool", "mlp-head", "max-pooler", "proj-type"])
def test_unsupported_config(tmp_path, edit, message):
    src = copy_fixture(tmp_path / "src")
    edit_json(src / "open_clip_config.json", edit)
    expect_refused(src, tmp_path / "out", message)


def test_unsupported_timm_args_and_opset(tmp_path):
    src = copy_fixture(tmp_path / "src")
    edit_json(src / "tiny-vit" / "config.json", lambda j: j["model_args"].update(pre_norm=True))
    expect_refused(src, tmp_path / "out", "model_args.pre_norm = true")
    p = run("export", "biomedclip", CLIP, "-o", tmp_path / "out2", "--opset", "18", check=False)
    assert p.returncode == 1 and "only opset 17" in p.stderr
    assert not (tmp_path / "out2").exists() or not list((tmp_path / "out2").iterdir())


# ---- plain Hugging Face BERT ---------------------------------------------------------

@pytest.mark.parametrize("variant", ["model", "mlm"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_bert_matches_transformers(tmp_path, variant, pooling):
    d = BERT if variant == "model" else BERT / "mlm"
    ref = d / "reference"
    ids, mask = np.load(ref / "input_ids.npy"), np.load(ref / "attention_mask.npy")
    expected = np.load(ref / f"{pooling}.npy")
    out = tmp_path / "bert.onnx"
    run("export", "bert", d, "-o", out, "--batch", len(ids), "--seq-len", ids.shape[1], "--pooling", pooling)
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    meta = {p.key: p.value for p in m.metadata_props}
    weights = d / ("model.safetensors" if variant == "model" else "pytorch_model.bin")
    assert meta["source_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert meta["pooling"] == pooling and meta["tokenizer"] == "bert_wordpiece"
    got = session(out).run(None, {"input_ids": ids, "attention_mask": mask})[0]
    assert_close(got, expected, f"bert_{variant}_{pooling}")
    # L2-normalised, one sequence at a time.
    run("export", "bert", d, "-o", tmp_path / "n.onnx", "--seq-len", ids.shape[1], "--pooling", pooling, "--l2norm")
    s = session(tmp_path / "n.onnx")
    got = np.concatenate([s.run(None, {"input_ids": ids[i:i + 1], "attention_mask": mask[i:i + 1]})[0]
                          for i in range(len(ids))])
    assert_close(got, expected / np.linalg.norm(expected, axis=1, keepdims=True), f"bert_{variant}_{pooling}_l2")


def test_bert_bad_input(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(BERT, src, ignore=shutil.ignore_patterns("mlm", "reference"))
    edit_json(src / "config.json", lambda j: j.update(num_hidden_layers=3))
    p = run("export", "bert", src, "-o", tmp_path / "out" / "b.onnx", check=False)
    assert p.returncode == 1 and "num_hidden_layers is 3" in p.stderr, p.stderr
    edit_json(src / "config.json", lambda j: j.update(num_hidden_layers=2, hidden_act="relu"))
    p = run("export", "bert", src, "-o", tmp_path / "out" / "b.onnx", check=False)
    assert p.returncode == 1 and "hidden_act 'relu' is not supported" in p.stderr, p.stderr
    edit_json(src / "config.json", lambda j: j.update(hidden_act="gelu"))
    p = run("export", "bert", src, "-o", tmp_path / "out" / "b.onnx", "--seq-len", "49", check=False)
    assert p.returncode == 1 and "--seq-len 49" in p.stderr, p.stderr
    (src / "config.json").unlink()
    p = run("export", "bert", src, "-o", tmp_path / "out" / "b.onnx", check=False)
    assert p.returncode == 1 and "config.json" in p.stderr, p.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())

"""medquant quantize onnx against onnxruntime.quantization.quantize_dynamic.

For every model and option set, both tools quantize the same FP32 file; the
two INT8 files must pass onnx.checker, load in ONNX Runtime, give the same
outputs on the same inputs, hold equal quantized weights, scales and zero
points, and have the same nodes (names, inputs, outputs, attributes).
Max abs output differences go to $MEDQUANT_BUILD_DIR/peer_quantize_onnx.json.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

sys.path.insert(0, str(Path(__file__).parent))
import onnx_models  # noqa: E402
from medquant_cli import session  # noqa: E402
from medquant_cli import medquant as run_medquant  # noqa: E402

RESULTS = {}

# name -> (medquant flags, quantize_dynamic kwargs)
OPTION_SETS = {
    "qint8": ([], {}),
    "quint8": (["--weight-type", "quint8"], {"weight_type": QuantType.QUInt8}),
    "qint8_per_channel": (["--per-channel"], {"per_channel": True}),
    "quint8_per_channel_reduce": (["--weight-type", "quint8", "--per-channel", "--reduce-range"],
                                  {"weight_type": QuantType.QUInt8, "per_channel": True, "reduce_range": True}),
    "qint8_reduce": (["--reduce-range"], {"reduce_range": True}),
    "quint8_reduce": (["--weight-type", "quint8", "--reduce-range"],
                      {"weight_type": QuantType.QUInt8, "reduce_range": True}),
    "conv_matmul_quint8": (["--op-types", "Conv,MatMul", "--weight-type", "quint8"],
                           {"op_types_to_quantize": ["Conv", "MatMul"], "weight_type": QuantType.QUInt8}),
    "conv_matmul_qint8_reduce": (["--op-types", "Conv,MatMul", "--reduce-range"],
                                 {"op_types_to_quantize": ["Conv", "MatMul"], "reduce_range": True}),
    "gather_matmul_transpose": (["--op-types", "Gather,MatMul,Transpose"],
                                {"op_types_to_quantize": ["Gather", "MatMul", "Transpose"]}),
    "gather_quint8_per_channel": (["--op-types", "Gather,MatMul", "--weight-type", "quint8", "--per-channel"],
                                  {"op_types_to_quantize": ["Gather", "MatMul"], "weight_type": QuantType.QUInt8,
                                   "per_channel": True}),
    "any_b": (["--matmul-const-b-only", "false"], {"extra_options": {"MatMulConstBOnly": False}}),
}


def ort_kwargs(kw):
    kw = dict(kw)
    kw.setdefault("op_types_to_quantize", ["MatMul"])  # medquant's default (docs/onnx.md)
    return kw


def node_key(n):
    attrs = tuple(sorted((a.name, repr(helper.get_attribute_value(a))) for a in n.attribute))
    return (n.op_type, n.domain or "", n.name, tuple(n.input), tuple(n.output), attrs)


def compare_models(ours_path, ref_path):
    ours, ref = onnx.load(str(ours_path)), onnx.load(str(ref_path))
    onnx.checker.check_model(ours, full_check=True)
    onnx.checker.check_model(ref, full_check=True)
    # Same initializers, bit for bit (weights, scales, zero points).
    oi = {t.name: t for t in ours.graph.initializer}
    ri = {t.name: t for t in ref.graph.initializer}
    assert sorted(oi) == sorted(ri)
    for name, rt in ri.items():
        ot = oi[name]
        assert ot.data_type == rt.data_type, name
        a, b = numpy_helper.to_array(ot), numpy_helper.to_array(rt)
        assert a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), f"{name}: {np.abs(a.astype(np.float64) - b).max()}"
    # Same nodes (order may differ: both are topologically sorted).
    assert sorted(map(node_key, ours.graph.node)) == sorted(map(node_key, ref.graph.node))
    assert [i.name for i in ours.graph.input] == [i.name for i in ref.graph.input]
    assert [o.name for o in ours.graph.output] == [o.name for o in ref.graph.output]
    opsets = lambda m: {(o.domain or "ai.onnx"): o.version for o in m.opset_import}  # noqa: E731
    assert opsets(ours) == opsets(ref)


def compare_outputs(ours_path, ref_path, model, key):
    so, sr = session(ours_path), session(ref_path)
    worst = 0.0
    for seed in range(3):
        feed = onnx_models.random_inputs(model, seed)
        for a, b in zip(so.run(None, feed), sr.run(None, feed)):
            assert a.shape == b.shape
            diff = float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0
            worst = max(worst, diff)
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    RESULTS[key] = worst
    return worst


# Which option sets apply to which models (each pair is a test).
CASES = [(m, o) for m in onnx_models.ALL for o in OPTION_SETS
         if not (o.startswith("conv") and m not in ("conv", "small_vit"))
         and not (o.startswith("gather") and m not in ("embedding", "attention_block", "small_vit"))
         and not (o == "any_b" and m not in ("attention_block", "shared_initializers"))]


@pytest.mark.parametrize("model_name,option_set", CASES)
def test_matches_quantize_dynamic(tmp_path, model_name, option_set):
    model = onnx_models.ALL[model_name]()
    fp32 = tmp_path / "model.onnx"
    onnx.save(model, str(fp32))
    flags, kwargs = OPTION_SETS[option_set]
    ref = tmp_path / "ort.onnx"
    quantize_dynamic(str(fp32), str(ref), **ort_kwargs(kwargs))
    ours = tmp_path / "medquant.onnx"
    run_medquant("quantize", "onnx", fp32, "-o", ours, *flags)
    compare_models(ours, ref)
    compare_outputs(ours, ref, model, f"{model_name}/{option_set}")


@pytest.mark.parametrize("flags", [[], ["--per-channel"], ["--weight-type", "quint8"]])
def test_ort_fusions_fire(tmp_path, flags):
    """ONNX Runtime's load-time fusions turn every MatMulInteger chain medquant
    wrote into one com.microsoft node (DynamicQuantizeMatMul or
    MatMulIntegerToFloat), as they do for quantize_dynamic's own output."""
    model = onnx_models.ALL["small_vit"]()
    fp32, ours = tmp_path / "model.onnx", tmp_path / "medquant.onnx"
    onnx.save(model, str(fp32))
    run_medquant("quantize", "onnx", fp32, "-o", ours, *flags)
    written = sum(n.op_type == "MatMulInteger" for n in onnx.load(str(ours)).graph.node)
    assert written > 0
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(ours), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    fused = sum(op in ("DynamicQuantizeMatMul", "MatMulIntegerToFloat") for op in ops)
    assert "MatMulInteger" not in ops
    assert fused == written


CLIP = Path(os.environ.get("MEDQUANT_FIXTURES", Path(__file__).resolve().parents[1] / "fixtures")) / "tiny-biomedclip"

BIOMEDCLIP_OPTIONS = ["qint8", "quint8_per_channel_reduce", "qint8_per_channel", "conv_matmul_quint8",
                      "gather_matmul_transpose"]


@pytest.fixture(scope="module")
def biomedclip_export(tmp_path_factory):
    if not (CLIP / "open_clip_config.json").exists():
        pytest.skip("tiny-biomedclip fixture not present")
    d = tmp_path_factory.mktemp("biomedclip")
    run_medquant("export", "biomedclip", CLIP, "-o", d)
    return d


@pytest.mark.parametrize("tower", ["vision", "text"])
@pytest.mark.parametrize("option_set", BIOMEDCLIP_OPTIONS)
def test_biomedclip_export_matches_quantize_dynamic(biomedclip_export, tmp_path, tower, option_set):
    """The team's own export of the tiny BiomedCLIP fixture, through both quantizers."""
    fp32 = biomedclip_export / f"biomedclip_{tower}.onnx"
    model = onnx.load(str(fp32))
    flags, kwargs = OPTION_SETS[option_set]
    ref, ours = tmp_path / "ort.onnx", tmp_path / "medquant.onnx"
    quantize_dynamic(str(fp32), str(ref), **ort_kwargs(kwargs))
    run_medquant("quantize", "onnx", fp32, "-o", ours, "--no-preprocess", *flags)
    compare_models(ours, ref)
    compare_outputs(ours, ref, model, f"biomedclip_{tower}/{option_set}")


def test_exclude_and_include(tmp_path):
    model = onnx_models.attention_block()
    fp32 = tmp_path / "model.onnx"
    onnx.save(model, str(fp32))
    for flags, kw in [
        (["--exclude", "blocks.0.attn.q", "blocks.0.mlp.fc2"], {"nodes_to_exclude": ["blocks.0.attn.q", "blocks.0.mlp.fc2"]}),
        (["--include", "blocks.0.attn.v", "blocks.0.attn.proj"], {"nodes_to_quantize": ["blocks.0.attn.v", "blocks.0.attn.proj"]}),
    ]:
        ref, ours = tmp_path / "ort.onnx", tmp_path / "medquant.onnx"
        quantize_dynamic(str(fp32), str(ref), **ort_kwargs(kw))
        run_medquant("quantize", "onnx", fp32, "-o", ours, *flags)
        compare_models(ours, ref)
        compare_outputs(ours, ref, model, f"attention_block/{flags[0]}")


def test_preprocessing_matches_quant_pre_process(tmp_path):
    """Weights behind Constant / Identity / Transpose: medquant's pre-processing
    makes the same decisions as quant_pre_process followed by quantize_dynamic."""
    model = onnx_models.constant_weights()
    fp32, pre = tmp_path / "model.onnx", tmp_path / "pre.onnx"
    onnx.save(model, str(fp32))
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    ref, ours = tmp_path / "ort.onnx", tmp_path / "medquant.onnx"
    quantize_dynamic(str(pre), str(ref), op_types_to_quantize=["MatMul"])
    run_medquant("quantize", "onnx", fp32, "-o", ours)
    r = onnx.load(str(ref))
    o = onnx.load(str(ours))
    assert sum(n.op_type == "MatMulInteger" for n in r.graph.node) == 2
    assert sum(n.op_type == "MatMulInteger" for n in o.graph.node) == 2
    for t in ("W1_quantized", "W1_scale", "W2_quantized", "W2_scale"):
        a = numpy_helper.to_array(next(i for i in o.graph.initializer if i.name == t))
        b = numpy_helper.to_array(next(i for i in r.graph.initializer if i.name == t))
        assert a.tobytes() == b.tobytes(), t
    compare_outputs(ours, ref, model, "constant_weights/preprocess")
    # Without pre-processing neither MatMul has a constant B, as in plain quantize_dynamic.
    plain = tmp_path / "plain.onnx"
    run_medquant("quantize", "onnx", fp32, "-o", plain, "--no-preprocess")
    assert not any(n.op_type == "MatMulInteger" for n in onnx.load(str(plain)).graph.node)


def test_external_data_in_and_out(tmp_path):
    model = onnx_models.matmul_3d_gelu()
    src = tmp_path / "ext.onnx"
    onnx.save(model, str(src), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.onnx.weights", size_threshold=0)
    ours = tmp_path / "q.onnx"
    run_medquant("quantize", "onnx", src, "-o", ours, "--external-data")
    assert (tmp_path / "q.onnx.data").exists()
    m = onnx.load(str(ours), load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
    onnx.checker.check_model(str(ours), full_check=True)
    ref = tmp_path / "ort.onnx"
    quantize_dynamic(str(src), str(ref), op_types_to_quantize=["MatMul"])
    compare_models(ours, ref)
    compare_outputs(ours, ref, model, "matmul_3d_gelu/external_data")


def test_inspect_json(tmp_path):
    model = onnx_models.attention_block()
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    info = json.loads(run_medquant("inspect", path, "--json").stdout)
    assert info["opsets"] == {"ai.onnx": 17}
    assert info["nodes"] == len(model.graph.node)
    hist = {}
    for n in model.graph.node:
        hist[n.op_type] = hist.get(n.op_type, 0) + 1
    assert info["ops"] == hist
    assert [i["name"] for i in info["inputs"]] == ["x"]
    assert info["inputs"][0]["shape"] == "[1, 10, 32]"
    total = sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
    assert sum(v["bytes"] for v in info["initializers"].values()) == total


# ---- bad input: a clear error naming the file, and no output written ----

def _expect_error(tmp_path, src, *needles):
    out = tmp_path / "out.onnx"
    p = run_medquant("quantize", "onnx", src, "-o", out, check=False)
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith("error: "), p.stderr
    for needle in needles:
        assert needle in p.stderr, p.stderr
    assert not out.exists()
    assert not [f for f in os.listdir(tmp_path) if ".tmp." in f]
    return p.stderr


def test_not_an_onnx_file(tmp_path):
    src = tmp_path / "notes.onnx"
    src.write_text("this is not a model\n" * 10)
    _expect_error(tmp_path, src, str(src), "not an ONNX model")


def test_truncated_protobuf(tmp_path):
    data = onnx_models.attention_block().SerializeToString()
    src = tmp_path / "cut.onnx"
    src.write_bytes(data[: len(data) // 2])
    _expect_error(tmp_path, src, str(src), "not an ONNX model")


def test_missing_external_data(tmp_path):
    src = tmp_path / "ext.onnx"
    onnx.save(onnx_models.matmul_2d(), str(src), save_as_external_data=True, location="w.bin", size_threshold=0)
    (tmp_path / "w.bin").unlink()
    _expect_error(tmp_path, src, str(src), "w.bin", "missing")


def test_unsupported_opset(tmp_path):
    m = onnx_models.matmul_2d()
    m.opset_import[0].version = 18
    src = tmp_path / "op18.onnx"
    onnx.save(m, str(src))
    _expect_error(tmp_path, src, str(src), "opset 18")


def test_graph_failing_the_checker(tmp_path):
    m = onnx_models.matmul_2d()
    m.graph.node[0].input[0] = "undefined_value"
    src = tmp_path / "bad.onnx"
    onnx.save(m, str(src))
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(m)
    _expect_error(tmp_path, src, str(src), "ONNX checker", "undefined_value")


def test_record_results():
    """Writes the max abs output differences seen above (for the report)."""
    out = os.environ.get("MEDQUANT_BUILD_DIR")
    if out and RESULTS:
        Path(out, "peer_quantize_onnx.json").write_text(json.dumps(RESULTS, indent=1, sort_keys=True))

"""medquant quantize onnx --static against onnxruntime.quantization.quantize_static (QDQ).

Both tools quantize the same FP32 file with the same calibration inputs (.npy
files for medquant, a CalibrationDataReader over the same arrays for ORT):

- graphs of elementwise ops (Add, Mul, Softmax): float results are exact in
  both runtimes, so scales and zero points must be bit-identical for every
  calibration method and option;
- MatMul/Gemm/Conv graphs, an attention block, a small ViT and the tiny
  BiomedCLIP export: same nodes (names, inputs, outputs, attributes), same
  initializer names and types, quantized weights bit-identical; activation
  scales may differ by float rounding (medquant calibrates on its own
  executor), reported as the max relative difference and bounded.

Both QDQ files pass onnx.checker and run in ONNX Runtime (CPU EP) with outputs
close to each other; the cosine to FP32 of both is reported; medquant's own
executor runs medquant's file and matches ORT on it. Figures go to
$MEDQUANT_BUILD_DIR/peer_quantize_static.json.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)

sys.path.insert(0, str(Path(__file__).parent))
import onnx_models  # noqa: E402
from medquant_cli import BIN, session  # noqa: E402
from medquant_cli import medquant as run_medquant  # noqa: E402

RESULTS = {}

# medquant's default op list (docs/onnx.md): ORT's minus the ops with QDQ rules medquant lacks.
DEFAULT_OPS = ["ArgMax", "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Conv", "CumSum",
               "EmbedLayerNormalization", "Flatten", "Gather", "GatherElements", "Gemm", "GlobalAveragePool",
               "InstanceNormalization", "LayerNormalization", "LeakyRelu", "MatMul", "MaxPool", "Mul", "Relu",
               "Reshape", "Sigmoid", "Slice", "Softmax", "Split", "Squeeze", "TopK", "Transpose", "Unsqueeze",
               "Where"]
METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
           "entropy": CalibrationMethod.Entropy}

# name -> (medquant flags, quantize_static kwargs)
OPTION_SETS = {
    "default": ([], {}),
    "per_channel": (["--per-channel"], {"per_channel": True}),
    "quint8_act": (["--activation-type", "quint8"], {"activation_type": QuantType.QUInt8}),
    "quint8_both_reduce": (["--activation-type", "quint8", "--weight-type", "quint8", "--reduce-range"],
                           {"activation_type": QuantType.QUInt8, "weight_type": QuantType.QUInt8,
                            "reduce_range": True}),
    "symmetric_act_per_channel": (["--symmetric-activation", "--per-channel"],
                                  {"per_channel": True, "extra_options": {"ActivationSymmetric": True}}),
    "matmul_only": (["--op-types", "MatMul"], {"op_types_to_quantize": ["MatMul"]}),
}


class Reader(CalibrationDataReader):
    def __init__(self, feeds):
        self.it = iter(feeds)

    def get_next(self):
        return next(self.it, None)


def write_calib(model, feeds, folder):
    """.npy files: directly in `folder` for one input, else one subfolder per input."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    folder.mkdir(parents=True, exist_ok=True)
    for k, feed in enumerate(feeds):
        for name, value in feed.items():
            sub = folder if len(inputs) == 1 else folder / name
            sub.mkdir(exist_ok=True)
            np.save(sub / f"sample{k:03d}.npy", value)
    return folder


def both(tmp_path, model, feeds, method, flags, kwargs, no_preprocess=True):
    fp32 = tmp_path / "model.onnx"
    onnx.save(model, str(fp32))
    calib = write_calib(model, feeds, tmp_path / "calib")
    kw = {"quant_format": QuantFormat.QDQ, "calibrate_method": METHODS[method], "op_types_to_quantize": DEFAULT_OPS}
    kw.update(kwargs)
    ref, ours = tmp_path / "ort.onnx", tmp_path / "medquant.onnx"
    quantize_static(str(fp32), str(ref), Reader(feeds), **kw)
    run_medquant("quantize", "onnx", fp32, "-o", ours, "--static", "--calib", calib, "--calib-method", method,
                 *(["--no-preprocess"] if no_preprocess else []), *flags)
    return fp32, ours, ref


def node_key(n):
    attrs = tuple(sorted((a.name, repr(helper.get_attribute_value(a))) for a in n.attribute))
    return (n.op_type, n.domain or "", n.name, tuple(n.input), tuple(n.output), attrs)


def compare_models(ours_path, ref_path, exact):
    """Same graph; returns the max relative difference of float initializers (scales)."""
    ours, ref = onnx.load(str(ours_path)), onnx.load(str(ref_path))
    onnx.checker.check_model(ours, full_check=True)
    onnx.checker.check_model(ref, full_check=True)
    assert sorted(map(node_key, ours.graph.node)) == sorted(map(node_key, ref.graph.node))
    assert [i.name for i in ours.graph.input] == [i.name for i in ref.graph.input]
    assert [o.name for o in ours.graph.output] == [o.name for o in ref.graph.output]
    oi = {t.name: t for t in ours.graph.initializer}
    ri = {t.name: t for t in ref.graph.initializer}
    assert sorted(oi) == sorted(ri)
    worst = 0.0
    for name, rt in ri.items():
        ot = oi[name]
        assert ot.data_type == rt.data_type, name
        a, b = numpy_helper.to_array(ot), numpy_helper.to_array(rt)
        assert a.shape == b.shape, name
        if exact or name.endswith("_quantized") and not name.endswith("bias_quantized") and \
                rt.data_type != TensorProto.INT32:
            # Weights never depend on calibration: always bit-identical.
            assert a.tobytes() == b.tobytes(), f"{name}: {np.abs(a.astype(np.float64) - b).max()}"
        elif rt.data_type == TensorProto.FLOAT:
            rel = float(np.max(np.abs(a.astype(np.float64) - b) / np.maximum(np.abs(b), 1e-30)))
            worst = max(worst, rel)
        else:  # activation zero points and int32 biases: one step where rounding straddles .5
            assert np.abs(a.astype(np.int64) - b.astype(np.int64)).max() <= 1, name
    return worst


def cosine(a, b):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def compare_outputs(fp32, ours, ref, model, key, scale_rel, tmp_path):
    sf, so, sr = session(fp32), session(ours), session(ref)
    feed = onnx_models.random_inputs(model, 123)
    f, o, r = sf.run(None, feed)[0], so.run(None, feed)[0], sr.run(None, feed)[0]
    row = {"scale_max_rel_diff": scale_rel, "cos_medquant_vs_fp32": cosine(o, f), "cos_ort_vs_fp32": cosine(r, f),
           "cos_medquant_vs_ort": cosine(o, r)}
    # Our executor on our QDQ file agrees with ONNX Runtime on it.
    inputs = []
    for name, value in feed.items():
        np.save(tmp_path / f"in_{name}.npy", value)
        inputs += ["-i", f"{name}={tmp_path / f'in_{name}.npy'}"]
    run_medquant("run", ours, *inputs, "-o", tmp_path / "run_out")
    out_name = session(ours).get_outputs()[0].name
    mine = np.load(tmp_path / "run_out" / f"{out_name}.npy")
    # The reference semantics of QDQ (DequantizeLinear, float op, QuantizeLinear):
    # ORT without its integer fusions, as test_runtime_vs_ort does.
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    reference = ort.InferenceSession(str(ours), plain, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    row["cos_medquant_runtime_vs_ort"] = cosine(mine, reference)
    RESULTS[key] = row
    assert row["cos_medquant_vs_ort"] > 0.999, row
    assert row["cos_medquant_runtime_vs_ort"] > 0.999, row
    return row


def elementwise_model():
    """Add / Mul / Softmax / Transpose / Reshape on graph inputs: exact float arithmetic in every runtime."""
    nodes = [
        helper.make_node("Add", ["a", "b"], ["s"], name="add"),
        helper.make_node("Mul", ["s", "c"], ["p"], name="mul"),
        helper.make_node("Softmax", ["p"], ["y"], name="softmax", axis=-1),
        helper.make_node("Add", ["p", "bias"], ["z"], name="add_bias"),
        # Data movement: Q/DQ sharing the input's parameters, down a chain to a graph output.
        helper.make_node("Transpose", ["z"], ["zt"], name="transpose", perm=[1, 0]),
        helper.make_node("Reshape", ["zt", "flat"], ["r"], name="reshape"),
    ]
    bias = numpy_helper.from_array(np.linspace(-2, 3, 16, dtype=np.float32), "bias")
    flat = numpy_helper.from_array(np.array([64], dtype=np.int64), "flat")
    vi = lambda n, s=(4, 16): helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s))  # noqa: E731
    g = helper.make_graph(nodes, "ew", [vi("a"), vi("b"), vi("c")], [vi("y"), vi("z"), vi("r", (64,))],
                          [bias, flat])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def skewed_feeds(model, count, seed=0):
    """Heavy-tailed inputs, so percentile and entropy thresholds cut something."""
    rng = np.random.default_rng(seed)
    feeds = onnx_models.random_inputs(model, seed, count)
    feeds = feeds if isinstance(feeds, list) else [feeds]
    for f in feeds:
        for k, v in f.items():
            if v.dtype == np.float32:
                f[k] = (rng.standard_t(2, size=v.shape) + 0.3).astype(np.float32)
    return feeds


EXACT_CASES = [
    ("minmax", [], {}),
    ("minmax", ["--calib-symmetric", "true"], {"extra_options": {"CalibTensorRangeSymmetric": True}}),
    ("percentile", [], {}),
    ("percentile", ["--percentile", "99.9"], {"extra_options": {"CalibPercentile": 99.9}}),
    ("percentile", ["--calib-symmetric", "false"], {"extra_options": {"CalibTensorRangeSymmetric": False}}),
    ("entropy", [], {}),
    ("minmax", ["--activation-type", "quint8", "--symmetric-activation"],
     {"activation_type": QuantType.QUInt8, "extra_options": {"ActivationSymmetric": True}}),
]


@pytest.mark.parametrize("case", range(len(EXACT_CASES)))
def test_elementwise_bit_identical(tmp_path, case):
    method, flags, kwargs = EXACT_CASES[case]
    model = elementwise_model()
    feeds = skewed_feeds(model, 5)
    fp32, ours, ref = both(tmp_path, model, feeds, method, flags, kwargs)
    compare_models(ours, ref, exact=True)
    so, sr = session(ours), session(ref)
    for a, b in zip(so.run(None, feeds[0]), sr.run(None, feeds[0])):
        np.testing.assert_array_equal(a, b)


def conv_relu_model(seed=9):
    """Conv -> Relu -> Conv -> Clip(0, 6), and a Relu whose input has a second reader
    (ORT folds the first kind into the producer's Q/DQ and keeps the second)."""
    rng = np.random.default_rng(seed)
    w = lambda n, shape: numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), n)  # noqa: E731
    inits = [w("w1", (8, 3, 3, 3)), w("b1", (8,)), w("w2", (8, 8, 3, 3)), w("b2", (8,)),
             numpy_helper.from_array(np.array(0, np.float32), "lo"), numpy_helper.from_array(np.array(6, np.float32), "hi")]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["y"], name="clip"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Add", ["r2", "y"], ["z"], name="add"),
    ]
    vi = lambda n, c: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, c, 8, 8])  # noqa: E731
    g = helper.make_graph(nodes, "conv_relu", [vi("x", 3)], [vi("z", 8)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("option_set", ["default", "per_channel", "symmetric_act_per_channel", "quint8_act"])
def test_removable_activations_match_quantize_static(tmp_path, option_set):
    model = conv_relu_model()
    feeds = onnx_models.random_inputs(model, 0, 6)
    flags, kwargs = OPTION_SETS[option_set]
    fp32, ours, ref = both(tmp_path, model, feeds, "minmax", flags, kwargs)
    rel = compare_models(ours, ref, exact=False)
    assert rel < 1e-5, rel
    compare_outputs(fp32, ours, ref, model, f"conv_relu/minmax/{option_set}", rel, tmp_path)


def split_where_model(seed=10):
    """Split and Where after a quantized producer."""
    rng = np.random.default_rng(seed)
    f32 = lambda a, n: numpy_helper.from_array(np.asarray(a, np.float32), n)  # noqa: E731
    i64 = lambda a, n: numpy_helper.from_array(np.asarray(a, np.int64), n)  # noqa: E731
    inits = [f32(rng.standard_normal((8, 8)) * 0.3, "w"), i64([4, 4], "halves")]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
        helper.make_node("Split", ["m", "halves"], ["s1", "s2"], name="split", axis=1),
        helper.make_node("Where", ["cond", "s1", "s2"], ["sel"], name="where"),
        helper.make_node("Add", ["sel", "s2"], ["y"], name="add"),
    ]
    vi = lambda n, shape, t=TensorProto.FLOAT: helper.make_tensor_value_info(n, t, shape)  # noqa: E731
    g = helper.make_graph(nodes, "split_where", [vi("x", [4, 8]), vi("cond", [4, 4], TensorProto.BOOL)],
                          [vi("y", [4, 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def split_where_feeds(count, seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((4, 8)).astype(np.float32), "cond": rng.random((4, 4)) > 0.5}
            for _ in range(count)]


@pytest.mark.parametrize("option_set", ["default", "quint8_act"])
def test_split_where_match_quantize_static(tmp_path, option_set):
    model = split_where_model()
    flags, kwargs = OPTION_SETS[option_set]
    fp32, ours, ref = both(tmp_path, model, split_where_feeds(5), "minmax", flags, kwargs)
    rel = compare_models(ours, ref, exact=False)
    assert rel < 1e-5, rel
    feed = split_where_feeds(1, 9)[0]
    for a, b in zip(session(ours).run(None, feed), session(ref).run(None, feed)):
        assert cosine(a, b) > 0.999


MODEL_CASES = [(m, meth, o) for m in ["matmul_2d", "matmul_3d_gelu", "gemm", "conv", "attention_block",
                                      "shared_initializers", "small_vit"]
               for meth in METHODS for o in OPTION_SETS
               if meth == "minmax" or o in ("default", "per_channel")]


@pytest.mark.parametrize("model_name,method,option_set", MODEL_CASES)
def test_matches_quantize_static(tmp_path, model_name, method, option_set):
    model = onnx_models.ALL[model_name]()
    feeds = onnx_models.random_inputs(model, 0, 8)
    flags, kwargs = OPTION_SETS[option_set]
    fp32, ours, ref = both(tmp_path, model, feeds, method, flags, kwargs)
    rel = compare_models(ours, ref, exact=False)
    # Scales come from calibrated ranges of activations that medquant's
    # executor computes to float rounding of ORT's (percentile thresholds
    # are histogram edges, which move with them).
    assert rel < (1e-5 if method != "percentile" else 2e-3), rel
    compare_outputs(fp32, ours, ref, model, f"{model_name}/{method}/{option_set}", rel, tmp_path)


FIXTURES = Path(os.environ.get("MEDQUANT_FIXTURES", Path(__file__).resolve().parents[1] / "fixtures"))
IMAGES = FIXTURES / "vision" / "images"


@pytest.fixture(scope="module")
def biomedclip_export(tmp_path_factory):
    if not (FIXTURES / "tiny-biomedclip" / "open_clip_config.json").exists():
        pytest.skip("tiny-biomedclip fixture not present")
    d = tmp_path_factory.mktemp("biomedclip")
    run_medquant("export", "biomedclip", FIXTURES / "tiny-biomedclip", "-o", d)
    return d


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("option_set", ["default", "per_channel"])
def test_biomedclip_vision_matches_quantize_static(biomedclip_export, tmp_path, method, option_set):
    fp32 = biomedclip_export / "biomedclip_vision.onnx"
    model = onnx.load(str(fp32))
    feeds = onnx_models.random_inputs(model, 0, 8)
    flags, kwargs = OPTION_SETS[option_set]
    fp32, ours, ref = both(tmp_path, model, feeds, method, flags, kwargs)
    rel = compare_models(ours, ref, exact=False)
    assert rel < (1e-4 if method != "percentile" else 2e-3), rel
    compare_outputs(fp32, ours, ref, model, f"biomedclip_vision/{method}/{option_set}", rel, tmp_path)


def test_biomedclip_image_calibration(biomedclip_export, tmp_path):
    """--calib with images: preprocessed like classify; the QDQ file runs in ORT close to FP32."""
    images = tmp_path / "images"
    images.mkdir()
    good = [p for p in sorted(IMAGES.iterdir()) if not p.name.startswith("broken") and p.suffix in (".png", ".jpg")]
    assert good
    for p in good[:6]:
        (images / p.name).write_bytes(p.read_bytes())
    fp32 = biomedclip_export / "biomedclip_vision.onnx"
    ours = tmp_path / "vision_qdq.onnx"
    p = subprocess.run([BIN, "quantize", "onnx", fp32, "-o", ours, "--static", "--calib", images],
                       capture_output=True, text=True, check=True)
    onnx.checker.check_model(onnx.load(str(ours)), full_check=True)
    model = onnx.load(str(fp32))
    feed = onnx_models.random_inputs(model, 7)
    f, o = session(fp32).run(None, feed)[0], session(ours).run(None, feed)[0]
    RESULTS["biomedclip_vision/images"] = {"cos_medquant_vs_fp32": cosine(o, f)}
    assert cosine(o, f) > 0.9
    assert "static QDQ" in p.stdout


def test_ort_cpu_fuses_qdq(tmp_path):
    """ORT's CPU EP fuses medquant's QDQ file exactly as it fuses quantize_static's
    (QLinearConv, QLinearMatMul, ...): the same optimized op histogram."""
    model = onnx_models.ALL["small_vit"]()
    fp32, ours, ref = both(tmp_path, model, onnx_models.random_inputs(model, 0, 4), "minmax", [], {})

    def optimized_ops(path):
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(path) + ".opt.onnx"
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return sorted(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)

    ops = optimized_ops(ours)
    assert ops == optimized_ops(ref)
    assert sum(op in ("QLinearMatMul", "MatMulIntegerToFloat", "QLinearConv") for op in ops) > 0


def test_xnnpack_when_available(tmp_path):
    if "XnnpackExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime wheel has no XNNPACK EP (docs/onnx.md)")
    model = onnx_models.ALL["small_vit"]()
    fp32, ours, _ = both(tmp_path, model, onnx_models.random_inputs(model, 0, 4), "minmax",
                         ["--activation-type", "quint8"], {"activation_type": QuantType.QUInt8})
    s = ort.InferenceSession(str(ours), providers=["XnnpackExecutionProvider", "CPUExecutionProvider"])
    s.run(None, onnx_models.random_inputs(model, 1))


# ---- bad input: a clear error, no output file ----

def bad_run(tmp_path, calib, model=None):
    model = model or onnx_models.matmul_2d()
    fp32, out = tmp_path / "model.onnx", tmp_path / "out.onnx"
    onnx.save(model, str(fp32))
    p = run_medquant("quantize", "onnx", fp32, "-o", out, "--static", "--calib", calib, check=False)
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith("error: "), p.stderr
    assert not out.exists()
    assert not any(x.name.startswith("out.onnx") for x in tmp_path.iterdir())
    return p.stderr


def test_empty_calib_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no calibration data" in bad_run(tmp_path, tmp_path / "empty")


def test_npy_wrong_shape(tmp_path):
    d = tmp_path / "calib"
    d.mkdir()
    np.save(d / "a.npy", np.zeros((3, 5), np.float32))
    err = bad_run(tmp_path, d)
    assert "a.npy" in err and "shape" in err


def test_npy_wrong_dtype(tmp_path):
    model = onnx_models.matmul_2d()
    shape = [x.dim_value for x in model.graph.input[0].type.tensor_type.shape.dim]
    d = tmp_path / "calib"
    d.mkdir()
    np.save(d / "a.npy", np.zeros(shape, np.float64))
    err = bad_run(tmp_path, d, model)
    assert "a.npy" in err and "float64" in err


def test_broken_image(tmp_path, biomedclip_export):
    d = tmp_path / "calib"
    d.mkdir()
    (d / "broken.png").write_bytes((IMAGES / "broken_bad_crc.png").read_bytes())
    fp32, out = biomedclip_export / "biomedclip_vision.onnx", tmp_path / "out.onnx"
    p = run_medquant("quantize", "onnx", fp32, "-o", out, "--static", "--calib", d, check=False)
    assert p.returncode == 1 and "broken.png" in p.stderr, p.stderr
    assert not out.exists()


def test_static_needs_calib(tmp_path):
    fp32 = tmp_path / "model.onnx"
    onnx.save(onnx_models.matmul_2d(), str(fp32))
    p = run_medquant("quantize", "onnx", fp32, "-o", tmp_path / "o.onnx", "--static", check=False)
    assert p.returncode == 1 and "--calib" in p.stderr


def teardown_module(module):
    out = Path(os.environ.get("MEDQUANT_BUILD_DIR", ".")) / "peer_quantize_static.json"
    try:
        out.write_text(json.dumps(RESULTS, indent=1, sort_keys=True))
    except OSError:
        pass

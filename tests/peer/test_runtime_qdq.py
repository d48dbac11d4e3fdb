"""medquant's executor on integer convolutions and QDQ (static) models, against
ONNX Runtime (and numpy where ORT has no kernel):
  ConvInteger as a graph output (uint8 x; uint8/int8 weights, constant or
    not; zero points; pads, strides, dilations, groups)     exact vs ORT
    int8 x, per-channel weight zero points (ORT refuses)    exact vs numpy
  dynamic Conv builds (medquant quantize onnx --op-types Conv, ORT's
    quantize_dynamic): ConvInteger -> Cast -> Mul -> Add fused into one op
                                                            within 1e-5 of ORT
  QDQ layers DQ(x_q) x DQ(W_q const) [+ bias] for MatMul and Conv (uint8/int8
    activations, per-tensor/per-channel weights), fused into one integer GEMM
    on x_q (ORT fuses them too: MatMulIntegerToFloat)       within 1e-5 of ORT
                                                            and of --no-fusion
  whole QDQ encoders (ORT's quantize_static and medquant quantize onnx
    --static): Q nodes round, so float sums in another order flip a few
    values by one step and the flips travel; both runtimes' fused and
    unfused paths differ from each other that way. We assert what ORT's own
    two paths give: no further from ORT than its unfused run is.
Relative tolerances are of the output's largest magnitude."""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
import onnx_models  # noqa: E402
from medquant_cli import medquant, run_medquant, run_ort  # noqa: E402

def bench_json(path):
    return json.loads(medquant("bench", path, "--runs", 1, "--warmup", 0, "--json").stdout)


def fusions(path):
    return bench_json(path)["fusions"]


def save(nodes, inputs, outputs, inits, path, opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return m


def assert_close(got, ref, rtol, what):
    scale = max(float(np.abs(ref).max()), 1e-30)
    err = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max())
    assert got.shape == ref.shape and err <= rtol * scale, f"{what}: max error {err:.3g} of {scale:.3g}"


def q8(rng, shape, signed):
    return (rng.integers(-128, 128, size=shape).astype(np.int8) if signed
            else rng.integers(0, 256, size=shape).astype(np.uint8))


# ---------------------------------------------------------------- ConvInteger

def conv_integer_ref(x, xz, w, wz, strides, pads, dilations, group):
    """numpy ConvInteger (NCHW, int64 sums)."""
    x = x.astype(np.int64) - int(xz)
    w = w.astype(np.int64) - np.asarray(wz, np.int64).reshape(-1, 1, 1, 1)
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))  # padding is the zero point: 0 after the shift
    oh = (x.shape[2] - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    ow = (x.shape[3] - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    y = np.zeros((n, m, oh, ow), np.int64)
    mg = m // group
    for g in range(group):
        xs = x[:, g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dilations[0]:i * dilations[0] + (oh - 1) * strides[0] + 1:strides[0],
                           j * dilations[1]:j * dilations[1] + (ow - 1) * strides[1] + 1:strides[1]]
                y[:, g * mg:(g + 1) * mg] += np.einsum("nchw,mc->nmhw", patch, w[g * mg:(g + 1) * mg, :, i, j])
    return y.astype(np.int32)


CONV_CASES = {
    # name: (x shape, M, kernel, strides, pads, dilations, group)
    "patch": ((1, 3, 32, 32), 24, (16, 16), (16, 16), (0, 0, 0, 0), (1, 1), 1),
    "3x3_pad": ((2, 5, 9, 11), 7, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    "strided_dilated": ((1, 4, 13, 10), 6, (3, 2), (2, 3), (2, 0, 1, 1), (2, 1), 1),
    "groups": ((1, 6, 8, 8), 9, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 3),
    "depthwise": ((1, 8, 7, 7), 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 8),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
@pytest.mark.parametrize("wsigned", [False, True], ids=["u8w", "s8w"])
@pytest.mark.parametrize("const_w", [True, False], ids=["packed", "wgraphinput"])
def test_conv_integer_exact(case, wsigned, const_w, tmp_path):
    xs, m, k, strides, pads, dil, group = CONV_CASES[case]
    rng = np.random.default_rng(len(case) + 2 * wsigned + const_w)
    x = q8(rng, xs, False)
    w = q8(rng, (m, xs[1] // group, *k), wsigned)
    xz = np.array(rng.integers(0, 256), np.uint8)
    wz = np.array(rng.integers(-128, 128) if wsigned else rng.integers(0, 256), w.dtype)
    wt = TensorProto.INT8 if wsigned else TensorProto.UINT8
    inits = [numpy_helper.from_array(xz, "xz"), numpy_helper.from_array(wz, "wz")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.UINT8, list(xs))]
    feeds = {"x": x}
    if const_w:
        inits.append(numpy_helper.from_array(w, "w"))
    else:
        inputs.append(helper.make_tensor_value_info("w", wt, list(w.shape)))
        feeds["w"] = w
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], kernel_shape=list(k), strides=list(strides),
                            pads=list(pads), dilations=list(dil), group=group)
    path = tmp_path / "ci.onnx"
    save([node], inputs, [helper.make_tensor_value_info("y", TensorProto.INT32, None)], inits, path)
    ours = run_medquant(path, feeds, tmp_path)[0]
    ref = run_ort(path, feeds)[0]
    assert ours.dtype == np.int32 and np.array_equal(ours, ref)
    assert np.array_equal(ref, conv_integer_ref(x, xz, w, wz, strides, pads, dil, group))


@pytest.mark.parametrize("attrs,xs,ws", [
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (1, 3, 9, 10), (5, 3, 3, 4)),
    ({"auto_pad": "SAME_LOWER"}, (1, 2, 6, 7), (4, 2, 2, 3)),
    ({"pads": [2, 1], "strides": [3], "dilations": [2]}, (2, 4, 23), (6, 4, 3)),   # 1-D
    ({"group": 2, "auto_pad": "VALID"}, (1, 4, 17), (6, 2, 5)),                     # 1-D, groups
], ids=["same_upper", "same_lower", "1d", "1d_groups"])
def test_conv_integer_auto_pad_and_1d(attrs, xs, ws, tmp_path):
    rng = np.random.default_rng(len(xs) + len(attrs))
    x, w = q8(rng, xs, False), q8(rng, ws, False)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(77, np.uint8), "xz"),
             numpy_helper.from_array(np.array(140, np.uint8), "wz")]
    path = tmp_path / "ci.onnx"
    save([helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], **attrs)],
         [helper.make_tensor_value_info("x", TensorProto.UINT8, list(xs))],
         [helper.make_tensor_value_info("y", TensorProto.INT32, None)], inits, path)
    ours = run_medquant(path, {"x": x}, tmp_path)[0]
    assert np.array_equal(ours, run_ort(path, {"x": x})[0])


@pytest.mark.parametrize("case", ["3x3_pad", "groups"])
def test_conv_integer_int8_input_and_channel_zero_points(case, tmp_path):
    """What ORT's ConvInteger refuses (int8 x, a zero point per output channel): numpy is the reference."""
    xs, m, k, strides, pads, dil, group = CONV_CASES[case]
    rng = np.random.default_rng(7)
    x = q8(rng, xs, True)
    w = q8(rng, (m, xs[1] // group, *k), True)
    xz = np.array(-3, np.int8)
    wz = rng.integers(-128, 128, size=(m,)).astype(np.int8)
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], kernel_shape=list(k), strides=list(strides),
                            pads=list(pads), dilations=list(dil), group=group)
    path = tmp_path / "ci8.onnx"
    save([node], [helper.make_tensor_value_info("x", TensorProto.INT8, list(xs))],
         [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
         [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (xz, "xz"), (wz, "wz"))], path)
    ours = run_medquant(path, {"x": x}, tmp_path)[0]
    assert np.array_equal(ours, conv_integer_ref(x, xz, w, wz, strides, pads, dil, group))


@pytest.mark.parametrize("quantizer", ["medquant_quint8", "medquant_qint8", "ort_quint8"])
def test_dynamic_conv_build_fuses_and_matches_ort(quantizer, tmp_path):
    """ConvInteger -> Cast -> Mul(scale) -> Add(bias reshaped to [1, M, 1, 1]) runs as one op."""
    fp32, q = tmp_path / "fp32.onnx", tmp_path / "q.onnx"
    model = onnx_models.conv()
    onnx.save(model, str(fp32))
    if quantizer.startswith("medquant"):
        medquant("quantize", "onnx", fp32, "-o", q, "--op-types", "Conv", "--weight-type", quantizer.split("_")[1])
    else:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(str(fp32), str(q), weight_type=QuantType.QUInt8, op_types_to_quantize=["Conv"])
    assert [n.op_type for n in onnx.load(str(q)).graph.node].count("ConvInteger") == 2
    feeds = onnx_models.random_inputs(model, seed=3)
    ours = run_medquant(q, feeds, tmp_path)[0]
    plain = run_medquant(q, feeds, tmp_path, fuse=False)[0]
    # dequantize x2, bias x1 (the 1x1 conv has none), per ConvInteger
    assert fusions(q) >= 3
    # The second conv's input comes from DynamicQuantizeLinear on the first's
    # output: same integers, same float epilogue (a product, then the bias).
    assert_close(ours, run_ort(q, feeds, optimize=False)[0], 1e-5, "vs ORT")
    assert_close(ours, run_ort(q, feeds)[0], 1e-5, "vs ORT optimized")
    assert_close(ours, plain, 1e-5, "fused vs not")


# ---------------------------------------------------------------- QDQ layers

def qdq_layer(path, conv, act_signed, per_channel, w_signed, bias, rng):
    """x -> QuantizeLinear -> DequantizeLinear -> MatMul / Conv with DequantizeLinear(W_q) [+ bias] -> y
    (a per-channel Conv's bias is DequantizeLinear(int32), else float)."""
    at = TensorProto.INT8 if act_signed else TensorProto.UINT8
    wt = TensorProto.INT8 if w_signed else TensorProto.UINT8
    if conv:
        xs, wshape, cols, axis = [1, 3, 16, 16], (10, 3, 4, 4), 10, 0
    else:
        xs, wshape, cols, axis = [2, 7, 37], (37, 19), 19, 1
    wq = q8(rng, wshape, w_signed)
    ns = cols if per_channel else 1
    ws = (rng.uniform(0.5, 2.0, size=ns) * 0.01).astype(np.float32)
    wz = (np.zeros(ns, np.int8) if w_signed else rng.integers(100, 156, size=ns).astype(np.uint8))
    if not per_channel:
        ws, wz = ws.reshape(()), wz.reshape(())
    xz = np.array(-4 if act_signed else 131, np.int8 if act_signed else np.uint8)
    inits = [numpy_helper.from_array(np.array(0.021, np.float32), "xs"), numpy_helper.from_array(xz, "xz"),
             numpy_helper.from_array(wq, "wq"), numpy_helper.from_array(ws, "ws"), numpy_helper.from_array(wz, "wz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=axis)]
    out = "y0" if bias and not conv else "y"
    if conv:
        ins = ["xd", "wd"]
        if bias and per_channel:
            # as quantize_static writes it: int32 with scale x_s * w_s, per channel
            bq = rng.integers(-20000, 20000, size=cols).astype(np.int32)
            inits += [numpy_helper.from_array(bq, "bq"),
                      numpy_helper.from_array((np.float32(0.021) * ws.astype(np.float32)).astype(np.float32), "bs")]
            nodes.append(helper.make_node("DequantizeLinear", ["bq", "bs"], ["b"], axis=0))
            ins.append("b")
        elif bias:
            inits.append(numpy_helper.from_array((rng.standard_normal(cols) * 0.1).astype(np.float32), "b"))
            ins.append("b")
        nodes.append(helper.make_node("Conv", ins, ["y"], kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]))
    else:
        nodes.append(helper.make_node("MatMul", ["xd", "wd"], [out]))
        if bias:
            inits.append(numpy_helper.from_array((rng.standard_normal(cols) * 0.1).astype(np.float32), "b"))
            nodes.append(helper.make_node("Add", ["y0", "b"], ["y"]))
    save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
         [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits, path)
    return {"x": (rng.standard_normal(xs) * 1.5).astype(np.float32)}


@pytest.mark.parametrize("conv", [False, True], ids=["matmul", "conv"])
@pytest.mark.parametrize("act_signed", [False, True], ids=["u8act", "s8act"])
@pytest.mark.parametrize("weights", ["s8", "s8_per_channel", "u8_per_channel"])
def test_qdq_layer_fuses_and_matches_ort(conv, act_signed, weights, tmp_path):
    rng = np.random.default_rng(11 + conv + 2 * act_signed + 4 * len(weights))
    path = tmp_path / "qdq.onnx"
    feeds = qdq_layer(path, conv, act_signed, weights.endswith("per_channel"), weights.startswith("s8"), True, rng)
    ours = run_medquant(path, feeds, tmp_path)[0]
    plain = run_medquant(path, feeds, tmp_path, fuse=False)[0]
    assert fusions(path) == (1 if conv else 2)  # the QDQ pair (+ the bias Add for MatMul)
    if conv:  # left beside the Q: the integer convolution with its bias (the DQs of W, x and bias gone)
        assert bench_json(path)["steps"] == 2
    assert_close(ours, run_ort(path, feeds)[0], 1e-5, "vs ORT (fused)")
    assert_close(ours, run_ort(path, feeds, optimize=False)[0], 1e-5, "vs ORT (DQ + float op)")
    assert_close(ours, plain, 1e-5, "fused vs not")


# ---------------------------------------------------------------- QDQ encoders

def _no_further_than_ort(ours, plain, fused_ort, plain_ort, what):
    ort_gap = float(np.abs(fused_ort - plain_ort).max())
    scale = float(np.abs(fused_ort).max())
    for got, label in ((ours, "fused"), (plain, "not fused")):
        err = float(np.abs(got - fused_ort).max())
        # one output quantization step of slack for a run where ORT's two paths happen to agree
        assert err <= max(ort_gap, scale / 127.0) * 1.5, f"{what} ({label}): {err:.3g} vs ORT's own gap {ort_gap:.3g}"


@pytest.mark.parametrize("build", ["ort_u8", "ort_s8_per_channel", "medquant_default", "medquant_matmul"])
def test_qdq_encoder_vs_ort(build, tmp_path):
    model = onnx_models.vit(seed=21, image=32, patch=8, dim=64, depth=2, heads=4, mlp=128)
    fp32, qdq = tmp_path / "fp32.onnx", tmp_path / "qdq.onnx"
    onnx.save(model, str(fp32))
    calib = onnx_models.random_inputs(model, seed=5, count=6)
    if build.startswith("ort"):
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.items = iter(calib)

            def get_next(self):
                return next(self.items, None)

        signed = build == "ort_s8_per_channel"
        quantize_static(str(fp32), str(qdq), Reader(), quant_format=QuantFormat.QDQ, per_channel=signed,
                        activation_type=QuantType.QInt8 if signed else QuantType.QUInt8, weight_type=QuantType.QInt8)
    else:
        cdir = tmp_path / "calib"
        cdir.mkdir()
        for i, f in enumerate(calib):
            np.save(cdir / f"{i}.npy", f["pixel_values"])
        extra = ["--op-types", "MatMul"] if build == "medquant_matmul" else []
        medquant("quantize", "onnx", fp32, "-o", qdq, "--static", "--calib", cdir, *extra)
    feeds = onnx_models.random_inputs(model, seed=1)
    ours = run_medquant(qdq, feeds, tmp_path)[0]
    plain = run_medquant(qdq, feeds, tmp_path, fuse=False)[0]
    assert fusions(qdq) >= 8  # q, k, v, proj, fc1, fc2 per block at least
    _no_further_than_ort(ours, plain, run_ort(qdq, feeds)[0], run_ort(qdq, feeds, optimize=False)[0], build)


@pytest.mark.parametrize("signed", [False, True], ids=["u8", "s8"])
@pytest.mark.parametrize("same_params", [True, False], ids=["same", "rescaled"])
def test_qdq_data_movement_runs_quantized(signed, same_params, tmp_path):
    """DQ -> Transpose -> Q -> DQ -> Reshape -> Q -> DQ (how QDQ models wrap data
    movement): with the same parameters the moves run on the quantized values,
    exactly (Q(DQ(q)) == q); a Q with another scale must stay."""
    qt, zt = (np.int8, TensorProto.INT8) if signed else (np.uint8, TensorProto.UINT8)
    s2 = np.float32(0.05) if same_params else np.float32(0.07)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(3, qt), "z"),
             numpy_helper.from_array(np.array(s2, np.float32), "s2"),
             numpy_helper.from_array(np.array([4, 30], np.int64), "shape")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q0"]),
             helper.make_node("DequantizeLinear", ["q0", "s", "z"], ["d0"]),
             helper.make_node("Transpose", ["d0"], ["t"], perm=[0, 2, 1]),
             helper.make_node("QuantizeLinear", ["t", "s", "z"], ["q1"]),
             helper.make_node("DequantizeLinear", ["q1", "s", "z"], ["d1"]),
             helper.make_node("Reshape", ["d1", "shape"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "s2", "z"], ["q2"]),
             helper.make_node("DequantizeLinear", ["q2", "s2", "z"], ["y"])]
    path = tmp_path / "moves.onnx"
    save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 12])],
         [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 30]), helper.make_tensor_value_info("q2", zt, [4, 30])],
         inits, path)
    feeds = {"x": (np.random.default_rng(4).standard_normal((2, 5, 12)) * 4).astype(np.float32)}
    ours = run_medquant(path, feeds, tmp_path)
    plain = run_medquant(path, feeds, tmp_path, fuse=False)
    for a, b, c in zip(ours, run_ort(path, feeds), plain):
        assert a.dtype == b.dtype and np.array_equal(a, b) and np.array_equal(a, c)
    # same: both moves (Q, Transpose, Reshape, DQ left); rescaled: the Transpose, and the
    # last Q -> DQ pair run as one pass (Q, Transpose, DQ, Reshape, QuantizeDequantize)
    assert fusions(path) == 2 and bench_json(path)["steps"] == (4 if same_params else 5)


@pytest.mark.parametrize("shapes", [((2, 3, 5, 37), (2, 3, 37, 6)), ((2, 3, 5, 8), (8, 6)), ((1, 4, 9, 64), (1, 4, 64, 9))],
                         ids=["batched", "broadcast_b", "scores"])
@pytest.mark.parametrize("signed", [False, True], ids=["u8", "s8"])
def test_qdq_activation_products(shapes, signed, tmp_path):
    """MatMul(DQ(a_q), DQ(b_q)) with both activations (attention products): one
    integer GEMM per batch (B packed when run), within 1e-5 of ORT and of
    --no-fusion; the integer product itself (MatMulInteger, B not constant) exact."""
    qt, zt = (np.int8, TensorProto.INT8) if signed else (np.uint8, TensorProto.UINT8)
    sa, sb = shapes
    inits = [numpy_helper.from_array(np.array(0.03, np.float32), "sa"), numpy_helper.from_array(np.array(-5 if signed else 120, qt), "za"),
             numpy_helper.from_array(np.array(0.02, np.float32), "sb"), numpy_helper.from_array(np.array(7 if signed else 131, qt), "zb")]
    nodes = [helper.make_node("QuantizeLinear", ["a", "sa", "za"], ["aq"]),
             helper.make_node("DequantizeLinear", ["aq", "sa", "za"], ["ad"]),
             helper.make_node("QuantizeLinear", ["b", "sb", "zb"], ["bq"]),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["bd"]),
             helper.make_node("MatMul", ["ad", "bd"], ["y"]),
             helper.make_node("MatMulInteger", ["aq", "bq", "za", "zb"], ["acc"])]
    path = tmp_path / "products.onnx"
    save(nodes, [helper.make_tensor_value_info("a", TensorProto.FLOAT, list(sa)),
                 helper.make_tensor_value_info("b", TensorProto.FLOAT, list(sb))],
         [helper.make_tensor_value_info("y", TensorProto.FLOAT, None), helper.make_tensor_value_info("acc", TensorProto.INT32, None)],
         inits, path)
    rng = np.random.default_rng(len(sa) + signed)
    feeds = {"a": (rng.standard_normal(sa) * 2).astype(np.float32), "b": (rng.standard_normal(sb) * 2).astype(np.float32)}
    ours = run_medquant(path, feeds, tmp_path)
    plain = run_medquant(path, feeds, tmp_path, fuse=False)
    ref = run_ort(path, feeds)
    assert fusions(path) == 1
    assert_close(ours[0], ref[0], 1e-5, "vs ORT")
    assert_close(ours[0], run_ort(path, feeds, optimize=False)[0], 1e-5, "vs ORT (float MatMul)")
    assert_close(ours[0], plain[0], 1e-5, "fused vs not")
    assert ours[1].dtype == np.int32 and np.array_equal(ours[1], ref[1]) and np.array_equal(plain[1], ref[1])
    # 2 threads take one batch each, 1 thread runs them in turn: the same integers and epilogue
    for a, b in zip(ours, run_medquant(path, feeds, tmp_path, threads=1)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("signed", [False, True], ids=["u8", "s8"])
def test_quantize_dequantize_pairs_run_as_one(signed, tmp_path):
    """Q -> DQ with the same parameters runs as one pass (the quantized values
    written only when something else reads them); a DQ with another scale stays.
    Exactly ORT's and --no-fusion's values."""
    qt, zt = (np.int8, TensorProto.INT8) if signed else (np.uint8, TensorProto.UINT8)
    inits = [numpy_helper.from_array(np.array(s, np.float32), n) for n, s in (("s1", 0.05), ("s2", 0.031), ("s3", 0.04))]
    inits += [numpy_helper.from_array(np.array(z, qt), n) for n, z in (("z1", 3), ("z2", -7 if signed else 200))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s1", "z1"], ["q1"]),
             helper.make_node("DequantizeLinear", ["q1", "s1", "z1"], ["y1"]),          # pair, q1 unread
             helper.make_node("QuantizeLinear", ["x", "s2", "z2"], ["q2"]),
             helper.make_node("DequantizeLinear", ["q2", "s2", "z2"], ["y2"]),          # pair, q2 a graph output
             helper.make_node("QuantizeLinear", ["x", "s3", "z1"], ["q3"]),
             helper.make_node("DequantizeLinear", ["q3", "s1", "z1"], ["y3"])]          # another scale: stays
    path = tmp_path / "pairs.onnx"
    save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 1000])],
         [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3, 1000]) for n in ("y1", "y2", "y3")] +
         [helper.make_tensor_value_info("q2", zt, [3, 1000])], inits, path)
    x = (np.random.default_rng(9).standard_normal((3, 1000)) * 6).astype(np.float32)
    x[0, :4] = [np.nan, np.inf, -np.inf, 0.0]
    feeds = {"x": x}
    ours = run_medquant(path, feeds, tmp_path)
    plain = run_medquant(path, feeds, tmp_path, fuse=False)
    for a, b, c in zip(ours, run_ort(path, feeds), plain):
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True) and np.array_equal(a, c, equal_nan=True)
    assert fusions(path) == 2


@pytest.mark.parametrize("b_const,per_column", [(True, False), (True, True), (False, False)],
                         ids=["packed", "packed_per_column", "batched"])
@pytest.mark.parametrize("types", ["u8u8u8", "u8s8u8", "s8s8s8"])  # the type sets ORT implements
def test_qlinear_matmul_exact(b_const, per_column, types, tmp_path):
    """QLinearMatMul (ORT's QOperator format) through the integer GEMM, then
    requantized: exactly ORT's integers."""
    ta, tb, ty = [(np.int8, TensorProto.INT8) if types[i:i + 2] == "s8" else (np.uint8, TensorProto.UINT8)
                  for i in (0, 2, 4)]
    rng = np.random.default_rng(len(types) + 2 * b_const + per_column)
    a_shape, b_shape = ((2, 9, 70), (70, 33)) if b_const else ((2, 3, 9, 40), (2, 3, 40, 13))
    a = q8(rng, a_shape, ta[0] == np.int8)
    b = q8(rng, b_shape, tb[0] == np.int8)
    n = b_shape[-1] if per_column else 1
    bs = (rng.uniform(0.5, 2.0, size=n) * 0.01).astype(np.float32).reshape((n,) if per_column else ())
    bz = q8(rng, (n,) if per_column else (), tb[0] == np.int8)
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "as"), numpy_helper.from_array(np.array(9, ta[0]), "az"),
             numpy_helper.from_array(bs, "bs"), numpy_helper.from_array(bz, "bz"),
             numpy_helper.from_array(np.array(0.35, np.float32), "ys"), numpy_helper.from_array(np.array(-3 if ty[0] == np.int8 else 130, ty[0]), "yz")]
    inputs = [helper.make_tensor_value_info("a", ta[1], list(a_shape))]
    feeds = {"a": a}
    if b_const:
        inits.append(numpy_helper.from_array(b, "b"))
    else:
        inputs.append(helper.make_tensor_value_info("b", tb[1], list(b_shape)))
        feeds["b"] = b
    path = tmp_path / "qlmm.onnx"
    save([helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])], inputs,
         [helper.make_tensor_value_info("y", ty[1], None)], inits, path)
    ours = run_medquant(path, feeds, tmp_path)[0]
    ref = run_ort(path, feeds)[0]
    assert ours.dtype == ref.dtype and np.array_equal(ours, ref)
    assert np.array_equal(ours, run_medquant(path, feeds, tmp_path, threads=1)[0])

"""medquant's ONNX executor (`medquant run`) against ONNX Runtime.

ViT- and BERT-shaped encoders built with onnx.helper (tests/peer/onnx_models.py
plus a BERT text tower here, at opset 17 and, with LayerNorm spelled out as
torch writes it below opset 17, at opset 13), run by both on the same inputs:
  FP32                      within 1e-4 relative (atol 1e-5 of the output's range)
  INT8 (medquant quantize onnx, dynamic; and ORT's own quantize_dynamic file)
                            integer outputs exact (same integer inputs); whole
                            models within 1e-5 of ORT with graph optimisations
                            off, or no further from it than ORT's own fused
                            kernels are (rounding flips of dynamic quantization)
  QDQ (ORT quantize_static) within one quantization step
Broken models must fail with "error: ..." naming the problem, never a signal.
"""

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

# ---------------------------------------------------------------- a BERT tower

def _ln(w, x, out, p, dim, decomposed):
    if not decomposed:
        return [helper.make_node("LayerNormalization", [x, w(p + ".weight", (dim,), 0.1, 1.0), w(p + ".bias", (dim,), 0.02)],
                                 [out], name=p, axis=-1, epsilon=1e-12)]
    axes = w.const(p + ".axes", np.array([-1], dtype=np.int64))
    return [
        helper.make_node("ReduceMean", [x], [p + ".mean"], axes=[-1], keepdims=1),
        helper.make_node("Sub", [x, p + ".mean"], [p + ".d"]),
        helper.make_node("Pow", [p + ".d", w.const(p + ".two", np.float32(2.0))], [p + ".d2"]),
        helper.make_node("ReduceMean", [p + ".d2"], [p + ".var"], axes=[-1], keepdims=1),
        helper.make_node("Add", [p + ".var", w.const(p + ".eps", np.float32(1e-12))], [p + ".ve"]),
        helper.make_node("Sqrt", [p + ".ve"], [p + ".std"]),
        helper.make_node("Div", [p + ".d", p + ".std"], [p + ".n"]),
        helper.make_node("Mul", [p + ".n", w(p + ".weight", (dim,), 0.1, 1.0)], [p + ".s"]),
        helper.make_node("Add", [p + ".s", w(p + ".bias", (dim,), 0.02)], [out]),
    ][:9] if axes else []


def bert(seed=11, vocab=97, seq=16, dim=64, heads=4, mlp=128, layers=2, opset=17):
    """BERT-style text tower: word + position + token-type embeddings (positions
    from Shape/Gather/Range, folded at load), attention with an additive mask
    from attention_mask, GELU MLP, CLS pooler (Gemm + Tanh) and an L2-normalised
    projection (ReduceL2 + Div)."""
    w = onnx_models._W(seed)
    decomposed = opset < 17
    hd = dim // heads
    n = [
        helper.make_node("Gather", [w("emb.word", (vocab, dim), 0.5), "input_ids"], ["e_word"]),
        helper.make_node("Shape", ["input_ids"], ["ids_shape"]),
        helper.make_node("Gather", ["ids_shape", w.const("one_idx", np.array(1, dtype=np.int64))], ["seq_len"], axis=0),
        helper.make_node("Range", [w.const("zero64", np.array(0, dtype=np.int64)), "seq_len",
                                   w.const("one64", np.array(1, dtype=np.int64))], ["pos_ids"]),
        helper.make_node("Unsqueeze", ["pos_ids", w.const("ax0", np.array([0], dtype=np.int64))], ["pos_ids2"]),
        helper.make_node("Gather", [w("emb.pos", (seq, dim), 0.5), "pos_ids2"], ["e_pos"]),
        helper.make_node("ConstantOfShape", ["ids_shape"], ["type_ids"],
                         value=numpy_helper.from_array(np.array([0], dtype=np.int64))),
        helper.make_node("Gather", [w("emb.type", (2, dim), 0.5), "type_ids"], ["e_type"]),
        helper.make_node("Add", ["e_word", "e_pos"], ["e0"]),
        helper.make_node("Add", ["e0", "e_type"], ["e1"]),
    ]
    n += _ln(w, "e1", "h0", "emb.ln", dim, decomposed)
    # mask: (1 - mask) * -10000, [B, 1, 1, S]
    n += [
        helper.make_node("Unsqueeze", ["attention_mask", w.const("ax12", np.array([1, 2], dtype=np.int64))], ["m0"]),
        helper.make_node("Cast", ["m0"], ["m1"], to=TensorProto.FLOAT),
        helper.make_node("Sub", [w.const("onef", np.float32(1.0)), "m1"], ["m2"]),
        helper.make_node("Mul", ["m2", w.const("neg", np.float32(-10000.0))], ["mask"]),
    ]
    x = "h0"
    for i in range(layers):
        p = f"l{i}"
        shape4 = w.const(p + ".s4", np.array([0, 0, heads, hd], dtype=np.int64))
        shape3 = w.const(p + ".s3", np.array([0, 0, dim], dtype=np.int64))
        for t in ("q", "k", "v"):
            n += [
                helper.make_node("MatMul", [x, w(f"{p}.{t}.w", (dim, dim))], [f"{p}.{t}0"]),
                helper.make_node("Add", [f"{p}.{t}0", w(f"{p}.{t}.b", (dim,), 0.02)], [f"{p}.{t}1"]),
                helper.make_node("Reshape", [f"{p}.{t}1", shape4], [f"{p}.{t}2"]),
                helper.make_node("Transpose", [f"{p}.{t}2"], [f"{p}.{t}"], perm=[0, 2, 3, 1] if t == "k" else [0, 2, 1, 3]),
            ]
        n += [
            helper.make_node("MatMul", [p + ".q", p + ".k"], [p + ".s0"]),
            helper.make_node("Div", [p + ".s0", w.const(p + ".sqrt_d", np.float32(np.sqrt(hd)))], [p + ".s1"]),
            helper.make_node("Add", [p + ".s1", "mask"], [p + ".s2"]),
            helper.make_node("Softmax", [p + ".s2"], [p + ".a"], axis=-1),
            helper.make_node("MatMul", [p + ".a", p + ".v"], [p + ".o0"]),
            helper.make_node("Transpose", [p + ".o0"], [p + ".o1"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [p + ".o1", shape3], [p + ".o2"]),
            helper.make_node("MatMul", [p + ".o2", w(p + ".o.w", (dim, dim))], [p + ".o3"]),
            helper.make_node("Add", [p + ".o3", w(p + ".o.b", (dim,), 0.02)], [p + ".o4"]),
            helper.make_node("Add", [p + ".o4", x], [p + ".r1"]),
        ]
        n += _ln(w, p + ".r1", p + ".h1", p + ".ln1", dim, decomposed)
        n += [
            helper.make_node("MatMul", [p + ".h1", w(p + ".f1.w", (dim, mlp))], [p + ".f0"]),
            helper.make_node("Add", [p + ".f0", w(p + ".f1.b", (mlp,), 0.02)], [p + ".f1"]),
            helper.make_node("Mul", [p + ".f1", w.const(p + ".half", np.float32(0.5))], [p + ".g0"]),
            helper.make_node("Div", [p + ".f1", w.const(p + ".sqrt2", np.float32(np.sqrt(2.0)))], [p + ".g1"]),
            helper.make_node("Erf", [p + ".g1"], [p + ".g2"]),
            helper.make_node("Add", [p + ".g2", w.const(p + ".one", np.float32(1.0))], [p + ".g3"]),
            helper.make_node("Mul", [p + ".g0", p + ".g3"], [p + ".g4"]),
            helper.make_node("MatMul", [p + ".g4", w(p + ".f2.w", (mlp, dim))], [p + ".f2"]),
            helper.make_node("Add", [p + ".f2", w(p + ".f2.b", (dim,), 0.02)], [p + ".f3"]),
            helper.make_node("Add", [p + ".f3", p + ".h1"], [p + ".r2"]),
        ]
        n += _ln(w, p + ".r2", f"l{i}.out", p + ".ln2", dim, decomposed)
        x = f"l{i}.out"
    n += [
        helper.make_node("Identity", [x], ["last_hidden_state"]),
        helper.make_node("Gather", [x, w.const("cls", np.array(0, dtype=np.int64))], ["cls_tok"], axis=1),
        helper.make_node("Gemm", ["cls_tok", w("pooler.w", (dim, dim)), w("pooler.b", (dim,), 0.02)], ["pool0"], transB=1),
        helper.make_node("Tanh", ["pool0"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", w("proj.w", (dim, 32))], ["proj"]),
        helper.make_node("ReduceL2", ["proj"], ["norm"], axes=[-1], keepdims=1),
        helper.make_node("Div", ["proj", "norm"], ["text_embeds"]),
    ]
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, seq])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, seq])
    outs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [1, seq, dim]),
            helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, [1, 32])]
    g = helper.make_graph(n, "bert", [ids, mask], outs, w.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="medquant-tests")
    m.ir_version = 8
    # Reduce* with axes attributes are opset < 18: fine for 13 and 17.
    return m


def bert_feeds(seed=0, vocab=97, seq=16):
    rng = np.random.default_rng(seed)
    mask = np.ones((1, seq), dtype=np.int64)
    mask[0, seq - 5:] = 0
    return {"input_ids": rng.integers(0, vocab, size=(1, seq), dtype=np.int64), "attention_mask": mask}


MODELS = dict(onnx_models.ALL)
MODELS["bert_opset17"] = lambda: bert(opset=17)
MODELS["bert_opset13"] = lambda: bert(opset=13)


def feeds_for(name, model, seed=0):
    return bert_feeds(seed) if name.startswith("bert") else onnx_models.random_inputs(model, seed=seed)


def assert_close(got, ref, rtol, what):
    scale = float(np.abs(ref).max()) if ref.size else 1.0
    err = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    bound = rtol * np.abs(ref) + rtol * 0.1 * scale
    assert got.shape == ref.shape, f"{what}: shape {got.shape} vs {ref.shape}"
    assert np.all(err <= bound), f"{what}: max error {err.max():.3g} (scale {scale:.3g})"


# ---------------------------------------------------------------- FP32

def test_decomposed_layernorm_fuses(tmp_path):
    """torch's LayerNorm below opset 17 (ReduceMean ... Add beta, 9 ops) becomes one
    LayerNormalization: the opset-13 BERT plans to as many steps as the opset-17 one
    (native LayerNormalization) with its 5 LayerNorms fused, and stays within 1e-5 of
    its own unfused run (ORT: test_fp32_matches_ort)."""
    p13, p17 = tmp_path / "bert13.onnx", tmp_path / "bert17.onnx"
    m13 = bert(opset=13)
    onnx.save(m13, str(p13))
    onnx.save(bert(opset=17), str(p17))
    j13, j17 = (json.loads(medquant("bench", p, "--runs", 1, "--warmup", 0, "--json").stdout) for p in (p13, p17))
    assert j13["steps"] == j17["steps"] and j13["fusions"] == j17["fusions"] + 5, (j13, j17)
    feeds = feeds_for("bert_opset13", m13)
    fused = run_medquant(p13, feeds, tmp_path)
    plain = run_medquant(p13, feeds, tmp_path, fuse=False)
    for o, (a, b) in enumerate(zip(fused, plain)):
        assert_close(a, b, 1e-5, f"bert_opset13 output {o}, fused vs unfused")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fp32_matches_ort(name, tmp_path):
    model = MODELS[name]()
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    for seed in (0, 1):
        feeds = feeds_for(name, model, seed)
        ours = run_medquant(path, feeds, tmp_path)
        ref = run_ort(path, feeds)
        for o, (a, b) in enumerate(zip(ours, ref)):
            assert a.dtype == b.dtype
            assert_close(a, b, 1e-4, f"{name} output {o}")


# ---------------------------------------------------------------- INT8 (dynamic)

INT8_OPTIONS = {
    "qint8": [],
    "quint8": ["--weight-type", "quint8"],
    "qint8_per_channel": ["--per-channel"],
    "quint8_reduce_range": ["--weight-type", "quint8", "--reduce-range"],
}


@pytest.mark.parametrize("opts", sorted(INT8_OPTIONS))
@pytest.mark.parametrize("name", ["matmul_3d_gelu", "gemm", "attention_block", "embedding", "small_vit", "bert_opset17"])
def test_int8_matches_ort(name, opts, tmp_path):
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    model = MODELS[name]()
    onnx.save(model, str(fp32))
    medquant("quantize", "onnx", fp32, "-o", int8, *INT8_OPTIONS[opts])
    feeds = feeds_for(name, model)
    ours = run_medquant(int8, feeds, tmp_path)
    plain = run_ort(int8, feeds, optimize=False)
    fused = run_ort(int8, feeds, optimize=True)
    for o, (a, b, c) in enumerate(zip(ours, plain, fused)):
        # Dynamic quantization amplifies 1-ulp float differences before a
        # DynamicQuantizeLinear (attention sums, erf) into one-step rounding
        # flips; ONNX Runtime's fused and unfused runs differ the same way.
        # So: within 1e-5 of ORT, or no further from it than ORT is from itself.
        scale = float(np.abs(b).max())
        err = float(np.abs(a.astype(np.float64) - b).max())
        ort_spread = float(np.abs(c.astype(np.float64) - b).max())
        assert err <= 1e-5 * scale or (err <= 2 * ort_spread + 1e-5 * scale and err <= 0.02 * scale), \
            f"{name}/{opts} output {o}: max error {err:.3g} vs ORT, ORT fused vs unfused {ort_spread:.3g}, scale {scale:.3g}"



def test_ort_quantize_dynamic_file(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    model = MODELS["small_vit"]()
    onnx.save(model, str(fp32))
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    feeds = feeds_for("small_vit", model)
    ours = run_medquant(int8, feeds, tmp_path)
    ref = run_ort(int8, feeds, optimize=False)
    assert_close(ours[0], ref[0], 1e-5, "ORT quantize_dynamic file")


def test_integer_outputs_are_exact(tmp_path):
    """DynamicQuantizeLinear + MatMulInteger (u8 x s8 and u8 x u8, zero points) as graph outputs."""
    rng = np.random.default_rng(3)
    for wtype, lo, hi in ((TensorProto.INT8, -128, 128), (TensorProto.UINT8, 0, 256)):
        npt = np.int8 if wtype == TensorProto.INT8 else np.uint8
        wq = rng.integers(lo, hi, size=(67, 45)).astype(npt)
        wz = rng.integers(lo, hi, size=(45,)).astype(npt)
        nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
                 helper.make_node("MatMulInteger", ["xq", "w", "xz", "wz"], ["acc"])]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 13, 67])],
                              [helper.make_tensor_value_info("acc", TensorProto.INT32, [3, 13, 45]),
                               helper.make_tensor_value_info("xq", TensorProto.UINT8, [3, 13, 67]),
                               helper.make_tensor_value_info("xs", TensorProto.FLOAT, []),
                               helper.make_tensor_value_info("xz", TensorProto.UINT8, [])],
                              [numpy_helper.from_array(wq, "w"), numpy_helper.from_array(wz, "wz")])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        path = tmp_path / "mmi.onnx"
        onnx.save(m, str(path))
        feeds = {"x": (rng.standard_normal((3, 13, 67)) * 3).astype(np.float32)}
        ours = run_medquant(path, feeds, tmp_path)
        ref = run_ort(path, feeds, optimize=False)
        for a, b in zip(ours, ref):
            assert a.dtype == b.dtype and np.array_equal(a, b)


# ---------------------------------------------------------------- QDQ

def test_qdq_static_matches_ort(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    fp32, qdq = tmp_path / "fp32.onnx", tmp_path / "qdq.onnx"
    model = MODELS["attention_block"]()
    onnx.save(model, str(fp32))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(onnx_models.random_inputs(model, seed=5, count=8))

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(fp32), str(qdq), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    feeds = onnx_models.random_inputs(model, seed=1)
    ours = run_medquant(qdq, feeds, tmp_path)[0]
    ref = run_ort(qdq, feeds, optimize=False)[0]
    # Float sums in another order can move a value across a rounding boundary of
    # a QuantizeLinear: allow that for a few elements, by one output step.
    step = max(float(np.abs(ref).max()) / 127.0, 1e-6)
    err = np.abs(ours - ref)
    assert err.max() <= 2 * step
    assert np.mean(err > 1e-5) < 0.02


# ---------------------------------------------------------------- broken models

def _graph(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


BROKEN = {
    "unsupported op": (_graph([helper.make_node("NonZero", ["x"], ["y"], name="nz")], [_vi("x", [2, 2])],
                              [_vi("y", None, TensorProto.INT64)]), "NonZero"),
    "unsupported attribute": (_graph([helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=1, bogus=3)],
                                     [_vi("x", [2, 2])], [_vi("y", [2, 2])]), "bogus"),
    "unsupported attribute value": (_graph([helper.make_node("LayerNormalization", ["x", "s"], ["y"], name="ln", stash_type=0)],
                                           [_vi("x", [2, 2])], [_vi("y", [2, 2])],
                                           [numpy_helper.from_array(np.ones(2, np.float32), "s")]), "stash_type"),
    "missing input": (_graph([helper.make_node("Relu", ["nowhere"], ["y"], name="r")], [_vi("x", [2])], [_vi("y", [2])]),
                      "nowhere"),
    "cycle": (_graph([helper.make_node("Add", ["x", "b"], ["a"], name="a1"), helper.make_node("Relu", ["a"], ["b"], name="r1")],
                     [_vi("x", [2])], [_vi("a", [2])]), "cycle"),
    "shape mismatch": (_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [_vi("x", [2, 3])], [_vi("y", None)],
                              [numpy_helper.from_array(np.ones((4, 5), np.float32), "w")]), "mm"),
    "absurd dims": (_graph([helper.make_node("ConstantOfShape", ["s"], ["y"], name="cos")], [_vi("x", [1])], [_vi("y", None)],
                           [numpy_helper.from_array(np.array([1 << 30, 1 << 30], np.int64), "s")]), "cos"),
    "bad reshape": (_graph([helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")], [_vi("x", [2, 3])], [_vi("y", None)],
                           [numpy_helper.from_array(np.array([4, -1], np.int64), "s")]), "rs"),
    "gather out of range": (_graph([helper.make_node("Gather", ["t", "i"], ["y"], name="ga")], [_vi("i", [2], TensorProto.INT64)],
                                   [_vi("y", None)], [numpy_helper.from_array(np.ones((3, 2), np.float32), "t")]), "ga"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_models_are_clear_errors(case, tmp_path):
    model, needle = BROKEN[case]
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    feeds = {}
    for i in model.graph.input:
        dims = [d.dim_value for d in i.type.tensor_type.shape.dim]
        if i.type.tensor_type.elem_type == TensorProto.INT64:
            feeds[i.name] = np.array([0, 7], dtype=np.int64)[: int(np.prod(dims))].reshape(dims)
        else:
            feeds[i.name] = np.ones(dims, np.float32)
    args = ["run", path, "-o", tmp_path / "out"]
    for name, value in feeds.items():
        np.save(tmp_path / f"{name}.npy", value)
        args += ["--input", f"{name}={tmp_path / (name + '.npy')}"]
    p = medquant(*args, check=False)
    assert p.returncode == 1, f"{case}: exit {p.returncode}\n{p.stderr}"
    assert p.stderr.startswith("error: ") and needle in p.stderr, p.stderr


def test_not_onnx_files(tmp_path):
    for content in (b"", b"hello", onnx_models.matmul_2d().SerializeToString()[:40]):
        path = tmp_path / "x.onnx"
        path.write_bytes(content)
        np.save(tmp_path / "x.npy", np.ones((4, 16), np.float32))
        p = medquant("run", path, "--input", tmp_path / "x.npy", "-o", tmp_path / "o", check=False)
        assert p.returncode == 1 and p.stderr.startswith("error: "), p.stderr


def test_bench_json(tmp_path):
    """`medquant bench --json`: the documented keys, with the fused attention in the step count."""
    import json
    path = tmp_path / "vit.onnx"
    onnx.save(MODELS["small_vit"](), str(path))
    p = medquant("--threads", 1, "bench", path, "--runs", 3, "--warmup", 1, "--json")
    j = json.loads(p.stdout)
    for key in ("load_ms", "median_ms", "p90_ms", "median_cpu_ms", "peak_rss_mb"):
        assert j[key] > 0, (key, j)
    assert j["runs"] == 3 and j["threads"] == 1 and j["p90_ms"] >= j["median_ms"] >= j["min_ms"]
    assert j["fusions"] > 0 and j["kernels"], j

"""Small FP32 ONNX graphs built with onnx.helper, for the quantizer's peer
tests and benchmark. Every builder returns an onnx.ModelProto (opset 17, IR 8:
what torch.onnx.export writes for opset 17) with random weights from `seed`."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8


def _model(nodes, inputs, outputs, inits, name="g"):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="medquant-tests")
    m.ir_version = IR_VERSION
    return m


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


class _W:
    """Random initializers with readable names."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.inits = []

    def __call__(self, name, shape, scale=0.05, offset=0.0):
        a = (self.rng.standard_normal(shape) * scale + offset).astype(np.float32)
        self.inits.append(numpy_helper.from_array(a, name))
        return name

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name


def matmul_2d(seed=0):
    w = _W(seed)
    nodes = [helper.make_node("MatMul", ["x", w("W", (16, 8))], ["y"], name="mm")]
    return _model(nodes, [_vi("x", [4, 16])], [_vi("y", [4, 8])], w.inits)


def matmul_3d_gelu(seed=1):
    """MatMul + bias + erf-GELU + MatMul on [batch, tokens, features]."""
    w = _W(seed)
    nodes = [
        helper.make_node("MatMul", ["x", w("fc1.weight", (32, 64))], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", w("fc1.bias", (64,), 0.02)], ["h1"], name="fc1_bias"),
        helper.make_node("Div", ["h1", w.const("sqrt2", np.float32(np.sqrt(2.0)))], ["g0"], name="gelu_div"),
        helper.make_node("Erf", ["g0"], ["g1"], name="gelu_erf"),
        helper.make_node("Add", ["g1", w.const("one", np.float32(1.0))], ["g2"], name="gelu_add"),
        helper.make_node("Mul", ["h1", "g2"], ["g3"], name="gelu_mul"),
        helper.make_node("Mul", ["g3", w.const("half", np.float32(0.5))], ["g4"], name="gelu_half"),
        helper.make_node("MatMul", ["g4", w("fc2.weight", (64, 32))], ["y"], name="fc2"),
    ]
    return _model(nodes, [_vi("x", [2, 5, 32])], [_vi("y", [2, 5, 32])], w.inits)


def gemm(seed=2):
    """Gemm with transB (bias), Gemm without bias, Gemm that must stay (alpha)."""
    w = _W(seed)
    nodes = [
        helper.make_node("Gemm", ["x", w("fc.weight", (24, 16)), w("fc.bias", (24,))], ["h"], name="fc", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", w("proj.weight", (24, 12))], ["p"], name="proj"),
        helper.make_node("Gemm", ["p", w("scaled.weight", (12, 6))], ["y"], name="scaled", alpha=0.5),
    ]
    return _model(nodes, [_vi("x", [3, 16])], [_vi("y", [3, 6])], w.inits)


def conv(seed=3):
    """A ViT-style patch embedding (Conv with bias) and a 1x1 Conv without."""
    w = _W(seed)
    nodes = [
        helper.make_node("Conv", ["x", w("patch.weight", (16, 3, 4, 4)), w("patch.bias", (16,))], ["p"],
                         name="patch_embed", kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Conv", ["p", w("pw.weight", (8, 16, 1, 1))], ["y"], name="pointwise"),
    ]
    return _model(nodes, [_vi("x", [1, 3, 16, 16])], [_vi("y", [1, 8, 4, 4])], w.inits)


def _layer_norm(w, x, out, prefix, dim):
    return helper.make_node("LayerNormalization", [x, w(prefix + ".weight", (dim,), 0.1, 1.0),
                                                   w(prefix + ".bias", (dim,), 0.02)], [out],
                            name=prefix, axis=-1, epsilon=1e-6)


def _attention_block(w, x, out, p, tokens, dim, heads, mlp, batch=1):
    hd = dim // heads
    shape_bthd = w.const(p + ".shape_bthd", np.array([batch, tokens, heads, hd], dtype=np.int64))
    shape_btd = w.const(p + ".shape_btd", np.array([batch, tokens, dim], dtype=np.int64))
    n = []
    n.append(_layer_norm(w, x, p + ".ln1", p + ".norm1", dim))
    for t in ("q", "k", "v"):
        n.append(helper.make_node("MatMul", [p + ".ln1", w(f"{p}.attn.{t}.weight", (dim, dim))], [f"{p}.{t}0"],
                                  name=f"{p}.attn.{t}"))
        n.append(helper.make_node("Add", [f"{p}.{t}0", w(f"{p}.attn.{t}.bias", (dim,), 0.02)], [f"{p}.{t}1"],
                                  name=f"{p}.attn.{t}_bias"))
        n.append(helper.make_node("Reshape", [f"{p}.{t}1", shape_bthd], [f"{p}.{t}2"], name=f"{p}.{t}_reshape"))
        perm = [0, 2, 3, 1] if t == "k" else [0, 2, 1, 3]
        n.append(helper.make_node("Transpose", [f"{p}.{t}2"], [f"{p}.{t}"], name=f"{p}.{t}_transpose", perm=perm))
    n.append(helper.make_node("MatMul", [p + ".q", p + ".k"], [p + ".s0"], name=p + ".qk"))
    n.append(helper.make_node("Mul", [p + ".s0", w.const(p + ".scale", np.float32(hd ** -0.5))], [p + ".s1"],
                              name=p + ".scale_mul"))
    n.append(helper.make_node("Softmax", [p + ".s1"], [p + ".a"], name=p + ".softmax", axis=-1))
    n.append(helper.make_node("MatMul", [p + ".a", p + ".v"], [p + ".o0"], name=p + ".av"))
    n.append(helper.make_node("Transpose", [p + ".o0"], [p + ".o1"], name=p + ".o_transpose", perm=[0, 2, 1, 3]))
    n.append(helper.make_node("Reshape", [p + ".o1", shape_btd], [p + ".o2"], name=p + ".o_reshape"))
    n.append(helper.make_node("MatMul", [p + ".o2", w(p + ".attn.proj.weight", (dim, dim))], [p + ".o3"],
                              name=p + ".attn.proj"))
    n.append(helper.make_node("Add", [p + ".o3", w(p + ".attn.proj.bias", (dim,), 0.02)], [p + ".o4"],
                              name=p + ".attn.proj_bias"))
    n.append(helper.make_node("Add", [x, p + ".o4"], [p + ".r1"], name=p + ".residual1"))
    n.append(_layer_norm(w, p + ".r1", p + ".ln2", p + ".norm2", dim))
    n.append(helper.make_node("MatMul", [p + ".ln2", w(p + ".mlp.fc1.weight", (dim, mlp))], [p + ".m0"],
                              name=p + ".mlp.fc1"))
    n.append(helper.make_node("Add", [p + ".m0", w(p + ".mlp.fc1.bias", (mlp,), 0.02)], [p + ".m1"],
                              name=p + ".mlp.fc1_bias"))
    # GELU (erf form, as torch exports nn.GELU at opset 17)
    n.append(helper.make_node("Div", [p + ".m1", w.const(p + ".sqrt2", np.float32(np.sqrt(2.0)))], [p + ".g0"],
                              name=p + ".gelu_div"))
    n.append(helper.make_node("Erf", [p + ".g0"], [p + ".g1"], name=p + ".gelu_erf"))
    n.append(helper.make_node("Add", [p + ".g1", w.const(p + ".one", np.float32(1.0))], [p + ".g2"],
                              name=p + ".gelu_add"))
    n.append(helper.make_node("Mul", [p + ".m1", p + ".g2"], [p + ".g3"], name=p + ".gelu_mul"))
    n.append(helper.make_node("Mul", [p + ".g3", w.const(p + ".half", np.float32(0.5))], [p + ".g4"],
                              name=p + ".gelu_half"))
    n.append(helper.make_node("MatMul", [p + ".g4", w(p + ".mlp.fc2.weight", (mlp, dim))], [p + ".m2"],
                              name=p + ".mlp.fc2"))
    n.append(helper.make_node("Add", [p + ".m2", w(p + ".mlp.fc2.bias", (dim,), 0.02)], [p + ".m3"],
                              name=p + ".mlp.fc2_bias"))
    n.append(helper.make_node("Add", [p + ".r1", p + ".m3"], [out], name=p + ".residual2"))
    return n


def attention_block(seed=4, tokens=10, dim=32, heads=4, mlp=64):
    """One pre-norm transformer block: LayerNorm, QKV, softmax attention, GELU MLP."""
    w = _W(seed)
    nodes = _attention_block(w, "x", "y", "blocks.0", tokens, dim, heads, mlp)
    return _model(nodes, [_vi("x", [1, tokens, dim])], [_vi("y", [1, tokens, dim])], w.inits)


def shared_initializers(seed=5):
    """One weight read by two MatMuls and by a float Add; unnamed nodes."""
    w = _W(seed)
    nodes = [
        helper.make_node("MatMul", ["x", w("W", (8, 8))], ["a"]),
        helper.make_node("MatMul", ["a", "W"], ["b"]),
        helper.make_node("Add", ["b", "W"], ["y"]),
    ]
    return _model(nodes, [_vi("x", [8, 8])], [_vi("y", [8, 8])], w.inits)


def embedding(seed=6):
    """Gather from an embedding table, then a MatMul (a tiny text encoder front)."""
    w = _W(seed)
    nodes = [
        helper.make_node("Gather", [w("embeddings.word", (50, 16), 0.5), "ids"], ["e"], name="embed"),
        helper.make_node("MatMul", ["e", w("dense.weight", (16, 8))], ["y"], name="dense"),
    ]
    return _model(nodes, [_vi("ids", [2, 7], TensorProto.INT64)], [_vi("y", [2, 7, 8])], w.inits)


def constant_weights(seed=7):
    """Weights that only become constants after pre-processing: a Constant
    node, an Identity, and a Transpose of an initializer."""
    rng = np.random.default_rng(seed)
    c = numpy_helper.from_array((rng.standard_normal((16, 8)) * 0.05).astype(np.float32), "c")
    wt = numpy_helper.from_array((rng.standard_normal((4, 8)) * 0.05).astype(np.float32), "wt")
    nodes = [
        helper.make_node("Constant", [], ["W1"], name="const_w1", value=c),
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm1"),
        helper.make_node("Identity", ["h"], ["h2"], name="ident"),
        helper.make_node("Transpose", ["wt"], ["W2"], name="wt_transpose", perm=[1, 0]),
        helper.make_node("MatMul", ["h2", "W2"], ["y"], name="mm2"),
    ]
    return _model(nodes, [_vi("x", [3, 16])], [_vi("y", [3, 4])], [wt])


def vit(seed=8, image=224, patch=16, dim=768, depth=12, heads=12, mlp=3072, batch=1):
    """A ViT-B/16-shaped vision encoder (BiomedCLIP's: 224px, 16px patches,
    768 wide, 12 blocks, 12 heads, MLP 3072), class token, final LayerNorm,
    then the CLIP projection to 512. Random weights."""
    w = _W(seed)
    grid = image // patch
    tokens = grid * grid + 1
    n = [
        helper.make_node("Conv", ["pixel_values", w("patch_embed.proj.weight", (dim, 3, patch, patch), 0.02),
                                  w("patch_embed.proj.bias", (dim,), 0.02)], ["pe0"],
                         name="patch_embed.proj", kernel_shape=[patch, patch], strides=[patch, patch]),
        helper.make_node("Reshape", ["pe0", w.const("pe_shape", np.array([batch, dim, grid * grid], dtype=np.int64))],
                         ["pe1"], name="patch_embed.flatten"),
        helper.make_node("Transpose", ["pe1"], ["pe2"], name="patch_embed.transpose", perm=[0, 2, 1]),
        helper.make_node("Concat", [w("cls_token", (batch, 1, dim), 0.02), "pe2"], ["tok0"], name="cat_cls", axis=1),
        helper.make_node("Add", ["tok0", w("pos_embed", (1, tokens, dim), 0.02)], ["tok1"], name="pos_add"),
    ]
    x = "tok1"
    for i in range(depth):
        out = f"blocks.{i}.out"
        n += _attention_block(w, x, out, f"blocks.{i}", tokens, dim, heads, mlp, batch)
        x = out
    n.append(_layer_norm(w, x, "normed", "norm", dim))
    n.append(helper.make_node("Gather", ["normed", w.const("cls_index", np.array(0, dtype=np.int64))], ["pooled"],
                              name="pool_cls", axis=1))
    n.append(helper.make_node("MatMul", ["pooled", w("head.proj.weight", (dim, 512), 0.02)], ["image_embeds"],
                              name="head.proj"))
    return _model(n, [_vi("pixel_values", [batch, 3, image, image])], [_vi("image_embeds", [batch, 512])], w.inits,
                  name="vit")


def random_inputs(model, seed=0, count=1):
    """Feeds for `model`: floats ~N(0,1), int64 indices within the first Gather's table."""
    rng = np.random.default_rng(seed)
    inits = {t.name: t for t in model.graph.initializer}
    vocab = 2
    for node in model.graph.node:
        if node.op_type == "Gather" and node.input[0] in inits:
            vocab = inits[node.input[0]].dims[0]
            break
    feeds = []
    for _ in range(count):
        feed = {}
        for i in model.graph.input:
            if i.name in inits:
                continue
            shape = [d.dim_value for d in i.type.tensor_type.shape.dim]
            if i.type.tensor_type.elem_type == TensorProto.INT64:
                feed[i.name] = rng.integers(0, vocab, size=shape, dtype=np.int64)
            else:
                feed[i.name] = rng.standard_normal(shape).astype(np.float32)
        feeds.append(feed)
    return feeds if count > 1 else feeds[0]


ALL = {
    "matmul_2d": matmul_2d,
    "matmul_3d_gelu": matmul_3d_gelu,
    "gemm": gemm,
    "conv": conv,
    "attention_block": attention_block,
    "shared_initializers": shared_initializers,
    "embedding": embedding,
    "small_vit": lambda: vit(image=32, patch=8, dim=64, depth=2, heads=4, mlp=128),
}

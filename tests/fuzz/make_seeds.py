"""Seed inputs for the fuzzers that no committed fixture covers: small but
complete .gguf, .onnx, .safetensors and labels.json / template files, written
by the reference packages (gguf, onnx, numpy) of the peer venv.

    python make_seeds.py <seed-dir>     # writes <seed-dir>/<fuzzer>/<file>
"""
import json
import struct
import sys
from pathlib import Path

import gguf
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = Path(sys.argv[1])
rng = np.random.default_rng(0)


def dest(fuzzer, name):
    (out / fuzzer).mkdir(parents=True, exist_ok=True)
    return out / fuzzer / name


def write_gguf():
    w = gguf.GGUFWriter(str(dest("gguf_reader", "seed.gguf")), "llama")
    w.add_uint32("seed.u32", 7)
    w.add_string("seed.name", "tiny")
    w.add_array("seed.list", [1, 2, 3])
    w.add_array("seed.strings", ["a", "bc"])
    w.add_float32("seed.f32", 0.5)
    w.add_bool("seed.flag", True)
    w.add_tensor("f32", rng.standard_normal((4, 8)).astype(np.float32))
    w.add_tensor("f16", rng.standard_normal((2, 16)).astype(np.float16))
    q8 = np.frombuffer(rng.bytes(34 * 2), dtype=np.uint8).reshape(2, 34)  # 2 rows of one Q8_0 block
    w.add_tensor("q8", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_onnx():
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, 4], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Reshape", ["h", "shape"], ["r"]),
        helper.make_node("Softmax", ["r"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "seed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(key="model_name", value="seed")
    onnx.checker.check_model(model)
    onnx.save(model, str(dest("onnx_model", "seed.onnx")))


def write_safetensors():
    tensors = {"a": rng.standard_normal((2, 3)).astype(np.float32),
               "b": np.arange(4, dtype=np.int64), "c": np.array(1.5, dtype=np.float16)}
    header, blob = {"__metadata__": {"format": "pt"}}, b""
    for name, t in tensors.items():
        dt = {"float32": "F32", "int64": "I64", "float16": "F16"}[t.dtype.name]
        header[name] = {"dtype": dt, "shape": list(t.shape),
                        "data_offsets": [len(blob), len(blob) + t.nbytes]}
        blob += t.tobytes()
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    dest("safetensors", "seed.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + blob)


def write_text_files():
    v = rng.standard_normal(4)
    labels = {"schema": "medquant.labels", "schema_version": 1, "model_name": "seed",
              "text_model": {"file": "t.onnx", "sha256": "0" * 64, "source_sha256": ""},
              "dim": 4, "logit_scale": 4.6052, "logit_scale_exp": 100.0,
              "templates": ["this is a photo of {}"],
              "labels": [{"name": "chest X-ray", "embedding": list(v / np.linalg.norm(v))}]}
    dest("text_files", "labels.json").write_text(json.dumps(labels))
    dest("text_files", "templates.txt").write_text("# templates\na photo of {}\n{{literal}} {0}\n\n")


def write_runtime_seeds():
    """Small models of the shapes the executor fuses and packs (the peer tests' builders)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "peer"))
    import onnx_models
    from onnxruntime.quantization import QuantType, quantize_dynamic

    models = {"matmul_3d_gelu": onnx_models.matmul_3d_gelu(), "gemm": onnx_models.gemm(),
              "conv": onnx_models.conv(), "attention": onnx_models.attention_block(tokens=4, dim=8, heads=2, mlp=16),
              "embedding": onnx_models.embedding()}
    for name, model in models.items():
        onnx.save(model, str(dest("runtime_session", name + ".onnx")))
    # The dynamic INT8 form (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul), as ORT writes it.
    quantize_dynamic(str(dest("runtime_session", "attention.onnx")), str(dest("runtime_session", "attention_int8.onnx")),
                     weight_type=QuantType.QInt8)


write_gguf()
write_onnx()
write_runtime_seeds()
write_safetensors()
write_text_files()

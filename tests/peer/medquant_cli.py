"""The peer tests' way to call medquant's CLI (`medquant`; `run_medquant`: one
ONNX model through `medquant run`, .npy in and out) and ONNX Runtime on the CPU
(`session`, `run_ort`)."""

import os
import subprocess

import numpy as np
import onnx
import onnxruntime as ort

BIN = os.environ.get("MEDQUANT_BIN", "medquant")


def medquant(*args, check=True):
    p = subprocess.run([BIN, "-q", *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"medquant {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return p


def run_medquant(path, feeds, tmp, fuse=True, threads=2):
    """The model's outputs (graph order) from `medquant run`; fuse=False runs it with --no-fusion."""
    out = tmp / f"out{'' if fuse else '_plain'}{threads}"
    args = ["--threads", threads, "run", path, "-o", out] + ([] if fuse else ["--no-fusion"])
    for name, value in feeds.items():
        f = tmp / f"in_{name}.npy"
        np.save(f, value)
        args += ["--input", f"{name}={f}"]
    medquant(*args)
    m = onnx.load(str(path), load_external_data=False)
    return [np.load(out / f"{o.name}.npy") for o in m.graph.output]


def session(path, options=None):
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_ort(path, feeds, optimize=True):
    """ONNX Runtime on the CPU, all graph optimisations on (or all off)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return session(path, so).run(None, feeds)

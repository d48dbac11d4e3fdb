"""medquant quantize onnx vs onnxruntime's quantize_dynamic (or, with --static,
quantize_static in QDQ format) on a ViT-B/16-shaped vision encoder (BiomedCLIP's
dimensions, random weights, built with onnx.helper).

--static: both tools calibrate (MinMax) on the same --calib-inputs arrays
(.npy files for medquant, a CalibrationDataReader for ORT) and quantize
medquant's default op list (docs/onnx.md); accuracy is measured on other inputs.

Both tools quantize the same FP32 file with the same options, each in its own
process (wall time and peak RSS of that process). Then ONNX Runtime runs the
FP32 model and both INT8 models on the same 32 inputs; accuracy is the mean
(and worst) cosine similarity of each INT8 output to the FP32 one.
Prints one JSON row; with --out also writes it there."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "peer"))
import onnx_models  # noqa: E402


# medquant's default static op list (onnx/quantize_static.h), given to ORT too.
STATIC_OPS = ["ArgMax", "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Conv", "CumSum",
               "EmbedLayerNormalization", "Flatten", "Gather", "GatherElements", "Gemm", "GlobalAveragePool",
               "InstanceNormalization", "LayerNormalization", "LeakyRelu", "MatMul", "MaxPool", "Mul", "Relu",
               "Reshape", "Sigmoid", "Slice", "Softmax", "Split", "Squeeze", "TopK", "Transpose", "Unsqueeze",
               "Where"]


def measured(cmd):
    """Runs cmd; returns (wall seconds, CPU seconds (user + system), peak RSS
    in MiB) of that process alone. CPU time is the steadier figure on a busy
    machine; wall time includes medquant's fsync of the output (ORT does none)."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    user, system, peak_kib = p.stderr.strip().splitlines()[-1].split()
    return seconds, float(user) + float(system), int(peak_kib) / 1024.0


def outputs(path, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = os.cpu_count() or 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return [s.run(None, f)[0].reshape(-1).astype(np.float64) for f in feeds]


def cosines(ref, test):
    return [float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b in zip(ref, test)]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--medquant", default=os.environ.get("MEDQUANT_BIN", "medquant"))
    ap.add_argument("--inputs", type=int, default=32)
    ap.add_argument("--static", action="store_true", help="quantize_static (QDQ) instead of quantize_dynamic")
    ap.add_argument("--calib-inputs", type=int, default=32, help="--static: calibration inputs")
    ap.add_argument("--out", help="also write the JSON row here")
    ap.add_argument("--workdir", help="keep the models here (default: a temporary folder)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="medquant-bench-onnx.") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        fp32, ours, ref = work / "vit_fp32.onnx", work / "vit_int8_medquant.onnx", work / "vit_int8_ort.onnx"
        onnx.save(onnx_models.vit(), str(fp32))

        if args.static:
            calib = work / "calib"
            calib.mkdir(exist_ok=True)
            crng = np.random.default_rng(1)
            for k in range(args.calib_inputs):
                np.save(calib / f"c{k:03d}.npy", crng.standard_normal((1, 3, 224, 224)).astype(np.float32))
            ort_script = (
                "import sys, glob, numpy as np; from onnxruntime.quantization import quantize_static, QuantFormat, "
                "CalibrationDataReader\n"
                "class R(CalibrationDataReader):\n"
                "    def __init__(s): s.f = iter(sorted(glob.glob(sys.argv[3] + '/*.npy')))\n"
                "    def get_next(s):\n"
                "        f = next(s.f, None)\n"
                "        return None if f is None else {'pixel_values': np.load(f)}\n"
                "quantize_static(sys.argv[1], sys.argv[2], R(), quant_format=QuantFormat.QDQ, "
                f"op_types_to_quantize={STATIC_OPS!r})\n")
            ort_s, ort_cpu, ort_rss = measured([sys.executable, "-c", ort_script, str(fp32), str(ref), str(calib)])
            mq_s, mq_cpu, mq_rss = measured([args.medquant, "-q", "quantize", "onnx", str(fp32), "-o", str(ours),
                                             "--static", "--calib", str(calib)])
        else:
            ort_script = ("import sys; from onnxruntime.quantization import quantize_dynamic, QuantType; "
                          "quantize_dynamic(sys.argv[1], sys.argv[2], op_types_to_quantize=['MatMul'], "
                          "weight_type=QuantType.QInt8)")
            ort_s, ort_cpu, ort_rss = measured([sys.executable, "-c", ort_script, str(fp32), str(ref)])
            mq_s, mq_cpu, mq_rss = measured([args.medquant, "-q", "quantize", "onnx", str(fp32), "-o", str(ours)])

        rng = np.random.default_rng(0)
        feeds = [{"pixel_values": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}
                 for _ in range(args.inputs)]
        base = outputs(fp32, feeds)
        cos_mq = cosines(base, outputs(ours, feeds))
        cos_ort = cosines(base, outputs(ref, feeds))

        row = {
            "bench": "quantize_onnx_vit_b16" + ("_static" if args.static else ""),
            "options": (f"QDQ, MinMax on {args.calib_inputs} inputs, qint8 activations and weights, per-tensor, "
                        "medquant's default op list (both tools)" if args.static
                        else "qint8 per-tensor, op types MatMul (both tools)"),
            "fp32_bytes": fp32.stat().st_size,
            "medquant": {"seconds": round(mq_s, 3), "cpu_seconds": round(mq_cpu, 3), "peak_rss_mib": round(mq_rss, 1),
                         "bytes": ours.stat().st_size, "cosine_mean": float(np.mean(cos_mq)),
                         "cosine_min": float(np.min(cos_mq))},
            "onnxruntime": {"seconds": round(ort_s, 3), "cpu_seconds": round(ort_cpu, 3), "peak_rss_mib": round(ort_rss, 1),
                            "bytes": ref.stat().st_size, "cosine_mean": float(np.mean(cos_ort)),
                            "cosine_min": float(np.min(cos_ort))},
            "onnxruntime_version": ort.__version__,
        }
        row["speedup"] = round(ort_s / mq_s, 2)
        row["cpu_ratio"] = round(ort_cpu / mq_cpu, 2) if mq_cpu > 0 else None
        row["rss_ratio"] = round(ort_rss / mq_rss, 2)
        row["size_ratio"] = round(ours.stat().st_size / ref.stat().st_size, 4)
        row["targets_met"] = {
            "faster_10x": row["speedup"] >= 10,
            "output_no_larger": ours.stat().st_size <= ref.stat().st_size,
            "accuracy_no_worse": row["medquant"]["cosine_mean"] >= row["onnxruntime"]["cosine_mean"] - 1e-9,
        }
        line = json.dumps(row)
        print(line)
        if args.out:
            Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()

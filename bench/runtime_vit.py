"""medquant's ONNX executor vs ONNX Runtime on a BiomedCLIP-sized vision
encoder (ViT-B/16, 224x224, batch 1, random weights; tests/peer/onnx_models.vit).

Models: FP32; INT8 from `medquant quantize onnx` (dynamic, qint8, MatMul);
INT8 from ORT's quantize_dynamic (same options); int8_conv (MatMul and the
patch-embedding Conv, quint8 weights: ConvInteger); qdq_matmul and qdq
(`quantize onnx --static`, MatMul only / the default op list, calibrated on 4
random images); --models picks some. Each model is run by
`medquant bench --json` and by ONNX Runtime (all graph optimisations, same
thread count) in separate processes, 1 and 2 threads: load time, median and
p90 latency over --runs runs after --warmup, the median CPU time per run
(process CPU time around each run: on a machine shared with other work it
moves far less than wall time; compared at 1 thread only, since idle worker
threads that spin make multi-thread CPU time incomparable), peak RSS of that
process. Prints one JSON row per (model, threads, runtime) and a summary with
the issue's targets (wall-time ratios; cpu_* ratios beside them at 1 thread);
with --out also writes the rows there."""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "peer"))


def ort_child(model, threads, runs, warmup):
    import numpy as np
    import onnxruntime as ort
    t0 = time.perf_counter()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1000
    i = s.get_inputs()[0]
    x = np.random.default_rng(1).uniform(-1, 1, size=[d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
    for _ in range(warmup):
        s.run(None, {i.name: x})
    ms, cpu = [], []
    for _ in range(runs):
        c = time.process_time()
        t = time.perf_counter()
        s.run(None, {i.name: x})
        ms.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    ms.sort()
    # VmHWM of this process image (ru_maxrss would include the parent's RSS at fork).
    rss = next(float(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print(json.dumps({"load_ms": load_ms, "median_ms": float(np.percentile(ms, 50)),
                      "p90_ms": float(np.percentile(ms, 90)), "min_ms": ms[0],
                      "median_cpu_ms": float(np.percentile(cpu, 50)), "peak_rss_mb": rss}))


MODELS = ("fp32", "int8_medquant", "int8_ort_quantizer", "int8_conv", "qdq_matmul", "qdq")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--medquant", default=os.environ.get("MEDQUANT_BIN", "medquant"))
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out")
    ap.add_argument("--workdir")
    ap.add_argument("--models", default="all",
                    help="comma-separated, of: " + ",".join(MODELS) + "; or all")
    ap.add_argument("--ort-child", nargs=4, metavar=("MODEL", "THREADS", "RUNS", "WARMUP"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.ort_child:
        m, t, r, w = a.ort_child
        return ort_child(m, int(t), int(r), int(w))

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    import onnx_models

    with tempfile.TemporaryDirectory(prefix="medquant-bench-runtime.") as tmp:
        work = Path(a.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        fp32, ours, theirs = work / "vit_fp32.onnx", work / "vit_int8_medquant.onnx", work / "vit_int8_ort.onnx"
        if not fp32.exists():
            onnx.save(onnx_models.vit(), str(fp32))
        if not ours.exists():
            subprocess.run([a.medquant, "-q", "quantize", "onnx", fp32, "-o", ours], check=True)
        if not theirs.exists():
            quantize_dynamic(str(fp32), str(theirs), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
        models = list(MODELS) if a.models == "all" else [m for m in a.models.split(",") if m]
        for m in models:
            if m not in MODELS:
                sys.exit(f"error: --models: unknown model '{m}' (known: {', '.join(MODELS)})")
        paths = {"fp32": fp32, "int8_medquant": ours, "int8_ort_quantizer": theirs}
        extra = {"int8_conv": ["--op-types", "MatMul", "Conv", "--weight-type", "quint8"],
                 "qdq_matmul": ["--static", "--op-types", "MatMul"], "qdq": ["--static"]}
        for m in set(models) & set(extra):
            paths[m] = work / f"vit_{m}.onnx"
            if paths[m].exists():
                continue
            if "--static" in extra[m]:
                calib = work / "calib"
                calib.mkdir(exist_ok=True)
                import numpy as np
                for i in range(4):
                    np.save(calib / f"{i}.npy", np.random.default_rng(100 + i).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32))
                extra[m] += ["--calib", str(calib)]
            subprocess.run([a.medquant, "-q", "quantize", "onnx", fp32, "-o", paths[m], *extra[m]], check=True)
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
        rows = []
        for threads in [int(t) for t in a.threads.split(",")]:
            for label in models:
                path = paths[label]
                # Alternate the two runtimes so that a busy machine hurts both alike.
                p = subprocess.run([a.medquant, "--threads", str(threads), "bench", str(path), "--runs", str(a.runs),
                                    "--warmup", str(a.warmup), "--json"], capture_output=True, text=True, check=True)
                mq = json.loads(p.stdout)
                p = subprocess.run([sys.executable, __file__, "--ort-child", str(path), str(threads), str(a.runs),
                                    str(a.warmup)], capture_output=True, text=True, check=True)
                rt = json.loads(p.stdout)
                for name, r in (("medquant", mq), ("onnxruntime", rt)):
                    row = {"bench": "runtime_vit", "model": label, "runtime": name, "threads": threads, "cpu": cpu,
                           **{k: round(r[k], 2) for k in ("load_ms", "median_ms", "p90_ms", "median_cpu_ms", "peak_rss_mb")}}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        def med(model, runtime, t, key="median_ms"):
            return next(r[key] for r in rows if r["model"] == model and r["runtime"] == runtime and r["threads"] == t)
        summary = {"bench": "runtime_vit_summary", "cpu": cpu, "load_average": os.getloadavg()[0]}
        for t in sorted({r["threads"] for r in rows}):
            for m in models:
                if m not in ("fp32", "int8_medquant", "int8_ort_quantizer"):
                    summary[f"t{t}_{m}_vs_ort"] = round(med(m, "medquant", t) / med(m, "onnxruntime", t), 3)
                    if t == 1:
                        summary[f"t1_cpu_{m}_vs_ort"] = round(med(m, "medquant", 1, "median_cpu_ms") / med(m, "onnxruntime", 1, "median_cpu_ms"), 3)
            if not {"fp32", "int8_medquant", "int8_ort_quantizer"} <= set(models):
                continue
            summary[f"t{t}_int8_vs_ort_int8"] = round(med("int8_medquant", "medquant", t) / med("int8_medquant", "onnxruntime", t), 3)
            summary[f"t{t}_int8_ortq_vs_ort"] = round(med("int8_ort_quantizer", "medquant", t) / med("int8_ort_quantizer", "onnxruntime", t), 3)
            summary[f"t{t}_fp32_vs_ort_fp32"] = round(med("fp32", "medquant", t) / med("fp32", "onnxruntime", t), 3)
            summary[f"t{t}_int8_vs_fp32"] = round(med("int8_medquant", "medquant", t) / med("fp32", "medquant", t), 3)
            if t == 1:
                def cpu(model, runtime):
                    return med(model, runtime, 1, "median_cpu_ms")
                summary["t1_cpu_int8_vs_ort_int8"] = round(cpu("int8_medquant", "medquant") / cpu("int8_medquant", "onnxruntime"), 3)
                summary["t1_cpu_fp32_vs_ort_fp32"] = round(cpu("fp32", "medquant") / cpu("fp32", "onnxruntime"), 3)
                summary["t1_cpu_int8_vs_fp32"] = round(cpu("int8_medquant", "medquant") / cpu("fp32", "medquant"), 3)
        summary["targets"] = "int8_vs_ort_int8 <= 0.6, fp32_vs_ort_fp32 <= 0.9, int8_vs_fp32 <= 0.4"
        print(json.dumps(summary))
        if a.out:
            Path(a.out).write_text("\n".join(json.dumps(r) for r in rows + [summary]) + "\n")


if __name__ == "__main__":
    main()

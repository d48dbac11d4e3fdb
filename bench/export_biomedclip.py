"""medquant export biomedclip vs open_clip + torch.onnx.export on a full-size
BiomedCLIP-shaped checkpoint (bench/make_biomedclip_checkpoint.py: ViT-B/16 +
BiomedBERT-base, random weights, ~784 MB .bin).

Each tool runs in its own process on the same checkpoint (read once before,
so both start from the page cache): wall time, CPU time (user + sys; less
sensitive to other load on the machine) and peak RSS of that process.
medquant fsyncs what it writes (core::AtomicFile); torch.onnx.export does not,
so the row also gives the peer's time with its files fsynced afterwards.
Then ONNX Runtime runs both tools' vision and text models on the same inputs
(random images; random token ids with padding) and the outputs are compared.
Prints one JSON row; with --out also writes it there. Run with the peer venv
(onnxruntime); the peer itself runs in tools/.venv (torch, open_clip)."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def measured(cmd):
    """Runs cmd; returns (wall seconds, CPU seconds (user + sys), peak RSS in MiB, stdout)
    of that process alone."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", *map(str, cmd)], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{p.stdout}\n{p.stderr}")
    peak_kib, user, system = p.stderr.strip().splitlines()[-1].split()
    return seconds, float(user) + float(system), int(peak_kib) / 1024.0, p.stdout


def fsync_files(paths):
    t = time.perf_counter()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    return time.perf_counter() - t


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = os.cpu_count() or 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def compare(ours, theirs, feeds):
    a, b = session(ours), session(theirs)
    worst_abs, worst_cos = 0.0, 1.0
    for f in feeds:
        x = a.run(None, f)[0].astype(np.float64)
        y = b.run(None, f)[0].astype(np.float64)
        worst_abs = max(worst_abs, float(np.abs(x - y).max()))
        cos = (x * y).sum(-1) / np.linalg.norm(x, axis=-1) / np.linalg.norm(y, axis=-1)
        worst_cos = min(worst_cos, float(cos.min()))
    return worst_abs, worst_cos


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--medquant", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--tools-python", required=True, help="tools/.venv/bin/python (torch, open_clip)")
    ap.add_argument("--inputs", type=int, default=4)
    ap.add_argument("--out", help="also write the JSON row here")
    ap.add_argument("--workdir", help="keep the models here (default: a temporary folder)")
    args = ap.parse_args()
    ckpt = Path(args.checkpoint)
    here = Path(__file__).resolve().parent

    with tempfile.TemporaryDirectory(prefix="medquant-bench-export.") as tmp:
        work = Path(args.workdir or tmp)
        ours, theirs = work / "medquant", work / "torch"
        for d in (ours, theirs):
            d.mkdir(parents=True, exist_ok=True)
        with open(ckpt / "open_clip_pytorch_model.bin", "rb") as f:  # warm the page cache for both
            while f.read(64 << 20):
                pass

        mq_s, mq_cpu, mq_rss, _ = measured([args.medquant, "-q", "export", "biomedclip", ckpt, "-o", ours])
        pt_s, pt_cpu, pt_rss, pt_out = measured([args.tools_python, here / "export_biomedclip_torch.py", ckpt, theirs])
        files = [theirs / "biomedclip_vision.onnx", theirs / "biomedclip_text.onnx"]
        pt_sync = fsync_files(files)
        phases = json.loads(pt_out.strip().splitlines()[-1])

        rng = np.random.default_rng(0)
        images = [{"pixel_values": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}
                  for _ in range(args.inputs)]
        texts = []
        for i in range(args.inputs):
            n = int(rng.integers(4, 200))
            ids = np.zeros((1, 256), np.int64)
            ids[0, :n] = rng.integers(5, 30522, n)
            ids[0, 0], ids[0, n - 1] = 2, 3  # [CLS] ... [SEP]
            texts.append({"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)})
        v_abs, v_cos = compare(ours / "biomedclip_vision.onnx", files[0], images)
        t_abs, t_cos = compare(ours / "biomedclip_text.onnx", files[1], texts)

        size = lambda d: sum(p.stat().st_size for p in d.glob("*.onnx"))  # noqa: E731
        row = {
            "bench": "export_biomedclip",
            "checkpoint_bytes": (ckpt / "open_clip_pytorch_model.bin").stat().st_size,
            "medquant_s": round(mq_s, 3),
            "medquant_cpu_s": round(mq_cpu, 2),
            "medquant_peak_rss_mib": round(mq_rss, 1),
            "medquant_output_bytes": size(ours),
            "torch_s": round(pt_s, 3),
            "torch_plus_fsync_s": round(pt_s + pt_sync, 3),
            "torch_cpu_s": round(pt_cpu, 2),
            "torch_peak_rss_mib": round(pt_rss, 1),
            "torch_output_bytes": size(theirs),
            "torch_phases_s": {k: round(v, 3) for k, v in phases.items() if k.endswith("_s")},
            "speedup": round(pt_s / mq_s, 2),
            "speedup_durable": round((pt_s + pt_sync) / mq_s, 2),
            "cpu_ratio": round(pt_cpu / mq_cpu, 2),
            "rss_ratio": round(pt_rss / mq_rss, 2),
            "vision_max_abs_diff": v_abs,
            "vision_min_cosine": v_cos,
            "text_max_abs_diff": t_abs,
            "text_min_cosine": t_cos,
            "inputs": args.inputs,
            "load_average": os.getloadavg()[0],
            "versions": {"torch": phases.get("torch"), "open_clip": phases.get("open_clip"),
                         "onnxruntime": ort.__version__},
        }
        print(json.dumps(row))
        if args.out:
            Path(args.out).write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())

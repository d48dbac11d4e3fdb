"""`medquant classify` (zero-shot, medquant's executor) vs the same with ONNX
Runtime in Python, side by side on the same ONNX files, FP32 and INT8 vision
models.

Model sets: the tiny-biomedclip fixture (exported here), and, if the
exporter's full-size bench checkpoint exists
($MEDQUANT_CACHE/bench/biomedclip-vit_b16-bert_base, made by
bench/make_biomedclip_checkpoint.py: BiomedCLIP's shapes, random weights),
full-size BiomedCLIP (exported once into $MEDQUANT_CACHE/bench/zeroshot-full).
INT8 = `medquant quantize onnx` of the FP32 vision model (ORT runs that file
too). Labels: `medquant embed-labels` with the 30 built-in labels.

Per (model set, precision, threads), over --runs repetitions (medians):
  cold_ms   one process per classification of one image, spawn to exit:
            medquant: `medquant classify IMG --vision M --labels L --json`
              (load, PNG decode, preprocessing, encoder, softmax, print);
            ort: `python` running onnxruntime: import, InferenceSession (all
              graph optimisations), read labels.json, np.load the image's
              preprocessed pixels, run, softmax, print, exit. Pillow is not in the
              peer venv, so the ORT side does NOT decode or preprocess: the
              comparison is tilted in ORT's favour by that work.
  warm_ms   per image inside one process, the encoder and softmax, mean over
            K images after the first: medquant: the "encode" timing of a
            classify of K copies of the image / K (its --json timings_ms);
            ort: K more session.run + softmax after the first, in another
            process than the cold one. Medians of those means over the runs. medquant's decoding and
            preprocessing per image is reported beside (preprocess_ms).
  load_ms   model load inside the process (ort: and the import of
            onnxruntime, import_ms).
  cpu_ms    user + system CPU time of the cold process (less sensitive than
            wall time to other work on the machine).
  ratio     ort / medquant (> 1: medquant faster).
Also the largest probability difference between the two (same file, same
pixels) and whether their top labels agree ("same"; "tie" when both runtimes
see the two candidates within 1 % of each other: random weights give
near-uniform probabilities), as a sanity check. One JSON row per measurement on stdout; with
--out also written there.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIXTURE = ROOT / "tests" / "fixtures" / "tiny-biomedclip"
IMAGE = FIXTURE / "images" / "rgb_320x240.png"  # pixel_values.npy[0] is its preprocessed tensor
CACHE = Path(os.environ.get("MEDQUANT_CACHE", Path.home() / ".cache" / "medquant"))
FULL_CKPT = CACHE / "bench" / "biomedclip-vit_b16-bert_base"
FULL_OUT = CACHE / "bench" / "zeroshot-full"


def ort_child(model, labels, pixels, threads, runs):
    """Cold: everything after interpreter start. Prints the top label and timings."""
    t0 = time.perf_counter()
    import numpy as np
    import onnxruntime as ort
    t_import = time.perf_counter()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    t_load = time.perf_counter()
    lab = json.loads(Path(labels).read_text())
    txt = np.array([x["embedding"] for x in lab["labels"]], dtype=np.float64)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    px = np.load(pixels)[:1]
    name = s.get_inputs()[0].name

    def classify():
        e = s.run(None, {name: px})[0][0].astype(np.float64)
        logits = lab["logit_scale_exp"] * (txt @ (e / np.linalg.norm(e)))
        p = np.exp(logits - logits.max())
        return p / p.sum()

    p = classify()
    t_first = time.perf_counter()
    warm = []
    for _ in range(runs):
        t = time.perf_counter()
        classify()
        warm.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"import_ms": (t_import - t0) * 1000, "load_ms": (t_load - t_import) * 1000,
                      "first_ms": (t_first - t_load) * 1000, "warm_ms": statistics.mean(warm) if warm else None,
                      "probabilities": p.tolist()}))


CPU_MS = []  # user + sys CPU time of the last wall() child, ms


def top1_agreement(mine, theirs):
    """"same"; "tie" when each runtime's two candidates are within 1 % of its top probability of each
    other (random-weight models give near-uniform probabilities); else "differs"."""
    a, b = int(mine.argmax()), int(theirs.argmax())
    if a == b:
        return "same"
    close = mine[a] - mine[b] <= 0.01 * mine[a] and theirs[b] - theirs[a] <= 0.01 * theirs[b]
    return "tie" if close else "differs"


def wall(cmd):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    ms = (time.perf_counter() - t) * 1000
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_MS.append((r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1000)
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{p.stderr}")
    return ms, p.stdout


def prepare(mq, src, out):
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    vision, text = out / "biomedclip_vision.onnx", out / "biomedclip_text.onnx"
    int8, labels = out / "biomedclip_vision_int8.onnx", out / "labels.json"
    if not (vision.exists() and text.exists()):
        timings["export_s"] = wall([mq, "-q", "export", "biomedclip", src, "-o", out])[0] / 1000
    if not int8.exists():
        timings["quantize_s"] = wall([mq, "-q", "quantize", "onnx", vision, "-o", int8])[0] / 1000
    timings["embed_labels_s"] = wall([mq, "-q", "embed-labels", "--text", text, "--vocab", src / "vocab.txt",
                                      "-o", labels])[0] / 1000
    return {"fp32": vision, "int8": int8}, labels, timings


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--medquant", default=os.environ.get("MEDQUANT_BIN", "medquant"))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--copies", type=int, default=8, help="K images for medquant's warm figure")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--no-full", action="store_true", help="skip the full-size model")
    ap.add_argument("--out")
    ap.add_argument("--ort-child", nargs=5, metavar=("MODEL", "LABELS", "PIXELS", "THREADS", "RUNS"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.ort_child:
        m, lab, px, t, r = a.ort_child
        return ort_child(m, lab, px, int(t), int(r))

    mq = a.medquant
    rows = []
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    with tempfile.TemporaryDirectory(prefix="medquant-bench-classify.") as tmp:
        tmp = Path(tmp)
        sets = [("tiny-biomedclip", FIXTURE, tmp / "tiny")]
        if FULL_CKPT.joinpath(".complete").exists() and not a.no_full:
            sets.append(("biomedclip-full-size", FULL_CKPT, FULL_OUT))
        elif not a.no_full:
            print(json.dumps({"note": f"no full-size checkpoint at {FULL_CKPT} (bench/make_biomedclip_checkpoint.py)"}),
                  file=sys.stderr)
        pixels = tmp / "pixels.npy"
        import numpy as np
        np.save(pixels, np.load(FIXTURE / "reference" / "pixel_values.npy")[:1])
        copies = []
        for i in range(a.copies):
            c = tmp / f"copy{i}.png"
            c.write_bytes(IMAGE.read_bytes())
            copies.append(c)

        for name, src, out in sets:
            models, labels, prep = prepare(mq, src, out)
            prep_row = {"bench": "classify", "model_set": name, "phase": "prepare", **prep, "cpu": cpu,
                        "loadavg": os.getloadavg()[0]}
            rows.append(prep_row)
            print(json.dumps(prep_row), flush=True)
            for prec, model in models.items():
                for threads in [int(t) for t in a.threads.split(",")]:
                    base = [mq, "-q", "--threads", str(threads), "classify", "--vision", model, "--labels", labels,
                            "--json", "--top", "0"]
                    cold, many, ort_cold, ort_first, ort_runs, cpu_ms, ort_cpu = [], [], [], [], [], [], []
                    out_json = None
                    for _ in range(a.runs):  # interleaved, so load on the machine hits both alike
                        ms, stdout = wall(base + [IMAGE])
                        cold.append(ms)
                        cpu_ms.append(CPU_MS[-1])
                        out_json = json.loads(stdout)
                        many.append(json.loads(wall(base + copies)[1])["timings_ms"])
                        ort = [sys.executable, __file__, "--ort-child", model, labels, pixels, str(threads)]
                        ms, stdout = wall(ort + ["0"])  # cold: one classification, then exit
                        ort_cold.append(ms)
                        ort_cpu.append(CPU_MS[-1])
                        ort_first.append(json.loads(stdout))
                        ort_runs.append(json.loads(wall(ort + [str(len(copies))])[1]))  # warm: K more
                    lab = [x["name"] for x in json.loads(Path(labels).read_text())["labels"]]
                    mine = np.zeros(len(lab))
                    for e in out_json["images"][0]["top"]:
                        mine[lab.index(e["label"])] = e["probability"]
                    theirs = np.array(ort_first[-1]["probabilities"])
                    med = statistics.median
                    k = len(copies)
                    mq_cold, o_cold = med(cold), med(ort_cold)
                    mq_warm = med(t["encode"] for t in many) / k
                    o_warm = med(r["warm_ms"] for r in ort_runs)
                    row = {"bench": "classify", "model_set": name, "precision": prec, "threads": threads,
                           "model_mb": round(model.stat().st_size / 2**20, 1), "labels": len(lab),
                           "medquant_cold_ms": round(mq_cold, 1), "ort_cold_ms": round(o_cold, 1),
                           "cold_ratio": round(o_cold / mq_cold, 2),
                           "medquant_cold_cpu_ms": round(med(cpu_ms), 1), "ort_cold_cpu_ms": round(med(ort_cpu), 1),
                           "medquant_load_ms": round(med(t["load"] for t in many), 1),
                           "ort_import_ms": round(med(r["import_ms"] for r in ort_first), 1),
                           "ort_load_ms": round(med(r["load_ms"] for r in ort_first), 1),
                           "medquant_warm_ms": round(mq_warm, 2), "ort_warm_ms": round(o_warm, 2),
                           "warm_ratio": round(o_warm / mq_warm, 2),
                           "medquant_preprocess_ms": round(med(t["preprocess"] for t in many) / k, 2),
                           "max_abs_prob_diff": float(np.abs(mine - theirs).max()),
                           "top1": top1_agreement(mine, theirs),
                           "runs": a.runs, "loadavg": round(os.getloadavg()[0], 1)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if a.out:
        Path(a.out).write_text("\n".join(json.dumps(r) for r in rows) + "\n")


if __name__ == "__main__":
    sys.exit(main())

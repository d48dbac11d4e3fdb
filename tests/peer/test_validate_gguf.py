"""`medquant validate gguf` and `medquant test-all` against llama-perplexity.

Models: the tiny Gemma 3 fixture as an F16 GGUF (gguf_models.gemma3_gguf, as
test_quantize_gguf.py makes it) and its Q8_0 / Q4_K_S made by `medquant
quantize gguf`. Text: data/medical_sample.txt (the built-in sample). The
reference figures are the pinned llama-perplexity's own, on the same files
and text: `-f TEXT -c N --kl-divergence-base FILE`, then `--kl-divergence`.

- Every figure llama-perplexity prints (PPL of both, their ratio, KLD mean /
  percentiles / max, top-1 agreement "Same top p", RMS dp) equals medquant's
  to the printed precision, and medquant's stored reference log-probs are
  byte for byte llama-perplexity's file (so the logits themselves are equal).
- The honest Q8_0 build passes; a build whose weights the test scrambles
  (rows of every block tensor permuted, with the gguf package) fails with
  exit 1 and names the failing metric.
- Per-tensor errors equal the quantizer's own (`quantize gguf --json`).
- Speed figures come from the repeated runs after warm-up (counts only; no
  timing is asserted).
- The HTML report renders in headless Chromium with no console message and
  shows the key numbers; a screenshot is left in the build folder.
- test-all finds the builds of a deployment folder, prints one line each,
  skips BiomedCLIP honestly, and exits by the results.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import gguf_models  # noqa: E402

MEDQUANT = os.environ.get("MEDQUANT_BIN", "medquant")
FIXTURES = Path(os.environ.get("MEDQUANT_FIXTURES", Path(__file__).parents[1] / "fixtures"))
LLAMA_PREFIX = Path(os.environ.get("MEDQUANT_LLAMA_PREFIX", ""))
BUILD_DIR = Path(os.environ.get("MEDQUANT_BUILD_DIR", "."))
LLAMA_PERPLEXITY = LLAMA_PREFIX / "bin" / "llama-perplexity"
SAMPLE_TEXT = Path(__file__).parents[2] / "data" / "medical_sample.txt"
THREADS = 1  # figures do not depend on it; one thread avoids spinning on a busy machine

pytestmark = pytest.mark.skipif(not LLAMA_PERPLEXITY.exists(),
                                reason=f"llama-perplexity not found under {LLAMA_PREFIX}")


def run(cmd, check=True, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


# ---------------------------------------------------------------- inputs


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("validate-gguf")


@pytest.fixture(scope="session")
def models(work):
    m = {"f16": gguf_models.gemma3_gguf(FIXTURES / "tiny-gemma3", work / "tiny-f16.gguf", "f16")}
    m["summaries"] = {}
    for qtype in ("Q8_0", "Q4_K_S"):
        out = work / f"tiny-{qtype.lower()}.gguf"
        r = run([MEDQUANT, "--threads", 2, "quantize", "gguf", m["f16"], "-o", out, "--type", qtype, "--json"])
        m[qtype] = out
        m["summaries"][qtype] = json.loads(r.stdout)
    return m


@pytest.fixture(scope="session")
def broken(work, models):
    """The Q8_0 build with the rows of every block tensor permuted: a file
    llama.cpp loads and runs, with weights in the wrong places."""
    path = work / "tiny-q8_0-scrambled.gguf"
    shutil.copyfile(models["Q8_0"], path)
    reader = gguf.GGUFReader(path, "r+")
    rng = np.random.default_rng(7)
    n = 0
    for t in reader.tensors:
        if t.name.startswith("blk.") and len(t.data.shape) == 2:
            t.data[:] = t.data[rng.permutation(t.data.shape[0])]
            n += 1
    reader.data.flush()  # the tensors are views of this writable memory map
    del reader
    assert n > 0
    return path


# ---------------------------------------------------------------- llama-perplexity's figures


def parse_base(text):
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", text)
    assert m, text[-2000:]
    return {"ppl": (m.group(1), m.group(2))}


KLD_LINES = {
    "ppl_q": r"Mean PPL\(Q\)\s*:\s*(\S+) ± \s*(\S+)",
    "ppl_base": r"Mean PPL\(base\)\s*:\s*(\S+) ± \s*(\S+)",
    "cor": r"Cor\(ln\(PPL\(Q\)\), ln\(PPL\(base\)\)\):\s*(\S+)%",
    "ln_ratio": r"Mean ln\(PPL\(Q\)/PPL\(base\)\)\s*:\s*(\S+) ± \s*(\S+)",
    "ratio": r"Mean PPL\(Q\)/PPL\(base\)\s*:\s*(\S+) ± \s*(\S+)",
    "diff": r"Mean PPL\(Q\)-PPL\(base\)\s*:\s*(\S+) ± \s*(\S+)",
    "kld_mean": r"Mean    KLD:\s*(\S+) ± \s*(\S+)",
    "kld_max": r"Maximum KLD:\s*(\S+)",
    "kld_p99_9": r"99\.9%   KLD:\s*(\S+)",
    "kld_p99": r"99\.0%   KLD:\s*(\S+)",
    "kld_p95": r"95\.0%   KLD:\s*(\S+)",
    "kld_p90": r"90\.0%   KLD:\s*(\S+)",
    "kld_median": r"Median  KLD:\s*(\S+)",
    "kld_p10": r"10\.0%   KLD:\s*(\S+)",
    "kld_p5": r" 5\.0%   KLD:\s*(\S+)",
    "kld_p1": r" 1\.0%   KLD:\s*(\S+)",
    "kld_p0_1": r" 0\.1%   KLD:\s*(\S+)",
    "kld_min": r"Minimum KLD:\s*(\S+)",
    "rms_dp": r"RMS Δp    :\s*(\S+) ± \s*(\S+) %",
    "same_top": r"Same top p:\s*(\S+) ± \s*(\S+) %",
}


def parse_kld(text):
    out = {}
    for key, pattern in KLD_LINES.items():
        m = re.search(pattern, text)
        assert m, f"{key} not in llama-perplexity's output:\n{text[-3000:]}"
        out[key] = m.groups()
    return out


def run_tool(cmd, must_contain):
    """llama-perplexity prints its statistics through a logging thread; on a
    busy machine its last lines were seen missing once (exit code 0). Such a
    run is repeated, at most twice; a real failure still fails."""
    for _ in range(3):
        r = run(cmd)
        text = r.stdout + r.stderr
        if must_contain in text:
            return text
    raise AssertionError(f"{must_contain!r} never appeared in the output of {cmd}:\n{text[-3000:]}")


def llama_perplexity(work, ref, cands, ctx, batch=None):
    """Base run on ref, then a KLD run per candidate; returns the base file,
    the base figures and the KLD figures per candidate."""
    tag = f"c{ctx}-b{batch}"
    base_file = work / f"llama-{tag}.kld"
    opts = ["-c", ctx, "-t", THREADS] + (["-b", batch] if batch else [])
    if not base_file.exists():
        text = run_tool([LLAMA_PERPLEXITY, "-m", ref, "-f", SAMPLE_TEXT, *opts, "--kl-divergence-base", base_file],
                        "Final estimate")
        (work / f"llama-{tag}-base.txt").write_text(text)
    base = parse_base((work / f"llama-{tag}-base.txt").read_text())
    klds = {}
    for name, cand in cands.items():
        klds[name] = parse_kld(run_tool([LLAMA_PERPLEXITY, "-m", cand, *opts, "--kl-divergence-base", base_file,
                                         "--kl-divergence"], "Same top p:"))
    return base_file, base, klds


def medquant_validate(ref, cand, *opts, check=True):
    return run([MEDQUANT, "--threads", THREADS, "validate", "gguf", "--ref", ref, "--cand", cand, *opts],
               check=check)


def close_to_printed(ours, printed, what):
    """ours rounds to the printed text: |ours - printed| <= half a unit of its last digit."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    tol = 0.5 * 10.0 ** -decimals * (1 + 1e-9) + 1e-12
    assert abs(float(ours) - float(printed)) <= tol, f"{what}: medquant {ours!r}, llama-perplexity {printed}"


def assert_same_figures(metrics, base, kld):
    p = metrics["perplexity"]
    close_to_printed(p["reference"]["value"], base["ppl"][0], "PPL(base) of the base run")
    close_to_printed(p["reference"]["uncertainty"], base["ppl"][1], "PPL(base) uncertainty")
    pairs = {
        "ppl_q": p["candidate"], "ppl_base": p["reference_from_stored_logprobs"],
        "ln_ratio": p["ln_ratio"], "ratio": p["ratio"], "diff": p["difference"],
    }
    for key, ours in pairs.items():
        close_to_printed(ours["value"], kld[key][0], key)
        close_to_printed(ours["uncertainty"], kld[key][1], key + " uncertainty")
    close_to_printed(100 * p["ln_correlation"], kld["cor"][0], "correlation")
    k = metrics["kl_divergence"]
    close_to_printed(k["mean"], kld["kld_mean"][0], "KLD mean")
    close_to_printed(k["mean_uncertainty"], kld["kld_mean"][1], "KLD mean uncertainty")
    for key in ("max", "p99_9", "p99", "p95", "p90", "median", "p10", "p5", "p1", "p0_1", "min"):
        close_to_printed(k[key], kld["kld_" + key][0], "KLD " + key)
    t = metrics["top1_agreement"]
    close_to_printed(100 * t["value"], kld["same_top"][0], "same top p")
    close_to_printed(100 * t["uncertainty"], kld["same_top"][1], "same top p uncertainty")
    d = metrics["delta_p"]
    close_to_printed(100 * d["rms"], kld["rms_dp"][0], "RMS dp")


# ---------------------------------------------------------------- figures equal llama-perplexity's


@pytest.mark.parametrize("ctx,batch", [(128, None), (256, 128)])
def test_figures_equal_llama_perplexity(work, models, ctx, batch):
    """(128, default batch 2048): 16 chunks per batch as parallel sequences;
    (256, 128): each chunk in two batches (the tool's other path)."""
    cands = {q: models[q] for q in ("Q8_0", "Q4_K_S")}
    base_file, base, klds = llama_perplexity(work, models["f16"], cands, ctx, batch)
    for name, cand in cands.items():
        ours_file = work / f"ours-{name}-{ctx}.kld"
        opts = ["--ctx", ctx, "--text", SAMPLE_TEXT, "--skip-speed", "--json", "--save-base-logits", ours_file]
        if batch:
            opts += ["--batch", batch]
        r = medquant_validate(models["f16"], cand, *opts)
        report = json.loads(r.stdout)
        assert report["schema_version"] == 1 and report["status"] == "PASS"
        v = report["validations"][0]
        assert v["kind"] == "gguf" and v["status"] == "PASS"
        assert_same_figures(v["metrics"], base, klds[name])
        # The stored reference log-probs (and tokens) are llama-perplexity's, byte for byte.
        assert ours_file.read_bytes() == base_file.read_bytes()
        ev = v["metrics"]["evaluation"]
        assert ev["n_ctx"] == ctx and ev["scored_tokens"] == ev["n_chunk"] * (ctx - 1 - ctx // 2)
        assert v["metrics"]["llama_cpp"]["version"].endswith("-b11312")


def test_builtin_text_is_the_sample_file(work, models):
    a = json.loads(medquant_validate(models["f16"], models["Q8_0"], "--ctx", 128, "--skip-speed", "--json").stdout)
    b = json.loads(medquant_validate(models["f16"], models["Q8_0"], "--ctx", 128, "--skip-speed", "--json",
                                     "--text", SAMPLE_TEXT).stdout)
    ma, mb = a["validations"][0]["metrics"], b["validations"][0]["metrics"]
    assert ma["evaluation"]["text"].startswith("built-in")
    for key in ("perplexity", "kl_divergence", "top1_agreement"):
        assert ma[key] == mb[key]


def test_hugging_face_folder_as_reference(work, models):
    """--ref <HF folder> is converted first (its own float type, bf16 here):
    the same figures as with the BF16 GGUF `medquant convert gguf` writes."""
    bf16 = work / "converted-bf16.gguf"
    run([MEDQUANT, "convert", "gguf", FIXTURES / "tiny-gemma3", "-o", bf16, "--outtype", "bf16"])
    opts = ("--ctx", 128, "--skip-speed", "--json")
    a = json.loads(medquant_validate(FIXTURES / "tiny-gemma3", models["Q8_0"], *opts).stdout)
    b = json.loads(medquant_validate(bf16, models["Q8_0"], *opts).stdout)
    ma, mb = a["validations"][0]["metrics"], b["validations"][0]["metrics"]
    assert "converted from" in ma["reference"]["converted_from"] and ma["reference"]["file_type"] == "BF16"
    for key in ("perplexity", "kl_divergence", "top1_agreement", "tensors"):
        assert ma[key] == mb[key], key


# ---------------------------------------------------------------- PASS / FAIL


def test_honest_q8_0_passes(work, models):
    r = medquant_validate(models["f16"], models["Q8_0"], "--ctx", 128, "--skip-speed")
    assert r.returncode == 0
    assert "[PASS] kld_mean" in r.stdout and "[PASS] top1_agreement" in r.stdout
    assert r.stdout.rstrip().splitlines()[-1] == "PASS"
    assert "llama.cpp 0.3.36-b11312" in r.stdout  # which build computed the figures


def test_scrambled_build_fails_naming_the_metric(work, models, broken):
    r = medquant_validate(models["f16"], broken, "--ctx", 128, "--skip-speed", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "[FAIL] kld_mean" in r.stdout
    assert "FAIL: kld_mean" in r.stdout and "validation failed: kld_mean" in r.stderr
    # Thresholds are flags: loose enough ones let the same file through.
    r = medquant_validate(models["f16"], broken, "--ctx", 128, "--skip-speed", "--max-kld-mean", 100,
                          "--min-top1", 0, "--max-ppl-ratio", 100, check=False)
    assert r.returncode == 0, r.stdout
    r = medquant_validate(models["f16"], models["Q8_0"], "--ctx", 128, "--skip-speed", "--max-kld-p99", 1e-9,
                          check=False)
    assert r.returncode == 1 and "[FAIL] kld_p99" in r.stdout


def test_tensor_errors_are_the_quantizers(work, models):
    r = medquant_validate(models["f16"], models["Q4_K_S"], "--ctx", 128, "--skip-speed", "--json")
    ours = {t["name"]: t for t in json.loads(r.stdout)["validations"][0]["metrics"]["tensors"]}
    summary = models["summaries"]["Q4_K_S"]
    quantized = [t for t in summary["tensors"] if t["quantized"]]
    assert quantized and {t["name"] for t in quantized} == set(ours)
    for t in quantized:
        o = ours[t["name"]]
        assert o["type"].lower() == t["to"].lower()
        assert o["rmse"] == pytest.approx(t["stats"]["rmse"], rel=1e-6, abs=1e-12), t["name"]
        assert o["max_abs_err"] == pytest.approx(t["stats"]["max_abs_err"], rel=1e-6, abs=1e-12), t["name"]
        assert o["rms_reference"] == pytest.approx(t["stats"]["rms_source"], rel=1e-6), t["name"]


def test_speed_comes_from_repeated_runs_after_warmup(work, models):
    r = medquant_validate(models["f16"], models["Q8_0"], "--ctx", 128, "--json", "--bench-prompt", 64,
                          "--bench-gen", 8, "--bench-reps", 4, "--bench-warmup", 2)
    m = json.loads(r.stdout)["validations"][0]["metrics"]
    for side in ("reference", "candidate"):
        s = m[side]["speed"]
        assert s["warmup_runs"] == 2 and s["repetitions"] == 4
        assert len(s["prompt"]["runs_ms"]) == 4 and s["prompt"]["tokens"] == 64
        assert len(s["generation"]["runs_ms"]) == 4 and len(s["generation"]["token_ms"]) == 4 * 8
        assert s["prompt"]["tokens_per_second"] > 0 and s["generation"]["tokens_per_second"] > 0
        assert s["load_ms"] > 0 and m[side]["peak_rss_bytes"] > 0
    assert m["candidate"]["file_size"] < m["reference"]["file_size"]
    assert m["candidate"]["bits_per_weight"] == pytest.approx(
        8 * m["candidate"]["tensor_bytes"] / m["candidate"]["elements"])


# ---------------------------------------------------------------- reports


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def headless(url, *extra):
    return run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-extensions", "--enable-logging=stderr", "--v=0", *extra, url], check=False)


def test_report_files(work, models):
    out = work / "report-q4ks"
    r = medquant_validate(models["f16"], models["Q4_K_S"], "--ctx", 128, "--report", out,
                          "--bench-reps", 2, "--bench-gen", 8)
    assert (out / "report.md").exists() and (out / "report.html").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "medquant.validation-report" and report["schema_version"] == 1
    v = report["validations"][0]
    assert {p["id"] for p in v["plots"]} == {"latency", "size", "tensor_error", "kld_distribution"}
    md = (out / "report.md").read_text()
    assert f"{v['metrics']['kl_divergence']['mean']:.6f}" in md and "| PASS |" in md
    html = (out / "report.html").read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (scripts/setup-deps.sh)")
def test_html_report_renders_in_headless_chromium(work, models):
    out = work / "report-chromium"
    medquant_validate(models["f16"], models["Q4_K_S"], "--ctx", 128, "--report", out,
                      "--bench-reps", 2, "--bench-gen", 8)
    metrics = json.loads((out / "report.json").read_text())["validations"][0]["metrics"]
    url = (out / "report.html").as_uri()
    # The console check must be able to see something: a page that logs an error does show up.
    control = work / "console-control.html"
    control.write_text("<!DOCTYPE html><html><body><script>console.error('control-error')</script></body></html>")
    r = headless(control.as_uri(), "--dump-dom")
    assert "control-error" in r.stderr, "chromium's console is not visible in its log: the check below would be blind"

    r = headless(url, "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    console = [line for line in r.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    dom = r.stdout
    assert 'id="overall"' in dom and ">PASS<" in dom
    for number in (f"{metrics['kl_divergence']['mean']:.6f}", f"{metrics['perplexity']['candidate']['value']:.6f}",
                   f"{100 * metrics['top1_agreement']['value']:.3f}", "0.3.36-b11312"):
        assert number in dom, number
    assert dom.count("<svg") >= 4 and 'id="v0-kld_distribution"' in dom
    shot = BUILD_DIR / "validate-report.png"
    r = headless(url, f"--screenshot={shot}", "--window-size=1100,4200", "--hide-scrollbars")
    assert shot.exists() and shot.stat().st_size > 10000, r.stderr[-2000:]


# ---------------------------------------------------------------- test-all


def deployment(work, models, name, builds):
    root = work / name
    if root.exists():
        shutil.rmtree(root)
    gemma = root / "models" / "medgemma"
    clip = root / "models" / "biomedclip"
    gemma.mkdir(parents=True)
    clip.mkdir(parents=True)
    shutil.copyfile(models["f16"], gemma / "medgemma-tiny-f16.gguf")
    for file_name, src in builds.items():
        shutil.copyfile(src, gemma / file_name)
    # An INT8 build without its FP32 reference: listed as SKIP (validate onnx
    # itself is tested in test_validate_onnx.py).
    (clip / "biomedclip_vision_int8.onnx").write_bytes(b"not read without a reference")
    return root


def test_test_all_passes_honest_builds(work, models):
    root = deployment(work, models, "edge_ok", {"medgemma-tiny-q8_0.gguf": models["Q8_0"],
                                                "medgemma-tiny-q4_k_s.gguf": models["Q4_K_S"]})
    r = run([MEDQUANT, "--threads", THREADS, "test-all", root, "--ctx", 128, "--bench-reps", 2,
             "--bench-gen", 8, "--report", work / "test-all-report"], check=False)
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[SKIP] BiomedCLIP INT8 - no biomedclip_vision.onnx reference beside it" in lines
    assert any(re.match(r"\[PASS\] MedGemma Q8_0 - [0-9.]+ tok/s, KLD \S+, PPL [+-][0-9.]+%", l) for l in lines), lines
    assert any(l.startswith("[PASS] MedGemma Q4_K_S - ") for l in lines), lines
    assert "2 passed, 0 failed, 1 skipped" in lines and lines[-2] == "ALL TESTS PASSED"
    report = json.loads((work / "test-all-report" / "report.json").read_text())
    assert report["summary"] == {"passed": 2, "failed": 0, "skipped": 1}
    onnx = [v for v in report["validations"] if v["kind"] == "onnx"]
    assert onnx and onnx[0]["status"] == "SKIP"
    html = (work / "test-all-report" / "report.html").read_text()
    assert 'id="v0-cosine_histogram"' in html and 'id="v0-zero_shot_confusion"' in html  # slots for validate onnx


def test_test_all_fails_a_broken_build(work, models, broken):
    root = deployment(work, models, "edge_broken", {"medgemma-tiny-q8_0.gguf": broken})
    r = run([MEDQUANT, "--threads", THREADS, "test-all", root, "--ctx", 128, "--skip-speed"], check=False)
    assert r.returncode == 1, r.stdout
    assert any(l.startswith("[FAIL] MedGemma Q8_0 - ") and "kld_mean" in l for l in r.stdout.splitlines()), r.stdout
    assert "TESTS FAILED: MedGemma Q8_0 (kld_mean" in r.stdout


def test_test_all_without_a_reference_or_builds(work, models):
    root = deployment(work, models, "edge_noref", {"medgemma-tiny-q8_0.gguf": models["Q8_0"]})
    (root / "models" / "medgemma" / "medgemma-tiny-f16.gguf").unlink()
    r = run([MEDQUANT, "test-all", root, "--ctx", 128, "--skip-speed"], check=False)
    assert r.returncode == 1 and "[SKIP] MedGemma Q8_0 - no F32/BF16/F16 reference GGUF" in r.stdout
    assert "NO TESTS RAN" in r.stdout
    empty = work / "edge_empty"
    empty.mkdir(exist_ok=True)
    r = run([MEDQUANT, "test-all", empty], check=False)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "no builds found" in r.stderr


# ---------------------------------------------------------------- bad input


def test_bad_inputs_give_clear_errors(work, models):
    truncated = work / "truncated.gguf"
    data = Path(models["Q8_0"]).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    r = medquant_validate(models["f16"], truncated, "--ctx", 128, "--skip-speed", check=False)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and str(truncated) in r.stderr
    r = medquant_validate(FIXTURES, models["Q8_0"], "--skip-speed", check=False)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "without config.json" in r.stderr
    short = work / "short.txt"
    short.write_text("The patient is well.\n")
    r = medquant_validate(models["f16"], models["Q8_0"], "--text", short, "--skip-speed", check=False)
    assert r.returncode == 1 and "tokens" in r.stderr and "needs at least" in r.stderr

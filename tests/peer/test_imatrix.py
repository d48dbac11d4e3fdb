"""`medquant imatrix` (and `pipeline medgemma --imatrix-text`) against the
pinned llama.cpp's `llama-imatrix`.

The tiny Gemma 3 fixture, converted by `medquant convert gguf` to F16 and
BF16, gets an importance matrix from the same medical text and context size
from both tools: the files must hold the same keys, tensor names and counts,
and the same sums (compared within float rounding, and then bit for bit:
the collection is the same arithmetic in the same order). `medquant quantize
gguf --imatrix` must give the same bytes with either file. The pipeline's
imatrix step must write what llama-imatrix writes for its reference GGUF.
Empty or too short texts must give `error: ...`, exit 1 and no output file.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import gguf
import numpy as np
import pytest

MEDQUANT = os.environ.get("MEDQUANT_BIN", "medquant")
FIXTURES = Path(os.environ.get("MEDQUANT_FIXTURES", Path(__file__).parents[1] / "fixtures"))
LLAMA_IMATRIX = Path(os.environ.get("MEDQUANT_LLAMA_PREFIX", "")) / "bin" / "llama-imatrix"
GEMMA = FIXTURES / "tiny-gemma3"
CTX = 64


def run(cmd, check=True, cwd=None):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, cwd=cwd)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def llama_imatrix(model, text, out, cwd):
    run([LLAMA_IMATRIX, "-m", model, "-f", text, "-o", out, "--output-format", "gguf", "-c", CTX,
         "-t", 2, "--no-ppl"], cwd=cwd)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Both tools run in this folder with the text given as "medical.txt", so
    the dataset name stored is the same string."""
    d = tmp_path_factory.mktemp("imatrix")
    words = ("the patient presented with chest pain and shortness of breath after exercise the scan "
             "showed consolidation of the right lower lobe blood cultures grew streptococcus "
             "pneumoniae and amoxicillin was started").split()
    rng = np.random.default_rng(7)
    (d / "medical.txt").write_text(" ".join(words[i] for i in rng.integers(0, len(words), 700)) + "\n")
    for t in ("f16", "bf16"):
        run([MEDQUANT, "convert", "gguf", GEMMA, "-o", d / f"model-{t}.gguf", "--outtype", t])
    return d


def tensors(path):
    return {t.name: np.array(t.data) for t in gguf.GGUFReader(path).tensors}


def kvs(path):
    r = gguf.GGUFReader(path)
    return {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}


@pytest.mark.parametrize("outtype", ["f16", "bf16"])
def test_same_as_llama_imatrix(work, outtype):
    model = f"model-{outtype}.gguf"
    run([MEDQUANT, "--threads", 2, "imatrix", model, "-f", "medical.txt", "-o", f"ours-{outtype}.gguf",
         "-c", CTX], cwd=work)
    llama_imatrix(model, "medical.txt", f"ref-{outtype}.gguf", work)
    ours, ref = work / f"ours-{outtype}.gguf", work / f"ref-{outtype}.gguf"

    assert kvs(ours) == kvs(ref)
    k = kvs(ours)
    assert k["imatrix.chunk_size"] == CTX and k["imatrix.chunk_count"] >= 2, k
    assert k["imatrix.datasets"] == ["medical.txt"], k
    a, b = tensors(ours), tensors(ref)
    assert sorted(a) == sorted(b)
    assert any(n.endswith(".ffn_down.weight.in_sum2") for n in a) and not any(n.startswith("output.") for n in a)
    for name in a:
        assert a[name].shape == b[name].shape, name
        if name.endswith(".counts"):
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        else:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-4, err_msg=name)
            assert np.all(a[name] > 0), name
    # Same values in the same order: the two files are the same bytes.
    assert ours.read_bytes() == ref.read_bytes()

    # quantize gguf gives the same file with either importance matrix.
    # (each copied to the same name: quantize.imatrix.file records it)
    outs = []
    for im in (ours, ref):
        d = work / f"q-{im.stem}"
        d.mkdir(exist_ok=True)
        (d / "imatrix.gguf").write_bytes(im.read_bytes())
        run([MEDQUANT, "--threads", 2, "quantize", "gguf", work / model, "-o", "q4ks.gguf", "--type", "Q4_K_S",
             "--imatrix", "imatrix.gguf"], cwd=d)
        outs.append((d / "q4ks.gguf").read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize("content,message", [
    ("", "the text is empty"),
    ("\n", "the text is empty"),
    ("the patient presented with chest pain\n", "needs at least 128"),
])
def test_bad_text_is_a_clear_error(work, content, message):
    text = work / "bad.txt"
    text.write_text(content)
    out = work / "never.gguf"
    r = run([MEDQUANT, "imatrix", "model-f16.gguf", "-f", text, "-o", out, "-c", CTX], check=False, cwd=work)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("error: ") and message in r.stderr and str(text) in r.stderr, r.stderr
    assert not out.exists() and not list(work.glob("never.gguf*"))


def test_missing_text_and_model_are_clear_errors(work):
    r = run([MEDQUANT, "imatrix", "model-f16.gguf", "-f", "no-such.txt", "-o", "x.gguf"], check=False, cwd=work)
    assert r.returncode == 1 and "no-such.txt" in r.stderr, r.stderr
    (work / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 20)
    r = run([MEDQUANT, "imatrix", "broken.gguf", "-f", "medical.txt", "-o", "x.gguf"], check=False, cwd=work)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "broken.gguf" in r.stderr, r.stderr
    assert not (work / "x.gguf").exists()


def test_pipeline_imatrix_text(work):
    out = work / "edge"
    args = [MEDQUANT, "pipeline", "medgemma", "--from", GEMMA, "-o", out, "--ctx", 64, "--skip-speed",
            "--imatrix-text", "medical.txt", "--imatrix-ctx", CTX]
    p = run(args, check=False, cwd=work)
    assert p.returncode in (0, 1), p.stderr  # 1 = validation FAIL, still a full run
    assert "medgemma: imatrix" in p.stderr, p.stderr
    imatrix = out / ".medquant" / "work" / "imatrix.gguf"
    reference = out / ".medquant" / "work" / "medgemma-4b-reference.gguf"
    llama_imatrix(reference, "medical.txt", "pipeline-ref.gguf", work)
    assert imatrix.read_bytes() == (work / "pipeline-ref.gguf").read_bytes()
    model = out / "models" / "medgemma" / "medgemma-4b-q4_k_s.gguf"
    keys = kvs(model)
    assert keys.get("quantize.imatrix.entries_count") == len(tensors(imatrix)) // 2, keys.keys()
    # Re-run: every step is up to date, the imatrix step included.
    p = run(args, check=False, cwd=work)
    assert "medgemma: skip imatrix" in p.stderr, p.stderr

    r = run([MEDQUANT, "pipeline", "medgemma", "--from", GEMMA, "-o", work / "edge2", "--imatrix-text",
             "medical.txt", "--imatrix", "x.gguf"], check=False, cwd=work)
    assert r.returncode == 1 and "not both" in r.stderr, r.stderr

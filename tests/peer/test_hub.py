"""`medquant fetch` / `medquant verify` against a mock Hugging Face Hub and
against huggingface_hub itself.

The mock (mock_hub.py) is a real HTTP server on 127.0.0.1, started and stopped
here, serving the fixture folders with the hub's endpoint paths, headers and
redirects. Nothing here talks to the real hub: HF_ENDPOINT always points at
the mock (or at a closed local port) and HF_HOME at a temporary folder.

Interoperability is checked both ways: huggingface_hub (offline) finds what
medquant fetched, and medquant (offline, and online without downloading
again) uses what huggingface_hub fetched from the same mock.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import resource
import select
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from mock_hub import Fault, MockHub, files_of_folder, git_blob_sha1, is_lfs  # noqa: E402

MEDQUANT = os.environ.get("MEDQUANT_BIN", "medquant")
FIXTURES = Path(os.environ.get("MEDQUANT_FIXTURES", Path(__file__).parents[1] / "fixtures"))

GEMMA = "medquant-test/tiny-gemma3"
CLIP = "medquant-test/tiny-biomedclip"
FAULTY = "medquant-test/faulty"
GATED = "medquant-test/gated-medgemma"
SHARDED = "medquant-test/sharded"


def synthetic_files() -> dict[str, bytes]:
    """Stand-in repo content when a fixture folder is absent."""
    rnd = hashlib.sha256(b"medquant").digest() * 40000
    return {"config.json": b'{"model_type": "none"}\n', "model.safetensors": rnd[:1_000_000],
            "tokenizer.model": rnd[:5000], "sub/dir/notes.txt": b"nested\n"}


def fixture_or_synthetic(name: str) -> dict[str, bytes]:
    folder = FIXTURES / name
    return files_of_folder(folder) if folder.is_dir() else synthetic_files()


@pytest.fixture(scope="module")
def hub():
    hub = MockHub().start()
    gemma = hub.add_repo(GEMMA)
    files = fixture_or_synthetic("tiny-gemma3")
    old = {k: v for k, v in files.items() if k != "chat_template.json"}
    old["config.json"] = b'{"model_type": "gemma3", "note": "first commit"}\n'
    hub.v1 = gemma.commit(old, ref=None, tags=("v1",))
    hub.gemma_files = files
    hub.gemma_sha = gemma.commit(files)
    clip = hub.add_repo(CLIP)
    hub.clip_files = fixture_or_synthetic("tiny-biomedclip")
    hub.clip_sha = clip.commit(hub.clip_files)
    faulty = hub.add_repo(FAULTY)
    rnd = b"".join(hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(2**15))  # 1 MiB
    hub.faulty_files = {"weights.safetensors": rnd, "config.json": b'{"hidden_size": 8}\n' * 50,
                        "huge.bin": b"\0" * 1000}
    faulty.listed_size["huge.bin"] = 1 << 50  # 1 PiB: the disk-space check must refuse it
    hub.faulty_sha = faulty.commit(hub.faulty_files)
    gated = hub.add_repo(GATED, gated=True)
    gated.commit({"config.json": b"{}\n", "model.safetensors": rnd[:50000]})
    yield hub
    hub.stop()


@pytest.fixture
def home(tmp_path):
    return tmp_path / "hf"


def env_for(hub_or_url, home: Path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub_or_url if isinstance(hub_or_url, str) else hub_or_url.endpoint,
               HF_HOME=str(home), NO_PROXY="*", no_proxy="*", HF_HUB_DISABLE_TELEMETRY="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def fetch(hub, home, *args, expect=0, **env):
    r = subprocess.run([MEDQUANT, "fetch", *map(str, args)], env=env_for(hub, home, **env),
                       capture_output=True, text=True, timeout=300)
    if expect is not None:
        assert r.returncode == expect, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def repo_dir(home: Path, repo: str) -> Path:
    return home / "hub" / ("models--" + repo.replace("/", "--"))


def blob_name(path: str, data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() if is_lfs(path, data) else git_blob_sha1(data)


def check_snapshot(home: Path, repo: str, sha: str, files: dict[str, bytes]):
    """The snapshot holds exactly `files`, each a relative symlink to its hash-named blob."""
    snap = repo_dir(home, repo) / "snapshots" / sha
    got = sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if not p.is_dir())
    assert got == sorted(files)
    for name, data in files.items():
        entry = snap / name
        assert entry.is_symlink(), name
        target = os.readlink(entry)
        assert not os.path.isabs(target)
        assert target == "../" * (name.count("/") + 2) + "blobs/" + blob_name(name, data)
        assert entry.read_bytes() == data, name
    assert not list((repo_dir(home, repo) / "blobs").glob("*.incomplete"))


def cdn_gets(hub, contains=""):
    return [r for r in hub.logged("GET", "/cdn/") if contains in r.path]


# ---------------------------------------------------------------- fetch


def test_fetch_whole_repo(hub, home):
    hub.clear()
    r = fetch(hub, home, GEMMA)
    snap = repo_dir(home, GEMMA) / "snapshots" / hub.gemma_sha
    assert r.stdout.strip() == str(snap)
    check_snapshot(home, GEMMA, hub.gemma_sha, hub.gemma_files)
    assert (repo_dir(home, GEMMA) / "refs" / "main").read_text() == hub.gemma_sha
    tree = json.loads((repo_dir(home, GEMMA) / "trees" / f"{hub.gemma_sha}.json").read_text())
    assert tree["format_version"] == 1 and sorted(tree["files"]) == sorted(hub.gemma_files)
    assert (home / "hub" / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    # One model-info call, then every file through resolve/<commit>, LFS ones redirected to the CDN.
    api = hub.logged("GET", "/api/models/")
    assert len(api) == 1 and "blobs=true" in api[0].path
    lfs = [p for p, d in hub.gemma_files.items() if is_lfs(p, d)]
    assert len(cdn_gets(hub)) == len(lfs) > 0
    assert all(r.host.startswith("localhost") for r in cdn_gets(hub))
    assert all(f"/resolve/{hub.gemma_sha}/" in r.path for r in hub.logged("GET", "/resolve/"))

    # Again: everything is cached, nothing is downloaded.
    hub.clear()
    fetch(hub, home, GEMMA)
    assert not hub.logged("GET", "/resolve/") and not cdn_gets(hub)


def test_fetch_include_exclude(hub, home):
    r = fetch(hub, home, GEMMA, "--include", "*.json", "--exclude", "tokenizer*")
    want = {p: d for p, d in hub.gemma_files.items() if p.endswith(".json") and not p.startswith("tokenizer")}
    check_snapshot(home, GEMMA, hub.gemma_sha, want)
    # A folder pattern adds to the same snapshot; '*' crosses '/' as in huggingface_hub.
    folder = next((p.split("/")[0] for p in hub.gemma_files if "/" in p), None)
    if folder:
        fetch(hub, home, GEMMA, "--include", f"{folder}/")
        want.update({p: d for p, d in hub.gemma_files.items() if p.startswith(folder + "/")})
        check_snapshot(home, GEMMA, hub.gemma_sha, want)
    # A name that isn't in the repo: a warning, recorded as huggingface_hub records a 404.
    r = fetch(hub, home, GEMMA, "--include", "config.json", "--include", "absent.txt")
    assert "no file matches --include 'absent.txt'" in r.stderr
    assert (repo_dir(home, GEMMA) / ".no_exist" / hub.gemma_sha / "absent.txt").exists()
    r = fetch(hub, home, GEMMA, "--include", "*.nothing", expect=1)
    assert "no file matches" in r.stderr and "config.json" in r.stderr


def test_fetch_pinned_revision(hub, home):
    r = fetch(hub, home, GEMMA, "--revision", "v1", "--include", "config.json")
    assert r.stdout.strip().endswith(hub.v1)
    assert (repo_dir(home, GEMMA) / "snapshots" / hub.v1 / "config.json").read_bytes().startswith(
        b'{"model_type": "gemma3", "note": "first commit"}')
    assert (repo_dir(home, GEMMA) / "refs" / "v1").read_text() == hub.v1
    # By commit sha: no ref is written for it.
    r = fetch(hub, home, GEMMA, "--revision", hub.gemma_sha, "--include", "config.json")
    assert r.stdout.strip().endswith(hub.gemma_sha)
    assert sorted(p.name for p in (repo_dir(home, GEMMA) / "refs").iterdir()) == ["v1"]
    r = fetch(hub, home, GEMMA, "--revision", "nope", expect=1)
    assert "revision 'nope' does not exist" in r.stderr


def test_offline_reuse(hub, home):
    fetch(hub, home, GEMMA, "--include", "*.json")
    hub.clear()
    for args, env in ((["--include", "*.json"], {"HF_HUB_OFFLINE": "1"}), (["--offline", "--include", "*.json"], {})):
        r = fetch(hub, home, GEMMA, *args, **env)
        assert r.stdout.strip() == str(repo_dir(home, GEMMA) / "snapshots" / hub.gemma_sha)
        assert "offline" in r.stderr
    assert hub.requests == []  # not one request
    # Files that were never fetched: the recorded file list says they are missing.
    r = fetch(hub, home, GEMMA, "--include", "model.safetensors", expect=1, HF_HUB_OFFLINE=1)
    assert "lacks 1 of the requested files (model.safetensors)" in r.stderr
    r = fetch(hub, home, CLIP, expect=1, HF_HUB_OFFLINE=1)
    assert "not in the cache" in r.stderr and "HF_HUB_OFFLINE" in r.stderr
    assert hub.requests == []
    # Without the recorded file list (older huggingface_hub caches) the snapshot folder is used.
    shutil.rmtree(repo_dir(home, GEMMA) / "trees")
    r = fetch(hub, home, GEMMA, "--include", "*.json", HF_HUB_OFFLINE=1)
    n_json = len([f for f in hub.gemma_files if f.endswith(".json")])
    assert r.stdout.strip().endswith(hub.gemma_sha) and f"{n_json} file(s)" in r.stderr


def test_unreachable_hub_uses_cache(hub, home):
    with socket.socket() as s:  # a local port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    r = fetch(dead, home, GEMMA, "--retries", "1", expect=1)
    assert dead in r.stderr and "gave up after 2 attempts" in r.stderr
    fetch(hub, home, GEMMA, "--include", "config.json")
    r = fetch(dead, home, GEMMA, "--include", "config.json", "--retries", "0")
    assert "using the cached snapshot" in r.stderr
    assert r.stdout.strip().endswith(hub.gemma_sha)


def test_local_dir(hub, home, tmp_path):
    out = tmp_path / "plain"
    r = fetch(hub, home, GEMMA, "--local-dir", out)
    assert r.stdout.strip() == str(out)
    for name, data in hub.gemma_files.items():
        assert not (out / name).is_symlink() and (out / name).read_bytes() == data
        meta = (out / ".cache" / "huggingface" / "download" / f"{name}.metadata").read_text().split("\n")
        assert meta[0] == hub.gemma_sha and meta[1] == blob_name(name, data)
    linked = tmp_path / "linked"
    fetch(hub, home, GEMMA, "--local-dir", linked, "--link", "--include", "*.safetensors")
    st = next(linked.glob("*.safetensors"))
    assert st.is_symlink() and Path(os.path.realpath(st)).parent.name == "blobs"


# ---------------------------------------------------------------- faults


def test_resume_after_dropped_connection(hub, home):
    hub.clear()
    hub.faults.append(Fault("weights.safetensors", drop_after=300_000))
    r = fetch(hub, home, FAULTY, "--exclude", "huge.bin")
    check_snapshot(home, FAULTY, hub.faulty_sha, {k: v for k, v in hub.faulty_files.items() if k != "huge.bin"})
    gets = cdn_gets(hub, "weights.safetensors")
    assert [g.headers.get("Range") for g in gets] == [None, "bytes=300000-"]
    assert "retry 1/5" in r.stderr


def test_resume_partial_file_of_an_earlier_run(hub, home):
    data = hub.faulty_files["weights.safetensors"]
    blobs = repo_dir(home, FAULTY) / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{hashlib.sha256(data).hexdigest()}.incomplete").write_bytes(data[:123_456])
    hub.clear()
    fetch(hub, home, FAULTY, "--include", "weights.safetensors")
    assert [g.headers.get("Range") for g in cdn_gets(hub)] == ["bytes=123456-"]
    check_snapshot(home, FAULTY, hub.faulty_sha, {"weights.safetensors": data})


def test_bad_partial_file_is_downloaded_again(hub, home):
    data = hub.faulty_files["weights.safetensors"]
    blobs = repo_dir(home, FAULTY) / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{hashlib.sha256(data).hexdigest()}.incomplete").write_bytes(b"\xff" * 1000)
    r = fetch(hub, home, FAULTY, "--include", "weights.safetensors")
    assert "mismatch after resuming; downloading again" in r.stderr
    check_snapshot(home, FAULTY, hub.faulty_sha, {"weights.safetensors": data})


def test_truncated_body(hub, home):
    hub.clear()
    hub.faults.append(Fault("weights.safetensors", truncate_to=1000))
    fetch(hub, home, FAULTY, "--include", "weights.safetensors")
    assert [g.headers.get("Range") for g in cdn_gets(hub)] == [None, "bytes=1000-"]
    # A server that always stops short and ignores Range makes no progress: an error after the
    # retries, nothing under a final name. (One that honours Range gets there piece by piece.)
    hub.clear()
    hub.faults.append(Fault("config.json", truncate_to=10, ignore_range=True, count=None))
    r = fetch(hub, home, FAULTY, "--include", "config.json", "--retries", "2", expect=1)
    assert "the body ended after 10 of" in r.stderr and "gave up after 3 attempts" in r.stderr
    assert not (repo_dir(home, FAULTY) / "snapshots" / hub.faulty_sha / "config.json").exists()
    assert not (repo_dir(home, FAULTY) / "blobs" / git_blob_sha1(hub.faulty_files["config.json"])).exists()


@pytest.mark.parametrize("name,kind", [("weights.safetensors", "sha256"), ("config.json", "git blob sha1")])
def test_wrong_content_is_refused(hub, home, name, kind):
    hub.clear()
    hub.faults.append(Fault(name, corrupt=True, count=None))
    r = fetch(hub, home, FAULTY, "--include", name, expect=1)
    data = hub.faulty_files[name]
    assert f"{kind} mismatch: expected {blob_name(name, data)}" in r.stderr
    assert "the download was discarded" in r.stderr
    rd = repo_dir(home, FAULTY)
    assert not (rd / "snapshots" / hub.faulty_sha / name).exists()
    assert [p.name for p in (rd / "blobs").iterdir()] == []  # no blob, no partial
    assert not (rd / "refs" / "main").exists()


def test_gated_repo_messages(hub, home):
    hub.clear()
    r = fetch(hub, home, GATED, expect=1)
    assert "401" in r.stderr and "gated" in r.stderr and "accept its licence" in r.stderr
    assert "--token" in r.stderr and "HF_TOKEN" in r.stderr and f"{hub.endpoint}/{GATED}" in r.stderr
    assert len(hub.requests) == 1  # a refusal is not retried
    r = fetch(hub, home, GATED, expect=1, HF_TOKEN="hf_wrong")
    assert "401" in r.stderr and "the token was refused" in r.stderr
    r = fetch(hub, home, GATED, expect=1, HF_TOKEN=MockHub.NO_ACCESS_TOKEN)
    assert "403" in r.stderr and "accept its licence" in r.stderr and "not in the authorized list" in r.stderr
    hub.clear()
    fetch(hub, home, GATED, "--token", MockHub.GOOD_TOKEN)
    # The token goes to the hub, never to the CDN host the redirect leads to.
    assert all(r.headers.get("Authorization") == f"Bearer {MockHub.GOOD_TOKEN}"
               for r in hub.requests if not r.path.startswith("/cdn/"))
    assert cdn_gets(hub) and all("Authorization" not in r.headers for r in cdn_gets(hub))
    # $HF_HOME/token is read too, as huggingface_hub does.
    (home / "token").write_text(MockHub.GOOD_TOKEN + "\n")
    fetch(hub, home, GATED, "--include", "config.json")


def test_not_found(hub, home):
    r = fetch(hub, home, "medquant-test/absent", expect=1)
    assert "404" in r.stderr and "repository medquant-test/absent not found" in r.stderr
    r = fetch(hub, home, "not a repo", expect=1)
    assert "not a hub repository id" in r.stderr


def test_rate_limit_and_server_errors(hub, home):
    hub.clear()
    hub.faults.append(Fault("/api/models/", status=429, retry_after="1", count=2))
    hub.faults.append(Fault("config.json", status=503, count=1))
    r = fetch(hub, home, FAULTY, "--include", "config.json")
    assert len(hub.logged("GET", "/api/models/")) == 3
    assert "HTTP 429" in r.stderr and "in 1.0 s" in r.stderr and "HTTP 503" in r.stderr
    hub.clear()
    hub.faults.append(Fault("/api/models/", status=503, count=None))
    r = fetch(hub, home, CLIP, "--retries", "2", expect=1)
    assert "HTTP 503" in r.stderr and "gave up after 3 attempts" in r.stderr
    assert len(hub.logged("GET", "/api/models/")) == 3
    hub.clear()
    hub.faults.append(Fault("/api/models/", status=429, retry_after="3600", count=1))
    r = fetch(hub, home, CLIP, expect=1)
    assert "retry after 3600 s" in r.stderr and len(hub.requests) == 1


def test_disk_space_checked_before_download(hub, home):
    hub.clear()
    r = fetch(hub, home, FAULTY, "--include", "huge.bin", expect=1)
    assert "not enough free disk space" in r.stderr and "1024.00 TiB" in r.stderr
    assert not hub.logged("GET", "/resolve/")


def test_stalled_server_is_retried(hub, home):
    hub.clear()
    hub.faults.append(Fault("weights.safetensors", stall=4))
    r = fetch(hub, home, FAULTY, "--include", "weights.safetensors", HF_HUB_DOWNLOAD_TIMEOUT=1)
    assert "retry 1/5" in r.stderr
    assert [g.headers.get("Range") for g in cdn_gets(hub)] == [None, f"bytes={len(hub.faulty_files['weights.safetensors']) // 2}-"]


def test_slow_server_progress_without_busy_loop(hub, home):
    """A server that trickles: the bars move, and the client sleeps while it waits."""
    hub.clear()
    hub.faults.append(Fault("weights.safetensors", slow=(16 << 10, 0.03)))  # 64 pieces, ~2 s
    main, sub = pty.openpty()  # progress is drawn only on a terminal
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.Popen([MEDQUANT, "fetch", FAULTY, "--include", "weights.safetensors"],
                            env=env_for(hub, home), stdout=subprocess.PIPE, stderr=sub)
    os.close(sub)
    screen = b""
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    assert proc.wait(timeout=60) == 0
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.close(main)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = screen.decode(errors="replace")
    frames = set(re.findall(r"weights\.safetensors\s+\[[#.]+\]\s+(\d+)%", text))
    assert len(frames) >= 3, text[-2000:]  # several distinct percentages on the way
    assert "100%" in text and "total (1 files)" in text
    assert wall > 1.5 and cpu < 0.5 * wall, f"cpu {cpu:.2f} s over {wall:.2f} s"


# ---------------------------------------------------------------- huggingface_hub


def run_python(code: str, env: dict[str, str]) -> str:
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_huggingface_hub_reads_medquant_cache(hub, home):
    fetch(hub, home, GEMMA)
    fetch(hub, home, GEMMA, "--revision", "v1", "--include", "config.json")
    out = run_python(f"""
        import json
        from huggingface_hub import hf_hub_download, snapshot_download, scan_cache_dir, try_to_load_from_cache
        res = {{}}
        res["config"] = hf_hub_download({GEMMA!r}, "config.json", local_files_only=True)
        res["weights"] = hf_hub_download({GEMMA!r}, "model.safetensors", local_files_only=True)
        res["v1"] = hf_hub_download({GEMMA!r}, "config.json", revision="v1", local_files_only=True)
        res["snapshot"] = snapshot_download({GEMMA!r}, local_files_only=True)
        res["try"] = try_to_load_from_cache({GEMMA!r}, "tokenizer.model")
        info = scan_cache_dir()
        res["warnings"] = [str(w) for w in info.warnings]
        repo = [r for r in info.repos if r.repo_id == {GEMMA!r}][0]
        res["size"] = repo.size_on_disk
        res["revisions"] = sorted((r.commit_hash, sorted(r.refs)) for r in repo.revisions)
        print(json.dumps(res))
    """, env_for(hub, home, HF_HUB_OFFLINE=1))
    res = json.loads(out)
    snap = repo_dir(home, GEMMA) / "snapshots"
    assert res["config"] == str(snap / hub.gemma_sha / "config.json")
    assert Path(res["weights"]).read_bytes() == hub.gemma_files["model.safetensors"]
    assert res["v1"] == str(snap / hub.v1 / "config.json")
    assert res["snapshot"] == str(snap / hub.gemma_sha)
    assert res["try"] == str(snap / hub.gemma_sha / "tokenizer.model")
    assert res["warnings"] == []
    assert res["revisions"] == sorted([[hub.gemma_sha, ["main"]], [hub.v1, ["v1"]]])


def test_medquant_reads_huggingface_hub_cache(hub, home, tmp_path):
    hub.clear()
    run_python(f"""
        from huggingface_hub import snapshot_download
        snapshot_download({CLIP!r})
    """, env_for(hub, home))
    assert cdn_gets(hub)  # huggingface_hub downloaded through the mock
    check_snapshot(home, CLIP, hub.clip_sha, hub.clip_files)
    hub.clear()
    r = fetch(hub, home, CLIP, HF_HUB_OFFLINE=1)
    assert r.stdout.strip() == str(repo_dir(home, CLIP) / "snapshots" / hub.clip_sha)
    assert hub.requests == []
    r = fetch(hub, home, CLIP)  # online: the listing is asked for, no file is downloaded again
    assert not hub.logged("GET", "/resolve/") and not cdn_gets(hub)
    assert f"{len(hub.clip_files)} from the cache" in r.stderr


def test_huggingface_hub_reuses_medquant_local_dir(hub, home, tmp_path):
    out = tmp_path / "plain"
    fetch(hub, home, GEMMA, "--local-dir", out, "--include", "*.safetensors", "--include", "config.json")
    hub.clear()
    run_python(f"""
        from huggingface_hub import hf_hub_download
        for f in ["config.json", "model.safetensors"]:
            hf_hub_download({GEMMA!r}, f, local_dir={str(out)!r})
    """, env_for(hub, home))
    # It asked for the metadata (HEAD), found our copies current, and downloaded nothing.
    assert hub.logged("HEAD", "/resolve/") and not hub.logged("GET", "/resolve/") and not cdn_gets(hub)

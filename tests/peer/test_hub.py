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
    r = fetch(hub, home, GEMMA, "--revision", "../../escape", expect=1)
    assert "not a valid revision" in r.stderr


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


def test_listing_without_blob_ids_uses_head(hub, home):
    """A listing with names only: each file's etag and size come from a HEAD on resolve/."""
    repo = hub.add_repo("medquant-test/names-only")
    repo.list_blobs = False
    files = {"config.json": b"{}\n", "weights.safetensors": hub.faulty_files["weights.safetensors"]}
    sha = repo.commit(files)
    hub.clear()
    fetch(hub, home, "medquant-test/names-only")
    check_snapshot(home, "medquant-test/names-only", sha, files)
    assert len(hub.logged("HEAD", "/resolve/")) == 2
    # Without blob ids there is no complete file list to record.
    assert not (repo_dir(home, "medquant-test/names-only") / "trees").exists()


def test_two_fetches_at_once_download_once(hub, home):
    """Two processes on one cache: the blob lock makes the second wait, then reuse the blob."""
    hub.clear()
    hub.faults.append(Fault("weights.safetensors", slow=(64 << 10, 0.1)))  # ~1.6 s
    args = [MEDQUANT, "fetch", FAULTY, "--include", "weights.safetensors"]
    first = subprocess.Popen(args, env=env_for(hub, home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not cdn_gets(hub) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(args, env=env_for(hub, home), capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.returncode == 0, second.stderr
    assert out.strip() == second.stdout.strip()
    assert "waiting for another process" in second.stderr
    assert len(cdn_gets(hub)) == 1
    check_snapshot(home, FAULTY, hub.faulty_sha, {"weights.safetensors": hub.faulty_files["weights.safetensors"]})


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


def test_expired_cdn_link_is_retried(hub, home):
    """A 403 from the CDN host (not the hub) is a stale signed link: resolve again, no licence talk."""
    hub.clear()
    hub.faults.append(Fault("/cdn/", status=403, count=1))
    r = fetch(hub, home, FAULTY, "--include", "weights.safetensors")
    assert "expired download link" in r.stderr and "licence" not in r.stderr
    assert len(hub.logged("GET", "/resolve/")) == 2


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


# ---------------------------------------------------------------- verify


def verify(target, home=None, *args, expect=0):
    env = env_for("http://127.0.0.1:9", home) if home else None
    r = subprocess.run([MEDQUANT, "verify", str(target), *map(str, args)], env=env, capture_output=True,
                       text=True, timeout=300)
    if expect is not None:
        assert r.returncode == expect, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def rows(report: str) -> list[tuple[str, str, str]]:
    """(status, check, detail) of each table row."""
    out = []
    for line in report.splitlines():
        m = re.match(r"  (ok|warn|FAIL|n/a)\s+(.+?)\s{2,}(.*)$", line)
        if m:
            out.append(m.groups())
    return out


def flip_byte(path: Path, offset: int):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def split_safetensors(data: bytes, parts: int) -> tuple[dict[str, bytes], dict]:
    """A sharded checkpoint (shards + index) of one safetensors file's bytes."""
    import struct
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    names = sorted(header, key=lambda k: header[k]["data_offsets"][0])
    body = data[8 + n:]
    files, weight_map = {}, {}
    for i in range(parts):
        chunk = names[i::parts]
        h, blobs, off = {}, [], 0
        for name in chunk:
            b, e = header[name]["data_offsets"]
            h[name] = {**header[name], "data_offsets": [off, off + e - b]}
            blobs.append(body[b:e])
            off += e - b
        if meta:
            h["__metadata__"] = meta
        hj = json.dumps(h).encode()
        hj += b" " * (-len(hj) % 8)
        shard = f"model-{i + 1:05d}-of-{parts:05d}.safetensors"
        files[shard] = struct.pack("<Q", len(hj)) + hj + b"".join(blobs)
        weight_map.update({name: shard for name in chunk})
    index = {"metadata": {"total_size": len(body)}, "weight_map": weight_map}
    return files, index


def test_verify_fetched_snapshots(hub, home):
    for repo in (GEMMA, CLIP):
        snap = Path(fetch(hub, home, repo).stdout.strip())
        r = verify(snap)
        assert "verdict: ok" in r.stdout
        got = {c: (s, d) for s, c, d in rows(r.stdout)}
        assert got["recorded hashes"][0] == "ok"
        assert got["recorded hashes"][1].startswith(f"{len(list(p for p in snap.rglob('*') if not p.is_dir()))} file(s) match")
        assert got["config <-> tensors"][0] == "ok"
        assert "hashes: hub snapshot" in r.stdout
    # A repo id is looked up in the cache, as huggingface_hub would.
    r = verify(GEMMA, home)
    assert "verdict: ok" in r.stdout and hub.gemma_sha in r.stdout
    r = verify(f"{GEMMA}@v1", home, expect=1)
    assert "not in the cache" in r.stderr


def test_verify_catches_a_flipped_byte(hub, home, tmp_path):
    snap = Path(fetch(hub, home, GEMMA).stdout.strip())
    weights = snap / "model.safetensors"
    flip_byte(Path(os.path.realpath(weights)), weights.stat().st_size - 100)  # in the tensor data
    r = verify(snap, expect=1)
    bad = [x for x in rows(r.stdout) if x[0] == "FAIL"]
    assert [x[1] for x in bad] == ["sha256 model.safetensors", "recorded hashes"]
    assert f"recorded {hashlib.sha256(hub.gemma_files['model.safetensors']).hexdigest()}" in bad[0][2]
    assert "verdict: FAIL" in r.stdout
    # The same in a --local-dir copy (recorded in .cache/huggingface/download), for a small file.
    out = tmp_path / "plain"
    fetch(hub, home, CLIP, "--local-dir", out)
    assert "verdict: ok" in verify(out).stdout
    text = (out / "vocab.txt").read_bytes()
    flip_byte(out / "vocab.txt", len(text) // 2)
    r = verify(out, expect=1)
    assert ("FAIL", "git-sha1 vocab.txt") in [x[:2] for x in rows(r.stdout)]
    # --no-hashes skips exactly that.
    assert "verdict: ok" in verify(out, None, "--no-hashes").stdout


def test_verify_catches_a_missing_shard(hub, home):
    shards, index = split_safetensors(hub.gemma_files["model.safetensors"], 2)
    files = {k: v for k, v in hub.gemma_files.items() if k != "model.safetensors"}
    files.update(shards)
    files["model.safetensors.index.json"] = json.dumps(index, indent=2).encode()
    repo = hub.repos.get(SHARDED) or hub.add_repo(SHARDED)
    sha = repo.commit(files)
    snap = Path(fetch(hub, home, SHARDED).stdout.strip())
    r = verify(snap)
    assert ("ok", "shards of model.safetensors.index.json", "all 2 shard(s) present") in rows(r.stdout)
    assert ("ok", "config <-> tensors") in [x[:2] for x in rows(r.stdout)]
    (snap / "model-00002-of-00002.safetensors").unlink()
    r = verify(snap, expect=1)
    failed = {c: d for s, c, d in rows(r.stdout) if s == "FAIL"}
    assert "1 of 2 shard(s) missing: model-00002-of-00002.safetensors" in failed["shards of model.safetensors.index.json"]
    assert "weights" in failed
    # Fetching only part of a sharded checkpoint is caught the same way.
    home2 = home.parent / "hf2"
    fetch(hub, home2, SHARDED, "--exclude", "model-00001-of-00002.safetensors")
    r = verify(repo_dir(home2, SHARDED) / "snapshots" / sha, expect=1)
    assert "model-00001-of-00002.safetensors" in r.stdout and "were not fetched" in r.stdout


@pytest.mark.parametrize("edit,expected", [
    (lambda c: c["text_config"].update(num_hidden_layers=c["text_config"]["num_hidden_layers"] - 1),
     "tensors the config does not imply: language_model.model.layers.5."),
    (lambda c: c["text_config"].update(intermediate_size=c["text_config"]["intermediate_size"] * 2),
     "shapes disagree with the config"),
    (lambda c: c["vision_config"].update(num_hidden_layers=3),
     "tensors the config implies are missing: vision_tower.vision_model.encoder.layers.2."),
    (lambda c: c.update(dtype="float32"), "dtypes disagree with the config"),
])
def test_verify_catches_config_weight_disagreement(tmp_path, edit, expected):
    src = FIXTURES / "tiny-gemma3"
    if not src.is_dir():
        pytest.skip("tests/fixtures/tiny-gemma3 is not there")
    folder = tmp_path / "model"
    shutil.copytree(src, folder)
    assert "verdict: ok" in verify(folder).stdout
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    r = verify(folder, expect=1)
    assert any(s == "FAIL" and c == "config <-> tensors" and expected in d for s, c, d in rows(r.stdout)), r.stdout


def test_verify_biomedclip_config_disagreement(tmp_path):
    src = FIXTURES / "tiny-biomedclip"
    if not src.is_dir():
        pytest.skip("tests/fixtures/tiny-biomedclip is not there")
    folder = tmp_path / "model"
    shutil.copytree(src, folder)
    config = json.loads((folder / "open_clip_config.json").read_text())
    config["model_cfg"]["embed_dim"] += 16
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    r = verify(folder, expect=1)
    assert "visual.head.proj.weight is [" in r.stdout and "text.proj.2.weight" in r.stdout


def test_verify_onnx_and_gguf_files(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    good = tmp_path / "good.onnx"
    onnx.save(model, good)
    r = verify(good)
    assert ("ok", "ONNX good.onnx") in [x[:2] for x in rows(r.stdout)]
    bad = tmp_path / "bad.onnx"
    model.graph.node[0].input[1] = "nowhere"  # an input nothing produces
    onnx.save(model, bad)
    assert ("FAIL", "ONNX bad.onnx") in [x[:2] for x in rows(verify(bad, expect=1).stdout)]
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[:-20])
    verify(cut, expect=1)

    import gguf
    def write_gguf(path, values):
        wr = gguf.GGUFWriter(str(path), "llama")
        wr.add_tensor("t", np.array(values, dtype=np.float32))
        wr.write_header_to_file()
        wr.write_kv_data_to_file()
        wr.write_tensors_to_file()
        wr.close()
    write_gguf(tmp_path / "good.gguf", [1.0] * 32)
    r = verify(tmp_path / "good.gguf")
    assert ("ok", "GGUF data good.gguf") in [x[:2] for x in rows(r.stdout)] and "architecture llama" in r.stdout
    write_gguf(tmp_path / "nan.gguf", [1.0] * 31 + [float("nan")])
    r = verify(tmp_path / "nan.gguf", expect=1)
    assert ("FAIL", "GGUF data nan.gguf") in [x[:2] for x in rows(r.stdout)]
    (tmp_path / "cut.gguf").write_bytes((tmp_path / "good.gguf").read_bytes()[:-64])
    r = verify(tmp_path / "cut.gguf", expect=1)
    assert ("FAIL", "GGUF cut.gguf") in [x[:2] for x in rows(r.stdout)]


def test_verify_unusable_targets(tmp_path):
    r = verify(tmp_path / "absent", expect=1)
    assert "no such file or folder" in r.stderr
    (tmp_path / "notes.txt").write_text("hello")
    r = verify(tmp_path, expect=1)
    assert "not a model folder medquant recognises" in r.stdout
    r = verify(tmp_path / "notes.txt", expect=1)
    assert "not a model file medquant verifies" in r.stdout

"""A mock Hugging Face Hub on 127.0.0.1 for tests: the real endpoint paths,
headers and redirects that `medquant fetch` and `huggingface_hub` use, with
switches that inject faults.

Served (as huggingface.co serves them):

  GET  /api/models/{repo}[/revision/{rev}][?blobs=true]
       {"id", "sha", "siblings": [{"rfilename", "size"?, "blobId"?, "lfs"?: {"sha256", "size",
       "pointerSize"}}]}            (size/blobId/lfs only with ?blobs=true)
  GET  /api/models/{repo}/tree/{rev}[/{path}][?recursive=true]
       [{"type": "file"|"directory", "oid", "size", "path", "lfs"?: {"oid", "size", "pointerSize"}}]
  HEAD/GET /{repo}/resolve/{rev}/{path}
       regular file: 200 + ETag "<git blob sha1>", X-Repo-Commit, Content-Length, Range support
       LFS file:     302 to http://localhost:{port}/cdn/{sha256}?... (another host name, as the
                     real CDN is), X-Linked-Etag "<sha256>", X-Linked-Size, X-Repo-Commit
  GET  /cdn/{sha256}   the LFS bytes, Range support (206 + Content-Range)

Errors: unknown repo -> 404 RepoNotFound; unknown revision -> 404 RevisionNotFound;
unknown file -> 404 EntryNotFound (with X-Repo-Commit); a gated repo without a
token -> 401 GatedRepo, with a bad token -> 401, with a token that has no access
-> 403 GatedRepo.

Faults (MockHub.faults, a list of Fault; each matches request paths (with the
query: a CDN URL names the file in it) by substring and fires `count` times,
None = always; status faults on any request, body faults on file bytes):
  Fault(match, status=503, retry_after="1")   answer with that status
  Fault(match, drop_after=N)                  send headers + N body bytes, then cut the connection
  Fault(match, truncate_to=N)                 a well-formed answer with only N body bytes
  Fault(match, corrupt=True)                  flip a byte of the body
  Fault(match, slow=(chunk, delay))           send the body `chunk` bytes at a time, `delay` apart
  Fault(match, stall=seconds)                 send half the body, then go silent
  Fault(match, ignore_range=True)             answer a Range request with the whole file (200)
Every request is logged in MockHub.requests as Request(method, path, host, headers).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import os
import re
import socket
import threading
import time
import urllib.parse
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".onnx", ".model", ".pt", ".pth", ".npy", ".msgpack",
                ".h5", ".jpg", ".png")
LFS_MIN_SIZE = 10 << 20  # the hub stores big files in LFS whatever their name


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str, data: bytes) -> bool:
    return path.endswith(LFS_SUFFIXES) or len(data) >= LFS_MIN_SIZE


@dataclasses.dataclass
class Fault:
    match: str
    count: int | None = 1
    status: int | None = None
    retry_after: str | None = None
    drop_after: int | None = None
    truncate_to: int | None = None
    corrupt: bool = False
    slow: tuple[int, float] | None = None
    stall: float | None = None
    ignore_range: bool = False
    fired: int = 0


@dataclasses.dataclass
class Request:
    method: str
    path: str
    host: str
    headers: dict[str, str]


class Repo:
    """A model repo: commits (sha -> {path: bytes}) and refs (name -> sha)."""

    def __init__(self, repo_id: str, gated: bool = False):
        self.repo_id = repo_id
        self.gated = gated
        self.commits: dict[str, dict[str, bytes]] = {}
        self.refs: dict[str, str] = {}
        self.listed_size: dict[str, int] = {}  # path -> a size the listing claims instead of the real one
        self.list_blobs = True  # False: answer ?blobs=true with names only (then clients HEAD each file)

    def commit(self, files: dict[str, bytes], ref: str | None = "main", tags: tuple[str, ...] = ()) -> str:
        h = hashlib.sha1()
        h.update(self.repo_id.encode())
        h.update(str(len(self.commits)).encode())
        for p in sorted(files):
            h.update(p.encode() + b"\0" + hashlib.sha256(files[p]).digest())
        sha = h.hexdigest()
        self.commits[sha] = dict(files)
        for r in ((ref,) if ref else ()) + tuple(tags):
            self.refs[r] = sha
        return sha

    def resolve(self, rev: str) -> str | None:
        if rev in self.refs:
            return self.refs[rev]
        if re.fullmatch(r"[0-9a-f]{40}", rev) and rev in self.commits:
            return rev
        return None


def files_of_folder(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by its path relative to it (as a hub repo holds them)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class MockHub:
    GOOD_TOKEN = "hf_mock_good"
    NO_ACCESS_TOKEN = "hf_mock_noaccess"

    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.blobs: dict[str, bytes] = {}  # sha256 -> bytes, for the CDN
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- set-up

    def add_repo(self, repo_id: str, gated: bool = False) -> Repo:
        repo = Repo(repo_id, gated)
        self.repos[repo_id] = repo
        return repo

    def start(self) -> "MockHub":
        hub = self

        class Handler(_Handler):
            mock = hub

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn(self) -> str:
        return f"http://localhost:{self.port}/cdn"

    # ---- test helpers

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.faults.clear()

    def logged(self, method: str | None = None, contains: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if (method is None or r.method == method) and contains in r.path]

    def take_fault(self, path: str, status: bool) -> Fault | None:
        """The next matching fault: a status fault (status=True) or a body fault."""
        with self.lock:
            for f in self.faults:
                if (f.status is not None) != status:
                    continue
                if f.match in path and (f.count is None or f.fired < f.count):
                    f.fired += 1
                    return f
        return None


class _Handler(http.server.BaseHTTPRequestHandler):
    mock: MockHub
    protocol_version = "HTTP/1.1"  # keep-alive, as the hub; every answer has a Content-Length

    def log_message(self, format, *args):  # quiet
        pass

    # ---- plumbing

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str, extra: dict[str, str] | None = None):
        headers = dict(extra or {})
        if code:
            headers["X-Error-Code"] = code
        headers["X-Error-Message"] = message
        self._send(status, json.dumps({"error": message}).encode(), headers)

    def _auth(self, repo: Repo) -> bool:
        """For a gated repo: answers 401/403 and returns False unless the token has access."""
        if not repo.gated:
            return True
        auth = self.headers.get("Authorization", "")
        page = f"{self.mock.endpoint}/{repo.repo_id}"
        if not auth:
            self._error(401, "GatedRepo", f"Access to model {repo.repo_id} is restricted. You must have "
                        "access to it and be authenticated to access it. Please log in.")
            return False
        token = auth.removeprefix("Bearer ").strip()
        if token == MockHub.GOOD_TOKEN:
            return True
        if token == MockHub.NO_ACCESS_TOKEN:
            self._error(403, "GatedRepo", f"Access to model {repo.repo_id} is restricted and you are not "
                        f"in the authorized list. Visit {page} to ask for access.")
            return False
        self._error(401, None, "Invalid credentials in Authorization header")
        return False

    def _send_content(self, data: bytes, headers: dict[str, str],
                      content_type: str = "application/octet-stream") -> None:
        """Sends file bytes with Range support and the body faults."""
        fault = self.mock.take_fault(self.path, status=False) if self.command == "GET" else None
        status = 200
        start, end = 0, len(data)
        rng = self.headers.get("Range")
        if rng and not (fault and fault.ignore_range):
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m:
                start = int(m.group(1))
                end = min(len(data), int(m.group(2)) + 1) if m.group(2) else len(data)
                if start >= len(data):
                    self._send(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"})
                    return
                status = 206
                headers = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{len(data)}"}
        body = data[start:end]
        if fault and fault.corrupt and body:
            i = len(body) // 2
            body = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1:]
        if fault and fault.truncate_to is not None:
            body = body[:fault.truncate_to]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Accept-Ranges", "bytes")
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault and fault.drop_after is not None:
            self.wfile.write(body[:fault.drop_after])
            self.wfile.flush()
            self._cut()
            return
        if fault and fault.stall is not None:
            half = len(body) // 2
            self.wfile.write(body[:half])
            self.wfile.flush()
            time.sleep(fault.stall)
            self._cut()
            return
        if fault and fault.slow:
            chunk, delay = fault.slow
            for i in range(0, len(body), chunk):
                self.wfile.write(body[i:i + chunk])
                self.wfile.flush()
                time.sleep(delay)
            return
        self.wfile.write(body)

    def _cut(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ---- routes

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query)
        with self.mock.lock:
            self.mock.requests.append(Request(self.command, self.path, self.headers.get("Host", ""),
                                              {k: v for k, v in self.headers.items()}))
        fault = self.mock.take_fault(self.path, status=True)
        if fault:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._error(fault.status, None, f"mock fault: HTTP {fault.status}", headers)
            return
        parts = [urllib.parse.unquote(p) for p in path.split("/")[1:]]
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            self._api(parts[2] + "/" + parts[3], parts[4:], query)
        elif parts[:1] == ["cdn"] and len(parts) == 2:
            data = self.mock.blobs.get(parts[1])
            if data is None:
                self._error(404, None, "no such object")
            else:
                self._send_content(data, {"ETag": f'"{hashlib.md5(data).hexdigest()}"'})
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]))
        else:
            self._error(404, None, f"no route for {path}")

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.mock.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        return repo if self._auth(repo) else None

    def _api(self, repo_id: str, rest: list[str], query: dict[str, list[str]]):
        repo = self._repo(repo_id)
        if repo is None:
            return
        if not rest:
            rev = "main"
        elif rest[0] == "revision" and len(rest) >= 2:
            rev = "/".join(rest[1:])
        elif rest[0] == "tree" and len(rest) >= 2:
            return self._tree(repo, rest[1], "/".join(rest[2:]), query)
        else:
            return self._error(404, None, "no such API")
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true") and repo.list_blobs
        siblings = []
        for p, data in sorted(repo.commits[sha].items()):
            s: dict = {"rfilename": p}
            if blobs:
                size = repo.listed_size.get(p, len(data))
                s["size"] = size
                s["blobId"] = git_blob_sha1(data)
                if is_lfs(p, data):
                    s["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": size,
                                "pointerSize": 134}
            siblings.append(s)
        info = {"_id": "0" * 24, "id": repo.repo_id, "modelId": repo.repo_id, "sha": sha,
                "private": False, "gated": "manual" if repo.gated else False, "disabled": False,
                "tags": [], "siblings": siblings}
        self._send(200, json.dumps(info).encode())

    def _tree(self, repo: Repo, rev: str, under: str, query: dict[str, list[str]]):
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = under + "/" if under else ""
        entries, dirs = [], set()
        for p, data in sorted(repo.commits[sha].items()):
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix):]
            if "/" in rel and not recursive:
                dirs.add(prefix + rel.split("/")[0])
                continue
            for i in range(1, rel.count("/") + 1):
                dirs.add(prefix + "/".join(rel.split("/")[:i]))
            e: dict = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": p}
            if is_lfs(p, data):
                e["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(e)
        entries += [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                    for d in sorted(dirs)]
        self._send(200, json.dumps(entries).encode())

    def _resolve(self, repo_id: str, rev: str, path: str):
        repo = self._repo(repo_id)
        if repo is None:
            return
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        data = repo.commits[sha].get(path)
        if data is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist on \"{rev}\"",
                               {"X-Repo-Commit": sha})
        if is_lfs(path, data):
            digest = hashlib.sha256(data).hexdigest()
            with self.mock.lock:
                self.mock.blobs[digest] = data
            location = f"{self.mock.cdn}/{digest}?X-Amz-Signature=mock&response-content-disposition=" \
                       + urllib.parse.quote(f'attachment; filename="{os.path.basename(path)}"')
            headers = {"X-Repo-Commit": sha, "X-Linked-Etag": f'"{digest}"', "X-Linked-Size": str(len(data)),
                       "ETag": f'"{digest}"', "Location": location}
            return self._send(302, f"Found. Redirecting to {location}".encode(), headers, "text/plain")
        self._send_content(data, {"X-Repo-Commit": sha, "ETag": f'"{git_blob_sha1(data)}"'},
                           "text/plain; charset=utf-8")

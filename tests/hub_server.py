"""A Hugging Face Hub API on loopback for tests: real olah for reads, a small labelled stand-in for writes.

What is real: olah (a self-hosted Hub mirror from PyPI) serves git repositories under ``mirrors/`` with
``offline = true``; the real ``huggingface_hub`` client talks HTTP to it; repositories are real git repos.

What is a stand-in (TEST ONLY, no third-party server offers the Hub's write API offline): this module's
HTTP front answers ``/api/repos/create``, ``/api/{type}s/{repo}/preupload/{rev}`` (every file "regular"),
``/api/{type}s/{repo}/commit/{rev}`` (applies the NDJSON operations to the same git repo with git) and
``/api/validate-yaml``; every other request is forwarded unchanged to olah.

Known olah limits (worked around here): files of 121-149 bytes make it answer 500, so the initial
``.gitattributes`` is longer; it answers 401 instead of 404 for missing files.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GITATTRIBUTES = "*.safetensors filter=lfs diff=lfs merge=lfs -text\n" * 4  # 216 bytes: outside olah's 121-149 byte failure window
GIT_ENV = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@localhost", "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@localhost"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True, env={**os.environ, **GIT_ENV}).stdout.strip()


def make_git_repo(path: Path, files: dict[str, bytes] | None = None, message: str = "initial commit") -> str:
    """A git repo on branch main with ``.gitattributes`` plus ``files``; returns the commit sha."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    (path / ".gitattributes").write_text(GITATTRIBUTES)
    for name, data in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)
    return git(path, "rev-parse", "HEAD")


class LoopbackHub:
    """olah + write stand-in on two loopback ports; use as a context manager; ``endpoint`` is what HF_ENDPOINT should be."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.mirrors = self.root / "mirrors"
        self.olah_port, self.port = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._olah: subprocess.Popen | None = None
        self._server: ThreadingHTTPServer | None = None

    def repo_path(self, repo_id: str, repo_type: str = "model") -> Path:
        return self.mirrors / f"{repo_type}s" / repo_id

    def __enter__(self) -> LoopbackHub:
        (self.mirrors / "models").mkdir(parents=True, exist_ok=True)
        (self.mirrors / "datasets").mkdir(parents=True, exist_ok=True)
        config = self.root / "olah.toml"
        config.write_text(
            f'[basic]\nhost = "127.0.0.1"\nport = {self.olah_port}\nrepos-path = "{self.root / "olah-cache"}"\n'
            f'mirrors-path = ["{self.mirrors}"]\nmirror-netloc = "127.0.0.1:{self.olah_port}"\n'
            f'mirror-lfs-netloc = "127.0.0.1:{self.olah_port}"\nmetadata-cache-ttl = 0\n\n[accessibility]\noffline = true\n')
        env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{self.olah_port}", "HF_HUB_OFFLINE": "0"}
        self._log = open(self.root / "olah.log", "wb")
        self._olah = subprocess.Popen([sys.executable, "-c", "from olah.server import cli; cli()", "-c", str(config)],
                                      cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self._wait_for_olah()
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._olah is not None:
            self._olah.terminate()
            try:
                self._olah.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._olah.kill()
        self._log.close()

    def _wait_for_olah(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self._olah.poll() is not None:
                raise RuntimeError(f"olah exited: {(self.root / 'olah.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.olah_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("olah did not start in time")

    # -- the write stand-in ----------------------------------------------------------------------
    def create_repo(self, payload: dict) -> tuple[int, dict]:
        name, org = payload["name"], payload.get("organization")
        repo_id = f"{org}/{name}" if org else name
        path = self.repo_path(repo_id, payload.get("type") or "model")
        body = {"url": f"{self.endpoint}/{repo_id}", "name": repo_id}
        if path.exists():
            return 409, {**body, "error": "You already created this repo"}
        make_git_repo(path)
        return 200, body

    def commit(self, repo_type: str, repo_id: str, ndjson: bytes) -> tuple[int, dict]:
        path = self.repo_path(repo_id, repo_type)
        if not path.exists():
            return 404, {"error": "Repository not found"}
        summary = "commit"
        for line in ndjson.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value.get("summary") or summary
            elif key == "file":
                target = path / value["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(base64.b64decode(value["content"]))
            elif key in ("deletedFile", "deletedFolder"):
                target = path / value["path"]
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
            else:
                return 400, {"error": f"stand-in does not support operation {key!r}"}
        git(path, "add", "-A")
        git(path, "commit", "-q", "--allow-empty", "-m", summary)
        sha = git(path, "rev-parse", "HEAD")
        return 200, {"commitUrl": f"{self.endpoint}/{repo_id}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None}


def _handler(hub: LoopbackHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _json(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[:3] == ["api", "repos", "create"]:
                return self._json(*hub.create_repo(json.loads(self._body())))
            if parts[:2] == ["api", "validate-yaml"]:
                self._body()
                return self._json(200, {"errors": [], "warnings": []})
            if len(parts) >= 6 and parts[0] == "api" and parts[4] == "preupload":
                files = json.loads(self._body())["files"]
                return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
            if len(parts) >= 6 and parts[0] == "api" and parts[4] == "commit":
                return self._json(*hub.commit(parts[1].rstrip("s"), f"{parts[2]}/{parts[3]}", self._body()))
            self._forward("POST", self._body())

        def do_GET(self) -> None:
            self._forward("GET")

        def do_HEAD(self) -> None:
            self._forward("HEAD")

        def _forward(self, method: str, body: bytes | None = None) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", hub.olah_port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            connection.request(method, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            length = response.getheader("Content-Length") if method == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)
            connection.close()

    return Handler

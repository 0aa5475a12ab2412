"""A fake Hugging Face Hub on 127.0.0.1: the few endpoints huggingface_hub's client calls for
`models search` and `models download`, in the Hub's own shapes, serving a tiny model's folder.

- ``GET /api/models``: the list, filtered by ``search``, ``filter`` (tags) and ``pipeline_tag``;
- ``GET /api/models/OWNER/NAME[/revision/REV]``: one model with its files and sizes;
- ``HEAD|GET /OWNER/NAME/resolve/REV/FILE``: a file, with the Hub's headers (X-Repo-Commit,
  ETag, Content-Length) and Range requests answered with 206.

And the ones ``HfApi.create_repo`` and ``HfApi.upload_folder`` call, for `push`:

- ``POST /api/repos/create``: a new, empty repository (409 when it exists, as the Hub answers);
- ``POST /api/validate-yaml``: the README's front matter, accepted (and kept in ``validated``);
- ``POST /api/models/OWNER/NAME/preupload/REV``: every file is a "regular" upload, so the
  client sends its bytes inside the commit itself and needs no LFS or Xet storage;
- ``POST /api/models/OWNER/NAME/commit/REV``: the ndjson commit; its files (base64) are stored
  in the repository's ``files`` and the commit in ``commits``, for tests to check what arrived.

Creating and writing need :data:`TOKEN`; without it they answer 401, as the Hub does.

Scripted failures: a gated repository answers 401 with ``X-Error-Code: GatedRepo`` unless the
request carries :data:`TOKEN`; a file listed but absent answers 404 ``EntryNotFound``;
``drop_once`` cuts the first GET of a file short (the connection closes), as a network drop
would. Every request is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_test_token"  # the one token a gated repository accepts


@dataclass
class Repo:
    repo_id: str
    files: dict[str, bytes]
    tags: list[str] = field(default_factory=list)
    task: str = "text-generation"
    downloads: int = 0
    params: int = 0
    gated: bool = False
    missing: tuple[str, ...] = ()  # listed in the file list, 404 when fetched
    private: bool = False
    commits: list[dict[str, Any]] = field(default_factory=list)  # pushed: {"summary", "files"} each

    def info(self) -> dict[str, Any]:
        siblings = [{"rfilename": name, "size": len(data)} for name, data in self.files.items()]
        siblings += [{"rfilename": name, "size": 10} for name in self.missing]
        data: dict[str, Any] = {
            "id": self.repo_id, "modelId": self.repo_id, "sha": COMMIT, "siblings": siblings, "tags": self.tags,
            "pipeline_tag": self.task, "downloads": self.downloads, "likes": 1, "private": self.private,
            "gated": "manual" if self.gated else False, "lastModified": "2026-01-01T00:00:00.000Z"}
        if self.params:
            data["safetensors"] = {"parameters": {"F32": self.params}, "total": self.params}
        return data


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


class FakeHub:
    def __init__(self, repos: list[Repo]) -> None:
        self.repos = {repo.repo_id: repo for repo in repos}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers in lower case)
        self.drop_once: dict[str, int] = {}  # file name -> bytes its first GET sends before the connection drops
        self.pause_per_mib = 0.0  # seconds between MiB of a file body: a slow connection
        self.validated: list[str] = []  # README texts sent to /api/validate-yaml
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def gets(self, name: str) -> list[dict[str, str]]:
        """The headers of every GET of a file called ``name``."""
        return [headers for method, path, headers in self.requests if method == "GET" and path.endswith("/" + name)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hub._serve(self, "GET")

            def do_HEAD(self) -> None:
                hub._serve(self, "HEAD")

            def do_POST(self) -> None:
                hub._post(self)

        return Handler

    def _serve(self, request: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(request.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        self.requests.append((method, path, {k.lower(): v for k, v in request.headers.items()}))
        if path == "/api/models":
            return self._json(request, 200, self._search(query))
        if path.startswith("/api/models/"):
            repo_id = "/".join(path.removeprefix("/api/models/").split("/")[:2])
            repo = self.repos.get(repo_id)
            if repo is None:
                return self._json(request, 404, {"error": "Repository not found"}, "RepoNotFound")
            return self._json(request, 200, repo.info())
        owner, name, _, _, *rest = (path.strip("/").split("/") + ["", "", ""])[:5]
        self._file(request, method, self.repos.get(f"{owner}/{name}"), "/".join(rest))

    # -- push: create a repository, then one commit of regular (inline) files -------------------

    def _post(self, request: BaseHTTPRequestHandler) -> None:
        path = unquote(urlsplit(request.path).path)
        self.requests.append(("POST", path, {k.lower(): v for k, v in request.headers.items()}))
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        if path == "/api/validate-yaml":
            self.validated.append(json.loads(body)["content"])
            return self._json(request, 200, {"errors": [], "warnings": []})
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._json(request, 401, {"error": "Invalid username or password."})
        if path == "/api/repos/create":
            return self._create(request, json.loads(body))
        owner, name, action = (path.removeprefix("/api/models/").split("/") + ["", "", ""])[:3]
        repo = self.repos.get(f"{owner}/{name}")
        if repo is None:
            return self._json(request, 404, {"error": "Repository not found"}, "RepoNotFound")
        if action == "preupload":
            files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                     for f in json.loads(body)["files"]]
            return self._json(request, 200, {"files": files})
        if action == "commit":
            return self._commit(request, repo, body)
        self._json(request, 404, {"error": "Not found"})

    def _create(self, request: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if repo_id in self.repos:
            return self._json(request, 409, {"error": "You already created this model repo",
                                             "url": f"{self.url}/{repo_id}"})
        self.repos[repo_id] = Repo(repo_id, {}, private=payload.get("visibility") == "private")
        self._json(request, 200, {"url": f"{self.url}/{repo_id}", "name": repo_id})

    def _commit(self, request: BaseHTTPRequestHandler, repo: Repo, body: bytes) -> None:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        files = {line["value"]["path"]: base64.b64decode(line["value"]["content"])
                 for line in lines if line["key"] == "file"}
        if any(line["key"] not in ("header", "file") for line in lines):  # LFS or deletions: not faked
            return self._json(request, 400, {"error": "only regular files are accepted"})
        repo.files.update(files)
        repo.commits.append({"summary": header["summary"], "files": sorted(files)})
        oid = hashlib.sha1(body).hexdigest()
        self._json(request, 200, {"commitUrl": f"{self.url}/{repo.repo_id}/commit/{oid}", "commitOid": oid})

    def _search(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        words = query.get("search", [""])[0].lower()
        tags, task = query.get("filter", []), query.get("pipeline_tag", [""])[0]
        found = [repo.info() for repo in self.repos.values()
                 if words in repo.repo_id.lower() and all(tag in repo.tags for tag in tags)
                 and (not task or repo.task == task)]
        found.sort(key=lambda info: -info["downloads"])
        return found[: int(query.get("limit", ["1000"])[0])]

    def _file(self, request: BaseHTTPRequestHandler, method: str, repo: Repo | None, name: str) -> None:
        if repo is None:
            return self._json(request, 404, {"error": "Repository not found"}, "RepoNotFound")
        if repo.gated and request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._json(request, 401, {"error": "Access to model is restricted."}, "GatedRepo")
        if name not in repo.files:
            return self._json(request, 404, {"error": "Entry not found"}, "EntryNotFound")
        data = repo.files[name]
        start = _range_start(request.headers.get("Range"))
        request.send_response(206 if start else 200)
        request.send_header("X-Repo-Commit", COMMIT)
        request.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        request.send_header("Content-Length", str(len(data) - start))
        if start:
            request.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        request.end_headers()
        if method == "HEAD":
            return
        if name in self.drop_once and not start:
            request.wfile.write(data[: self.drop_once.pop(name)])
            request.wfile.flush()
            request.close_connection = True
            return
        self._write(request, data[start:])

    def _write(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        step = 2**20
        for offset in range(0, len(body), step):
            request.wfile.write(body[offset:offset + step])
            if self.pause_per_mib:
                time.sleep(self.pause_per_mib)

    @staticmethod
    def _json(request: BaseHTTPRequestHandler, code: int, body: Any, error_code: str = "") -> None:
        data = json.dumps(body).encode()
        request.send_response(code)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        if error_code:
            request.send_header("X-Error-Code", error_code)
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)


def _range_start(value: str | None) -> int:
    if not value or not value.startswith("bytes="):
        return 0
    return int(value.removeprefix("bytes=").split("-")[0] or 0)

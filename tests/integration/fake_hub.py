"""A fake Hugging Face hub on 127.0.0.1 for tests: the HTTP calls huggingface_hub 2.4 makes.

It answers what `HfApi.model_info(files_metadata=True)` asks (GET /api/models/<repo>[/revision/
<rev>]?blobs=True), HEAD and GET on /<repo>/resolve/<rev>/<file> (X-Repo-Commit, ETag, and for
LFS files a 302 to a second "CDN" server with X-Linked-Etag and X-Linked-Size, as the hub does),
and the CDN's GET with Range (206). It never sends Xet headers, so huggingface_hub does not use
hf-xet. Point a client at it with `endpoint=hub.url` or HF_ENDPOINT=hub.url (read at import).

Knobs: `throttle_bps` (so a download can be killed midway), `corrupt` (file names served with
one byte changed), `token` (gated repos then need `Authorization: Bearer <token>`: 401 without,
403 with another), and `requests`, every request seen (to prove a Range resume).

Lives in tests/integration (on pytest's pythonpath) so unit and integration tests import it:
`from fake_hub import FakeHub`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

# Suffixes the hub stores in LFS (its default .gitattributes), and any file of 10 MiB or more.
LFS_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".gguf",
    ".pt",
    ".pth",
    ".h5",
    ".msgpack",
    ".onnx",
    ".model",
    ".tiktoken",
)
LFS_MIN_SIZE = 10 * 2**20
_PIECE = 64 * 1024


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of `data`: the hub's ETag of a file kept in git."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class RepoFile:
    """A file of a fake repo, with the ids the hub would list for it."""

    name: str
    data: bytes

    @property
    def lfs(self) -> bool:
        return self.name.endswith(LFS_SUFFIXES) or len(self.data) >= LFS_MIN_SIZE

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        return (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
            f"size {len(self.data)}\n"
        ).encode()

    @property
    def blob_id(self) -> str:
        return git_blob_sha1(self.pointer if self.lfs else self.data)

    def sibling(self, blobs: bool) -> dict:
        entry: dict = {"rfilename": self.name}
        if blobs:
            entry.update(size=len(self.data), blobId=self.blob_id)
            if self.lfs:
                entry["lfs"] = {
                    "size": len(self.data),
                    "sha256": self.sha256,
                    "pointerSize": len(self.pointer),
                }
        return entry


@dataclass
class Repo:
    """A fake model repo: one commit, reachable by its sha and by its branch names."""

    repo_id: str
    files: dict[str, RepoFile]
    gated: bool = False
    branches: tuple[str, ...] = ("main",)

    @property
    def commit(self) -> str:
        listing = "".join(
            f"{f.name}:{f.blob_id}\n" for f in sorted(self.files.values(), key=lambda f: f.name)
        )
        return hashlib.sha1(f"{self.repo_id}\n{listing}".encode()).hexdigest()

    def resolve(self, revision: str) -> str | None:
        return self.commit if revision in (*self.branches, self.commit) else None


@dataclass(frozen=True)
class Seen:
    """One request the fake hub answered."""

    server: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None
    authorization: bool


@dataclass
class FakeHub:
    """Two servers on 127.0.0.1: the hub (`url`) and its CDN; see the module docstring."""

    token: str | None = None
    throttle_bps: int | None = None
    corrupt: set[str] = field(default_factory=set)
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes] | Path,
        *,
        gated: bool = False,
        branches: tuple[str, ...] = ("main",),
    ) -> Repo:
        """Serve `files` (name -> bytes, or a directory read recursively) as `repo_id`."""
        if isinstance(files, Path):
            files = {
                str(p.relative_to(files)): p.read_bytes()
                for p in sorted(files.rglob("*"))
                if p.is_file() and not p.name.startswith(".gpucluster-")
            }
        repo = Repo(repo_id, {n: RepoFile(n, d) for n, d in files.items()}, gated, branches)
        self.repos[repo_id] = repo
        return repo

    def start(self) -> FakeHub:
        self._hub = _serve(self, "hub")
        self._cdn = _serve(self, "cdn")
        return self

    def stop(self) -> None:
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def ranges(self) -> list[str]:
        """The Range headers of the file downloads seen, in order."""
        return [r.range for r in self.requests if r.method == "GET" and r.range]


def _serve(hub: FakeHub, role: str) -> ThreadingHTTPServer:
    handler = type(f"{role.title()}Handler", (_Handler,), {"hub": hub, "role": role})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    # A short poll interval: stop() (server.shutdown) returns at once, tests stay fast.
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the hub; every answer has a Content-Length
    hub: FakeHub
    role: str

    def log_message(self, *_args: object) -> None:
        pass

    def do_HEAD(self) -> None:  # http.server's naming
        self._route(body=False)

    def do_GET(self) -> None:
        self._route(body=True)

    def _route(self, body: bool) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        self.hub.requests.append(
            Seen(
                self.role,
                self.command,
                path,
                self.headers.get("Range"),
                "authorization" in {k.lower() for k in self.headers},
            )
        )
        if self.role == "cdn":
            return self._cdn(path, body)
        if path.startswith("/api/models/"):
            return self._model_info(path.removeprefix("/api/models/"), parse_qs(url.query))
        parts = path.lstrip("/").split("/", 4)
        if len(parts) == 5 and parts[2] == "resolve":
            return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], parts[4], body)
        self._error(404, "Not Found", None)

    def _model_info(self, rest: str, query: dict) -> None:
        repo_id, _, revision = rest.partition("/revision/")
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        commit = repo.resolve(revision or "main")
        if commit is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        blobs = query.get("blobs", [""])[0].lower() == "true"
        info = {
            "id": repo_id,
            "modelId": repo_id,
            "sha": commit,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "tags": [],
            "siblings": [f.sibling(blobs) for f in repo.files.values()],
        }
        self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})

    def _resolve(self, repo_id: str, revision: str, name: str, body: bool) -> None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        if repo.gated and self.hub.token is not None:
            sent = self.headers.get("Authorization")
            if sent is None:
                return self._error(
                    401,
                    f"Access to model {repo_id} is restricted. You must "
                    "have access to it and be authenticated.",
                    "GatedRepo",
                )
            if sent != f"Bearer {self.hub.token}":
                return self._error(
                    403,
                    f"Access to model {repo_id} is restricted and you are "
                    "not in the authorized list.",
                    "GatedRepo",
                )
        file = repo.files.get(name)
        if file is None:
            return self._error(404, "Entry not found", "EntryNotFound")
        headers = {"X-Repo-Commit": commit, "ETag": f'"{file.blob_id}"', "Accept-Ranges": "bytes"}
        if file.lfs:
            headers.update(
                {
                    "Location": f"{self.hub.cdn_url}/blobs/{file.sha256}?sig=fake",
                    "X-Linked-Etag": f'"{file.sha256}"',
                    "X-Linked-Size": str(len(file.data)),
                }
            )
            return self._send(302, b"", headers)
        self._send_file(self._data(file), headers, body)

    def _cdn(self, path: str, body: bool) -> None:
        sha = path.removeprefix("/blobs/")
        for repo in self.hub.repos.values():
            for file in repo.files.values():
                if file.lfs and file.sha256 == sha:
                    return self._send_file(self._data(file), {"ETag": f'"{sha}"'}, body)
        self._error(404, "NoSuchKey", None)

    def _data(self, file: RepoFile) -> bytes:
        if file.name in self.hub.corrupt and file.data:
            return file.data[:-1] + bytes([file.data[-1] ^ 0xFF])
        return file.data

    def _send_file(self, data: bytes, headers: dict[str, str], body: bool) -> None:
        start, status = 0, 200
        asked = self.headers.get("Range")
        if asked and asked.startswith("bytes=") and asked.endswith("-"):
            start = int(asked[len("bytes=") : -1])
            if start >= len(data):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        self._send(status, data[start:], headers, body=body)

    def _error(self, status: int, message: str, code: str | None) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": message}).encode(), headers)

    def _send(self, status: int, data: bytes, headers: dict[str, str], body: bool = True) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not body or self.command == "HEAD":
            return
        try:
            for offset in range(0, len(data), _PIECE):
                self.wfile.write(data[offset : offset + _PIECE])
                if self.hub.throttle_bps:
                    time.sleep(_PIECE / self.hub.throttle_bps)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (killed midway): fine


def model_repo_files(shard_bytes: int = 256 * 1024, seed: int = 0) -> dict[str, bytes]:
    """A repo as the hub holds a sharded model: what vLLM loads (config, tokenizer, two
    safetensors shards and their index) beside what it does not (a duplicate consolidated
    checkpoint the index does not name, .bin/GGUF/ONNX copies, original/, README)."""

    def noise(tag: str, size: int) -> bytes:
        block = hashlib.sha256(f"{seed}:{tag}".encode()).digest()
        return (block * (size // len(block) + 1))[:size]

    weight_map = {
        "a.weight": "model-00001-of-00002.safetensors",
        "b.weight": "model-00002-of-00002.safetensors",
    }
    return {
        "config.json": json.dumps(
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "seed": seed}
        ).encode(),
        "generation_config.json": b'{"do_sample": false}',
        "tokenizer.json": b'{"version": "1.0"}',
        "tokenizer_config.json": b'{"model_max_length": 2048}',
        "special_tokens_map.json": b"{}",
        "chat_template.jinja": b"{{ messages }}",
        "model-00001-of-00002.safetensors": noise("shard1", shard_bytes),
        "model-00002-of-00002.safetensors": noise("shard2", shard_bytes),
        "model.safetensors.index.json": json.dumps({"weight_map": weight_map}).encode(),
        "consolidated.safetensors": noise("consolidated", shard_bytes),
        "pytorch_model.bin": noise("bin", 1024),
        "model.gguf": noise("gguf", 1024),
        "onnx/model.onnx": noise("onnx", 1024),
        "original/consolidated.pth": noise("pth", 1024),
        "README.md": b"# a model\n",
    }

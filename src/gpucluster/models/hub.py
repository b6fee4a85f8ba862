"""Pull a Hugging Face model into the model cache: the files vLLM needs, resumable, verified.

The revision is resolved to a commit with the hub API (`model_info` with files metadata, which
also lists every file's size and checksum); each file is then fetched at that commit the way
huggingface_hub does it (`get_hf_file_metadata`: HEAD on /resolve, following the hub's redirect
to its CDN; `http_get`: the download, with its retries and tqdm bars).

Why not `hf_hub_download(local_dir=...)`: in huggingface_hub 2.4 it downloads into a
process-unique `<name>.<uuid>.incomplete` and deletes it on failure, so a killed pull would
start every file over. Here a file grows in `.incomplete/<checksum>` inside the staging
directory (see models.cache) and the next pull resumes it with a Range request (http_get's
`resume_size`; it writes in 10 MiB chunks, so a kill loses at most that much). Files travel over
plain HTTP; hf-xet is never used. Each file is checked against the hub's checksum before it is
kept, and the staging directory becomes the cache entry only when every file is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from gpucluster.models.cache import (
    DEFAULT_REVISION,
    hub_entry_dir,
    hub_partial_dir,
    install,
    locked,
    make_dirs,
    now_iso,
    read_stamp,
    remove_empty_dirs,
    write_atomically,
)
from gpucluster.models.hub_errors import (
    ChecksumError,
    DiskSpaceError,
    HubAccessError,
    HubUnreachableError,
    http_client,
    translate,
)
from gpucluster.models.hub_files import (
    RemoteFile,
    Selection,
    file_checksum,
    index_name,
    keep_indexed_weights,
    remote_files,
    select_files,
)
from gpucluster.models.sources import ModelError, ModelPrepareError

# The staging directory's own files, removed before it becomes the cache entry.
STATE = ".gpucluster-pull.json"
INCOMPLETE = ".incomplete"
COMMIT = re.compile(r"^[0-9a-f]{40}$")
GIB = 2**30
REPORT_EVERY_S = 5.0
API_TIMEOUT_S = 30.0

Progress = Callable[[str], None]


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding `path`."""
    return shutil.disk_usage(path).free


@dataclass(frozen=True)
class PullResult:
    """A model in the cache: where, which commit, how big, and how it got there."""

    path: Path
    repo_id: str
    revision: str
    commit: str
    bytes: int
    downloaded: int  # bytes fetched by this pull
    how: str  # "pulled", "cached", or "cached-offline" (the hub could not be reached)


@dataclass
class HubClient:
    """Pulls Hugging Face models. `endpoint`: the hub or a mirror (None: $HF_ENDPOINT or
    huggingface.co, as huggingface_hub reads it); `bars`: huggingface_hub's tqdm bars, else
    progress lines; `free_space(path)`: free bytes on a filesystem (tests inject it)."""

    endpoint: str | None = None
    bars: bool = False
    free_space: Callable[[Path], int] = field(default=free_bytes)

    @property
    def endpoint_url(self) -> str:
        """The hub's base URL, as requests go to it."""
        from huggingface_hub import constants

        return (self.endpoint or constants.ENDPOINT).rstrip("/")

    def pull(
        self, repo_id: str, revision: str | None, cache_dir: Path, progress: Progress
    ) -> PullResult:
        """`repo_id` at `revision` (default main) complete in `cache_dir`, pulled if need be.

        A commit already complete in the cache needs no network; a branch or tag is resolved on
        the hub first, and the cached copy is used only when the hub cannot be reached.
        """
        revision = revision or DEFAULT_REVISION
        final = hub_entry_dir(cache_dir, repo_id, revision)
        cached = _cached(final)
        if cached and COMMIT.match(revision) and cached["commit"] == revision:
            progress(f"{repo_id}@{revision[:12]}: complete in the model cache {final}")
            return _result(final, cached, "cached")
        try:
            info = self._model_info(repo_id, revision)
        except HubUnreachableError as exc:
            if cached is None:
                raise
            progress(
                f"{exc.summary}: using the copy in the model cache {final} "
                f"(commit {cached['commit'][:12]}, pulled {cached.get('pulled_at')}); "
                "it may be older than the hub's"
            )
            return _result(final, cached, "cached-offline")
        commit = info.sha
        if cached and cached["commit"] == commit:
            progress(f"{repo_id}@{revision} is commit {commit[:12]}: complete in {final}")
            return _result(final, cached, "cached")
        if info.gated and not _has_token():
            raise HubAccessError(
                f"{repo_id} is a gated model and no Hugging Face token is set: set HF_TOKEN to a "
                "token of an account that accepted the model's licence on its page "
                f"{self.endpoint_url}/{repo_id}, then pull again"
            )
        selection = select_files(repo_id, remote_files(info.siblings or []))
        for note in selection.notes:
            progress(note)
        make_dirs(Path(cache_dir))
        with locked(final, progress):
            cached = _cached(final)
            if cached and cached["commit"] == commit:  # another process pulled it meanwhile
                return _result(final, cached, "cached")
            staging = hub_partial_dir(cache_dir, repo_id, revision)
            pull = _Pull(self, repo_id, revision, commit, staging, progress)
            selection, downloaded = pull.run(selection, Path(cache_dir))
            stamp = pull.install(selection, final, Path(cache_dir))
        return _result(final, stamp, "pulled", downloaded)

    def _model_info(self, repo_id: str, revision: str) -> Any:
        from huggingface_hub import HfApi

        try:
            return HfApi(endpoint=self.endpoint).model_info(
                repo_id, revision=revision, files_metadata=True, timeout=API_TIMEOUT_S
            )
        except _failures() as exc:
            raise self.error(exc, repo_id, revision, "asking the hub about") from None

    def error(self, exc: Exception, repo_id: str, revision: str, doing: str) -> ModelError:
        """The ModelError to raise for `exc`, met while `doing` `repo_id`."""
        if isinstance(exc, ModelError):
            return exc
        known = translate(exc, repo_id, revision, self.endpoint_url)
        if known is not None:
            return known
        return ModelPrepareError(
            f"{doing} {repo_id}@{revision} on {self.endpoint_url} failed: "
            f"{type(exc).__name__}: {exc}; run the pull again (it resumes where it stopped)"
        )

    def bar_class(self, progress: Progress) -> Any:
        """The tqdm class http_get draws with: huggingface_hub's bars, or progress lines."""
        return None if self.bars else _line_bar(progress)


class _Pull:
    """One pull of `repo_id` at `commit` into the staging directory, resumable."""

    def __init__(
        self,
        hub: HubClient,
        repo_id: str,
        revision: str,
        commit: str,
        staging: Path,
        progress: Progress,
    ) -> None:
        self.hub, self.repo_id, self.revision, self.commit = hub, repo_id, revision, commit
        self.staging, self.say = staging, progress
        self.verified: dict[str, str] = {}

    def run(self, selection: Selection, cache_dir: Path) -> tuple[Selection, int]:
        """Download and verify every file of `selection`; the (final) selection and bytes fetched."""
        self._open_staging()
        downloaded = 0
        index = index_name(selection)
        if index is not None:
            # The index (a few KiB) first: it tells which weight files vLLM would load.
            downloaded += self._ensure(next(f for f in selection.files if f.name == index), 0, 0)
            selection = keep_indexed_weights(selection, self.staging / index)
            for note in selection.notes[-1:]:
                if note.startswith("skipping"):
                    self.say(note)
        self._prune(selection)
        pending = [f for f in selection.files if self.verified.get(f.name) != f.checksum]
        self._check_disk(pending, cache_dir)
        total = len(pending)
        for number, remote in enumerate(pending, 1):
            downloaded += self._ensure(remote, number, total)
        self.say(
            f"{self.repo_id}: {len(selection.files)} files verified against the hub's checksums"
        )
        return selection, downloaded

    def install(self, selection: Selection, final: Path, cache_dir: Path) -> dict[str, Any]:
        """Make the verified staging directory the cache entry `final`; returns its stamp."""
        stamp = {
            "kind": "hf",
            "source": self.repo_id,
            "revision": self.revision,
            "commit": self.commit,
            "endpoint": self.hub.endpoint_url,
            "files": {f.name: f.as_dict() for f in selection.files},
            "pulled_at": now_iso(),
        }
        for own in (STATE, f"{STATE}.part"):  # the pull's bookkeeping stays out of the entry
            (self.staging / own).unlink(missing_ok=True)
        shutil.rmtree(self.staging / INCOMPLETE, ignore_errors=True)
        install(self.staging, final, json.dumps(stamp, indent=1, sort_keys=True))
        remove_empty_dirs(self.staging.parent, cache_dir)
        return stamp

    def _open_staging(self) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)
        try:
            state = json.loads((self.staging / STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = {}
        verified = state.get("verified") if isinstance(state, dict) else None
        self.verified = {
            name: checksum
            for name, checksum in (verified or {}).items()
            if (self.staging / name).is_file()
        }
        if self.verified or (self.staging / INCOMPLETE).is_dir():
            self.say(f"resuming the pull of {self.repo_id} in {self.staging}")
        self._save_state()

    def _save_state(self) -> None:
        state = {
            "source": self.repo_id,
            "revision": self.revision,
            "commit": self.commit,
            "verified": self.verified,
        }
        write_atomically(self.staging / STATE, json.dumps(state, indent=1))

    def _prune(self, selection: Selection) -> None:
        """Remove what the staging directory holds that this pull does not want (an older
        commit's files, weights the index does not name)."""
        wanted = {f.name: f.checksum for f in selection.files}
        self.verified = {n: c for n, c in self.verified.items() if wanted.get(n) == c}
        for entry in self.staging.iterdir():
            if entry.name in (STATE, INCOMPLETE) or entry.name in self.verified:
                continue
            _remove(entry)
        parts = self.staging / INCOMPLETE
        if parts.is_dir():
            for part in parts.iterdir():
                if part.name not in wanted.values():
                    _remove(part)
        self._save_state()

    def _check_disk(self, pending: list[RemoteFile], cache_dir: Path) -> None:
        needed = sum(max(f.size - self._have(f), 0) for f in pending)
        free = self.hub.free_space(cache_dir)
        if needed > free:
            raise DiskSpaceError(
                f"not enough free disk space to pull {self.repo_id}: {needed / GIB:.2f} GiB still "
                f"to download, {free / GIB:.2f} GiB free on the filesystem of {cache_dir}. Free "
                "space there, or set platform.model_cache_dir (GPUCLUSTER_MODEL_CACHE) to a "
                "directory on a larger disk"
            )
        if pending:
            self.say(
                f"{self.repo_id}@{self.commit[:12]}: {len(pending)} files, "
                f"{needed / GIB:.2f} GiB to download ({free / GIB:.1f} GiB free)"
            )

    def _have(self, remote: RemoteFile) -> int:
        try:
            return (self.staging / INCOMPLETE / remote.checksum).stat().st_size
        except OSError:
            return 0

    def _ensure(self, remote: RemoteFile, number: int, total: int) -> int:
        """`remote` downloaded (resumed if part of it is there) and verified; bytes fetched."""
        if self.verified.get(remote.name) == remote.checksum:
            return 0
        part = self.staging / INCOMPLETE / remote.checksum
        part.parent.mkdir(exist_ok=True)
        have = self._have(remote)
        if have > remote.size:
            part.unlink()
            have = 0
        counter = f"[{number}/{total}] " if total else ""
        resuming = f", resuming at {have / 2**20:.1f} MiB" if have else ""
        self.say(f"{counter}{remote.name} ({remote.size / 2**20:.1f} MiB{resuming})")
        try:
            self._download(remote, part, have)
        except _failures() as exc:
            raise self.hub.error(exc, self.repo_id, self.revision, "downloading") from None
        actual = file_checksum(part, remote.algorithm)
        if actual != remote.checksum:
            part.unlink()
            raise ChecksumError(
                f"{remote.name} of {self.repo_id}@{self.commit[:12]} does not match the hub's "
                f"checksum: expected {remote.algorithm} {remote.checksum}, got {actual}. The bad "
                f"download was deleted; pull again to fetch it anew. If it fails again, something "
                f"between here and {self.hub.endpoint_url} alters the file (check HF_ENDPOINT "
                "and HTTP proxies)"
            )
        destination = self.staging / remote.name
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.rename(part, destination)
        self.verified[remote.name] = remote.checksum
        self._save_state()
        return remote.size - have

    def _download(self, remote: RemoteFile, part: Path, have: int) -> None:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers

        url = hf_hub_url(
            self.repo_id, remote.name, revision=self.commit, endpoint=self.hub.endpoint
        )
        metadata = get_hf_file_metadata(url, endpoint=self.hub.endpoint)
        headers = build_hf_headers()
        if not _same_origin(url, metadata.location):
            headers.pop("authorization", None)  # the CDN's signed URL: the token stays on the hub
        with open(part, "ab") as handle:
            http_get(
                metadata.location,
                handle,
                resume_size=have,
                headers=headers,
                expected_size=remote.size,
                displayed_filename=remote.name,
                tqdm_class=self.hub.bar_class(self.say),
            )


def _cached(final: Path) -> dict[str, Any] | None:
    stamp = read_stamp(final)
    if stamp and stamp.get("kind") == "hf" and isinstance(stamp.get("commit"), str):
        return stamp
    return None


def _result(final: Path, stamp: dict[str, Any], how: str, downloaded: int = 0) -> PullResult:
    files = stamp.get("files") or {}
    return PullResult(
        path=final,
        repo_id=stamp["source"],
        revision=stamp["revision"],
        commit=stamp["commit"],
        bytes=sum(int(f.get("size", 0)) for f in files.values()),
        downloaded=downloaded,
        how=how,
    )


def _failures() -> tuple[type[Exception], ...]:
    """What huggingface_hub raises when a call to the hub fails: its HTTP errors and
    OfflineModeIsEnabled are OSErrors, its HTTP library's network errors HTTPErrors; ValueError
    for a file it cannot download over HTTP."""
    return (OSError, ValueError, http_client().HTTPError)


def _has_token() -> bool:
    from huggingface_hub import get_token

    return bool(get_token())


def _same_origin(url: str, other: str) -> bool:
    a, b = urlsplit(url), urlsplit(other)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _line_bar(progress: Progress) -> type:
    """A tqdm stand-in for http_get that reports a file's progress as a line every few seconds."""

    class LineBar:
        def __init__(
            self, *, total: int | None = None, initial: int = 0, desc: str = "", **_ignored: Any
        ) -> None:
            self.total, self.n, self.desc = total, initial, desc
            self.started_at, self.started_n = time.monotonic(), initial
            self.reported = self.started_at

        def __enter__(self) -> Self:
            return self

        def __exit__(self, *_exc: object) -> None:
            return None

        def update(self, n: int) -> None:
            self.n += n
            now = time.monotonic()
            if now - self.reported < REPORT_EVERY_S:
                return
            self.reported = now
            rate = (self.n - self.started_n) / max(now - self.started_at, 1e-9)
            line = f"{self.desc}: {self.n / 2**20:.1f}"
            if self.total:
                left = f", {(self.total - self.n) / rate:.0f} s left" if rate > 0 else ""
                line += (
                    f" of {self.total / 2**20:.1f} MiB ({100 * self.n / self.total:.0f}%"
                    f", {rate / 2**20:.1f} MiB/s{left})"
                )
            else:
                line += f" MiB ({rate / 2**20:.1f} MiB/s)"
            progress(line)

    return LineBar

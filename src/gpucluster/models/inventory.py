"""What the model cache holds: complete entries, interrupted pulls, their sizes; removal.

Entries follow the layout models.cache defines: `<cache>/<name>` for built-in conversions,
`<cache>/hf/<org>--<name>/<revision>` for pulled Hugging Face models, each complete only with
its marker; `<cache>/.partial/hf/...` (and a built-in's `.tmp-*`) are interrupted work.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpucluster.config.schema import BUILTIN_PREFIX
from gpucluster.models.cache import (
    HUB_DIR,
    PARTIAL_DIR,
    last_used,
    locked,
    read_stamp,
    remove_empty_dirs,
)
from gpucluster.models.hub import STATE as PULL_STATE


@dataclass(frozen=True)
class CacheEntry:
    """One directory of the model cache, complete or not."""

    name: str  # what `gpucluster models rm` takes: org/name@revision, or the built-in's source
    source: str  # the `source` config string it serves
    kind: str  # "hf" or "builtin"
    revision: str | None
    commit: str | None
    path: Path
    bytes: int  # on disk
    complete: bool
    last_used: float | None = None
    pulled_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The entry for --json output."""
        return {
            "name": self.name,
            "source": self.source,
            "kind": self.kind,
            "revision": self.revision,
            "commit": self.commit,
            "path": str(self.path),
            "bytes": self.bytes,
            "complete": self.complete,
            "last_used": self.last_used,
            "pulled_at": self.pulled_at,
        }


def disk_usage(path: Path) -> int:
    """Bytes `path` takes on disk (a directory: every file below it; links not followed)."""
    if path.is_symlink() or not path.exists():
        return 0
    if path.is_file():
        return _blocks(path)
    total = 0
    for root, _dirs, files in os.walk(path):
        total += sum(_blocks(Path(root) / name) for name in files)
    return total


def entries(cache_dir: Path) -> list[CacheEntry]:
    """Every entry of `cache_dir`: complete ones first (by name), then interrupted ones."""
    cache = Path(cache_dir).expanduser().absolute()  # as weights_location gives paths
    complete = sorted(_complete(cache), key=lambda e: e.name)
    partial = sorted(_partial(cache), key=lambda e: e.name)
    return [*complete, *partial]


def matching(found: Iterable[CacheEntry], name: str) -> list[CacheEntry]:
    """The entries `name` designates: an entry name, a source (every revision of a hub id), or
    `builtin:<name>` / `<name>` for a built-in model."""
    wanted = name.strip()
    return [
        e
        for e in found
        if wanted in (e.name, e.source)
        or (e.kind == "builtin" and f"{BUILTIN_PREFIX}{wanted}" == e.source)
    ]


def remove(entry: CacheEntry, progress: Callable[[str], None]) -> None:
    """Delete `entry` from disk, under its lock (CacheBusyError while a pull holds it)."""
    final = _final(entry)
    with locked(final, progress, wait=False):
        shutil.rmtree(entry.path, ignore_errors=True)
    if entry.kind == "hf":  # a repo directory with no revision left goes too
        remove_empty_dirs(entry.path.parent, _cache_root(entry))


def _complete(cache: Path) -> Iterator[CacheEntry]:
    if not cache.is_dir():
        return
    for directory in sorted(cache.iterdir()):
        if directory.name.startswith(".") or directory.name == HUB_DIR or not directory.is_dir():
            continue
        stamp = read_stamp(directory)
        if stamp is not None:
            source = str(stamp.get("source") or f"{BUILTIN_PREFIX}{directory.name}")
            yield _entry(directory, source, "builtin", None, None, stamp, True)
    for directory in sorted(cache.glob(f"{HUB_DIR}/*/*")):
        stamp = read_stamp(directory)
        if stamp is not None and not directory.name.startswith("."):
            source = str(stamp.get("source") or _repo_id(directory.parent.name))
            revision = str(stamp.get("revision") or directory.name)
            yield _entry(directory, source, "hf", revision, stamp.get("commit"), stamp, True)


def _partial(cache: Path) -> Iterator[CacheEntry]:
    for directory in sorted(cache.glob(f"{PARTIAL_DIR}/{HUB_DIR}/*/*")):
        state = _read_json(directory / PULL_STATE)
        source = str(state.get("source") or _repo_id(directory.parent.name))
        revision = str(state.get("revision") or directory.name)
        yield _entry(directory, source, "hf", revision, state.get("commit"), {}, False)
    for directory in sorted(cache.glob(".tmp-*")):  # a built-in conversion that was cut short
        name = directory.name.removeprefix(".tmp-").rsplit("-", 1)[0]
        yield _entry(directory, f"{BUILTIN_PREFIX}{name}", "builtin", None, None, {}, False)


def _entry(
    path: Path,
    source: str,
    kind: str,
    revision: str | None,
    commit: Any,
    stamp: dict[str, Any],
    complete: bool,
) -> CacheEntry:
    name = f"{source}@{revision}" if kind == "hf" else source
    return CacheEntry(
        name=name,
        source=source,
        kind=kind,
        revision=revision,
        commit=commit if isinstance(commit, str) else None,
        path=path,
        bytes=disk_usage(path),
        complete=complete,
        last_used=last_used(path) if complete else None,
        pulled_at=stamp.get("pulled_at"),
    )


def _final(entry: CacheEntry) -> Path:
    """The complete entry an interrupted one becomes: its lock is taken under that name."""
    if entry.complete:
        return entry.path
    if entry.kind == "hf":  # <cache>/.partial/hf/<repo>/<rev> -> <cache>/hf/<repo>/<rev>
        return entry.path.parents[3] / HUB_DIR / entry.path.parent.name / entry.path.name
    return entry.path.parent / entry.source.removeprefix(BUILTIN_PREFIX)


def _cache_root(entry: CacheEntry) -> Path:
    # complete: <cache>/hf/<repo>/<rev>; interrupted: <cache>/.partial/hf/<repo>/<rev>
    return entry.path.parents[2] if entry.complete else entry.path.parents[3]


def _repo_id(directory_name: str) -> str:
    return directory_name.replace("--", "/", 1)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _blocks(path: Path) -> int:
    try:
        return path.lstat().st_blocks * 512
    except OSError:
        return 0

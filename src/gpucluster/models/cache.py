"""The model cache: prepared model directories, built once, atomically, under a file lock.

A directory is served only when it holds the marker file, written last, whose content is the
JSON stamp of what the directory holds. Two kinds of entry share this layout and its rules:

- `cache_dir/<name>`: a built-in model converted from its GGUF (`ensure_prepared`), built in a
  temporary sibling `.tmp-<name>-<pid>` that an interrupted build leaves at most;
- `cache_dir/hf/<org>--<name>/<revision>`: a Hugging Face model pulled by `models.hub`, staged in
  `cache_dir/.partial/hf/<org>--<name>/<revision>`, kept across interruptions so a new pull
  resumes it.

Either is moved into place with os.rename (same filesystem) once complete (`install`); a
directory without the marker (or with an older stamp) is never served.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gpucluster.models.sources import ModelPrepareError

MARKER = ".gpucluster-complete"
# Touched each time prepare_model hands the entry out: `gpucluster models` shows when.
LAST_USED = ".gpucluster-last-used"
HUB_DIR = "hf"
PARTIAL_DIR = ".partial"
DEFAULT_REVISION = "main"

Progress = Callable[[str], None]
Builder = Callable[[Path], None]

_SAFE_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Files of a prepared entry: the serving processes may run as another user.
FILE_MODE = 0o644


def make_readable(directory: Path) -> None:
    """Give the files directly in `directory` FILE_MODE (safetensors writes its files 0600)."""
    for file in directory.iterdir():
        if file.is_file():
            file.chmod(FILE_MODE)


def is_complete(directory: Path, stamp: str) -> bool:
    """Whether `directory` is a finished build carrying `stamp` in its marker."""
    try:
        return (directory / MARKER).read_text(encoding="utf-8") == stamp
    except OSError:
        return False


def read_stamp(directory: Path) -> dict[str, Any] | None:
    """The stamp of the complete entry `directory`, or None when it is not complete."""
    try:
        stamp = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return stamp if isinstance(stamp, dict) else None


def hub_repo_dir(repo_id: str) -> str:
    """`org--name`: a hub id as one path component (`--` cannot occur in hub ids)."""
    return repo_id.replace("/", "--")


def safe_revision(revision: str) -> str:
    """`revision` as one path component: as is when already safe, else sanitised + its hash.

    Branch and tag names may hold `/` (`refs/pr/1`); the hash keeps two such names apart.
    """
    if _SAFE_REVISION.match(revision):
        return revision
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", revision).strip("._-")[:60] or "rev"
    return f"{cleaned}-{hashlib.sha1(revision.encode()).hexdigest()[:8]}"


def hub_entry_dir(cache_dir: Path, repo_id: str, revision: str | None) -> Path:
    """Where the pulled `repo_id` at `revision` (default main) lives: what vLLM loads."""
    return (
        Path(cache_dir)
        / HUB_DIR
        / hub_repo_dir(repo_id)
        / safe_revision(revision or DEFAULT_REVISION)
    )


def hub_partial_dir(cache_dir: Path, repo_id: str, revision: str | None) -> Path:
    """The staging directory of a pull of `repo_id` at `revision`, kept until it completes."""
    return (
        Path(cache_dir)
        / PARTIAL_DIR
        / HUB_DIR
        / hub_repo_dir(repo_id)
        / safe_revision(revision or DEFAULT_REVISION)
    )


def ensure_prepared(
    cache_dir: Path, name: str, stamp: str, build: Builder, progress: Progress
) -> tuple[Path, bool]:
    """`cache_dir/name`, built by `build(tmp_dir)` unless already complete with `stamp`.

    Returns the directory and whether it was built by this call.
    """
    final = cache_dir / name
    if is_complete(final, stamp):
        return final, False
    make_dirs(cache_dir)
    with locked(final, progress):
        if is_complete(final, stamp):  # another process finished it while we waited
            return final, False
        _remove_leftovers(cache_dir, name, progress)
        tmp = cache_dir / f".tmp-{name}-{os.getpid()}"
        tmp.mkdir()
        try:
            build(tmp)
            install(tmp, final, stamp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final, True


def make_dirs(directory: Path) -> None:
    """Create `directory` and its parents; ModelPrepareError saying why when it cannot be."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelPrepareError(
            f"cannot create model cache {directory}: {exc.strerror}; set platform.model_cache_dir "
            "(or GPUCLUSTER_MODEL_CACHE) to a writable directory"
        ) from None


class CacheBusyError(ModelPrepareError):
    """Another process holds the entry's lock (a pull or conversion is running)."""


@contextmanager
def locked(final: Path, progress: Progress, *, wait: bool = True) -> Iterator[None]:
    """Hold the lock of the cache entry `final` (a file `.<name>.lock` beside it).

    Without `wait`, CacheBusyError when another process holds it.
    """
    lock_path = final.parent / f".{final.name}.lock"
    make_dirs(final.parent)
    # flock is released by the kernel when its holder dies, so a crash never leaves it stuck.
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise CacheBusyError(
                    f"{final} is being prepared by another process (lock {lock_path}); "
                    "wait for it to finish, then try again"
                ) from None
            progress(f"waiting for another process preparing {final} (lock {lock_path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install(staging: Path, final: Path, stamp: str) -> None:
    """Write `stamp` as the marker of `staging`, then move it into place as `final`.

    An older complete `final` (a branch that moved to a new commit) is moved aside first and
    removed after: renaming onto a non-empty directory is not possible. Hold `locked(final)`.
    """
    write_atomically(staging / MARKER, stamp)
    old = None
    if final.exists():
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        os.rename(final, old)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_empty_dirs(directory: Path, root: Path) -> None:
    """Remove `directory` and then its parents while they are empty, stopping below `root`."""
    directory, root = Path(directory), Path(root)
    while directory != root and root in directory.parents:
        try:
            directory.rmdir()
        except OSError:  # not empty (or gone): what is above is not empty either
            return
        directory = directory.parent


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a synced temporary file: readers see old or new, whole."""
    part = path.with_name(f"{path.name}.part")
    with open(part, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(part, path)


def touch_last_used(directory: Path) -> None:
    """Record that `directory` was handed out now (best effort: a read-only cache is fine)."""
    try:
        (directory / LAST_USED).touch()
    except OSError:
        pass


def last_used(directory: Path) -> float | None:
    """When `directory` was last handed out (epoch seconds), or None if never recorded."""
    try:
        return (directory / LAST_USED).stat().st_mtime
    except OSError:
        return None


def now_iso() -> str:
    """The current UTC time as ISO 8601, as stamps record it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _remove_leftovers(cache_dir: Path, name: str, progress: Progress) -> None:
    # Holding the lock, no other build is running: any temporary directory is from a dead one.
    for stale in [*cache_dir.glob(f".tmp-{name}-*"), *cache_dir.glob(f".old-{name}-*")]:
        progress(f"removing {stale} left by an interrupted preparation")
        shutil.rmtree(stale, ignore_errors=True)
    final = cache_dir / name
    if final.is_symlink() or final.is_file():
        raise ModelPrepareError(
            f"{final} is in the way of the prepared model and is not a directory; remove it"
        )
    if final.exists():
        progress(f"removing {final}: incomplete or from an older version")
        shutil.rmtree(final)

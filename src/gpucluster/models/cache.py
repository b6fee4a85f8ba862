"""Prepared model directories in the model cache: built once, atomically, under a file lock.

A directory `cache_dir/<name>` is served only when it holds the marker file, with the stamp the
caller expects, which is written last into a temporary sibling `.tmp-<name>-<pid>` before that
is renamed into place. So a build that was interrupted leaves at most a temporary directory,
removed by the next build; a directory without the marker (or with an older stamp) is removed
and rebuilt, never served.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gpucluster.models.sources import ModelPrepareError

MARKER = ".gpucluster-complete"

Progress = Callable[[str], None]
Builder = Callable[[Path], None]


def is_complete(directory: Path, stamp: str) -> bool:
    """Whether `directory` is a finished build carrying `stamp` in its marker."""
    try:
        return (directory / MARKER).read_text(encoding="utf-8") == stamp
    except OSError:
        return False


def ensure_prepared(
    cache_dir: Path, name: str, stamp: str, build: Builder, progress: Progress
) -> tuple[Path, bool]:
    """`cache_dir/name`, built by `build(tmp_dir)` unless already complete with `stamp`.

    Returns the directory and whether it was built by this call.
    """
    final = cache_dir / name
    if is_complete(final, stamp):
        return final, False
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelPrepareError(f"cannot create model cache {cache_dir}: {exc.strerror}") from None
    with _locked(cache_dir / f".{name}.lock", progress):
        if is_complete(final, stamp):  # another process finished it while we waited
            return final, False
        _remove_leftovers(cache_dir, name, progress)
        tmp = cache_dir / f".tmp-{name}-{os.getpid()}"
        tmp.mkdir()
        try:
            build(tmp)
            _write_marker(tmp, stamp)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final, True


@contextmanager
def _locked(lock_path: Path, progress: Progress) -> Iterator[None]:
    # flock is released by the kernel when its holder dies, so a crash never leaves it stuck.
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another process preparing {lock_path.parent} (lock {lock_path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(cache_dir: Path, name: str, progress: Progress) -> None:
    # Holding the lock, no other build is running: any temporary directory is from a dead one.
    for stale in cache_dir.glob(f".tmp-{name}-*"):
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


def _write_marker(directory: Path, stamp: str) -> None:
    part = directory / f"{MARKER}.part"
    with open(part, "w", encoding="utf-8") as handle:
        handle.write(stamp)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(part, directory / MARKER)

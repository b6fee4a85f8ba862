"""Safe zip extraction for the model cache.

A zip member's name is a path chosen by whoever built the archive: an absolute name or one with
`..` would write outside the target directory ("zip slip"), and a symlink member would make a
later write land anywhere. Every member is checked before anything is written.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from gpucluster.models.cache import FILE_MODE
from gpucluster.models.sources import ModelPrepareError

DIR_MODE = 0o755
_DRIVE = re.compile(r"^[A-Za-z]:")


def extract_zip(archive: Path, out_dir: Path) -> list[str]:
    """Extract every member of `archive` into the existing directory `out_dir`; its file names.

    Files are written 0644 and directories 0755 whatever the archive records. ModelPrepareError
    when a member would land outside `out_dir` (absolute, `..`, a drive, a symlink), before any
    file is written, or when the archive is not a readable zip.
    """
    root = Path(out_dir).resolve()
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            for info in members:
                _check_member(archive, info, root)
            written = []
            for info in members:
                target = root / info.filename
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                # "x": a name the archive holds twice is refused rather than overwritten.
                with zipped.open(info) as source, open(target, "xb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
                target.chmod(FILE_MODE)
                written.append(info.filename)
    except zipfile.BadZipFile as exc:
        raise ModelPrepareError(f"{archive} is not a readable zip archive: {exc}") from None
    for directory, _dirs, _files in os.walk(root):
        if Path(directory) != root:
            Path(directory).chmod(DIR_MODE)
    return written


def _check_member(archive: Path, info: zipfile.ZipInfo, root: Path) -> None:
    name = info.filename
    parts = PurePosixPath(name).parts
    unsafe = (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\0" in name
        or _DRIVE.match(name) is not None
        or ".." in parts
        or stat.S_ISLNK(info.external_attr >> 16)
        or not (root / name).resolve().is_relative_to(root)
    )
    if unsafe:
        raise ModelPrepareError(
            f"{archive} holds the member {name!r}, which would be written outside the model "
            "directory (an absolute path, `..`, or a link); refusing to extract it"
        )

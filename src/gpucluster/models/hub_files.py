"""Which files of a Hugging Face repo vLLM needs, and how each is checked once downloaded.

vLLM loads a model directory's config, tokenizer and safetensors weights. Repos often carry
the same weights again in other formats (PyTorch .bin, GGUF, ONNX, Flax, the original
checkpoint under `original/`): those are left on the hub. Only top-level files are taken:
subfolders hold other formats or checkpoints, never what vLLM reads.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpucluster.models.sources import ModelSourceError

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"

# Configs, tokenizer and processor files, by name.
SUPPORT_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.*",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.*",
    "*.tiktoken",
    "*preprocessor_config.json",
    "processor_config.json",
)
# .bin files that are not weights (training state); vLLM skips them too.
NOT_WEIGHTS = ("training_args.bin", "optimizer.bin", "scheduler.bin", "scaler.bin")

_HASH_CHUNK = 8 * 2**20


@dataclass(frozen=True)
class RemoteFile:
    """A file of the repo at the pulled commit: its size and the checksum the hub lists."""

    name: str
    size: int
    algorithm: str  # "sha256" (LFS files) or "git-sha1" (the git blob id of small files)
    checksum: str

    def as_dict(self) -> dict[str, Any]:
        """The file as the cache marker records it."""
        return {"size": self.size, self.algorithm: self.checksum}


@dataclass(frozen=True)
class Selection:
    """The files to pull and what was noticed choosing them (said to the operator)."""

    files: tuple[RemoteFile, ...]
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Bytes of all the selected files."""
        return sum(f.size for f in self.files)


def remote_files(siblings: Iterable[Any]) -> list[RemoteFile]:
    """RemoteFiles from huggingface_hub's RepoSibling list (model_info with files_metadata)."""
    files = []
    for sibling in siblings:
        lfs = sibling.lfs
        if lfs:
            files.append(RemoteFile(sibling.rfilename, int(lfs["size"]), "sha256", lfs["sha256"]))
        elif sibling.blob_id and sibling.size is not None:
            files.append(
                RemoteFile(sibling.rfilename, int(sibling.size), "git-sha1", sibling.blob_id)
            )
    return files


def select_files(repo_id: str, files: Iterable[RemoteFile]) -> Selection:
    """The files vLLM needs out of `files`; ModelSourceError when the repo has no usable weights.

    safetensors weights (and their index) when there are any, else .bin weights (said in a note).
    """
    top = [f for f in files if "/" not in f.name]
    support = [f for f in top if _matches(f.name, SUPPORT_PATTERNS)]
    safetensors = [f for f in top if f.name.endswith(".safetensors") or f.name == SAFETENSORS_INDEX]
    notes: list[str] = []
    weights = safetensors
    if not any(f.name.endswith(".safetensors") for f in safetensors):
        weights = [
            f
            for f in top
            if (f.name.endswith(".bin") and f.name not in NOT_WEIGHTS) or f.name == BIN_INDEX
        ]
        if weights:
            notes.append(
                f"{repo_id} has no safetensors weights: taking its PyTorch .bin weights "
                "(slower to load, and unpickled by vLLM: only for repos you trust)"
            )
    names = {f.name for f in top}
    if "config.json" not in names:
        raise ModelSourceError(
            f"{repo_id} has no config.json at its top level: it is not a Hugging Face "
            "transformers model vLLM can serve (a GGUF-only or adapter repo?); pick the "
            "repo of the full model"
        )
    if not any(not f.name.endswith(".json") for f in weights):
        raise ModelSourceError(
            f"{repo_id} has no *.safetensors or *.bin weights at its top level (files: "
            f"{', '.join(sorted(names)[:12])}); vLLM needs them: pick the repo of the full model, "
            "or convert the weights and use a local directory as `source`"
        )
    chosen = sorted({f.name: f for f in [*support, *weights]}.values(), key=lambda f: f.name)
    return Selection(tuple(chosen), tuple(notes))


def index_name(selection: Selection) -> str | None:
    """The weights index file among the selected files, if the weights are sharded."""
    names = {f.name for f in selection.files}
    return next((n for n in (SAFETENSORS_INDEX, BIN_INDEX) if n in names), None)


def keep_indexed_weights(selection: Selection, index_file: Path) -> Selection:
    """`selection` without weight files the downloaded index does not name.

    Some repos carry the same weights twice (Mistral's `consolidated.safetensors` beside the
    sharded ones); vLLM loads only those its index names, so the others are not pulled.
    """
    try:
        weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
        wanted = set(weight_map.values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return selection  # an unreadable index: pull every weight file, vLLM decides
    kept, dropped = [], []
    for f in selection.files:
        is_weight = f.name.endswith((".safetensors", ".bin"))
        (dropped if is_weight and f.name not in wanted else kept).append(f)
    if not dropped:
        return selection
    note = f"skipping {', '.join(f.name for f in dropped)}: not named by {index_file.name}"
    return Selection(tuple(kept), (*selection.notes, note))


def file_checksum(path: Path, algorithm: str) -> str:
    """The checksum of `path` as the hub lists it: sha256, or the git blob sha1."""
    if algorithm == "sha256":
        digest = hashlib.sha256()
    else:
        digest = hashlib.sha1()
        digest.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)

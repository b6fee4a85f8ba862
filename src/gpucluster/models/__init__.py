"""Model sources and their preparation: what vLLM gets as `model` for each configured source."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from gpucluster.models import builtin
from gpucluster.models.cache import MARKER, ensure_prepared
from gpucluster.models.sources import (
    ACCEPTED_FORMS,
    ModelError,
    ModelPrepareError,
    ModelSource,
    ModelSourceError,
    check_local_dir,
    read_model_info,
    resolve_source,
)

__all__ = [
    "ACCEPTED_FORMS",
    "MARKER",
    "ModelError",
    "ModelPrepareError",
    "ModelSource",
    "ModelSourceError",
    "check_local_dir",
    "prepare_model",
    "read_model_info",
    "resolve_source",
    "weights_location",
]


def weights_location(source: str, cache_dir: Path) -> str:
    """What vLLM gets as `model` for `source` once prepared, computed without preparing it.

    Used to render deployment files for another host (a container, a Kubernetes pod) whose
    model cache is `cache_dir`; `prepare_model` returns the same value on that host.
    """
    resolved = resolve_source(source)
    if resolved.kind == "builtin":
        return str(Path(cache_dir).expanduser().absolute() / resolved.value)
    return resolved.value


def prepare_model(
    source: str,
    cache_dir: Path,
    progress: Callable[[str], None] | None = None,
    *,
    converter: builtin.Converter | None = None,
) -> str:
    """Make `source` servable and return what vLLM should get as `model`.

    builtin: its GGUF converted once into `cache_dir/<name>` (reused when complete); local: the
    checked directory; Hugging Face id: the id itself, downloaded by the serving host's hub
    client (nothing is downloaded here). `converter(gguf, out_dir, progress)` replaces the real
    GGUF conversion (tests). Raises ModelSourceError for an unusable source and
    ModelPrepareError when preparing fails.
    """
    say = progress or (lambda _message: None)
    resolved = resolve_source(source)
    if resolved.kind == "hf":
        say(f"{resolved.value}: Hugging Face model, fetched by the serving host's hub client")
        return resolved.value
    if resolved.kind == "local":
        directory = check_local_dir(resolved.value)
        say(f"{directory}: local model directory")
        return str(directory)
    return _prepare_builtin(resolved.value, Path(cache_dir).expanduser().absolute(), say, converter)


def _prepare_builtin(
    name: str, cache_dir: Path, say: Callable[[str], None], converter: builtin.Converter | None
) -> str:
    say(f"locating the GGUF of built-in model {name}")
    gguf = builtin.locate_gguf(name)
    say(f"found {gguf}")
    convert = converter or builtin.convert_gguf
    started = time.monotonic()

    def build(out_dir: Path) -> None:
        try:
            convert(gguf, out_dir, say)
            builtin.set_generation_defaults(out_dir, builtin.BUILTINS[name].generation_defaults)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelPrepareError(
                f"converting built-in model {name} from {gguf} failed: {type(exc).__name__}: {exc}"
            ) from exc

    try:
        directory, built = ensure_prepared(
            cache_dir, name, builtin.stamp_for(name, gguf), build, say
        )
    except OSError as exc:
        raise ModelPrepareError(
            f"preparing built-in model {name} in {cache_dir} failed: {exc.strerror or exc}"
        ) from exc
    if built:
        size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
        say(
            f"done: {directory} ({size / 2**20:.0f} MiB, {time.monotonic() - started:.1f} s)"
        )
    else:
        say(f"reusing prepared {directory}")
    return str(directory)

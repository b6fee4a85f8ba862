"""`gpucluster pull`, `prepare` and `models`: the model cache, from the command line.

`pull` prepares one model the way `up` does (a Hugging Face id is downloaded into the cache,
resumable and verified); `prepare` every configured one; `models` lists what the cache holds,
its size, and removes entries.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from gpucluster.cli.common import ConfigOption, JsonOption, emit, err, fail, out
from gpucluster.cli.errors import Typer, exiting_with
from gpucluster.config import Config, load_config

ModelArgument = Annotated[
    str,
    typer.Argument(
        help="A configured model id (its source and revision), a Hugging Face id org/name, or "
        "any model source (builtin:NAME, a local directory)."
    ),
]
RevisionOption = Annotated[
    str | None,
    typer.Option(help="Hugging Face branch, tag or commit (default: the model's, else main)."),
]


def pull(
    model: ModelArgument,
    revision: RevisionOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pull a model into the model cache (what `up` does for each configured model)."""
    from gpucluster.models import HubClient, prepare_model, weights_location
    from gpucluster.models.cache import read_stamp
    from gpucluster.models.inventory import disk_usage

    cfg = load_config(config)
    configured = next((m for m in cfg.models if m.id == model), None)
    source = configured.source if configured else model
    revision = revision or (configured.revision if configured else None)
    cache = cfg.platform.model_cache_dir
    weights_location(source, cache, revision=revision)  # the source's form (exit 2): no network
    started = time.monotonic()
    hub = HubClient(bars=not as_json and sys.stderr.isatty())
    with exiting_with(1):  # any model error, a source the hub does not know included
        path = Path(prepare_model(source, cache, _progress(as_json), revision=revision, hub=hub))
    seconds = time.monotonic() - started
    stamp = read_stamp(path) or {}
    size = disk_usage(path)
    result = {
        "ok": True,
        "model": model,
        "source": source,
        "revision": stamp.get("revision"),
        "commit": stamp.get("commit"),
        "path": str(path),
        "bytes": size,
        "seconds": round(seconds, 1),
    }
    if as_json:
        emit(result)
        return
    commit = f" (commit {result['commit'][:12]})" if result["commit"] else ""
    out.print(
        f"[green]{source}[/]{commit}: {path}, {human(size)} in {seconds:.1f} s", highlight=False
    )


def prepare(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Prepare every configured model's weights and LoRA adapters in the model cache (done by
    `up` too)."""
    from gpucluster.models import HubClient, prepare_models

    cfg = load_config(config)
    hub = HubClient(bars=not as_json and sys.stderr.isatty())
    with exiting_with(1):  # any model error, a source the hub does not know included
        prepared = prepare_models(cfg, lambda m: err.print(m, highlight=False), hub)
    if as_json:
        emit({"ok": True, "models": prepared})
    else:
        for model_id, path in prepared.items():
            out.print(f"{model_id}: {path}", highlight=False)


models_app = Typer(
    help="The model cache: what is pulled or prepared, its size, removal. "
    "Bare `gpucluster models` lists it.",
    invoke_without_command=True,
)


@models_app.callback()
def models(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """The model cache: list (the default), rm, du."""
    if ctx.invoked_subcommand is None:
        models_list(config, as_json)


@models_app.command("list")
def models_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Every cache entry: source and revision, commit, size, last use, the models using it."""
    from rich.table import Table

    cfg, cache, found = _cache(config)
    users = _users(cfg)
    if as_json:
        emit(
            {
                "ok": True,
                "cache_dir": str(cache),
                "entries": [{**e.as_dict(), "used_by": users.get(e.path, [])} for e in found],
            }
        )
        return
    if not found:
        out.print(f"The model cache {cache} is empty (`gpucluster pull MODEL` fills it).")
        return
    # The name carries the kind (builtin:... or org/name) and the revision (@main).
    table = Table(title=f"Model cache {cache}")
    for column in ("name", "commit", "size", "last used", "used by"):
        table.add_column(column, overflow="fold", no_wrap=column in ("commit", "size"))
    for e in found:
        table.add_row(
            e.name if e.complete else f"{e.name} [yellow](incomplete)[/]",
            (e.commit or "-")[:12],
            human(e.bytes),
            _when(e.last_used),
            ", ".join(users.get(e.path, [])) or "-",
        )
    out.print(table)


@models_app.command("rm")
def models_rm(
    name: Annotated[
        str,
        typer.Argument(
            help="An entry (as `gpucluster models` names it), a "
            "source (every revision of a hub id), or a model id."
        ),
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Remove it even if the configuration or the running platform uses it."
        ),
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove cache entries (and their interrupted pulls); refuses one in use unless --force."""
    from gpucluster.models.inventory import matching, remove

    cfg, cache, found = _cache(config)
    users = _users(cfg)
    chosen = matching(found, name) or [e for e in found if name in users.get(e.path, [])]
    if not chosen:
        fail(
            f"nothing in the model cache {cache} matches {name!r}; `gpucluster models` lists "
            "what is there",
            1,
            as_json,
        )
    in_use = {e.name: users[e.path] for e in chosen if users.get(e.path)}
    if in_use and not force:
        described = "; ".join(f"{n} by {', '.join(ids)}" for n, ids in in_use.items())
        fail(
            f"in use: {described}. The next `gpucluster up` would pull or convert it again; "
            "pass --force to remove it anyway",
            1,
            as_json,
        )
    removed = []
    for entry in chosen:
        remove(entry, _progress(as_json))  # CacheBusyError while a pull holds it: exit 1
        removed.append(entry)
    freed = sum(e.bytes for e in removed)
    if as_json:
        emit({"ok": True, "removed": [e.as_dict() for e in removed], "freed_bytes": freed})
        return
    for entry in removed:
        out.print(f"removed {entry.name} ({entry.path}, {human(entry.bytes)})", highlight=False)


@models_app.command("du")
def models_du(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Disk use of the model cache: in total, per entry, and what is free."""
    from rich.table import Table

    from gpucluster.models.hub import free_bytes
    from gpucluster.models.inventory import disk_usage

    _cfg, cache, found = _cache(config)
    total = disk_usage(cache)
    free = free_bytes(cache) if cache.exists() else None
    if as_json:
        emit(
            {
                "ok": True,
                "cache_dir": str(cache),
                "total_bytes": total,
                "free_bytes": free,
                "entries": [
                    {"name": e.name, "complete": e.complete, "bytes": e.bytes, "path": str(e.path)}
                    for e in found
                ],
            }
        )
        return
    table = Table(title=f"Model cache {cache}")
    table.add_column("name")
    table.add_column("size", justify="right")
    for e in found:
        table.add_row(e.name if e.complete else f"{e.name} (incomplete)", human(e.bytes))
    table.add_row("[bold]total[/]", f"[bold]{human(total)}[/]")
    out.print(table)
    if free is not None:
        out.print(f"{human(free)} free on its filesystem", highlight=False)


def human(size: int) -> str:
    """`size` bytes for people: KiB, MiB or GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size / 1024:.0f} KiB"


def _cache(config: Path | None) -> tuple[Config, Path, list[Any]]:
    """The configuration, its model cache directory (absolute) and the cache's entries."""
    from gpucluster.models.inventory import entries

    cfg = load_config(config)
    cache = Path(cfg.platform.model_cache_dir).expanduser().absolute()
    return cfg, cache, entries(cache)


def _users(cfg: Config) -> dict[Path, list[str]]:
    """Cache entry path -> the ids of the models that load it: the configuration's, and the
    running platform's (marked `(running)`) when one runs with another configuration."""
    from gpucluster.runtime.state import StateDir

    users: dict[Path, list[str]] = {}
    _add_users(users, cfg, "")
    record = StateDir(cfg.platform.state_dir).read_record()
    if record is not None:
        try:
            _add_users(users, Config.model_validate(record.config), " (running)")
        except ValueError:
            pass  # a record from an older schema: the configuration's users are still known
    return users


def _add_users(users: dict[Path, list[str]], cfg: Config, label: str) -> None:
    from gpucluster.models import ModelSourceError, weights_location

    for model in cfg.models:
        try:
            path = Path(
                weights_location(
                    model.source, cfg.platform.model_cache_dir, revision=model.revision
                )
            )
        except ModelSourceError:
            continue
        ids = users.setdefault(path, [])
        if model.id not in ids and f"{model.id}{label}" not in ids:
            ids.append(f"{model.id}{label}")


def _progress(as_json: bool) -> Any:
    def say(message: str) -> None:
        if as_json:
            print(message, file=sys.stderr, flush=True)
        else:
            err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}", highlight=False)

    return say


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))

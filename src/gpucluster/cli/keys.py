"""`gpucluster keys create|list|revoke`: the named API keys of the platform.

`create` prints the new key once (alone on stdout, so that `KEY=$(gpucluster keys create x)`
works) and stores only its SHA-256 digest; `list` never shows a key or a digest. The store is
`platform.security.keys_file`, else `<state_dir>/keys.json`; the gatekeeper and the replicas
re-read it within a second, so no restart is needed either way.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gpucluster.cli.common import ConfigOption, JsonOption, emit, err, fail, out
from gpucluster.cli.errors import Typer
from gpucluster.config import Config, env_api_keys, load_config
from gpucluster.config.keys import (
    RECHECK_S,
    KeyRing,
    KeyStore,
    NamedKey,
    Quota,
    UnknownKeyError,
    check_name,
    effective_quota,
    raw_key,
    store_path,
)
from gpucluster.runtime.state import StateDir
from gpucluster.runtime.usage_log import read_last_used

keys_app = Typer(
    help="Named API keys: create (shown once), list (never a key), revoke.",
    no_args_is_help=True,
)

NameArgument = Annotated[
    str, typer.Argument(help="Key name: lower-case letters, digits and . _ -, at most 63.")
]


@keys_app.command("create")
def create(
    name: NameArgument,
    rpm: Annotated[
        int | None, typer.Option("--rpm", min=1, help="Requests per minute (default: none).")
    ] = None,
    tpm: Annotated[
        int | None,
        typer.Option("--tpm", min=1, help="Prompt + completion tokens per minute (default: none)."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, help="Generation requests in flight at once."),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key and print it once; only its SHA-256 digest is stored."""
    cfg = load_config(config)
    check_name(name)  # BadKeyName: exit 2, before the store is read
    store = KeyStore(store_path(cfg))
    key = store.create(name, Quota(rpm, tpm, concurrency))  # KeyStoreError: exit 1
    created = next(k for k in store.list() if k.name == name)
    quota = effective_quota(created, cfg.platform.security).as_dict()
    if as_json:
        emit({"ok": True, "name": name, "key": key, "quota": quota, "store": str(store.path)})
        return
    print(key)
    err.print(
        f"Created key [bold]{name}[/] ({_describe_quota(quota)}). It is shown this once: keep it "
        "now. Clients send it as 'Authorization: Bearer <key>'.",
        highlight=False,
    )


@keys_app.command("list")
def list_keys(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Every valid key: name, origin, creation, last use and effective quota (never the key)."""
    from rich.table import Table

    cfg = load_config(config)
    KeyStore(store_path(cfg)).list()  # a broken store is an error here, not an empty list
    state = StateDir(cfg.platform.state_dir)
    last_used = read_last_used(state.keys_last_used_file)
    keys, required = _all_keys(cfg, state)
    rows = [_row(key, cfg, last_used) for key in keys]
    if as_json:
        emit({"ok": True, "store": str(store_path(cfg)), "keys_required": required, "keys": rows})
        return
    if not required:
        out.print("Authentication is off: /v1 is open. `gpucluster keys create NAME` turns it on.")
    if not rows:
        return
    table = Table(title=f"API keys ({store_path(cfg)})")
    for column in ("name", "origin", "created", "last used", "rpm", "tpm", "concurrency"):
        table.add_column(column, overflow="fold")
    for row in rows:
        quota = [_limit(row["quota"][q]) for q in Quota().as_dict()]
        table.add_row(
            row["name"], row["origin"], row["created"] or "-", row["last_used"] or "never", *quota
        )
    out.print(table)


@keys_app.command("revoke")
def revoke(name: NameArgument, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Remove a key from the store; requests with it are refused within a second."""
    cfg = load_config(config)
    try:
        KeyStore(store_path(cfg)).revoke(name)
    except UnknownKeyError as exc:
        hint = (
            " It comes from platform.security.api_keys_file or GPUCLUSTER_API_KEYS: remove it "
            "there."
            if name.startswith("key-")
            else " `gpucluster keys list` shows the names."
        )
        fail(f"{exc}.{hint}", 1, as_json)
    if as_json:
        emit({"ok": True, "name": name})
        return
    out.print(f"Revoked [bold]{name}[/]: refused within {RECHECK_S:g} s.", highlight=False)


def _all_keys(cfg: Config, state: StateDir) -> tuple[list[NamedKey], bool]:
    """The keys the platform accepts (the store, the raw-key file, the env keys `up` wrote and
    this shell's GPUCLUSTER_API_KEYS, the operator key), and whether /v1 needs one."""
    security = cfg.platform.security
    ring = KeyRing(
        store_path(cfg),
        [security.api_keys_file] if security.api_keys_file else [],
        env_files=[p for p in [state.api_keys_file] if p.exists()],
        operator_files=[p for p in [state.operator_key_file] if p.exists()],
    )
    keys = ring.keys()
    known = {key.digest for key in keys}
    from_shell = [raw_key(raw, "env") for raw in env_api_keys()]
    keys += [key for key in from_shell if key.digest not in known]
    return keys, ring.enabled or bool(from_shell)


def _row(key: NamedKey, cfg: Config, last_used: dict[str, str]) -> dict[str, Any]:
    return {
        "name": key.name,
        "origin": key.origin,
        "created": key.created,
        "last_used": last_used.get(key.name),
        "quota": effective_quota(key, cfg.platform.security).as_dict(),
    }


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)


def _describe_quota(quota: dict[str, int | None]) -> str:
    limits = [f"{name} {value}" for name, value in quota.items() if value is not None]
    return "quota: " + ", ".join(limits) if limits else "no quota"

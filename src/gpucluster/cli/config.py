"""`gpucluster config check|show`: validate the configuration (and that every model fits its
devices), or print the effective one. `refuse_unfit` is the fit check `up` runs too."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from gpucluster.cli.common import ConfigOption, JsonOption, emit, error_json, fail, out
from gpucluster.cli.errors import Typer
from gpucluster.config import load_config

if TYPE_CHECKING:
    from gpucluster.config import Config
    from gpucluster.ops.fit import Fit

config_app = Typer(help="Check or show the configuration.", no_args_is_help=True)


@config_app.command("check")
def config_check(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    gpu: Annotated[
        str | None,
        typer.Option(
            "--gpu",
            help="Check GPU models against this GPU type (`gpucluster capacity "
            "--help` lists them) instead of the GPUs this host has.",
        ),
    ] = None,
) -> None:
    """Validate a config file (and the environment overrides), and check that every model fits
    its devices; exit 2 naming each bad key or each model that cannot fit, and the fix."""
    from gpucluster.ops.fit import as_dicts

    cfg = load_config(config)
    fits = refuse_unfit(cfg, gpu, as_json)
    if as_json:
        emit({"ok": True, "models": [m.id for m in cfg.models], "fit": as_dicts(fits)})
        return
    out.print(f"[green]valid[/]: {len(cfg.models)} model(s): {', '.join(m.id for m in cfg.models)}")
    for fit in fits:
        verdict = "[green]fits[/]" if fit.fits else "[yellow]not checked[/]"
        out.print(
            f"{verdict} {'all models' if fit.model == '*' else fit.model}: {fit.detail}",
            highlight=False,
        )


def refuse_unfit(cfg: Config, gpu: str | None, as_json: bool) -> list[Fit]:
    """The fit checks of `cfg` (ops.fit); exit 2 with the numbers and the fix when one fails."""
    from gpucluster.ops.fit import as_dicts, check_fit, describe, problems
    from gpucluster.planning.hardware import find_gpu

    fits = check_fit(cfg, find_gpu(gpu) if gpu else None)  # an unknown --gpu: exit 2 (InputError)
    bad = problems(fits)
    if bad:
        message = "; ".join(describe(f) for f in bad)
        if as_json:
            print(json.dumps({**error_json(message), "fit": as_dicts(fits)}))
            raise typer.Exit(2)
        fail(message, 2, as_json)
    return fits


@config_app.command("show")
def config_show(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Print the effective configuration: defaults, file and environment combined."""
    cfg = load_config(config)
    data = json.loads(cfg.model_dump_json())
    if as_json:
        emit(data)
    else:
        import yaml

        out.print(yaml.safe_dump(data, sort_keys=False), highlight=False, markup=False)

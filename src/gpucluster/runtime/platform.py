"""`up` and `down` of the local-mode platform: Ray head, the Serve application, its models."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from gpucluster.config import Config, env_api_keys
from gpucluster.config.guide_errors import GUIDE_ERROR_LINES, MODEL_LOADING_TIMEOUT, fixes_for
from gpucluster.config.keys import KeySources, first_key, store_path
from gpucluster.errors import GpuClusterError
from gpucluster.models import ModelError, prepare_models
from gpucluster.runtime import readiness
from gpucluster.runtime.dashboard_logins import forget_first_login, list_users
from gpucluster.runtime.edge import (
    ensure_dashboard_password,
    ensure_operator_key,
    gatekeeper_service,
    nginx_service,
    upstreams_service,
    write_nginx_conf,
    write_private,
)
from gpucluster.runtime.logs import component_files, find_lines, platform_logger
from gpucluster.runtime.monitoring import monitoring_services
from gpucluster.runtime.processes import (
    PLATFORM_TAG_ENV,
    describe,
    held_ports,
    identities,
    platform_processes,
    processes_of,
    terminate_all,
    wait_until,
)
from gpucluster.runtime.ray_head import (
    RayStartError,
    ensure_ray_token,
    ray_address,
    ray_env,
    start_head,
)
from gpucluster.runtime.state import PlatformRecord, StateDir, endpoints_for
from gpucluster.runtime.supervisor import write_services
from gpucluster.serving.serve_config import serve_config

Progress = Callable[[str], None]

_POLL_S = 2.0


class UpError(GpuClusterError, RuntimeError):
    """`up` could not bring the platform up; the message says why and what to do."""

    next_step = "`gpucluster logs platform` shows what `up` did"


@dataclass(frozen=True)
class UpResult:
    already_running: bool
    record: PlatformRecord
    seconds: float
    dashboard_password: str | None = None  # set when `up` created it: shown once
    warnings: tuple[str, ...] = ()
    phases: tuple[tuple[str, float], ...] = ()  # (phase, seconds) of a cold start, in order


class _Phases:
    """Wall time of each start-up phase."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self.done: list[tuple[str, float]] = []

    def end(self, name: str) -> None:
        now = time.monotonic()
        self.done.append((name, round(now - self._last, 1)))
        self._last = now


@dataclass(frozen=True)
class DownResult:
    was_running: bool
    stopped: list[str]
    leftovers: list[str]


def running_record(state: StateDir) -> PlatformRecord | None:
    """The record of a platform whose Serve application answers (healthy or not), else None."""
    record = state.read_record()
    if record is not None and readiness.port_accepts(f"{record.endpoints.serve}/health"):
        return record
    return None


def up(config: Config, progress: Progress) -> UpResult:
    """Start the platform, or report the one already running. Returns once every model answers."""
    started = time.monotonic()
    state = StateDir(config.platform.state_dir)
    state.ensure()
    existing = running_record(state)
    if existing is not None:
        return UpResult(True, existing, 0.0)
    log = platform_logger(state, progress)
    if state.read_record() is not None or processes_of(state):
        log.info("Cleaning up what a previous run left behind")
        _stop_everything(state)
    _check_ports(config)
    warnings = []
    password = None
    try:
        phases = _Phases()
        weights = prepare_models(config, log.info)
        phases.end("prepare models")
        keys, probe_key = _key_sources(config, state)
        # The deploy driver imports Ray Serve LLM and vLLM (seconds) while Ray starts.
        driver = _start_deploy_driver(config, state, weights, keys, log)
        log.info("Starting Ray head (dashboard :%d)", config.platform.ports.ray_dashboard)
        address = start_head(config, state)
        phases.end("start Ray")
        if not keys.ring().enabled:
            warnings.append(
                "No API keys configured: anyone who reaches port "
                f"{config.platform.ports.nginx_http} can use the API. Create one with "
                "`gpucluster keys create NAME`, or set GPUCLUSTER_API_KEYS or "
                "platform.security.api_keys_file."
            )
        if config.platform.security.dashboard_write:
            warnings.append(
                "platform.security.dashboard_write is on: the /dashboard password can submit "
                "Ray jobs, that is run any command on every node. Leave it off unless you "
                "need the dashboard's Jobs API or profilers through nginx."
            )
        password = ensure_dashboard_password(state, config.platform.security.dashboard_user)
        if password is None and not list_users(state.htpasswd_file):
            warnings.append(
                f"{state.htpasswd_file} holds no login: nobody can log in to /dashboard/. "
                "Add one with `gpucluster dashboard-users add NAME`."
            )
        _start_services(config, state, keys, log)
        phases.end("start nginx, Prometheus, Alertmanager")
        _deploy(config, state, driver, log, progress)
        phases.end("deploy Serve app and load engines")
        _wait_until_answering(config, probe_key, log)
        phases.end("first token through nginx")
    except BaseException as exc:
        if password is not None:
            # never shown: the next `up` makes and shows a new one
            forget_first_login(state.htpasswd_file, config.platform.security.dashboard_user)
        _stop_everything(state)
        if isinstance(exc, (UpError, RayStartError, ModelError)):
            log.error("%s", exc)
            raise UpError(str(exc)) from None
        raise
    record = PlatformRecord(
        started_at=time.time(),
        ray_address=address,
        config=json.loads(config.model_dump_json()),
        endpoints=endpoints_for(config),
        models=[m.id for m in config.models],
        api_key_files=[*keys.files, *keys.env_files],
    )
    state.write_record(record)
    state.write_processes(identities(platform_processes(state.tag)))
    log.info("Platform up in %.0f s: %s", time.monotonic() - started, record.endpoints.openai_api)
    log.info("Start-up phases: %s", ", ".join(f"{name} {secs:.1f} s" for name, secs in phases.done))
    return UpResult(
        False, record, time.monotonic() - started, password, tuple(warnings), tuple(phases.done)
    )


def down(config: Config) -> DownResult:
    """Stop everything `up` started: nginx drains in-flight requests first; report leftovers."""
    state = StateDir(config.platform.state_dir)
    state.ensure()
    was_running = state.read_record() is not None
    stopped = [describe(p) for p in processes_of(state)]
    leftovers = _stop_everything(state, config.platform.shutdown_grace_s)
    if was_running or stopped:
        platform_logger(state).info("Platform stopped (%d processes)", len(stopped))
    return DownResult(was_running or bool(stopped), stopped, leftovers)


def _stop_everything(state: StateDir, drain_s: float = 0) -> list[str]:
    _stop_supervisor(state, drain_s)
    # Not `ray stop`: it would end every Ray cluster on the host, and vLLM engine processes of
    # killed replicas can outlive it. The tag finds exactly this platform's processes; what
    # ignores SIGTERM is killed after the grace period.
    terminate_all(processes_of(state), grace_s=15)
    # A second sweep for what dying parents spawned or orphaned meanwhile.
    leftovers = terminate_all(processes_of(state), grace_s=5)
    state.clear_record()
    return [describe(p) for p in leftovers]


def _stop_supervisor(state: StateDir, drain_s: float) -> None:
    """Ask the supervisor to stop its services (nginx drains) before the sweep below."""
    try:
        pid = int(state.supervisor_pid.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    procs = [p for p in platform_processes(state.tag) if p.pid == pid]
    terminate_all(procs, grace_s=drain_s + 15)


def _check_ports(config: Config) -> None:
    busy = [
        f"port {held.port} (platform.ports.{held.name}) is in use"
        + (f" by {held.owner}" if held.owner else "")
        for held in held_ports(config.platform)
    ]
    if busy:
        raise UpError(
            "cannot start: " + "; ".join(busy) + ". Stop what holds it, or set another port in "
            "the config file (NGINX_HTTP_PORT and RAY_DASHBOARD_PORT override those two)."
        )


def _key_sources(config: Config, state: StateDir) -> tuple[KeySources, str | None]:
    """Where the replicas and the gatekeeper find the keys, and the key of `up`'s own readiness
    probe: the platform's operator key."""
    keys = env_api_keys()
    if keys:
        write_private(state.api_keys_file, "\n".join(keys) + "\n")
    else:
        state.api_keys_file.unlink(missing_ok=True)
    keys_file = config.platform.security.api_keys_file
    operator = ensure_operator_key(state)
    sources = KeySources(
        files=(str(keys_file),) if keys_file is not None else (),
        store=str(store_path(config)),
        env_files=(str(state.api_keys_file),) if keys else (),
        operator_files=(str(operator),),
    )
    return sources, first_key(operator)


def _start_services(config: Config, state: StateDir, keys: KeySources, log: logging.Logger) -> None:
    """Start the supervisor (nginx, its gatekeeper, Prometheus, Alertmanager, alert receiver);
    wait for them."""
    conf = write_nginx_conf(config, state, ensure_ray_token(state))
    drain_s = config.platform.shutdown_grace_s
    write_services(
        state,
        [
            gatekeeper_service(config, state, keys),
            nginx_service(conf, state, drain_s),
            upstreams_service(config, state),
            *monitoring_services(config, state),
        ],
    )
    ports = config.platform.ports
    log.info(
        "Starting nginx :%d, Prometheus :%d, Alertmanager :%d (supervised)",
        ports.nginx_http,
        ports.prometheus,
        ports.alertmanager,
    )
    with state.log("supervisor").open("a", encoding="utf-8") as supervisor_log:
        subprocess.Popen(
            [sys.executable, "-m", "gpucluster.runtime.supervisor", str(state.root)],
            stdout=supervisor_log,
            stderr=subprocess.STDOUT,
            env={**os.environ, PLATFORM_TAG_ENV: state.tag},
            start_new_session=True,
        )
    endpoints = endpoints_for(config)
    for name, url in (
        ("nginx", endpoints.health),
        ("gatekeeper", f"http://{config.platform.gatekeeper_address}/healthz"),
        ("prometheus", f"{endpoints.prometheus}/-/ready"),
        ("alertmanager", f"{endpoints.alertmanager}/-/ready"),
    ):
        if not wait_until(lambda url=url: readiness.port_accepts(url), timeout_s=30):
            raise UpError(f"{name} did not start; see `gpucluster logs {name}`")


def _wait_until_answering(config: Config, api_key: str | None, log: logging.Logger) -> None:
    api = endpoints_for(config).openai_api
    for model in config.models:
        ok, detail = readiness.answers(
            api, model.id, api_key=api_key, timeout_s=60, embeds=model.embeds
        )
        if not ok:
            raise UpError(
                f"model {model.id} is deployed but does not answer through nginx: {detail}"
            )
        log.info("Model loaded successfully (%s)", model.id)


def _start_deploy_driver(
    config: Config,
    state: StateDir,
    weights: dict[str, str],
    keys: KeySources,
    log: logging.Logger,
) -> subprocess.Popen:
    """The deploy driver, started before Ray: it loads the application builder, then waits for
    a line on its stdin (`_deploy` sends it once Ray is up) before connecting."""
    spec = serve_config(config, weights, keys)
    state.serve_config_file.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    for model in config.models:
        log.info("Loading model %s...", model.id)
    with state.log("deploy").open("a", encoding="utf-8") as deploy_log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gpucluster.serving.deploy",
                str(state.serve_config_file),
                "--address",
                ray_address(config),
                "--wait-for-go",
            ],
            stdin=subprocess.PIPE,
            stdout=deploy_log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **ray_env(config, state)},
            start_new_session=True,
        )


def _deploy(
    config: Config,
    state: StateDir,
    driver: subprocess.Popen,
    log: logging.Logger,
    progress: Progress,
) -> None:
    """Let the driver deploy now that Ray is up; return once every application runs."""
    started = time.monotonic()
    deadline = started + config.platform.startup_timeout_s
    try:
        with contextlib.suppress(BrokenPipeError):  # it failed already: its exit code says why
            driver.stdin.write(b"go\n")
            driver.stdin.close()
        while not _exited(driver, _POLL_S):
            if time.monotonic() > deadline:
                log.error(MODEL_LOADING_TIMEOUT)
                raise UpError(
                    f"models did not load within {config.platform.startup_timeout_s:.0f} s; "
                    "see `gpucluster logs serve` and `gpucluster logs engine`, or raise "
                    "platform.startup_timeout_s"
                )
            progress(f"loading models ({time.monotonic() - started:.0f} s)")
    finally:
        if driver.poll() is None:
            driver.kill()
    if driver.returncode != 0:
        raise UpError(_deploy_failure(state))


def _exited(process: subprocess.Popen, within_s: float) -> bool:
    """Whether `process` exits within `within_s` (returns as soon as it does)."""
    try:
        process.wait(timeout=within_s)
    except subprocess.TimeoutExpired:
        return False
    return True


def _deploy_failure(state: StateDir) -> str:
    guide_lines = find_lines(component_files(state, "serve"), GUIDE_ERROR_LINES, limit=3)
    deploy_errors = find_lines(component_files(state, "deploy"), ("ERROR",), limit=3)
    detail = "\n  ".join(guide_lines + deploy_errors) or "no error line found"
    fixes = "".join(f"Fix for {fix}\n" for fix in fixes_for(guide_lines))
    return (
        "the Serve application failed to deploy:\n  "
        + detail
        + "\n"
        + fixes
        + "Look at `gpucluster logs serve` and `gpucluster logs engine` for the cause."
    )

"""The supervisor: keeps the platform's non-Ray services (nginx, ...) running.

`gpucluster up` starts it detached as `python -m gpucluster.runtime.supervisor STATE_DIR`; it
reads `services.json` from the state dir, starts each service, restarts one that exits with
exponential backoff (logging why), and on SIGTERM stops them all and exits. Its log is
`logs/supervisor.log`; each service logs to `logs/<name>.log`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gpucluster.runtime.processes import processes_of, terminate_all
from gpucluster.runtime.state import StateDir

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a service up this long gets its backoff reset
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service: argv, extra environment, and how it stops gracefully."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    stop_grace_s: float = STOP_GRACE_S

    @classmethod
    def from_dict(cls, data: dict) -> ServiceSpec:
        return cls(**{**data, "argv": list(data["argv"]), "env": dict(data.get("env", {}))})


def write_services(state: StateDir, services: list[ServiceSpec]) -> None:
    """Record the services the supervisor runs."""
    data = [asdict(s) for s in services]
    state.services_file.write_text(json.dumps(data, indent=2), encoding="utf-8")


def read_services(state: StateDir) -> list[ServiceSpec]:
    return [ServiceSpec.from_dict(d) for d in json.loads(state.services_file.read_text("utf-8"))]


class _Running:
    def __init__(self, spec: ServiceSpec, state: StateDir) -> None:
        self.spec = spec
        self.state = state
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.backoff = BACKOFF_START_S
        self.restart_at = 0.0
        self.restarts = 0

    def start(self) -> None:
        log = self.state.log(self.spec.name).open("a", encoding="utf-8")
        self.proc = subprocess.Popen(
            self.spec.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.spec.env},
            start_new_session=True,
        )
        log.close()
        self.started_at = time.monotonic()


def _kill_leftovers(pgid: int) -> None:
    """Kill what a dead service left in its process group (nginx workers outlive a killed
    master and would keep its port from the restarted one)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Supervisor:
    """Runs services until told to stop."""

    def __init__(self, state: StateDir, services: list[ServiceSpec], logger: logging.Logger):
        self.state = state
        self.running = [_Running(spec, state) for spec in services]
        self.log = logger
        self.stopping = False

    def run(self, poll_s: float = 0.5) -> None:
        for service in self.running:
            self.log.info("starting %s: %s", service.spec.name, " ".join(service.spec.argv))
            service.start()
        while not self.stopping:
            self._check(time.monotonic())
            time.sleep(poll_s)
        self._stop_all()

    def _check(self, now: float) -> None:
        for service in self.running:
            if service.proc is None:
                if now >= service.restart_at:
                    service.restarts += 1
                    self.log.warning(
                        "restarting %s (restart %d)", service.spec.name, service.restarts
                    )
                    service.start()
                continue
            code = service.proc.poll()
            if code is None:
                if now - service.started_at > STABLE_AFTER_S:
                    service.backoff = BACKOFF_START_S
                continue
            self.log.error(
                "ERROR: %s exited with code %s; restarting in %.0f s (see logs/%s.log)",
                service.spec.name,
                code,
                service.backoff,
                service.spec.name,
            )
            _kill_leftovers(service.proc.pid)
            service.proc = None
            service.restart_at = now + service.backoff
            service.backoff = min(service.backoff * 2, BACKOFF_MAX_S)

    def _stop_all(self) -> None:
        """Each service gets its stop signal (nginx: SIGQUIT, finish open requests) and grace."""
        live = [s for s in self.running if s.proc is not None and s.proc.poll() is None]
        started = time.monotonic()
        for service in live:
            self.log.info(
                "stopping %s (signal %d, up to %.0f s)",
                service.spec.name,
                service.spec.stop_signal,
                service.spec.stop_grace_s,
            )
            service.proc.send_signal(service.spec.stop_signal)
        for service in live:
            remaining = service.spec.stop_grace_s - (time.monotonic() - started)
            try:
                service.proc.wait(timeout=max(0.1, remaining))
            except subprocess.TimeoutExpired:
                self.log.warning(
                    "%s did not stop within %.0f s; killing it",
                    service.spec.name,
                    service.spec.stop_grace_s,
                )
                service.proc.kill()
        self.log.info(
            "supervisor stopped %d services in %.1f s", len(live), time.monotonic() - started
        )

    def request_stop(self, *_: object) -> None:
        self.stopping = True


def main(argv: list[str]) -> int:
    """Entry point: argv[1] is the state dir."""
    state = StateDir(Path(argv[1]))
    logging.basicConfig(
        filename=state.log("supervisor"),
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    logger = logging.getLogger("gpucluster.supervisor")
    supervisor = Supervisor(state, read_services(state), logger)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    state.supervisor_pid.write_text(str(os.getpid()), encoding="utf-8")
    try:
        supervisor.run()
        # Stopped (by `gpucluster down`, or by an init system's SIGTERM): nginx has drained;
        # the rest of the platform (Ray, the deploy driver, engines) goes too.
        rest = processes_of(state)
        leftovers = terminate_all(rest, grace_s=15)
        state.clear_record()
        logger.info(
            "stopped the platform's other %d processes (%d would not stop)",
            len(rest),
            len(leftovers),
        )
    finally:
        state.supervisor_pid.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The supervisor restarts a dying service with growing backoff and stops everything on request."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading

import psutil
import pytest

from gpucluster.runtime.processes import PLATFORM_TAG_ENV
from gpucluster.runtime.state import StateDir
from gpucluster.runtime.supervisor import (
    BACKOFF_START_S,
    ServiceSpec,
    Supervisor,
    read_services,
    write_services,
)


@pytest.fixture
def state(tmp_path) -> StateDir:
    state = StateDir(tmp_path)
    state.ensure()
    return state


def test_services_round_trip_through_the_state_dir(state):
    spec = ServiceSpec("nginx", ["/usr/sbin/nginx", "-g", "daemon off;"], {"A": "1"})
    write_services(state, [spec])
    assert read_services(state) == [spec]


def test_a_dying_service_is_restarted_with_growing_backoff(state, caplog):
    supervisor = Supervisor(
        state, [ServiceSpec("flaky", ["sh", "-c", "exit 3"])], logging.getLogger("t")
    )
    service = supervisor.running[0]
    service.start()
    service.proc.wait()
    with caplog.at_level(logging.INFO, logger="t"):
        supervisor._check(100.0)
        assert service.proc is None
        assert "ERROR: flaky exited with code 3" in caplog.text
        supervisor._check(100.0 + BACKOFF_START_S / 2)
        assert service.proc is None  # still backing off
        supervisor._check(100.0 + BACKOFF_START_S)
        assert service.proc is not None and service.restarts == 1
        service.proc.wait()
        supervisor._check(200.0)
        assert service.restart_at == 200.0 + 2 * BACKOFF_START_S  # doubled


def test_stop_request_ends_the_services(state, wait_until):
    supervisor = Supervisor(
        state, [ServiceSpec("sleeper", ["sleep", "60"])], logging.getLogger("t")
    )
    runner = threading.Thread(target=supervisor.run, kwargs={"poll_s": 0.05})
    runner.start()
    try:
        wait_until(
            lambda: supervisor.running[0].proc is not None, "the supervisor to start sleeper"
        )
    except BaseException:
        supervisor.request_stop()
        runner.join(timeout=15)
        raise
    proc = supervisor.running[0].proc
    supervisor.request_stop()
    runner.join(timeout=15)
    assert not runner.is_alive()
    assert proc.poll() is not None


def test_a_killed_leader_takes_its_leftover_children_with_it(state, tmp_path, wait_until):
    # like a SIGKILLed nginx master whose workers would keep holding the port
    pidfile = tmp_path / "child.pid"
    script = f"sleep 300 & echo $! > {pidfile}; wait"
    supervisor = Supervisor(
        state, [ServiceSpec("leader", ["sh", "-c", script])], logging.getLogger("t")
    )
    service = supervisor.running[0]
    service.start()
    try:
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the leader's child")
    except BaseException:
        service.proc.kill()
        raise
    child = int(pidfile.read_text())
    service.proc.kill()
    service.proc.wait()
    supervisor._check(100.0)
    wait_until(lambda: gone(child), f"the leader's child {child} to end", timeout_s=2)


def gone(pid: int) -> bool:
    """Whether `pid` has ended (a zombie has: only its parent's wait is missing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigterm_to_the_supervisor_stops_the_whole_platform(state, wait_until):
    tagged = {**os.environ, PLATFORM_TAG_ENV: state.tag}
    write_services(state, [ServiceSpec("sleeper", ["sleep", "60"])])
    ray_like = subprocess.Popen(["sleep", "300"], env=tagged)  # stands for Ray and the engines
    threading.Thread(target=ray_like.wait, daemon=True).start()  # reap it at once, as init would
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "gpucluster.runtime.supervisor", str(state.root)], env=tagged
    )
    try:
        log = state.log("supervisor")
        wait_until(
            lambda: log.exists() and "starting sleeper" in log.read_text(),
            "the supervisor to start its services",
            timeout_s=30,
        )
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
        assert ray_like.wait(timeout=5) == -signal.SIGTERM
    finally:
        ray_like.kill()
        supervisor.kill()
    assert "stopped the platform's other 1 processes" in state.log("supervisor").read_text()

"""Finding a platform's processes: by its tag, and by descent from a tagged process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import psutil

from gpucluster.config import Config
from gpucluster.runtime.processes import (
    PLATFORM_TAG_ENV,
    held_ports,
    identities,
    platform_processes,
    process_tag,
    still_running,
    terminate_all,
    worker_tag,
)

SPAWN_UNTAGGED_CHILD = (
    "import os, subprocess, sys\n"
    f"env = dict(os.environ); env.pop({PLATFORM_TAG_ENV!r})\n"
    "subprocess.Popen(['sleep', '60'], env=env).wait()\n"
)


def test_tagged_processes_and_their_untagged_children_are_found_and_stopped(tmp_path):
    tag = str(tmp_path)
    env = {**os.environ, PLATFORM_TAG_ENV: tag}
    parent = subprocess.Popen([sys.executable, "-c", SPAWN_UNTAGGED_CHILD], env=env)
    other = subprocess.Popen(["sleep", "60"], env={**os.environ, PLATFORM_TAG_ENV: "someone-else"})
    try:
        deadline = time.monotonic() + 10
        while len(platform_processes(tag)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        found = platform_processes(tag)
        pids = {p.pid for p in found}
        assert parent.pid in pids
        assert len(pids) == 2  # the parent and its untagged sleep child
        assert other.pid not in pids
        assert terminate_all(found, grace_s=5) == []
        assert platform_processes(tag) == []
    finally:
        other.kill()
        parent.kill()
        other.wait()
        parent.wait()


def started(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`argv` once it runs: until its exec, a child's /proc environ is still its parent's."""
    proc = subprocess.Popen(argv, env=env)
    deadline = time.monotonic() + 10
    while psutil.Process(proc.pid).cmdline() != argv and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


def test_worker_nodes_on_this_host_belong_to_the_platform_but_can_be_told_apart(tmp_path):
    tag = str(tmp_path)
    head = started(["sleep", "60"], {**os.environ, PLATFORM_TAG_ENV: tag})
    worker = started(["sleep", "60"], {**os.environ, PLATFORM_TAG_ENV: worker_tag(tag)})
    try:
        assert process_tag(worker.pid) == worker_tag(tag)
        assert {p.pid for p in platform_processes(tag)} == {head.pid, worker.pid}
        assert {p.pid for p in platform_processes(worker_tag(tag), exact=True)} == {worker.pid}
        assert {p.pid for p in platform_processes(tag, exact=True)} == {head.pid}
        assert platform_processes(tag + "x") == []  # a different platform's tag never matches
    finally:
        for proc in (head, worker):
            proc.kill()
            proc.wait()


def test_a_recorded_orphan_that_ignores_sigterm_is_found_and_killed(tmp_path):
    # like Ray's agents after the head was killed: no tag, no tagged parent, SIGTERM ignored
    orphan = subprocess.Popen(["sh", "-c", "trap '' TERM; while :; do sleep 1; done"])
    try:
        assert platform_processes(str(tmp_path)) == []
        recorded = identities([psutil.Process(orphan.pid)])
        (found,) = still_running(recorded)
        assert found.pid == orphan.pid
        time.sleep(0.2)  # the shell has set its trap
        found.terminate()
        time.sleep(0.3)
        assert found.is_running()  # SIGTERM did nothing
        assert terminate_all([found], grace_s=0.5) == []  # SIGKILLed after the grace period
        assert still_running(recorded) == []
    finally:
        orphan.kill()


def test_a_recorded_pid_now_held_by_another_process_is_left_alone():
    me = psutil.Process()
    assert still_running([{"pid": me.pid, "started": me.create_time()}]) == [me]
    assert still_running([{"pid": me.pid, "started": me.create_time() - 60}]) == []
    assert still_running([{"pid": 2**22 + 1, "started": 0}, {"junk": 1}]) == []


def test_the_configured_ports_something_else_holds_are_named_with_their_owner():
    with socket.socket() as holder, socket.socket() as grafana:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        grafana.bind(("127.0.0.1", 0))
        grafana.listen()
        port, grafana_port = holder.getsockname()[1], grafana.getsockname()[1]
        config = Config(platform={"ports": {"nginx_http": port, "grafana": grafana_port}})
        (held,) = [h for h in held_ports(config.platform) if h.port in (port, grafana_port)]
    assert (held.name, held.port) == ("nginx_http", port)  # Grafana: compose mode only
    assert held.owner == f"{psutil.Process().name()} (pid {os.getpid()})"

"""nginx's upstream servers file follows the replica ports that are open."""

from __future__ import annotations

import socket
import subprocess
import sys

from gpucluster.config.schema import DIRECT_INGRESS_PORTS
from gpucluster.runtime.upstreams import (
    direct_ports,
    open_ports,
    reload_nginx,
    upstream_servers,
    write_if_changed,
)


def test_only_listening_ports_are_found():
    with socket.socket() as listening, socket.socket() as closed:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        closed.bind(("127.0.0.1", 0))  # bound, not listening: refuses connections
        up, down = listening.getsockname()[1], closed.getsockname()[1]
        assert open_ports("127.0.0.1", range(up, up + 1)) == [up]
        assert open_ports("127.0.0.1", range(down, down + 1)) == []


def test_the_servers_are_the_open_ports_else_serves_proxy():
    assert upstream_servers("h", [18400, 18402], 8000) == "server h:18400;\nserver h:18402;\n"
    assert upstream_servers("h", [], 8000) == "server h:8000;\n"


def test_the_scanned_range_is_the_one_ray_nodes_are_given():
    from gpucluster.config.ray_node import node_env

    env = node_env(None)
    assert (
        int(env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"]),
        int(env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"]),
    ) == DIRECT_INGRESS_PORTS
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert list(direct_ports()) == list(range(DIRECT_INGRESS_PORTS[0], DIRECT_INGRESS_PORTS[1] + 1))


def test_the_file_is_rewritten_only_when_it_changes(tmp_path):
    path = tmp_path / "upstreams.conf"
    assert write_if_changed(path, "server a;\n")
    assert not write_if_changed(path, "server a;\n")
    assert write_if_changed(path, "server b;\n")
    assert path.read_text() == "server b;\n"


def test_a_change_reloads_the_nginx_the_pid_file_names(tmp_path):
    waiter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import signal, sys; signal.signal(signal.SIGHUP, lambda *_: sys.exit(7)); "
                "print(flush=True); signal.pause()"
            ),
        ],
        stdout=subprocess.PIPE,
    )
    waiter.stdout.readline()  # its handler is installed
    pid_file = tmp_path / "nginx.pid"
    pid_file.write_text(f"{waiter.pid}\n")
    reload_nginx(pid_file)
    assert waiter.wait(timeout=10) == 7
    reload_nginx(tmp_path / "absent.pid")  # no nginx (compose: it reloads itself): no error

"""Joining a head: clear errors before anything starts, and ports that never clash on one host."""

from __future__ import annotations

import socket

import pytest

from gpucluster.config import Config
from gpucluster.runtime.ray_head import head_host, ray_address, ray_env
from gpucluster.runtime.state import StateDir
from gpucluster.runtime.worker_node import JoinError, free_port, join


def config_in(tmp_path, **platform) -> Config:
    return Config(platform={"state_dir": str(tmp_path / "state"), **platform})


def test_join_without_the_heads_token_says_where_to_get_it(tmp_path):
    config = config_in(tmp_path)
    with pytest.raises(JoinError, match="copy the head's token file") as raised:
        join(config, "10.0.0.5:6379", num_cpus=1, num_gpus=0, token_file=tmp_path / "missing")
    # the file the head's state directory holds (the one `up --head` writes)
    assert f"(`{StateDir(config.platform.state_dir).ray_token_file.name}` in" in str(raised.value)


@pytest.mark.parametrize("head", ["10.0.0.5", "10.0.0.5:ray", ":6379"])
def test_join_names_a_malformed_head_address(tmp_path, head):
    token = tmp_path / "token"
    token.write_text("t")
    with pytest.raises(JoinError, match="must be HOST:PORT"):
        join(config_in(tmp_path), head, num_cpus=1, num_gpus=0, token_file=token)


def test_a_taken_port_moves_to_the_next_free_one():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        assert free_port(taken, "127.0.0.1") > taken


def test_the_head_stays_single_host_on_loopback_unless_told_to_take_workers(tmp_path):
    single = config_in(tmp_path)
    state = StateDir(single.platform.state_dir)
    assert ray_address(single) == "127.0.0.1:6379"
    assert ray_env(single, state)["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"  # refuses nodes
    head = config_in(tmp_path, cluster_host="10.0.0.5")
    assert head_host(head) == "10.0.0.5" and ray_address(head) == "10.0.0.5:6379"
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in ray_env(head, state)
    assert head.platform.bind_host == "127.0.0.1"  # Serve and the dashboard stay on loopback


def test_ray_workers_and_the_engines_they_spawn_run_at_the_daemons_priority(tmp_path):
    # Ray's default starts workers at nice 15: the vLLM engine would yield to every daemon.
    env = ray_env(config_in(tmp_path), StateDir(tmp_path / "state"))
    assert env["RAY_worker_niceness"] == "0"
    assert float(env["RAY_SERVE_CONTROL_LOOP_INTERVAL_S"]) >= 0.5

"""`gpucluster keys create|list|revoke` as an operator runs them (typer's runner)."""

from __future__ import annotations

import json
import stat

import pytest
from typer.testing import CliRunner

from gpucluster.cli.main import app
from gpucluster.config.keys import key_digest


@pytest.fixture
def state(tmp_path, monkeypatch):
    for name in ("GPUCLUSTER_CONFIG", "GPUCLUSTER_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GPUCLUSTER_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def run(*args: str):
    return CliRunner().invoke(app, ["keys", *args])


def test_create_prints_the_key_once_and_stores_only_its_digest(state):
    result = run("create", "team-a", "--rpm", "10", "--tpm", "5000", "--concurrency", "2")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("gpc-") and "\n" not in key  # alone on stdout: KEY=$(...) works
    assert "shown this once" in result.stderr and key not in result.stderr
    store = state / "keys.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert key not in store.read_text() and key_digest(key) in store.read_text()


def test_create_json(state):
    result = run("create", "team-a", "--tpm", "100", "--json")
    data = json.loads(result.stdout)
    assert data["ok"] and data["name"] == "team-a" and data["key"].startswith("gpc-")
    assert data["quota"] == {
        "requests_per_minute": None,
        "tokens_per_minute": 100,
        "concurrent_requests": None,
    }


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["create", "Team A"], 2, "not a valid key name"),
        (["create", "key-0000abcd"], 2, "gives keys itself"),
        (["create", "x", "--rpm", "0"], 2, None),
        (["revoke", "nobody"], 1, "no key named 'nobody'"),
        (["revoke", "key-0000abcd"], 1, "GPUCLUSTER_API_KEYS"),
    ],
)
def test_refusals_exit_with_the_usual_codes(state, args, code, says):
    result = run(*args, "--json") if says else run(*args)
    assert result.exit_code == code, result.output
    if says:
        assert says in json.loads(result.stdout)["error"]


def test_an_existing_name_fails(state):
    assert run("create", "team-a").exit_code == 0
    result = run("create", "team-a", "--json")
    assert result.exit_code == 1 and "exists" in json.loads(result.stdout)["error"]


def test_list_shows_names_origins_last_use_and_effective_quotas_never_keys(
    state, tmp_path, monkeypatch
):
    keys_file = tmp_path / "raw-keys"
    keys_file.write_text("file-key\n")
    config = tmp_path / "platform.yaml"
    config.write_text(
        f"platform:\n  state_dir: {state}\n  security:\n    api_keys_file: {keys_file}\n"
        "    default_quota: {requests_per_minute: 60}\n"
        "    quotas: {team-b: {concurrent_requests: 1}}\n"
    )
    key_a = json.loads(run("create", "team-a", "--tpm", "100", "-c", str(config), "--json").stdout)[
        "key"
    ]
    key_b = json.loads(run("create", "team-b", "--rpm", "5", "-c", str(config), "--json").stdout)[
        "key"
    ]
    (state / "operator-key").write_text("operator-secret\n")
    (state / "keys-last-used.json").write_text('{"team-a": "2025-01-02T03:04:05.000Z"}')
    monkeypatch.setenv("GPUCLUSTER_API_KEYS", "env-secret")
    result = run("list", "-c", str(config), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["keys_required"] is True
    rows = {row["name"]: row for row in data["keys"]}
    file_name = f"key-{key_digest('file-key')[:8]}"
    env_name = f"key-{key_digest('env-secret')[:8]}"
    assert {name: row["origin"] for name, row in rows.items()} == {
        "team-a": "store",
        "team-b": "store",
        file_name: "file",
        env_name: "env",
        "gpucluster-operator": "operator",
    }
    assert rows["team-a"]["last_used"] == "2025-01-02T03:04:05.000Z"
    assert rows["team-b"]["last_used"] is None
    assert rows["team-a"]["quota"] == {
        "requests_per_minute": 60,
        "tokens_per_minute": 100,
        "concurrent_requests": None,
    }
    assert rows["team-b"]["quota"] == {
        "requests_per_minute": 5,
        "tokens_per_minute": None,
        "concurrent_requests": 1,
    }
    assert rows["gpucluster-operator"]["quota"]["requests_per_minute"] is None
    table = run("list", "-c", str(config))
    assert table.exit_code == 0 and "team-a" in table.stdout
    for output in (result.stdout, table.stdout):
        for secret in (key_a, key_b, "file-key", "env-secret", "operator-secret"):
            assert secret not in output and key_digest(secret) not in output


def test_list_without_keys_says_the_api_is_open(state):
    result = run("list")
    assert result.exit_code == 0 and "Authentication is off" in result.stdout
    assert json.loads(run("list", "--json").stdout)["keys_required"] is False


def test_revoke_removes_the_key(state):
    run("create", "team-a")
    run("create", "team-b")
    assert run("revoke", "team-a").exit_code == 0
    assert json.loads(run("revoke", "team-b", "--json").stdout) == {"ok": True, "name": "team-b"}
    data = json.loads(run("list", "--json").stdout)
    assert data["keys"] == [] and data["keys_required"] is True  # an empty store refuses all


def test_a_broken_store_is_an_error(state):
    state.mkdir(parents=True)
    (state / "keys.json").write_text("{")
    result = run("list", "--json")
    assert result.exit_code == 1 and "not JSON" in json.loads(result.stdout)["error"]

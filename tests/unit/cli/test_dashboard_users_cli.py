"""`gpucluster dashboard-users list|add|remove` and `dashboard-password [--user]` as an operator
runs them (typer's runner)."""

from __future__ import annotations

import json
import stat

import pytest
from typer.testing import CliRunner

from gpucluster.cli.main import app
from gpucluster.runtime.sha512_crypt import verify_password


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.delenv("GPUCLUSTER_CONFIG", raising=False)
    monkeypatch.setenv("GPUCLUSTER_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def users(*args: str):
    return run("dashboard-users", *args)


def stored(state) -> dict[str, str]:
    """user -> its hash, from the login file."""
    text = (state / "dashboard.htpasswd").read_text()
    return dict(line.split(":", 1) for line in text.splitlines())


def test_add_prints_the_password_once_and_stores_only_its_hash(state):
    result = users("add", "alice")
    assert result.exit_code == 0, result.output
    password = result.stdout.strip()
    assert "\n" not in password and len(password) >= 20  # alone on stdout: PASS=$(...) works
    assert "shown this once" in result.stderr and password not in result.stderr
    assert verify_password(password, stored(state)["alice"])
    assert password not in (state / "dashboard.htpasswd").read_text()
    assert stat.S_IMODE((state / "dashboard.htpasswd").stat().st_mode) == 0o600


def test_two_operators_each_have_a_login_and_list_shows_both(state):
    alice = json.loads(users("add", "alice", "--json").stdout)
    bob = json.loads(users("add", "bob", "--json").stdout)
    assert alice["ok"] and alice["user"] == "alice" and bob["user"] == "bob"
    hashes = stored(state)
    assert verify_password(alice["password"], hashes["alice"])
    assert verify_password(bob["password"], hashes["bob"])
    listed = users("list")
    assert listed.exit_code == 0 and listed.stdout.split() == ["alice", "bob"]
    data = json.loads(users("list", "--json").stdout)
    assert data["ok"] and data["users"] == ["alice", "bob"] and data["exists"]
    assert data["file"] == str(state / "dashboard.htpasswd")
    assert "$6$" not in listed.stdout + json.dumps(data)  # never a hash


def test_dashboard_password_resets_only_that_user(state):
    users("add", "operator")
    users("add", "alice")
    alice_line = next(
        line
        for line in (state / "dashboard.htpasswd").read_text().splitlines()
        if line.startswith("alice:")
    )
    result = run("dashboard-password")  # the configured user, `operator`
    assert result.exit_code == 0, result.output
    user, password = result.stdout.strip().split(" / ")
    assert user == "operator" and verify_password(password, stored(state)["operator"])
    assert alice_line in (state / "dashboard.htpasswd").read_text().splitlines()
    data = json.loads(run("dashboard-password", "--user", "alice", "--json").stdout)
    assert data == {"ok": True, "user": "alice", "password": data["password"]}
    assert verify_password(data["password"], stored(state)["alice"])
    assert verify_password(password, stored(state)["operator"])  # operator's still works


def test_dashboard_password_before_the_first_up_makes_the_configured_login(state):
    data = json.loads(run("dashboard-password", "--json").stdout)
    assert data["user"] == "operator" and list(stored(state)) == ["operator"]


def test_dashboard_password_follows_the_configured_user(state, tmp_path):
    config = tmp_path / "platform.yaml"
    config.write_text("platform:\n  security:\n    dashboard_user: ops\n")
    users("add", "ops")
    data = json.loads(run("dashboard-password", "-c", str(config), "--json").stdout)
    assert data["user"] == "ops"


def test_remove(state):
    users("add", "alice")
    users("add", "bob")
    result = users("remove", "bob")
    assert result.exit_code == 0, result.output
    assert "Removed" in result.stdout and list(stored(state)) == ["alice"]
    data = json.loads(users("remove", "alice", "--json").stdout)
    assert data == {"ok": True, "user": "alice", "users": []}


def test_removing_the_last_login_says_what_it_means(state):
    users("add", "alice")
    result = users("remove", "alice")
    assert result.exit_code == 0
    assert "last login" in result.stderr and "nobody can log in" in result.stderr
    assert "dashboard-users add NAME" in result.stderr
    assert "nobody can log in" in users("list").stdout
    assert (state / "dashboard.htpasswd").read_text() == ""


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["dashboard-users", "add", "a:b"], "not a valid dashboard user name"),
        (["dashboard-users", "add", "x" * 65], "at most 64"),
        (["dashboard-users", "remove", "a b"], "not a valid dashboard user name"),
        (["dashboard-users", "remove", "nobody"], "dashboard-users list"),
        (["dashboard-password", "--user", "nobody"], "dashboard-users add nobody"),
        (["dashboard-password", "--user", "a:b"], "not a valid dashboard user name"),
    ],
)
def test_refusals_exit_1_and_say_what_to_do(state, args, says):
    users("add", "alice")
    before = (state / "dashboard.htpasswd").read_bytes()
    result = run(*args, "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is False and says in data["error"]
    assert run(*args).exit_code == 1  # and in words
    assert (state / "dashboard.htpasswd").read_bytes() == before


def test_an_existing_name_fails_and_points_at_a_reset(state):
    users("add", "alice")
    before = (state / "dashboard.htpasswd").read_bytes()
    result = users("add", "alice")
    assert result.exit_code == 1
    assert "exists" in result.stderr and "dashboard-password --user alice" in result.stderr
    assert (state / "dashboard.htpasswd").read_bytes() == before


def test_list_before_any_login_file(state):
    result = users("list")
    assert result.exit_code == 0 and "gpucluster up" in result.stdout
    assert json.loads(users("list", "--json").stdout)["users"] == []


def test_a_configured_user_with_a_colon_is_a_config_error(state, tmp_path):
    config = tmp_path / "platform.yaml"
    config.write_text("platform:\n  security:\n    dashboard_user: 'a:b'\n")
    result = run("dashboard-password", "-c", str(config), "--json")
    assert result.exit_code == 2 and "dashboard_user" in json.loads(result.stdout)["error"]

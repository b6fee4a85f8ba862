"""The /dashboard login file as a set of named logins: add, reset, remove, list, first use."""

from __future__ import annotations

import shutil
import stat
import subprocess
import threading

import pytest

from gpucluster.runtime.dashboard_logins import (
    BadUserName,
    UnknownUser,
    UserExists,
    add_user,
    ensure_first_login,
    forget_first_login,
    list_users,
    remove_user,
    reset_password,
)
from gpucluster.runtime.sha512_crypt import verify_password


@pytest.fixture
def path(tmp_path):
    return tmp_path / "state" / "dashboard.htpasswd"


def lines(path) -> dict[str, str]:
    """user -> its whole line, line end included."""
    return {line.split(":", 1)[0]: line for line in path.read_text().splitlines(keepends=True)}


def openssl_hash(password: str, stored: str) -> str:
    """What `openssl passwd -6` makes of `password` with the stored hash's salt."""
    salt = stored.split("$")[2]
    done = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip()


def test_two_users_each_log_in_with_their_own_password(path):
    alice, bob = add_user(path, "alice"), add_user(path, "bob")
    assert alice != bob and len(alice) >= 20
    stored = {user: line.rstrip("\n").split(":", 1)[1] for user, line in lines(path).items()}
    assert list(stored) == ["alice", "bob"] == list_users(path)
    assert alice not in path.read_text() and bob not in path.read_text()
    assert verify_password(alice, stored["alice"]) and verify_password(bob, stored["bob"])
    assert not verify_password(alice, stored["bob"])
    if shutil.which("openssl"):  # a second, independent SHA-512-crypt
        assert openssl_hash(alice, stored["alice"]) == stored["alice"]
        assert openssl_hash(bob, stored["bob"]) == stored["bob"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_resetting_one_keeps_every_other_line_byte_identical(path):
    path.parent.mkdir(parents=True)
    path.write_text("# operators of the edge\n")
    add_user(path, "alice")
    old_bob = add_user(path, "bob")
    add_user(path, "carol")
    before = path.read_bytes().splitlines(keepends=True)
    new_bob = reset_password(path, "bob")
    after = path.read_bytes().splitlines(keepends=True)
    assert [after[i] for i in (0, 1, 3)] == [before[i] for i in (0, 1, 3)]
    assert after[2] != before[2] and after[2].startswith(b"bob:$6$")
    bob_hash = after[2].decode().rstrip("\n").split(":", 1)[1]
    assert verify_password(new_bob, bob_hash) and not verify_password(old_bob, bob_hash)


def test_a_file_mode_loosened_by_hand_is_0600_again_after_a_change(path):
    add_user(path, "alice")
    path.chmod(0o644)
    add_user(path, "bob")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(path.parent.glob(".*.tmp"))  # the temp file was renamed into place


def test_a_line_without_its_newline_is_kept_and_the_next_one_starts_on_its_own(path):
    path.parent.mkdir(parents=True)
    path.write_text("ops:$6$salt$hash")
    add_user(path, "alice")
    assert path.read_text().startswith("ops:$6$salt$hash\nalice:$6$")
    assert list_users(path) == ["ops", "alice"]


def test_add_refuses_an_existing_name(path):
    add_user(path, "alice")
    before = path.read_bytes()
    with pytest.raises(UserExists, match="'alice' exists"):
        add_user(path, "alice")
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "name",
    ["", "a:b", "a b", "alice\n", "x" * 65, "ä", "a/b", "#alice"],
)
def test_bad_names_are_refused_and_the_file_is_left_alone(path, name):
    add_user(path, "alice")
    before = path.read_bytes()
    with pytest.raises(BadUserName, match="not a valid dashboard user name"):
        add_user(path, name)
    with pytest.raises(BadUserName):
        reset_password(path, name)
    with pytest.raises(BadUserName):
        remove_user(path, name)
    assert path.read_bytes() == before


@pytest.mark.parametrize("name", ["a", "x" * 64, "Ops.team_1-b"])
def test_good_names(path, name):
    add_user(path, name)
    assert list_users(path) == [name]


def test_remove_keeps_the_others_and_refuses_an_unknown_name(path):
    add_user(path, "alice")
    add_user(path, "bob")
    alice_line = lines(path)["alice"]
    assert remove_user(path, "bob") == ["alice"]
    assert path.read_text() == alice_line
    with pytest.raises(UnknownUser, match="no dashboard user named 'bob'"):
        remove_user(path, "bob")
    with pytest.raises(UnknownUser):
        reset_password(path, "bob")


def test_removing_the_last_login_leaves_an_empty_file_that_up_does_not_refill(path):
    assert ensure_first_login(path, "operator")
    assert remove_user(path, "operator") == []
    assert path.exists() and path.read_text() == "" and list_users(path) == []
    assert ensure_first_login(path, "operator") is None  # nobody until one is added
    add_user(path, "alice")
    assert list_users(path) == ["alice"]


def test_first_login_is_made_once_with_the_configured_user(path):
    password = ensure_first_login(path, "operator")
    assert password and list_users(path) == ["operator"]
    assert ensure_first_login(path, "operator") is None
    add_user(path, "alice")
    assert ensure_first_login(path, "someone") is None and list_users(path) == ["operator", "alice"]


def test_a_configured_name_is_checked_only_for_what_breaks_the_file(path):
    assert ensure_first_login(path, "ops@example.com")  # worked before `add` existed
    assert reset_password(path, "ops@example.com")
    with pytest.raises(BadUserName):
        ensure_first_login(path.with_name("other"), "a:b")


def test_reset_before_the_first_up_makes_the_file_only_when_asked(path):
    with pytest.raises(UnknownUser):
        reset_password(path, "operator")
    assert not path.exists()
    password = reset_password(path, "operator", create=True)
    assert verify_password(password, lines(path)["operator"].rstrip("\n").split(":", 1)[1])
    with pytest.raises(UnknownUser):  # with a file, `create` adds nobody
        reset_password(path, "bob", create=True)


def test_forget_first_login_drops_only_that_login(path):
    ensure_first_login(path, "operator")
    forget_first_login(path, "operator")
    assert not path.exists()  # the next `up` makes and shows a new password
    ensure_first_login(path, "operator")
    add_user(path, "alice")  # added while `up` was still starting
    forget_first_login(path, "operator")
    assert list_users(path) == ["alice"]


def test_concurrent_adds_all_land(path):
    names = [f"op{i}" for i in range(8)]
    threads = [threading.Thread(target=add_user, args=(path, name)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(list_users(path)) == names

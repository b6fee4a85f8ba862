"""The /dashboard logins: nginx's basic-auth file (`<state dir>/dashboard.htpasswd`) as a set of
named users, each `name:{SHA-512 crypt}` on a line of its own.

Every change rewrites the file atomically (0600) under a lock, and leaves the other lines as
they were, byte for byte: resetting or removing one operator's login never touches another's.
nginx reads the file on each request, so a change counts from the next one. An empty file
(the last login removed) lets nobody in; nginx answers 401 until a login is added.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

from gpucluster.config.keys import write_private_file
from gpucluster.errors import GpuClusterError
from gpucluster.runtime.sha512_crypt import hash_password

# A name new logins may take: basic auth forbids `:`, and a small alphabet keeps it unambiguous.
USER_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
USER_NAME_RULE = "letters, digits and . _ -, at most 64 characters"
_BREAKS_THE_FILE = re.compile(r"[:\x00-\x1f\x7f]")
PASSWORD_BYTES = 18  # 24 URL-safe characters


class LoginError(GpuClusterError, ValueError):
    """The login file cannot do what was asked; the message says why."""


class BadUserName(LoginError):
    """A name a login cannot have."""


class UnknownUser(LoginError, LookupError):
    """No login of that name."""


class UserExists(LoginError):
    """A login of that name is there already."""


def check_user(name: str) -> str:
    """`name` if a new login may have it, else BadUserName saying why."""
    if not USER_NAME_PATTERN.fullmatch(name):
        raise BadUserName(f"{name!r} is not a valid dashboard user name: use {USER_NAME_RULE}")
    return name


def list_users(path: Path) -> list[str]:
    """The users of the login file, in file order (none when it does not exist)."""
    return list(dict.fromkeys(user for user, _ in _entries(_read(path)) if user is not None))


def add_user(path: Path, user: str) -> str:
    """A new login `user` with a random password; returns the password (only its hash is
    kept). UserExists when `user` has a login: reset it instead."""
    check_user(user)
    with _locked(path):
        lines = _read(path)
        if user in _users(lines):
            raise UserExists(f"dashboard user {user!r} exists")
        password, line = _new_login(user)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        _write(path, [*lines, line])
    return password


def reset_password(path: Path, user: str, *, create: bool = False) -> str:
    """A new random password for `user`, whose line alone changes; returns it.

    UnknownUser when `user` has no login, except with `create` and no file at all: then the
    file is made with `user` alone (what `gpucluster up` does on its first run).
    """
    with _locked(path):
        if create and not path.exists():
            password, line = _new_login(check_configured_user(user))
            _write(path, [line])
            return password
        lines = _read(path)
        _require(user, lines, path)
        password, new_line = _new_login(user)
        kept: list[str] = []
        for name, line in _entries(lines):
            if name != user:
                kept.append(line)
            elif new_line not in kept:  # the first line of `user` is replaced, a later one goes
                kept.append(new_line)
        _write(path, kept)
    return password


def remove_user(path: Path, user: str) -> list[str]:
    """Remove `user`'s login; returns the users left (none: nobody can log in until one is
    added). UnknownUser when `user` has no login."""
    with _locked(path):
        lines = _read(path)
        _require(user, lines, path)
        _write(path, _without(user, lines))
    return list_users(path)


def ensure_first_login(path: Path, user: str) -> str | None:
    """Create the login file with `user` when there is none; returns the new password, else
    None (the file exists, whatever logins it holds)."""
    with _locked(path):
        if path.exists():
            return None
        password, line = _new_login(check_configured_user(user))
        _write(path, [line])
    return password


def forget_first_login(path: Path, user: str) -> None:
    """Undo ensure_first_login: drop `user`'s login, and the file when no login is left (so
    that the next `up` makes and shows a new password)."""
    with _locked(path):
        kept = _without(user, _read(path))
        if _users(kept):
            _write(path, kept)
        else:
            path.unlink(missing_ok=True)


def check_configured_user(user: str) -> str:
    """`user` (`platform.security.dashboard_user`) unless it would break the file: empty, or
    holding a `:` or a control character. The configuration may name users `add` would not
    take (an e-mail address, say): they worked before there was `add`."""
    if user and not _BREAKS_THE_FILE.search(user):
        return user
    raise BadUserName(
        f"{user!r} cannot name a dashboard login: it holds ':' or a control character"
    )


def _require(user: str, lines: list[str], path: Path) -> None:
    if user in _users(lines):
        return
    check_user(user)
    raise UnknownUser(f"no dashboard user named {user!r} in {path}")


def _without(user: str, lines: list[str]) -> list[str]:
    return [line for name, line in _entries(lines) if name != user]


def _new_login(user: str) -> tuple[str, str]:
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    return password, f"{user}:{hash_password(password)}\n"


def _read(path: Path) -> list[str]:
    """The file's lines with their line ends, as they are."""
    try:
        return path.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise LoginError(f"cannot read the dashboard login file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise LoginError(f"the dashboard login file {path} is not UTF-8 text") from None


def _entries(lines: list[str]) -> Iterator[tuple[str | None, str]]:
    """(user, line) for each line; user None for blank lines and `#` comments."""
    for line in lines:
        text = line.rstrip("\r\n")
        if not text.strip() or text.lstrip().startswith("#"):
            yield None, line
        else:
            yield text.split(":", 1)[0], line


def _users(lines: list[str]) -> set[str]:
    return {user for user, _ in _entries(lines) if user is not None}


def _write(path: Path, lines: list[str]) -> None:
    write_private_file(path, "".join(lines))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write between concurrent commands (and their shared temp file)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

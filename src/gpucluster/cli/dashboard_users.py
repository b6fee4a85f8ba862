"""`gpucluster dashboard-users list|add|remove` and `gpucluster dashboard-password`: the
/dashboard logins, one per operator.

`add` prints the new password once (alone on stdout, so that `PASS=$(gpucluster dashboard-users
add NAME)` works); only its SHA-512 crypt hash is kept, in `<state dir>/dashboard.htpasswd`.
nginx reads that file on each request: every change counts from the next one, no restart.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from gpucluster.cli.common import ConfigOption, JsonOption, emit, err, fail, out
from gpucluster.cli.errors import Typer
from gpucluster.config import Config, load_config
from gpucluster.runtime.dashboard_logins import (
    USER_NAME_RULE,
    BadUserName,
    LoginError,
    UnknownUser,
    UserExists,
    add_user,
    list_users,
    remove_user,
    reset_password,
)
from gpucluster.runtime.state import StateDir

dashboard_users_app = Typer(
    help="The /dashboard logins, one per operator: list, add (password shown once), remove.",
    no_args_is_help=True,
)

UserArgument = Annotated[str, typer.Argument(help=f"User name: {USER_NAME_RULE}.")]
UserOption = Annotated[
    str | None,
    typer.Option("--user", help="Whose password (default: platform.security.dashboard_user)."),
]


def _state(cfg: Config) -> StateDir:
    state = StateDir(cfg.platform.state_dir)
    state.ensure()
    return state


def _refuse(exc: LoginError, user: str, as_json: bool, *, removing: bool = False) -> NoReturn:
    """Exit 1 with what went wrong and what to do next."""
    if isinstance(exc, UnknownUser):
        hint = " `gpucluster dashboard-users list` shows the users."
        if not removing:
            hint = f" Add it with `gpucluster dashboard-users add {user}`.{hint}"
    elif isinstance(exc, UserExists):
        hint = (
            " Pick another name, or give it a new password with "
            f"`gpucluster dashboard-password --user {user}`."
        )
    elif isinstance(exc, BadUserName):
        hint = ""
    else:
        hint = " Fix or remove that file, then try again."
    fail(f"{exc}.{hint}", 1, as_json)


@dashboard_users_app.command("list")
def list_logins(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """The users who can log in to /dashboard/ (never a password or a hash)."""
    cfg = load_config(config)
    path = StateDir(cfg.platform.state_dir).htpasswd_file
    try:
        users = list_users(path)
    except LoginError as exc:
        _refuse(exc, "", as_json)
    if as_json:
        emit({"ok": True, "file": str(path), "exists": path.exists(), "users": users})
        return
    if not path.exists():
        out.print(
            f"No dashboard logins yet: `gpucluster up` creates {cfg.platform.security.dashboard_user!r}, "
            "`gpucluster dashboard-users add NAME` another.",
            highlight=False,
        )
    elif not users:
        out.print(
            "No dashboard logins: nobody can log in to /dashboard/ until one is added "
            "(`gpucluster dashboard-users add NAME`).",
            highlight=False,
        )
    for user in users:
        print(user)


@dashboard_users_app.command("add")
def add(user: UserArgument, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Add a login with a new random password, printed once; the others are untouched."""
    cfg = load_config(config)
    try:
        password = add_user(_state(cfg).htpasswd_file, user)
    except LoginError as exc:
        _refuse(exc, user, as_json)
    if as_json:
        emit({"ok": True, "user": user, "password": password})
        return
    print(password)
    err.print(
        f"Added dashboard login [bold]{user}[/]. The password is shown this once: keep it now. "
        "It works at /dashboard/ from the next request.",
        highlight=False,
    )


@dashboard_users_app.command("remove")
def remove(user: UserArgument, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Remove a login; nginx refuses it from the next request. The others are untouched."""
    cfg = load_config(config)
    try:
        left = remove_user(_state(cfg).htpasswd_file, user)
    except LoginError as exc:
        _refuse(exc, user, as_json, removing=True)
    if as_json:
        emit({"ok": True, "user": user, "users": left})
        return
    out.print(
        f"Removed dashboard login [bold]{user}[/]: refused from the next request.", highlight=False
    )
    if not left:
        err.print(
            "[yellow]warning:[/] that was the last login: nobody can log in to /dashboard/ "
            "until one is added (`gpucluster dashboard-users add NAME`).",
            highlight=False,
        )


def dashboard_password(
    user: UserOption = None, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Set and print a new random password for one /dashboard login (nginx reads it on the next
    request); the other logins are untouched."""
    cfg = load_config(config)
    configured = cfg.platform.security.dashboard_user
    user = user or configured
    try:
        # before the first `up`, the configured user's login is made here, as `up` would
        password = reset_password(_state(cfg).htpasswd_file, user, create=user == configured)
    except LoginError as exc:
        _refuse(exc, user, as_json)
    if as_json:
        emit({"ok": True, "user": user, "password": password})
    else:
        out.print(f"{user} / {password}", highlight=False)

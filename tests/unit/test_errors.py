"""One root for the package's errors (gpucluster.errors): every exception class the source defines
derives from GpuClusterError, keeps the built-in base its callers catch, and carries the exit
code the CLI ends with; the root module's docstring draws them all."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from gpucluster import errors
from gpucluster.errors import GpuClusterError, InputError

SRC = Path(__file__).resolve().parents[2] / "src"
# Not in the tree, each with why (the root module's docstring says it too).
OUTSIDE = {
    "gpucluster.serving.errors.ApiError": "an HTTP answer in the OpenAI shape, not a CLI error",
}
# Joining with the planning/ rewrite (bad input: exit 2).
PENDING: set[str] = set()  # classes not yet in the tree (none)


def class_names() -> list[str]:
    """`module.Class` of every module-level class of the source that has bases."""
    found = []
    for path in sorted((SRC / "gpucluster").rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and node.bases:
                found.append(f"{module}.{node.name}")
    return found


def load(qualified: str) -> type:
    module, _, name = qualified.rpartition(".")
    return getattr(importlib.import_module(module), name)


def exceptions() -> dict[str, type]:
    """Every exception class of the package, by qualified name. serving/ (importing it needs
    Ray Serve) is read by name: an exception there is named *Error or *Exception."""
    found = {}
    for name in class_names():
        if name.startswith("gpucluster.serving."):
            if name.rpartition(".")[2].endswith(("Error", "Exception")):
                found[name] = load(name)
            continue
        cls = load(name)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found[name] = cls
    return found


def test_every_exception_of_the_package_is_under_the_root():
    found = exceptions()
    assert len(found) >= 35
    stray = [
        name
        for name, cls in found.items()
        if not issubclass(cls, GpuClusterError) and name not in OUTSIDE.keys() | PENDING
    ]
    assert stray == []
    assert set(OUTSIDE) <= set(found) and PENDING <= set(found)
    joined = [name for name in PENDING if issubclass(found[name], GpuClusterError)]
    assert joined == [], "they joined the tree: drop them from PENDING (and the docstring's note)"


def test_the_docstring_draws_every_class_of_the_tree():
    tree = [cls.__name__ for cls in exceptions().values() if issubclass(cls, GpuClusterError)]
    missing = [name for name in sorted({*tree, "InputError"}) if f" {name} " not in errors.__doc__]
    assert missing == []
    assert "ApiError" in errors.__doc__  # and why it is not in it
    # each class's exit code as drawn: `├── UpError   1 ...` (a class drawn twice has one code)
    drawn = {
        name: int(code)
        for name, code in re.findall(
            r"(?:── |^    )(\w+) +([12])(?: |$)", errors.__doc__, re.MULTILINE
        )
    }
    by_name = {cls.__name__: cls for cls in exceptions().values()}
    by_name |= {"InputError": InputError, "GpuClusterError": GpuClusterError}
    assert {name: by_name[name].exit_code for name in drawn} == drawn
    assert set(drawn) == {*tree, "InputError", "GpuClusterError"}
    # `next:` where the class has a next step, and only there
    with_next = set(re.findall(r"(?:── )(\w+) +[12] .*next:", errors.__doc__))
    assert with_next == {name for name in drawn if by_name[name].next_step is not None}


@pytest.mark.parametrize(
    ("qualified", "code", "bases"),
    [
        ("gpucluster.config.loader.ConfigError", 2, (ValueError,)),
        ("gpucluster.config.interpolate.InterpolationError", 2, (ValueError,)),
        ("gpucluster.config.keys.KeyStoreError", 1, (ValueError,)),
        ("gpucluster.config.keys.UnknownKeyError", 1, (ValueError, LookupError)),
        ("gpucluster.config.keys.BadKeyName", 2, (ValueError,)),
        ("gpucluster.models.sources.ModelError", 1, ()),
        ("gpucluster.models.sources.ModelSourceError", 2, (ValueError,)),
        ("gpucluster.models.sources.ModelPrepareError", 1, (RuntimeError,)),
        ("gpucluster.models.hub_errors.HubNotFoundError", 2, (ValueError,)),
        ("gpucluster.models.hub_errors.DiskSpaceError", 1, (RuntimeError,)),
        ("gpucluster.models.cache.CacheBusyError", 1, (RuntimeError,)),
        ("gpucluster.runtime.platform.UpError", 1, (RuntimeError,)),
        ("gpucluster.runtime.worker_node.JoinError", 1, (RuntimeError,)),
        ("gpucluster.runtime.dashboard_logins.BadUserName", 1, (ValueError,)),
        ("gpucluster.runtime.dashboard_logins.UnknownUser", 1, (ValueError, LookupError)),
        ("gpucluster.runtime.logs.UnknownComponent", 2, (ValueError,)),
        ("gpucluster.ops.usage.UsageError", 2, (ValueError,)),
        ("gpucluster.ops.chat.ChatError", 1, (RuntimeError,)),
        ("gpucluster.ops.bench.runner.BenchError", 1, (RuntimeError,)),
        ("gpucluster.ops.bench.workload.WorkloadError", 2, (ValueError,)),
        ("gpucluster.ops.bench.chart.ChartError", 2, (RuntimeError,)),
        ("gpucluster.ops.ray_api.RayApiError", 1, (ValueError,)),
        ("gpucluster.ops.prom.PrometheusUnavailable", 1, (RuntimeError,)),
        ("gpucluster.render.kuberay.KubeRayError", 2, (ValueError,)),
    ],
)
def test_each_class_keeps_its_base_and_carries_the_commands_exit_code(qualified, code, bases):
    cls = load(qualified)
    assert cls.exit_code == code
    assert issubclass(cls, (GpuClusterError, *bases))
    assert all(issubclass(cls, base) for base in bases)
    assert issubclass(cls, InputError) == (code == 2)


def test_a_raise_site_may_name_its_own_next_step():
    from gpucluster.runtime.platform import UpError

    assert UpError("x").next_step == "`gpucluster logs platform` shows what `up` did"
    raised = UpError("x", next_step="gpucluster logs ray")
    assert (str(raised), raised.next_step, raised.args) == ("x", "gpucluster logs ray", ("x",))
    assert GpuClusterError("x").next_step is None and GpuClusterError("x").exit_code == 1


def test_errors_with_arguments_of_their_own_still_say_their_message():
    from gpucluster.ops.chat import ChatError
    from gpucluster.ops.health import CheckFailed
    from gpucluster.ops.prom import PrometheusUnavailable
    from gpucluster.ops.ray_api import RayApiError

    assert str(RayApiError(500, "GCS")) == "Ray API answered HTTP 500: GCS"
    assert PrometheusUnavailable("p: ConnectError", "ConnectError").reason == "ConnectError"
    chat = ChatError("HTTP 401: no", "invalid_api_key", 401)
    assert (str(chat), chat.code, chat.status, chat.exit_code) == (
        "HTTP 401: no",
        "invalid_api_key",
        401,
        1,
    )
    failed = CheckFailed("HTTP 500", "gpucluster logs ray")
    assert (failed.detail, failed.hint, failed.next_step) == (
        "HTTP 500",
        "gpucluster logs ray",
        "gpucluster logs ray",
    )
    assert CheckFailed("x", "").next_step is None

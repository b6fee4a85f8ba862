"""The two locks and their sources agree: requirements/cpu.lock (the platform) and
requirements/test.lock (what the tests add), installed with --no-deps by scripts/setup.sh."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")
HEADER_LINES = 3  # what the Makefile's `lock` target keeps of each lock (`head -3`)


def lock_pins(name: str) -> dict[str, str]:
    lines = (REQUIREMENTS / name).read_text(encoding="utf-8").splitlines()
    header, pins = lines[:HEADER_LINES], lines[HEADER_LINES:]
    assert all(line.startswith("#") for line in header), f"{name}: a 3-line comment header"
    assert "make lock" in "\n".join(header), f"{name}: its header says how it is regenerated"
    found: dict[str, str] = {}
    for line in pins:
        match = PIN.match(line)
        assert match, f"{name}: {line!r} is no exact pin"
        found[canonicalize_name(match.group(1))] = match.group(2)
    assert len(found) == len(pins), f"{name}: a package pinned twice"
    return found


def source_names(name: str) -> set[str]:
    lines = (REQUIREMENTS / name).read_text(encoding="utf-8").splitlines()
    return {
        canonicalize_name(Requirement(line.split("#")[0].strip()).name)
        for line in lines
        if line.split("#")[0].strip()
    }


def test_no_package_is_pinned_in_both_locks() -> None:
    runtime, tests = lock_pins("cpu.lock"), lock_pins("test.lock")
    assert sorted(runtime.keys() & tests.keys()) == []


def test_the_test_tools_are_not_in_the_runtime_lock() -> None:
    runtime = lock_pins("cpu.lock")
    for tool in ("pytest", "pytest-timeout", "hypothesis", "playwright", "ruff"):
        assert tool not in runtime
        assert tool in lock_pins("test.lock")


def test_every_test_need_is_pinned_in_one_of_the_locks() -> None:
    pinned = lock_pins("cpu.lock") | lock_pins("test.lock")
    assert sorted(source_names("test.in") - pinned.keys()) == []
    runtime_sources = source_names("cpu.in") | source_names("cpu-nodeps.in")
    assert sorted(runtime_sources - lock_pins("cpu.lock").keys()) == []


def test_the_test_extra_is_requirements_test_in() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extra = project["optional-dependencies"]["test"]
    assert {canonicalize_name(Requirement(r).name) for r in extra} == source_names("test.in")


def test_ruff_is_pinned_alike_everywhere() -> None:
    """ruff's default rules change between releases: one version in the extra, test.in, lock."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (extra,) = [r for r in project["optional-dependencies"]["test"] if r.startswith("ruff")]
    (source,) = [
        line.split("#")[0].strip()
        for line in (REQUIREMENTS / "test.in").read_text(encoding="utf-8").splitlines()
        if line.startswith("ruff")
    ]
    assert extra == source == f"ruff=={lock_pins('test.lock')['ruff']}"


def test_the_pip_check_allow_list_names_packages_the_locks_install() -> None:
    """Each accepted `pip check` line is about a package the lock installs (a stale line, for a
    package no longer installed, would only hide a future gap)."""
    runtime = lock_pins("cpu.lock")
    lines = (REQUIREMENTS / "pip-check-allowed.txt").read_text(encoding="utf-8").splitlines()
    entries = [line for line in lines if line.strip() and not line.startswith("#")]
    assert entries
    for entry in entries:
        match = re.fullmatch(r"(\S+) requires (\S+)", entry)
        assert match, f"{entry!r}: written `<package> requires <package>`"
        assert canonicalize_name(match.group(1)) in runtime, entry
        assert canonicalize_name(match.group(2)) not in runtime, f"{entry}: cpu.lock installs it"

"""The package's layers, checked on the source: imports point one way.

Every module under src/gpucluster is parsed with `ast` (nothing is imported, no Ray needed) and
each import it makes is collected: `import x`, `from x import y`, relative imports (resolved),
imports inside functions and `if TYPE_CHECKING:` blocks, and modules named by a string (a Serve
import path `gpucluster.serving.app:app_from_args`, `python -m gpucluster.serving.deploy`,
`importlib.import_module("gpucluster...")`). The rules, as data below:

- a module's layer (its package under gpucluster) imports only the layers MAY_IMPORT lists;
  config imports nothing of the project (it is the only place the environment is read) but the
  shared modules CONFIG_MAY_IMPORT names, ops never imports serving (operator tools see the
  platform over HTTP, as an operator does);
- a layer does not reach what NEVER_REACHES forbids it even through another layer: ops may
  import runtime, and runtime may import serving, but no chain of imports from an ops module
  ends in serving (the import graph, followed transitively; and a subprocess that imports every
  ops module finds no serving module loaded);
- a shared top-level module (SHARED) imports nothing of the project, and every layer may import
  it;
- only serving imports ray.serve;
- vllm is imported only by the modules VLLM_MODULES lists (the engine's own types);
- Ray's private modules (`ray._common`, `ray.llm._internal`, any `_`-named part) are imported
  only by serving/ray_internals.py, which says what each name is for; its test
  (tests/unit/serving/test_ray_internals.py) pins what the platform relies on.

An exception to a rule is an entry of EXCEPTIONS with its reason; an entry no import needs any
more fails the test too, so the list stays what the tree does.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "gpucluster"

# Layer -> the layers it may import. Listed in the design's order (config, models, planning,
# serving, observability, runtime, ops, cli); render (files for other runners: compose, KubeRay) sits
# between runtime and the CLI that calls it.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "config": frozenset(),  # the only place env is read; imports nothing of the project
    "models": frozenset({"config"}),
    # Offline arithmetic over config and model shapes (capacity, hardware, pod sizes).
    "planning": frozenset({"config", "models"}),
    "serving": frozenset({"config", "models"}),
    "observability": frozenset({"config", "models", "serving"}),
    "runtime": frozenset({"config", "models", "serving", "observability"}),
    "render": frozenset({"config", "models", "planning", "serving", "observability", "runtime"}),
    # Operator tools over HTTP only: never serving.
    "ops": frozenset({"config", "models", "planning", "observability", "runtime"}),
    "cli": frozenset(
        {"config", "models", "planning", "serving", "observability", "runtime", "render", "ops"}
    ),
    "__main__": frozenset({"cli"}),  # `python -m gpucluster`
}
# Layer -> the layer none of its modules may reach through any chain of imports (MAY_IMPORT
# checks one import at a time: ops -> runtime and runtime -> serving each pass).
NEVER_REACHES: dict[str, str] = {
    "ops": "serving",  # operator tools see the platform over HTTP, never the Serve application
}
# Top-level modules any layer may import (config only those CONFIG_MAY_IMPORT names): the
# package itself (its __version__), the paths of the deploy/ files shipped in the package, and
# the root of the package's errors.
SHARED = frozenset({"gpucluster", "gpucluster.assets", "gpucluster.errors"})
# The shared modules config imports too, each with why. A shared module imports nothing of the
# project (checked), so config still depends on nothing else of it.
CONFIG_MAY_IMPORT: dict[str, str] = {
    "gpucluster.errors": (
        "the root every error derives from (GpuClusterError, InputError): ConfigError, "
        "InterpolationError and the key store's errors are config's, and carry the CLI's exit "
        "code and next step like every other"
    ),
}

# Third-party packages only some modules may import: prefix -> who may.
SERVE_LAYER = "serving"  # the only layer importing ray.serve
# The modules that may import vllm, each with why: the engine's own protocol types, where Ray
# Serve LLM has no wrapper of them. models/ (model sources) needs none: it reads config.json.
VLLM_MODULES: dict[str, str] = {
    "gpucluster.serving.vllm_protocol": (
        "vLLM's request/response models the platform names itself: RerankRequest (Ray Serve "
        "LLM has no /rerank) and the ErrorResponse vLLM's scoring handler returns"
    ),
}
# Ray's private modules: imported in this one module only.
RAY_INTERNALS = "gpucluster.serving.ray_internals"

# (importing module, imported name or a prefix of it) -> why the rule does not hold there.
# None today.
EXCEPTIONS: dict[tuple[str, str], str] = {}

# A string naming a project module: dotted, optionally `:attr` (a Serve import path).
MODULE_STRING = re.compile(r"^gpucluster(\.[A-Za-z_]\w*)+(:[A-Za-z_][\w.]*)?$")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    path: str  # its file, relative to src/
    line: int
    name: str  # what it imports: a module, or `module.name` for `from module import name`
    via_string: bool = False

    def where(self) -> str:
        return f"src/{self.path}:{self.line}"


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def tree_sources(src: Path = SRC) -> dict[str, tuple[str, str]]:
    """Module name -> (its path relative to src/, its source), for every module of the package."""
    return {
        module_name(path, src): (str(path.relative_to(src)), path.read_text(encoding="utf-8"))
        for path in sorted((src / PACKAGE).rglob("*.py"))
    }


def imports_of(module: str, path: str, source: str, known: frozenset[str]) -> Iterator[Import]:
    """Every import `module` makes (see the module docstring); `known`: the project's modules,
    to tell a string naming one from a logger's name."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                name = base if alias.name == "*" else f"{base}.{alias.name}"
                yield Import(module, path, node.lineno, name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
            if not MODULE_STRING.match(text):
                continue
            target = text.partition(":")[0]
            layer = target.split(".")[1]
            # A string naming a module of a layer (or with `:attr`) is an import by name; the
            # others are logger names (`gpucluster.api`) and the like.
            if target in known or ":" in text or layer in MAY_IMPORT:
                yield Import(module, path, node.lineno, target, via_string=True)


def layer_of(module: str) -> str:
    """`gpucluster.ops.status` -> `ops`; a top-level module is its own (`gpucluster.assets`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def project_target(name: str, known: frozenset[str]) -> str | None:
    """The project module an imported name is (or is in): `gpucluster.config.Config` ->
    `gpucluster.config`; None when no module of the tree has that name."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def is_ray_private(name: str) -> bool:
    """A name inside one of Ray's private modules (`ray._common...`, `ray.llm._internal...`)."""
    parts = name.split(".")
    return parts[0] == "ray" and any(
        part.startswith("_") and not part.startswith("__") for part in parts[1:]
    )


def check_project(imp: Import, known: frozenset[str]) -> tuple[str, str] | None:
    me, my_layer = imp.module, layer_of(imp.module)
    # A string names a module itself (any attribute comes after ':'); `from m import n` may take
    # an attribute of m.
    target = imp.name if imp.name in known else None
    if not imp.via_string:
        target = project_target(imp.name, known)
    if target is None:
        return imp.name, f"names {imp.name!r}, which is no module of the package"
    if target == me:
        return None
    if me in SHARED:
        return target, f"is shared by every layer and imports nothing of the project: {target}"
    if target in SHARED:
        if my_layer == "config" and target not in CONFIG_MAY_IMPORT:
            return target, f"config imports nothing of the project, but imports {target}"
        return None
    to_layer = layer_of(target)
    if to_layer == my_layer:
        return None
    allowed = MAY_IMPORT.get(my_layer)
    if allowed is None:
        return target, f"is in no layer of MAY_IMPORT, and imports {target}"
    if to_layer not in allowed:
        what = "a string naming " if imp.via_string else ""
        may = ", ".join(sorted(allowed)) or "nothing of the project"
        return target, f"{my_layer} imports {what}{target} ({my_layer} may import: {may})"
    return None


def check(imp: Import, known: frozenset[str]) -> tuple[str, str] | None:
    """(what is imported, what is wrong) when `imp` breaks a rule."""
    if under(imp.name, PACKAGE):
        return check_project(imp, known)
    if under(imp.name, "ray.serve") and layer_of(imp.module) != SERVE_LAYER:
        return imp.name, f"imports {imp.name}: only serving imports ray.serve"
    if is_ray_private(imp.name) and imp.module != RAY_INTERNALS:
        return imp.name, f"imports Ray's private {imp.name}: only {RAY_INTERNALS} does"
    if under(imp.name, "vllm") and imp.module not in VLLM_MODULES:
        return imp.name, f"imports {imp.name}: only {', '.join(VLLM_MODULES)} import vllm"
    return None


def violations(
    sources: Mapping[str, tuple[str, str]], exceptions: Mapping[tuple[str, str], str] = EXCEPTIONS
) -> tuple[list[str], set[tuple[str, str]]]:
    """Every broken rule as `src/<file>:<line>: <module> <what>`, and the exceptions used."""
    known = frozenset(sources)
    found: list[str] = []
    used: set[tuple[str, str]] = set()
    for module, (path, source) in sorted(sources.items()):
        for imp in imports_of(module, path, source, known):
            broken = check(imp, known)
            if broken is None:
                continue
            key, message = broken
            excepted = next((k for k in exceptions if k[0] == module and under(key, k[1])), None)
            if excepted is not None:
                used.add(excepted)
                continue
            found.append(f"{imp.where()}: {module} {message}")
    return found, used


def import_graph(sources: Mapping[str, tuple[str, str]]) -> dict[str, set[str]]:
    """Module -> the project modules it loads: each one it imports (the same imports the rules
    check: in a function, by name) and the packages above it (importing
    gpucluster.ops.bench.sweep runs gpucluster.ops.bench's __init__ too)."""
    known = frozenset(sources)
    graph: dict[str, set[str]] = {}
    for module, (path, source) in sources.items():
        parts = module.split(".")
        loads = {".".join(parts[:end]) for end in range(1, len(parts))} & known
        for imp in imports_of(module, path, source, known):
            if not under(imp.name, PACKAGE):
                continue
            target = imp.name if imp.via_string else project_target(imp.name, known)
            if target is not None:
                loads.add(target)
        graph[module] = loads - {module}
    return graph


def reach_violations(sources: Mapping[str, tuple[str, str]]) -> list[str]:
    """`<module> reaches <layer>: a -> b -> c` for every module of a NEVER_REACHES layer with a
    chain of imports into the forbidden layer (the shortest such chain)."""
    graph = import_graph(sources)
    found: list[str] = []
    for module in sorted(graph):
        forbidden = NEVER_REACHES.get(layer_of(module))
        if forbidden is None:
            continue
        came_from: dict[str, str] = {module: module}
        queue = [module]
        for current in queue:  # breadth first: the first hit has the shortest chain
            if layer_of(current) == forbidden:
                chain = [current]
                while chain[-1] != module:
                    chain.append(came_from[chain[-1]])
                found.append(f"{module} reaches {forbidden}: {' -> '.join(reversed(chain))}")
                break
            for nxt in sorted(graph.get(current, ())):
                if nxt not in came_from:
                    came_from[nxt] = current
                    queue.append(nxt)
    return found


def test_the_tree_keeps_the_layers() -> None:
    found, used = violations(tree_sources())
    assert not found, "imports against the layers:\n" + "\n".join(found)
    stale = {key: why for key, why in EXCEPTIONS.items() if key not in used}
    assert not stale, f"exceptions no import needs any more (remove them): {stale}"


def test_no_layer_reaches_what_it_must_not_through_another() -> None:
    found = reach_violations(tree_sources())
    assert not found, "chains of imports against the layers:\n" + "\n".join(found)


def test_importing_every_ops_module_loads_no_serving_module() -> None:
    """The same rule on the real interpreter: what the import graph cannot see (an import done
    by a third-party package on the project's behalf, a name built at run time)."""
    ops = sorted(m for m in tree_sources() if layer_of(m) == "ops")
    code = (
        "import importlib, json, sys\n"
        f"for name in {ops!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('gpucluster.serving'))))\n"
    )
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": path},
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert loaded == [], f"importing the ops modules loads {loaded}"


def test_a_chain_through_another_layer_is_caught() -> None:
    tree = fake(
        gpucluster__ops__fake="from gpucluster.runtime.fake import start\n",
        gpucluster__runtime__fake="def start():\n    from gpucluster.serving import app\n",
    )
    assert violations(tree)[0] == []  # each import alone keeps the rules
    chain = ["gpucluster.ops.fake", "gpucluster.runtime.fake", "gpucluster.serving.app"]
    assert reach_violations(tree) == [f"gpucluster.ops.fake reaches serving: {' -> '.join(chain)}"]
    # a submodule's import runs its packages' __init__: reaching serving through one counts too
    tree = fake(
        gpucluster__ops__fake="import gpucluster.runtime.fake.inner\n",
        gpucluster__runtime__fake="from gpucluster.serving import app\n",
        gpucluster__runtime__fake__inner="X = 1\n",
    )
    chain.insert(1, "gpucluster.runtime.fake.inner")
    assert reach_violations(tree) == [f"gpucluster.ops.fake reaches serving: {' -> '.join(chain)}"]


def test_the_listed_modules_exist() -> None:
    known = set(tree_sources())
    listed = [
        *VLLM_MODULES,
        RAY_INTERNALS,
        *SHARED,
        *CONFIG_MAY_IMPORT,
        *(module for module, _ in EXCEPTIONS),
    ]
    assert set(CONFIG_MAY_IMPORT) <= SHARED
    assert [module for module in listed if module not in known] == []
    layers = {layer_of(module) for module in known - SHARED}
    assert layers <= set(MAY_IMPORT), "a package with no row in MAY_IMPORT"


def test_every_project_package_is_parsed() -> None:
    """The walk sees every package of the tree, and an import inside a function or by name."""
    sources = tree_sources()
    imports = [
        imp
        for module, (path, source) in sources.items()
        for imp in imports_of(module, path, source, frozenset(sources))
    ]
    assert {layer_of(imp.module) for imp in imports} >= set(MAY_IMPORT) - {"__main__"}
    # The deploy driver, started by name (runtime/platform.py), is seen as an import; so is the
    # Ray import inside runtime/log_stream.py's function.
    assert any(imp.via_string and imp.name == "gpucluster.serving.deploy" for imp in imports)
    assert any(
        imp.module == "gpucluster.runtime.log_stream" and imp.name == "ray" for imp in imports
    )


def fake(**modules: str) -> dict[str, tuple[str, str]]:
    """A fake tree: module name (dots as `__`) -> source, on top of the real tree's names."""
    tree = {name: (path, "") for name, (path, _) in tree_sources().items()}
    for key, source in modules.items():
        name = key.replace("__", ".")
        path = name.replace(".", "/") + ".py"
        tree[name] = (path, source)
    return tree


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        (
            "from gpucluster.serving.app import build_app\n",
            "gpucluster.ops.fake",
            "ops imports gpucluster.serving.app (ops may import:",
        ),
        (
            "def f():\n    import gpucluster.serving.deploy\n",
            "gpucluster.ops.fake",
            "ops imports gpucluster.serving.deploy",
        ),
        (
            "from ..serving import errors\n",
            "gpucluster.ops.fake",
            "ops imports gpucluster.serving.errors",
        ),
        (
            "IMPORT_PATH = 'gpucluster.serving.app:build_app'\n",
            "gpucluster.ops.fake",
            "ops imports a string naming gpucluster.serving.app",
        ),
        (
            "import importlib\nm = importlib.import_module('gpucluster.serving.deploy')\n",
            "gpucluster.ops.fake",
            "a string naming gpucluster.serving.deploy",
        ),
        (
            "from gpucluster.models import ModelSource\n",
            "gpucluster.config.fake",
            "config imports gpucluster.models (config may import: nothing of the project)",
        ),
        (
            "from gpucluster.assets import DEPLOY_DIR\n",
            "gpucluster.config.fake",
            "config imports nothing of the project, but imports gpucluster.assets",
        ),
        (
            "from gpucluster.config import Config\n",
            "gpucluster.errors",
            "is shared by every layer and imports nothing of the project: gpucluster.config",
        ),
        (
            "from gpucluster.runtime.state import StateDir\n",
            "gpucluster.serving.fake",
            "serving imports gpucluster.runtime.state",
        ),
        (
            "from ray import serve\n",
            "gpucluster.runtime.fake",
            "imports ray.serve: only serving imports ray.serve",
        ),
        (
            "from ray.serve.llm import LLMConfig\n",
            "gpucluster.ops.fake",
            "only serving imports ray.serve",
        ),
        (
            "from ray._common.constants import HEAD_NODE_RESOURCE_NAME\n",
            "gpucluster.serving.fake",
            "imports Ray's private ray._common.constants.HEAD_NODE_RESOURCE_NAME",
        ),
        (
            "import ray.llm._internal.common.models\n",
            "gpucluster.serving.fake",
            "imports Ray's private ray.llm._internal.common.models",
        ),
        (
            "from vllm.entrypoints.pooling.scoring.protocol import RerankRequest\n",
            "gpucluster.serving.fake",
            "imports vllm.entrypoints.pooling.scoring.protocol",
        ),
        (
            "x = 'gpucluster.serving.nothing_here:app'\n",
            "gpucluster.runtime.fake",
            "names 'gpucluster.serving.nothing_here', which is no module",
        ),
    ],
)
def test_a_module_breaking_a_rule_fails(source: str, module: str, expected: str) -> None:
    found, _ = violations(fake(**{module.replace(".", "__"): source}))
    assert len(found) == 1, found
    assert expected in found[0]
    assert found[0].startswith(f"src/{module.replace('.', '/')}.py:")


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("from gpucluster.config import Config\nimport ray\n", "gpucluster.runtime.fake"),
        ("from ray.serve.llm import LLMConfig\nfrom . import app\n", "gpucluster.serving.fake"),
        ("from gpucluster.serving.serve_config import serve_config\n", "gpucluster.render.fake"),
        ("import logging\nlog = logging.getLogger('gpucluster.api')\n", "gpucluster.ops.fake"),
        ("from gpucluster import __version__\n", "gpucluster.render.fake"),
        ("from gpucluster.errors import InputError\n", "gpucluster.config.fake"),
        ("from gpucluster.errors import GpuClusterError\n", "gpucluster.serving.fake"),
    ],
)
def test_a_module_keeping_the_rules_passes(source: str, module: str) -> None:
    assert violations(fake(**{module.replace(".", "__"): source}))[0] == []


def test_an_exception_needs_its_entry_and_is_reported_when_unused() -> None:
    tree = fake(gpucluster__ops__fake="from gpucluster.serving.errors import ApiError\n")
    key = ("gpucluster.ops.fake", "gpucluster.serving")
    found, used = violations(tree, {key: "a reason"})
    assert (found, used) == ([], {key})
    found, used = violations(fake(gpucluster__ops__fake="import json\n"), {key: "a reason"})
    assert (found, used) == ([], set())

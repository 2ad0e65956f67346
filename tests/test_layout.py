"""The layout holds: imports point one way, the protocol is pure, and every Lambda starts where the roster says.

Read from the source with :mod:`ast` (every ``import`` at any depth, deferred ones included), so a rule broken by
a module nobody imports in a test still fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

import pytest

from infra.roster import WORKERS

ROOT = Path(__file__).resolve().parent.parent
OURS = ("lockcore", "workers", "infra")
IO_LIBRARIES = ("boto3", "botocore", "aws_lambda_powertools", "slack_sdk", "urllib3", "http.client", "socket")
"""What a pure module may not reach, directly or through any module of ours it imports."""
PURE_PACKAGES = ("workers.protocol",)
SHARED_SCHEMA = "workers.protocol.schema"
"""The one module of the workers infra may import: the configuration's schema, data that both read."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> Mapping[str, Path]:
    return {_module_name(path): path for package in OURS for path in sorted((ROOT / package).rglob("*.py"))}


def _imported_names(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            modules = _modules()
            for alias in node.names:  # `from workers.flows import build` imports the module, not the package's face
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in modules or node.module not in modules else node.module


@cache
def _imports() -> Mapping[str, frozenset[str]]:
    """Each module of ours: the modules it imports (ours resolved to a module, others by their full name)."""
    modules = _modules()
    graph: dict[str, frozenset[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for imported in _imported_names(path):
            if imported.split(".")[0] in OURS:
                module = imported
                while module not in modules and "." in module:  # `from workers.protocol.config import Config`
                    module = module.rpartition(".")[0]
                if module != name:
                    found.add(module)
            else:
                found.add(imported)
        graph[name] = frozenset(found)
    return graph


def _reach(start: str) -> set[str]:
    graph, seen, todo = _imports(), set(), [start]
    while todo:
        for imported in graph.get(todo.pop(), frozenset()):
            if imported not in seen:
                seen.add(imported)
                todo.append(imported)
    return seen


def _ours(name: str) -> bool:
    return name.split(".", maxsplit=1)[0] in OURS


def test_no_module_of_ours_imports_itself_back_through_others() -> None:
    """No import cycles: a module never reaches itself (a package's ``__init__`` importing its own modules aside)."""
    cycles = sorted(name for name in _modules() if name in _reach(name) and _modules()[name].name != "__init__.py")
    assert cycles == []


@pytest.mark.parametrize("package", PURE_PACKAGES)
def test_the_protocol_reaches_no_io_library(package: str) -> None:
    """Every decision a worker takes is a pure function: nothing under the protocol reaches an I/O library."""
    offenders = {
        name: sorted(lib for lib in _reach(name) if not _ours(lib) and lib.startswith(IO_LIBRARIES))
        for name in _modules()
        if name == package or name.startswith(f"{package}.")
    }
    assert len(offenders) > 3  # the package was found
    assert {name: libs for name, libs in offenders.items() if libs} == {}


def test_lockcore_imports_nothing_of_ours_and_infra_no_worker_logic() -> None:
    lockcore = {name: _imports()[name] for name in _modules() if name.startswith("lockcore")}
    assert {n: sorted(i for i in imps if i.startswith(("workers", "infra"))) for n, imps in lockcore.items()} == {
        n: [] for n in lockcore
    }
    infra = {name: _imports()[name] for name in _modules() if name.startswith("infra")}
    workers = {i for imps in infra.values() for i in imps if i.startswith("workers")}
    assert workers == {SHARED_SCHEMA}, "infra imports the workers' configuration schema and nothing else of theirs"


def test_the_shared_schema_is_data_it_reaches_nothing_of_ours_and_no_library_but_the_standard_one() -> None:
    """Infra imports it, so it carries no worker logic with it: no module of ours, no I/O, nothing installed."""
    import sys  # noqa: PLC0415

    reached = _reach(SHARED_SCHEMA)
    assert sorted(name for name in reached if _ours(name)) == []
    assert sorted(name for name in reached if name.split(".")[0] not in sys.stdlib_module_names) == []


def test_every_lambda_starts_in_handlers_one_module_per_row_of_the_roster() -> None:
    """``ls workers/handlers`` answers "where does a Lambda start?": exactly the roster's handler modules."""
    handlers = {path.stem for path in (ROOT / "workers" / "handlers").glob("*.py") if path.stem != "__init__"}
    assert {worker.handler_module for worker in WORKERS} == {f"workers.handlers.{name}" for name in handlers}
    for worker in WORKERS:
        tree = ast.parse(_modules()[worker.handler_module].read_text())
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert worker.handler.rpartition(".")[2] in defined, worker.name


def test_no_handler_imports_another_handler_the_cli_or_the_local_stack() -> None:
    """A handler wires adapters to flows; the tools around the product are not part of what Lambda runs."""
    for worker in WORKERS:
        reached = _reach(worker.handler_module)
        assert not [n for n in reached if n.startswith(("workers.cli", "workers.local"))], worker.name
        others = {w.handler_module for w in WORKERS} - {worker.handler_module}
        assert not reached & others, worker.name

"""The layout: tests import no benchmark code, and the client's import graph keeps its layers and has no cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_no_test_imports_bench() -> None:
    sources = sorted(path for path in TESTS.rglob("*.py") if "node_modules" not in path.parts)
    assert TESTS / "system" / "test_bench_smoke.py" in sources
    importers = {
        str(path.relative_to(TESTS)): found
        for path in sources
        if (found := sorted(m for m in imported_modules(path) if m == "bench" or m.startswith("bench.")))
    }
    assert not importers, (
        f"tests import bench/ (run it as a process, or share code through clipsearch.testing): {importers}"
    )


# The client's layering: the engine (connection layer and client/ingest) below the command line, the web
# app and serve; the command line on top. Read from the source, so a new import that breaks it fails here.
CLIENT = TESTS.parent / "client"
FRONT_ENDS = ("client.cli", "client.web", "client.serve")
# `python -m client` and `python -m client.indexer` (the same as `clipsearch watch`): the command's entry.
ENTRIES = ("client.__main__", "client.indexer.__main__")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(CLIENT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(path: Path, known: set[str]) -> set[str]:
    """The modules of `known` a module imports when it runs (in functions too), not under TYPE_CHECKING."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # `from package import module` loads the module; `package` itself loads as its parent does.
            submodules = {f"{target}.{alias.name}" for alias in node.names} & known
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return {module for module in found if module in known and module != name}


def client_graph() -> dict[str, set[str]]:
    paths = sorted(CLIENT.rglob("*.py"))
    known = {module_name(path) for path in paths}
    return {module_name(path): runtime_imports(path, known) for path in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_reads_relative_and_absolute_imports() -> None:
    graph = client_graph()
    assert {"client.cli.options", "client.cli.index", "client.cli.search"} <= graph["client.cli.main"]
    assert "client.cli.output" in graph["client.cli.index"]
    assert "client.ingest.engine" in graph["client.api"]
    assert "client.transport" in graph["client.ingest.pipeline"]
    assert graph["client.web.__main__"] & {"client.cli", "client.cli.main"}


def test_no_import_cycle_in_the_client() -> None:
    assert cycles(client_graph()) == []


def test_the_engine_never_imports_the_command_line_the_web_app_or_serve() -> None:
    graph = client_graph()
    engine = [module for module in graph if module not in ENTRIES and not within(module, FRONT_ENDS)]
    assert "client.api" in engine and "client.ingest.engine" in engine and "client.transport" in engine
    offenders = {module: sorted(m for m in graph[module] if within(m, FRONT_ENDS)) for module in engine}
    assert {module: found for module, found in offenders.items() if found} == {}


def test_the_web_app_never_imports_the_command_line() -> None:
    graph = client_graph()
    # `python -m client.web` is the command's entry, not part of the app.
    app = [module for module in graph if within(module, ("client.web",)) and module != "client.web.__main__"]
    offenders = {module: sorted(m for m in graph[module] if within(m, ("client.cli",))) for module in app}
    assert {module: found for module, found in offenders.items() if found} == {}


def test_the_shared_cli_options_import_nothing_else_of_the_command_line() -> None:
    assert not {m for m in client_graph()["client.cli.options"] if within(m, ("client.cli",))}


def test_python_m_client_web_goes_through_the_commands_entry() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "client.web", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: clipsearch web "), result.stdout[:200]
    assert "--password-file" in result.stdout and "--tls-ca" in result.stdout


# Run as `python -m client.web` does (runpy imports the package, then its __main__), with GRPC_VERBOSITY
# unset; a finder records the variable at the moment gRPC is first imported.
GRPC_WATCH = """
import os, runpy, sys
os.environ.pop("GRPC_VERBOSITY", None)
seen = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "grpc" and not seen:
            seen.append(os.environ.get("GRPC_VERBOSITY"))
        return None
sys.meta_path.insert(0, Watch())
sys.argv = ["client.web", "--help"]
try:
    runpy.run_module("client.web", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
sys.stderr.write(f"GRPC_AT_IMPORT={seen!r}\\n")
"""


def test_python_m_client_web_sets_grpc_verbosity_before_grpc_loads() -> None:
    result = subprocess.run(
        [sys.executable, "-c", GRPC_WATCH], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.stdout.startswith("usage: clipsearch web "), result.stderr[-2000:]
    # gRPC is loaded on this path (so the check below is not vacuous), and only after the entry set the variable.
    assert "GRPC_AT_IMPORT=['ERROR']" in result.stderr, result.stderr[-2000:]

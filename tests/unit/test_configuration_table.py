"""The documented configuration and the code agree: every environment variable the services' and the client's
configuration reads is in the configuration table (`| Variable | Default | Service | Meaning |`, in README.md
or docs/), and every variable in that table is read.

The variables are found in the source, as the configuration code reads them: `env_int(env, "EMBEDDER_PORT", …)`,
`env.get("REDIS_URL", …)`, a helper given `env` and a name (`_optional_path(env, CA_VARIABLE)`), and names
built from a prefix (`ServerTls.from_env(env, "SEARCH")` reading f"{prefix}_TLS_CERT").
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from client.config import ClientConfig
from embedder_service.config import EmbedderConfig
from search_service.config import SearchConfig

REPO = Path(__file__).resolve().parents[2]
# The configuration code (the shared token is read by clipsearch/auth.py for all three).
CONFIG_MODULES = (
    "embedder_service/config.py",
    "search_service/config.py",
    "client/config.py",
    "client/security.py",
    "clipsearch/auth.py",
)
# Modules that build names from a prefix the configuration code passes them: ServerTls.from_env(env, "SEARCH").
PREFIXED_MODULES = ("clipsearch/tls.py",)
TABLE_HEADER = ("Variable", "Default", "Service", "Meaning")
VARIABLE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
PREFIX = re.compile(r"[A-Z][A-Z0-9]*")


def _constants(trees: Mapping[str, ast.Module]) -> dict[str, str]:
    """Module-level NAME = "text" assignments of every module (names are imported between them)."""
    found: dict[str, str] = {}
    for tree in trees.values():
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                found.update({target.id: node.value.value for target in node.targets if isinstance(target, ast.Name)})
    return found


def _is_env(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "env"


def _calls(tree: ast.Module) -> Iterator[ast.Call]:
    return (node for node in ast.walk(tree) if isinstance(node, ast.Call))


def variables_read(trees: Mapping[str, ast.Module], prefixed: Sequence[ast.Module]) -> dict[str, set[str]]:
    """module -> the environment variables it reads, directly or through a prefixed module's from_env."""
    constants = _constants(trees)

    def text(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return constants.get(node.id) if isinstance(node, ast.Name) else None

    # f"{prefix}_TLS_CERT": the suffixes a module appends to a prefix it is given.
    suffixes = {
        part.value
        for tree in prefixed
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr) and len(node.values) == 2
        for head, part in [node.values]
        if isinstance(head, ast.FormattedValue)
        and isinstance(head.value, ast.Name)
        and head.value.id == "prefix"
        and isinstance(part, ast.Constant)
        and isinstance(part.value, str)
        and VARIABLE.fullmatch("X" + part.value)
    }
    found: dict[str, set[str]] = {}
    for module, tree in trees.items():
        names: set[str] = set()
        for call in _calls(tree):
            reads_env = isinstance(call.func, ast.Attribute) and call.func.attr == "get" and _is_env(call.func.value)
            if not (reads_env or any(_is_env(arg) for arg in call.args)):
                continue
            for arg in call.args:
                value = text(arg)
                if value is None:
                    continue
                if VARIABLE.fullmatch(value):
                    names.add(value)
                elif PREFIX.fullmatch(value) and isinstance(call.func, ast.Attribute) and call.func.attr == "from_env":
                    names.update(value + suffix for suffix in suffixes)
        for node in ast.walk(tree):  # env["NAME"]
            if isinstance(node, ast.Subscript) and _is_env(node.value) and (value := text(node.slice)):
                names.add(value)
        found[module] = names
    return found


@pytest.fixture(scope="module")
def read_by_code() -> dict[str, set[str]]:
    def parse(module: str) -> ast.Module:
        return ast.parse((REPO / module).read_text(encoding="utf-8"), module)

    return variables_read({module: parse(module) for module in CONFIG_MODULES}, [parse(m) for m in PREFIXED_MODULES])


def configuration_tables() -> list[tuple[Path, set[str]]]:
    """(file, the variables its first column names) for each configuration table in README.md and docs/."""
    tables = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        if not path.exists():
            continue
        lines = iter(path.read_text(encoding="utf-8").splitlines())
        for line in lines:
            if tuple(cell.strip() for cell in line.strip().strip("|").split("|")) != TABLE_HEADER:
                continue
            names: set[str] = set()
            for row in lines:
                if not row.lstrip().startswith("|"):
                    break
                first = row.strip().strip("|").split("|")[0]
                names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first))
            tables.append((path, names))
    return tables


@pytest.fixture(scope="module")
def documented() -> set[str]:
    tables = configuration_tables()
    assert len(tables) == 1, f"expected one '| {' | '.join(TABLE_HEADER)} |' table, found {tables}"
    return tables[0][1]


class Recording(Mapping[str, str]):
    """An empty environment that notes every name asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_every_module_reads_variables_the_scan_finds(read_by_code: dict[str, set[str]]) -> None:
    empty = [module for module, names in read_by_code.items() if not names]
    assert not empty, f"no environment variables found in {empty}: read in a way this scan does not know?"


def test_the_scan_finds_every_variable_the_loaders_ask_for(read_by_code: dict[str, set[str]]) -> None:
    scanned = set().union(*read_by_code.values())
    for loader in (EmbedderConfig.from_env, SearchConfig.from_env, ClientConfig.from_env):
        env = Recording()
        loader(env)
        assert env.asked, loader
        assert env.asked <= scanned, f"{loader.__qualname__} reads {sorted(env.asked - scanned)}, which the scan missed"


def test_every_variable_read_is_in_the_configuration_table(
    read_by_code: dict[str, set[str]], documented: set[str]
) -> None:
    missing = {module: sorted(names - documented) for module, names in read_by_code.items() if names - documented}
    assert not missing, f"variables read but not in the configuration table: {missing}"


def test_every_variable_in_the_configuration_table_is_read(
    read_by_code: dict[str, set[str]], documented: set[str]
) -> None:
    unread = documented - set().union(*read_by_code.values())
    assert not unread, f"the configuration table lists variables no configuration code reads: {sorted(unread)}"

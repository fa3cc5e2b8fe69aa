"""The tests depend on the installed packages only: no test module imports the benchmark suite (bench/)."""

from __future__ import annotations

import ast
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

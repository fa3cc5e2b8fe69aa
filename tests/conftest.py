"""Shared pytest configuration: the fixture plugins of tests/support, and each test's tier from its folder.

The tiers are folders, each with its marker: unit/ (no servers), service/ (real Redis and in-process gRPC
servers on loopback), system/ (real processes, kills, load, scale, full-size models). `-m "not system"` runs
the first two, as `make test-fast` does. A test that does more than its file's folder says (in a service-tier
file, one that runs `clipsearch` or `clipsearch serve` as a process) carries the heavier tier's marker itself,
and has only that.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.support.embedder",
    "tests.support.search",
    "tests.support.client",
    "tests.support.e2e",
]

TIERS = ("unit", "service", "system")

# pytest-xdist's workers run with COLUMNS=80 and LINES=24 set; the CLI's tables would then fold to 80 columns in
# a worker but not in a serial run. Tests see the environment a serial run gives them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)


@pytest.fixture(scope="session", autouse=True)
def converted_models_stay_in_the_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Embedders that the tests start, in-process or as processes, convert models for OpenVINO and ONNX
    Runtime into the run's own folder rather than the user's cache."""
    previous = os.environ.get("EMBEDDER_CACHE_DIR")
    if previous is None:
        os.environ["EMBEDDER_CACHE_DIR"] = str(tmp_path_factory.mktemp("converted-models"))
    yield
    if previous is None:
        os.environ.pop("EMBEDDER_CACHE_DIR", None)


_TESTS = Path(__file__).resolve().parent


def tier_of(path: Path) -> str | None:
    """The tier whose folder holds `path`, or None when it lies in none."""
    path = path.resolve()
    parts = path.relative_to(_TESTS).parts if path.is_relative_to(_TESTS) else ()
    return parts[0] if len(parts) > 1 and parts[0] in TIERS else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks every test with its folder's tier, unless it is marked with one; a test outside the tier folders
    stops the run."""
    outside: set[str] = set()
    for item in items:
        tier = tier_of(item.path)
        if tier is None:
            outside.add(str(item.path))
        elif not any(marker.name in TIERS for marker in item.iter_markers()):
            item.add_marker(tier)
    if outside:
        raise pytest.UsageError(
            f"tests belong in tests/unit, tests/service or tests/system: {', '.join(sorted(outside))}"
        )

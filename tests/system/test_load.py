"""Bounded load: 16 client threads mix text queries, image queries and upserts for 20 s against Redis, the
embedder (tiny CLIP) and the search service as real processes; no call fails and no process keeps growing.

`python -m bench.load` is the same run with arguments (duration, clients, model) for longer local runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipsearch.testing.load import OPERATIONS, LoadConfig, format_table, run_load
from clipsearch.testing.processes import start_stack

CONFIG = LoadConfig(clients=16, duration=20.0, warmup=5.0, deadline=20.0, items=200)
MAX_RSS_GROWTH = 0.10


def test_sixteen_clients_hold_without_errors_or_memory_growth(
    tmp_path: Path, tiny_clip_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = start_stack(tmp_path / "stack", str(tiny_clip_dir), embedders=1, embedder_threads=1, appendfsync="everysec")
    try:
        result = run_load(stack, CONFIG)
    finally:
        stack.stop()
    (tmp_path / "load.json").write_text(json.dumps(result.to_json(), indent=2))
    with capsys.disabled():
        print(f"\n{format_table(result)}")

    assert result.errors == {}
    assert all(result.operations[name].count > 0 for name in OPERATIONS), result.operations
    # Upserts rewrote the same ids throughout: exactly the seeded items, none doubled or lost.
    assert result.items_after == CONFIG.items
    for name, growth in result.rss_growth().items():
        start, end = result.rss[name]
        assert growth < MAX_RSS_GROWTH, f"{name} grew from {start} to {end} bytes after the warm-up"

"""bench.restart on a tiny library: both modes measure a restart and say so beside the goals."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.restart import format_result, measure_restart


@pytest.mark.parametrize("mode", ["index-at-load", "index-after-load"])
def test_measure_restart_times_the_first_and_the_complete_answer(tmp_path: Path, mode: str) -> None:
    said: list[str] = []
    result = measure_restart(3000, dimension=32, mode=mode, workdir=tmp_path / "work", say=said.append)
    assert result["frames"] == 3000 and result["mode"] == mode
    assert result["redis_ready_seconds"] is not None and result["redis_ready_seconds"] >= 0
    assert 0 <= result["first_answer_seconds"] <= result["complete_seconds"]
    assert result["redis_memory_bytes"] > 3000 * 32 * 4 and result["aof_bytes"] > 3000 * 32 * 4
    text = format_result(result)
    assert "first answer after" in text and "(goal 30 s:" in text and "(goal 120 s:" in text
    assert any("complete" in line for line in said)

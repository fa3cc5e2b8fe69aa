"""`python -m bench.restart` on a tiny library, as a process: both modes time a restart beside the goals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("mode", ["index-at-load", "index-after-load"])
def test_the_restart_bench_times_the_first_and_the_complete_answer(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "restart.json"
    command = [sys.executable, "-m", "bench.restart", "--frames", "3000", "--dimension", "32", "--mode", mode]
    run = subprocess.run(
        [*command, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["frames"] == 3000 and result["mode"] == mode
    assert result["redis_ready_seconds"] is not None and result["redis_ready_seconds"] >= 0
    assert 0 <= result["first_answer_seconds"] <= result["complete_seconds"] and result["stop_seconds"] >= 0
    assert result["redis_memory_bytes"] > 3000 * 32 * 4 and result["aof_bytes"] > 3000 * 32 * 4
    assert "first answer after" in run.stdout and "(goal 30 s:" in run.stdout and "(goal 120 s:" in run.stdout

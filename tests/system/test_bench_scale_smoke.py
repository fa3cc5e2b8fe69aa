"""`python -m bench.scale` on a tiny library: it runs, prints every figure beside its goal, and refuses a run
the machine's memory cannot hold (no timing checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from clipsearch.testing.processes import base_env
from tests.support.e2e import REPO

TIMEOUT = 900.0  # generous for busy machines
FIGURES = (
    "bytes_per_frame",
    "vector_index_bytes_per_frame",
    "slowest_script_ms",
    "during_ingest_p99_ms",
    "idle_p99_ms",
    "during_vs_idle_p99",
)
QUERY_FIGURES = (
    "plain_p50_ms",
    "plain_p99_ms",
    "moments_p50_ms",
    "moments_p99_ms",
    "recall_at_10",
    "first_film_agrees",
)


def bench(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.scale", *args],
        cwd=REPO,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_tiny_run_prints_every_figure_beside_its_goal(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    done = bench("--frames", "2000", "--blob-frames", "1000", "--queries", "20", "--rounds", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(out.read_text())
    assert results["frames"] == 2000 and results["items"] == 2000 and results["vector_type"] == "float16"
    for name in FIGURES:
        assert isinstance(results[name], (int, float)) and results[name] >= 0, name
    assert results["ingest"]["upserts_per_s"] > 0
    for ef in ("default", "100", "200", "400", "800", "1600", "3200"):
        for name in QUERY_FIGURES:
            assert results["film"][ef][name] > 0, (ef, name)
    # On 2,000 frames exact search and HNSW agree: a broken comparison would not reach this.
    assert results["film_default"]["recall_at_10"] >= 0.9 and results["blob"]["recall_at_10"] >= 0.9
    assert results["blob"]["frames"] == 1000
    assert 0.9 <= results["float16_effect"]["film_top10_kept"] <= 1.0
    parts = results["bytes_by_part"]
    assert sum(parts.values()) == results["bytes_per_frame"], parts
    # A frame's HASH holds its FLOAT16 vector (1,024 bytes), and the index holds it again.
    assert parts["key_and_hash"] > 1024 and parts["vector_index"] > 1024, parts
    assert "Where a frame's bytes go (B): key and HASH" in done.stdout
    restart = results["restart"]
    assert restart["mode"] == "index-after-load" and restart["frames"] == 2000, restart
    assert 0 <= restart["first_answer_seconds"] <= restart["complete_seconds"], restart
    table = done.stdout
    for row in (
        "Redis bytes per frame",
        "moments query k=10",
        "film-like: recall@10",
        "first result's film",
        "blobs (1,000)",
        "during full-speed ingest",
        "longest Lua script",
        "FLOAT16's effect",
        "after a restart (2,000 frames): first answer",
        "after a restart: complete (not partial) results",
    ):
        line = next((ln for ln in table.splitlines() if row in ln), None)
        assert line is not None, f"no row {row!r} in\n{table}"
        assert line.count("|") == 6, line  # figure, measured, goal, verdict, best measured


def test_a_run_larger_than_the_memory_available_is_refused_before_it_starts() -> None:
    done = bench("--frames", "10000000000", timeout=120)
    assert done.returncode == 2
    assert "needs about" in done.stdout and "not enough memory" in done.stderr and "--frames" in done.stderr
    assert "Traceback" not in done.stderr

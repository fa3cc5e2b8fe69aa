"""bench.runtimes and bench.accuracy run end to end on the tiny checkpoint and report every figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from embedder_service.inference import installed
from tests.support.e2e import REPO
from tests.support.embedder import sample_photo

pytestmark = pytest.mark.skipif(
    not (installed("openvino") and installed("onnxruntime")), reason="the fast extra is not installed"
)


def bench(module: str, *args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    """`python -m bench.<module> args` from the repository, its converted models cached under `cache`."""
    env = {**os.environ, "EMBEDDER_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_runtimes_bench_measures_speed_start_times_memory_and_cosine(tiny_clip_dir: Path, tmp_path: Path) -> None:
    done = bench(
        "runtimes",
        *("--model", str(tiny_clip_dir), "--reps", "1", "--batch", "2", "--rows", "onnxruntime:int8", "--json"),
        cache=tmp_path / "cache",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    rows = {(row["runtime"], row["dtype"]): row for row in report["rows"]}
    assert set(rows) == {("torch", "fp32"), ("onnxruntime", "int8")}
    assert rows["torch", "fp32"]["x_torch_fp32"] == 1.0 and rows["torch", "fp32"]["min_cosine"] > 0.9999
    quantized = rows["onnxruntime", "int8"]
    assert 0.99 <= quantized["min_cosine"] <= 1.0 + 1e-6
    assert quantized["img_s"] > 0 and quantized["rss_mb"] > 0
    assert quantized["first_start_s"] > 0 and quantized["second_start_s"] > 0


def test_accuracy_bench_gives_distributions_overlaps_and_a_verdict(tiny_clip_dir: Path, tmp_path: Path) -> None:
    names = ("astronaut", "coffee", "chelsea", "camera", "motorcycle_left", "rocket", "coins", "hubble_deep_field")
    for name in names:
        sample_photo(name).resize((96, 96)).save(tmp_path / f"{name}.png")
    queries = tmp_path / "queries.txt"
    queries.write_text("an astronaut\n\na cup of coffee\na cat\n")
    done = bench(
        "accuracy",
        *("--model", str(tiny_clip_dir), "--images", str(tmp_path), "--queries", str(queries), "--json"),
        *("--runtime", "onnxruntime"),
        cache=tmp_path / "cache",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert (report["images"], report["queries"]) == (len(names), 3)
    result = report["results"]["int8"]
    assert result["runtime"] == "onnxruntime"
    assert 0.99 <= result["image_cosine"]["min"] <= result["image_cosine"]["median"] <= 1.0 + 1e-6
    assert 0.0 <= result["query_top10_overlap"] <= 1.0 and 0.0 <= result["image_top10_overlap"] <= 1.0
    assert result["verdict"] in ("ok", "below the floor: keep fp32 for this model")


def test_accuracy_bench_refuses_a_missing_folder_in_one_line(tiny_clip_dir: Path, tmp_path: Path) -> None:
    done = bench("accuracy", "--model", str(tiny_clip_dir), "--images", str(tmp_path / "nope"), cache=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"--images {tmp_path / 'nope'}: not a directory"

"""bench.runtimes and bench.accuracy run end to end on the tiny checkpoint and report every figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import accuracy, runtimes
from embedder_service.inference import installed
from tests.fixtures_embedder import sample_photo

pytestmark = pytest.mark.skipif(
    not (installed("openvino") and installed("onnxruntime")), reason="the fast extra is not installed"
)


def test_runtimes_bench_measures_speed_start_times_memory_and_cosine(
    tiny_clip_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = runtimes.main(
        ["--model", str(tiny_clip_dir), "--reps", "1", "--batch", "2", "--rows", "onnxruntime:int8", "--json"]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    rows = {(row["runtime"], row["dtype"]): row for row in report["rows"]}
    assert set(rows) == {("torch", "fp32"), ("onnxruntime", "int8")}
    assert rows["torch", "fp32"]["x_torch_fp32"] == 1.0 and rows["torch", "fp32"]["min_cosine"] > 0.9999
    quantized = rows["onnxruntime", "int8"]
    assert 0.99 <= quantized["min_cosine"] <= 1.0 + 1e-6
    assert quantized["img_s"] > 0 and quantized["rss_mb"] > 0
    assert quantized["first_start_s"] > 0 and quantized["second_start_s"] > 0


def test_accuracy_bench_gives_distributions_overlaps_and_a_verdict(
    tiny_clip_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = ("astronaut", "coffee", "chelsea", "camera", "motorcycle_left", "rocket", "coins", "hubble_deep_field")
    for name in names:
        sample_photo(name).resize((96, 96)).save(tmp_path / f"{name}.png")
    queries = tmp_path / "queries.txt"
    queries.write_text("an astronaut\n\na cup of coffee\na cat\n")
    code = accuracy.main(
        [
            "--model",
            str(tiny_clip_dir),
            "--images",
            str(tmp_path),
            "--queries",
            str(queries),
            "--json",
            "--runtime",
            "onnxruntime",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["images"], report["queries"]) == (len(names), 3)
    result = report["results"]["int8"]
    assert result["runtime"] == "onnxruntime"
    assert 0.99 <= result["image_cosine"]["min"] <= result["image_cosine"]["median"] <= 1.0 + 1e-6
    assert 0.0 <= result["query_top10_overlap"] <= 1.0 and 0.0 <= result["image_top10_overlap"] <= 1.0
    assert result["verdict"] in ("ok", "below the floor: keep fp32 for this model")


def test_accuracy_bench_refuses_a_missing_folder_in_one_line(
    tiny_clip_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert accuracy.main(["--model", str(tiny_clip_dir), "--images", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"--images {tmp_path / 'nope'}: not a directory"

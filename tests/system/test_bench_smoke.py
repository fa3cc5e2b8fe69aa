"""The benchmark suite end to end on tiny sizes: it runs, and its JSON holds every figure (no timing checks).

`python -m bench --smoke` runs as a process, as a developer runs it; the sizes it ran with are in its JSON.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest

from clipsearch.testing.processes import base_env
from tests.support.e2e import REPO

BENCH_TIMEOUT = 1200.0  # generous for busy machines; reaching it fails the test
# The sizes of `--smoke` (bench.common.SMOKE) that the checks below rely on: PNG frames over the client's 1 MB
# encoded limit (decoded and shrunk by the client), one round, a 3-second video.
SMOKE: dict[str, Any] = {"ingest_rounds": 1, "frame_size": (1280, 720), "video_seconds": 3, "video_size": (320, 240)}

INGEST_FIGURES = ("seed_img_s", "seed_cpu_ms", "client_prepare_cpu_ms", "client_decode_cpu_ms", "seed_prepare_cpu_ms")
# Of each embedder setting under test (auto and int8), its index run and its model alone.
VARIANT_FIGURES = (
    "model_img_s",
    "pipeline_img_s",
    "run_img_s",
    "pipeline_vs_seed",
    "pipeline_vs_model",
    "model_cpu_ms",
    "pipeline_cpu_ms",
    "cpu_pipeline_vs_seed",
    "cpu_pipeline_vs_model",
    "model_bs1_img_s",
    "model_batch_gain",
    "ceiling_vs_seed",
)
QUERY_FIGURES = (
    "grpc_p50_ms",
    "grpc_p95_ms",
    "direct_p50_ms",
    "direct_p95_ms",
    "grpc_vs_direct_p50",
    "grpc_empty_call_p50_ms",
    "text_client_p50_ms",
    "text_client_p95_ms",
    "text_inprocess_p50_ms",
    "text_inprocess_p95_ms",
    "text_client_vs_inprocess_p50",
    "text_torch_p50_ms",
    "text_auto_vs_torch_p50",
    "text_model_auto_p50_ms",
    "text_model_torch_p50_ms",
    "redis_bytes_per_item",
    "recall_at_10",
)
VIDEO_FIGURES = (
    "instream_frames_s",
    "seed_frames_s",
    "instream_vs_seed",
    "instream_cpu_ms_per_frame",
    "seed_cpu_ms_per_frame",
    "cpu_instream_vs_seed",
)


def positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    """The suite's JSON and the table it printed."""
    scratch = tmp_path_factory.mktemp("bench")
    out = scratch / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out), "--cache", str(scratch / "cache")],
        cwd=REPO,
        env=base_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT,
    )
    assert run.returncode == 0, f"python -m bench --smoke exited with {run.returncode}:\n{run.stderr[-4000:]}"
    data = json.loads(out.read_text())
    ran = {name: tuple(value) if isinstance(value, list) else value for name, value in data["sizes"].items()}
    assert data["suite"] == "smoke" and {name: ran[name] for name in SMOKE} == SMOKE, data["sizes"]
    return data, run.stdout


def test_every_ingest_figure_is_measured(results: tuple[dict, str]) -> None:
    data, _ = results
    assert data["model"]["dtype"] in ("float32", "bfloat16") and data["model"]["dtype_setting"] == "auto"
    for kind, files in (("png", 2), ("jpeg", 2)):
        figures = data["ingest"][kind]
        assert figures["files"] == files and len(figures["rounds"]) == SMOKE["ingest_rounds"]
        # The small JPEGs go to the embedder encoded: the client spends nothing on decoding them.
        may_be_zero = {"client_prepare_cpu_ms", "client_decode_cpu_ms"} if kind == "jpeg" else set()
        missing = [
            name
            for name in INGEST_FIGURES
            if not positive(figures[name]) and not (name in may_be_zero and figures[name] == 0)
        ]
        assert not missing, f"{kind}: {missing}"
        for variant in ("auto", "int8"):
            missing = [name for name in VARIANT_FIGURES if not positive(figures[variant][name])]
            assert not missing, f"{kind} {variant}: {missing}"
        assert figures["int8"]["dtype"] == "int8" and figures["auto"]["runtime"] == data["model"]["runtime"]
    assert data["ingest"]["variants"] == ["int8", "auto"] and data["ingest"]["seed_dtype"] == "float32"
    assert data["goals"]["cpu"] and data["goals"]["int8_vs_seed"] >= data["goals"]["auto_vs_seed"]
    assert (data["ingest"]["png"]["width"], data["ingest"]["png"]["height"]) == SMOKE["frame_size"]
    assert data["ingest"]["png"]["mean_file_bytes"] > 1 << 20  # so the client shrinks them itself


def test_query_memory_and_video_figures_are_measured(results: tuple[dict, str]) -> None:
    data, _ = results
    query = data["query"]["500"]
    assert not [name for name in QUERY_FIGURES if not positive(query[name])]
    assert query["recall_at_10"] >= 0.9  # 500 items: HNSW at its defaults finds (nearly) all
    memory = data["memory"]
    assert memory["embedder_peak_rss_bytes"] >= memory["embedder_rss_bytes"] > 0
    assert min(memory["embedder_rss_bytes_loaded"], memory["embedder_rss_bytes_warm"]) > 0
    assert memory["redis_bytes_per_item"]["500"] > 0
    assert set(memory["per_embedder"]) == {"auto", "int8", "torch"}
    assert all(figures["embedder_rss_bytes"] > 0 for figures in memory["per_embedder"].values())
    video = data["video"]
    assert video["frames"] == SMOKE["video_seconds"] and video["video"]["width"] == SMOKE["video_size"][0]
    assert not [name for name in VIDEO_FIGURES if not positive(video[name])]


def test_film_figures_are_measured(results: tuple[dict, str]) -> None:
    data, printed = results
    film = data["film"]
    assert film["video"]["codec"] == "h264" and film["video"]["seconds"] >= 3.9
    ways = ("decode_full", "decode_nonref", "index_default", "index_every_frame")
    assert all(positive(film["realtime"][way]) and positive(film["cpu_ms_per_film_second"][way]) for way in ways)
    assert film["counts"]["decoded_nonref"] < film["counts"]["decoded_full"]  # B-frames were skipped
    assert positive(film["article_realtime"]) and positive(film["index_vs_decode_nonref"])
    assert positive(film["two_hour_film_minutes"]) and "a two-hour film here" in printed


def test_batching_and_load_are_run_and_targets_judged(results: tuple[dict, str]) -> None:
    data, printed = results
    phases = {(phase["kind"], phase["batching"]) for phase in data["batching"]["results"]}
    assert phases == {("text", False), ("text", True), ("image", False), ("image", True)}
    assert set(data["batching"]["throughput_ratio_on_vs_off"]) == {"text", "image"}
    for kind, alone in data["batching"]["model_alone"].items():  # the most merging can gain here
        assert kind in ("text", "image") and alone["batch"] == 8
        assert positive(alone["items_per_pass_1"]) and positive(alone["items_per_pass_batch"])
        assert alone["ceiling"] == pytest.approx(alone["items_per_pass_batch"] / alone["items_per_pass_1"], rel=0.01)
    assert set(data["batching"]["model_alone"]) == {"text", "image"}
    assert "ceiling of on / off" in printed and "ceiling (model alone / seed)" in printed
    if "skipped" not in data["load"]:
        assert data["load"]["total"]["count"] > 0
    names = [target["name"] for target in data["targets"]]
    assert len(names) == 11 and all(target["met"] in (True, False) for target in data["targets"])
    assert data["targets_apply"] is False  # the tiny model: the goals are set for ViT-B/16
    assert all(len(data["load_average"][when]) == 3 for when in ("start", "end"))
    assert "recall@10" in printed and "load average" in printed
    for target in data["targets"]:
        assert target["name"] in printed

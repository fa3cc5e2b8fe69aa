"""End to end: three `clipsearch index --shard` processes at once against one `clipsearch serve` stack index
exactly what one unsharded run indexes."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from client import Client
from client.api import SearchFilter
from client.ingest.shard import JOB_INDEX_VARIABLE
from tests.support.e2e import ServeProcess, fully_indexed_stats, run_cli, write_test_images, write_test_video

SHARDS = 3
PHOTOS = 36
VIDEOS = 3
VIDEO_SECONDS = 3


def _stored(stack: ServeProcess, collection: str) -> Counter[tuple[str, str, float | None, frozenset[str]]]:
    with Client(stack.embedder_addresses, stack.search_address) as client:
        items = client.list_items(SearchFilter(collections=(collection,)))
        return Counter((i.media, i.content_hash, i.timestamp_seconds, frozenset(i.sources)) for i in items)


def test_three_shard_processes_index_exactly_what_one_run_does(
    serve_stack: ServeProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("e2e-shards")
    library = tmp / "library"
    write_test_images(library / "photos" / "a", PHOTOS // 2, seed=11)
    write_test_images(library / "photos" / "b", PHOTOS // 2, seed=12)
    for number in range(VIDEOS):
        # Sizes differ, so the videos differ: the same content at several paths is one set of frames.
        write_test_video(library / "videos" / f"clip-{number}.mp4", VIDEO_SECONDS, 4, 96 + 16 * number, 64)
    env = serve_stack.client_env()

    whole = run_cli(["index", str(library), "--collection", "whole", "--json"], env, tmp=tmp).json()
    assert (whole["images"], whole["frames"], whole["failed"]) == (PHOTOS, VIDEOS * VIDEO_SECONDS, [])
    expected = _stored(serve_stack, "whole")
    # One file is one item: the folder leaves 'whole' before the shards index it into 'sharded'.
    run_cli(["delete", "--source", str(library), "--collection", "whole"], env, tmp=tmp)
    assert _stored(serve_stack, "whole") == Counter()

    def shard(index: int) -> dict[str, Any]:
        folder = tmp / f"shard-{index}"
        folder.mkdir()
        args = ["index", str(library), "--collection", "sharded", "--json"]
        if index == SHARDS - 1:  # as a pod of a Kubernetes Indexed Job runs it
            return run_cli([*args, "--shards", str(SHARDS)], {**env, JOB_INDEX_VARIABLE: str(index)}, tmp=folder).json()
        return run_cli([*args, "--shard", f"{index}/{SHARDS}"], env, tmp=folder).json()

    with ThreadPoolExecutor(SHARDS) as pool:
        reports = list(pool.map(shard, range(SHARDS)))

    assert all(report["failed"] == [] for report in reports)
    for key in ("indexed", "images", "frames", "videos"):
        assert sum(report[key] for report in reports) == whole[key], (key, reports)
    stats = fully_indexed_stats(env, tmp)
    assert stats["collections"]["sharded"] == PHOTOS + VIDEOS * VIDEO_SECONDS
    # The same items with the same sources: nothing missed, nothing twice.
    assert _stored(serve_stack, "sharded") == expected

    # Run again, the shards find everything stored: nothing is embedded a second time.
    again = [
        run_cli(["index", str(library), "--collection", "sharded", "--shard", f"{i}/{SHARDS}", "--json"], env, tmp=tmp)
        for i in range(SHARDS)
    ]
    assert [report.json()["indexed"] for report in again] == [0] * SHARDS
    assert sum(report.json()["skipped_known"] for report in again) == PHOTOS + VIDEOS * VIDEO_SECONDS


def test_shard_processes_refuse_a_bad_shard(serve_stack: ServeProcess, tmp_path: Path) -> None:
    result = run_cli(["index", str(tmp_path), "--shard", "3/2"], serve_stack.client_env(), tmp=tmp_path, check=False)
    assert result.returncode == 2
    assert "shard 3/2 does not exist: with 2 shards the index runs from 0 to 1" in result.stderr
    assert "Traceback" not in result.stderr

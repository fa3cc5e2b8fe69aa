"""End to end: `clipsearch serve` and the `clipsearch` CLI as real processes, on a tiny CLIP."""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from client import cli
from clipsearch.testing.probes import health_status
from tests.support.e2e import (
    ServeProcess,
    fully_indexed_stats,
    run_cli,
    second_pattern,
    write_test_images,
    write_test_video,
)

COLLECTION = "e2e"
PHOTOS = 30
VIDEO_SECONDS, VIDEO_FPS, VIDEO_SIZE = 8, 4, (128, 96)


@dataclass
class Corpus:
    """What the module indexed once, through `clipsearch index`."""

    tmp: Path
    env: dict[str, str]
    photos: list[Path]
    video: Path
    report: dict[str, Any]

    def cli(self, *args: str | Path) -> Any:
        return run_cli([str(a) for a in args], self.env, tmp=self.tmp).json()


@pytest.fixture(scope="module")
def corpus(serve_stack: ServeProcess, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    tmp = tmp_path_factory.mktemp("e2e-corpus")
    photos = write_test_images(tmp / "photos", PHOTOS)
    video = tmp / "videos" / "clip.mp4"
    write_test_video(video, VIDEO_SECONDS, VIDEO_FPS, *VIDEO_SIZE)
    env = serve_stack.client_env()
    report = run_cli(
        ["index", str(tmp / "photos"), str(video), "--collection", COLLECTION, "--json"], env, tmp=tmp
    ).json()
    return Corpus(tmp, env, photos, video, report)


def test_index_adds_every_image_and_one_frame_per_second(corpus: Corpus, serve_stack: ServeProcess) -> None:
    # serve started two embedder replicas on ports of their own; the CLI got both in EMBEDDER_ADDR.
    assert len(set(serve_stack.embedder_addresses)) == 2
    assert all(health_status(address) == "SERVING" for address in serve_stack.embedder_addresses)
    report = corpus.report
    assert report["failed"] == []
    assert (report["images"], report["frames"], report["videos"]) == (PHOTOS, VIDEO_SECONDS, 1)
    assert report["indexed"] == PHOTOS + VIDEO_SECONDS
    stats = fully_indexed_stats(corpus.env, corpus.tmp)
    assert stats["collections"][COLLECTION] == PHOTOS + VIDEO_SECONDS
    assert stats["dimension"] == 32  # serve sized the index to the tiny model


def test_every_image_finds_itself_first(corpus: Corpus, serve_stack: ServeProcess) -> None:
    # The CLI's own entry point, run in this process to spare 30 interpreter start-ups; every other
    # command in these tests runs as a real `clipsearch` process.
    for photo in corpus.photos:
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            code = cli.main(
                [
                    "search",
                    "--image",
                    str(photo),
                    "--top",
                    "3",
                    "--collection",
                    COLLECTION,
                    "--json",
                    "--embedder",
                    serve_stack.exports["EMBEDDER_ADDR"],
                    "--search",
                    serve_stack.search_address,
                ]
            )
        assert code == 0
        first = json.loads(output.getvalue())["results"][0]
        assert str(photo) in first["paths"], f"{photo.name}: first match is {first['paths']}"
        assert first["media"] == "image" and first["score"] == pytest.approx(1.0, abs=1e-3)  # FLOAT16 storage


def test_video_frames_carry_their_timestamps(corpus: Corpus) -> None:
    frames = corpus.cli(
        "search",
        "--text",
        "a coloured pattern",
        "--media",
        "video",
        "--collection",
        COLLECTION,
        "--top",
        "50",
        "--frames",
        "--json",
    )["results"]
    by_time = sorted(frames, key=lambda hit: hit["timestamp_seconds"])
    assert [hit["timestamp_seconds"] for hit in by_time] == [float(s) for s in range(VIDEO_SECONDS)]
    assert [hit["frame_index"] for hit in by_time] == [s * VIDEO_FPS for s in range(VIDEO_SECONDS)]
    assert all(hit["paths"] == [str(corpus.video)] for hit in frames)
    # Each second shows its own picture: searching by that picture finds the frame of that second.
    for second in (0, 3, VIDEO_SECONDS - 1):
        picture = corpus.tmp / f"second-{second}.png"
        Image.fromarray(second_pattern(second, *VIDEO_SIZE)).save(picture)
        best = corpus.cli(
            "search",
            "--image",
            picture,
            "--media",
            "video",
            "--collection",
            COLLECTION,
            "--top",
            "1",
            "--frames",
            "--json",
        )["results"][0]
        assert best["timestamp_seconds"] == second


def test_the_results_table_shows_video_times_as_hh_mm_ss(corpus: Corpus, tmp_path: Path) -> None:
    picture = tmp_path / "second-5.png"
    Image.fromarray(second_pattern(5, *VIDEO_SIZE)).save(picture)
    table = run_cli(
        ["search", "--image", str(picture), "--media", "video", "--collection", COLLECTION, "--top", "1"],
        corpus.env,
        tmp=tmp_path,
    ).stdout
    # The frames of the clip are one moment: its span, and the best frame's time.
    assert "00:00:00–00:00:07 (8 frames, best 00:00:05)" in table and "clip.mp4" in table


def test_classification_probabilities_sum_to_one(corpus: Corpus) -> None:
    labels = ["a cat", "a dog", "a red square", "a blue circle", "a rocket"]
    indexed = corpus.cli("search", "--image", corpus.photos[1], "--top", "1", "--json")["results"][0]
    for query in ([corpus.photos[0]], ["--id", indexed["id"]]):  # a file, and an indexed item
        result = corpus.cli("classify", *query, "--labels", *labels, "--json")
        scores = result["labels"]
        assert sorted(s["label"] for s in scores) == sorted(labels)
        assert math.fsum(s["probability"] for s in scores) == pytest.approx(1.0, abs=1e-5)
        probabilities = [s["probability"] for s in scores]
        assert probabilities == sorted(probabilities, reverse=True)


def test_a_second_index_run_adds_nothing(corpus: Corpus) -> None:
    before = fully_indexed_stats(corpus.env, corpus.tmp)["collections"][COLLECTION]
    again = corpus.cli("index", corpus.tmp / "photos", corpus.video, "--collection", COLLECTION, "--json")
    assert again["indexed"] == 0 and again["failed"] == []
    assert again["skipped_known"] == PHOTOS + VIDEO_SECONDS
    assert fully_indexed_stats(corpus.env, corpus.tmp)["collections"][COLLECTION] == before


def test_prune_removes_the_items_of_deleted_files(serve_stack: ServeProcess, tmp_path: Path) -> None:
    env = serve_stack.client_env()
    photos = write_test_images(tmp_path / "album", 6, seed=5)
    first = run_cli(["index", str(tmp_path / "album"), "--collection", "prune", "--json"], env, tmp=tmp_path).json()
    assert first["indexed"] == 6
    gone = photos[:2]
    for photo in gone:
        photo.unlink()
    pruned = run_cli(
        ["index", str(tmp_path / "album"), "--collection", "prune", "--prune", "--json"], env, tmp=tmp_path
    ).json()
    assert (pruned["indexed"], pruned["pruned_items"]) == (0, 2)
    assert fully_indexed_stats(env, tmp_path)["collections"]["prune"] == 4
    left = run_cli(
        ["search", "--text", "anything", "--collection", "prune", "--top", "10", "--json"], env, tmp=tmp_path
    ).json()["results"]
    assert sorted(path for hit in left for path in hit["paths"]) == sorted(str(p) for p in photos[2:])


def test_other_commands_print_json_that_parses(corpus: Corpus) -> None:
    collections = corpus.cli("collections", "--json")["collections"]
    assert {"name": COLLECTION, "items": PHOTOS + VIDEO_SECONDS} in collections
    first = corpus.cli("search", "--image", corpus.photos[2], "--top", "1", "--json")["results"][0]
    like = corpus.cli("search", "--like", first["id"], "--top", "5", "--json")
    assert like["query"] == {"like": first["id"]} and len(like["results"]) == 5
    assert first["id"] not in [hit["id"] for hit in like["results"]]
    extra = write_test_images(corpus.tmp / "extra", 1, seed=9)[0]
    corpus.cli("index", extra, "--collection", "scratch", "--json")
    deleted = corpus.cli("delete", "--collection", "scratch", "--json")
    assert deleted == {"deleted": 1, "updated": 0}

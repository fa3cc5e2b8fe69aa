"""End to end: a video with still and moving shots through `clipsearch index` and `clipsearch search --json`."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.support.e2e import ServeProcess, run_cli, second_pattern

FPS, SIZE = 5, (128, 96)
# Seconds 0-5 show one still picture, 6-9 a picture with a bar sweeping across, 10-14 another still picture.
STILL_A, MOVING, STILL_B = range(6), range(6, 10), range(10, 15)


def picture(second: int, step: int) -> np.ndarray:
    if second in STILL_A:
        return second_pattern(100, *SIZE)
    if second in STILL_B:
        return second_pattern(200, *SIZE)
    frame = second_pattern(second, *SIZE).copy()
    column = (step * SIZE[0]) // FPS
    frame[:, column : column + SIZE[0] // 4] = 255
    return frame


def write_video(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for second in range(15):
            for step in range(FPS):
                noisy = picture(second, step).astype(np.int16) + rng.normal(0, 2, (SIZE[1], SIZE[0], 3)).astype(
                    np.int16
                )
                frame = av.VideoFrame.from_ndarray(np.clip(noisy, 0, 255).astype(np.uint8), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def shots(serve_stack: ServeProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("moments-e2e")
    write_video(tmp / "shots.mp4")
    return tmp, serve_stack.client_env()


def cli(tmp: Path, env: dict[str, str], *args: str | Path) -> dict:
    return run_cli([str(a) for a in args], env, tmp=tmp).json()


def test_still_frames_are_not_embedded_and_a_query_by_one_finds_its_moment(shots) -> None:
    tmp, env = shots
    report = cli(tmp, env, "index", tmp / "shots.mp4", "--collection", "shots", "--json")
    # One frame stands for each still shot; each second of the moving shot is its own.
    assert (report["frames"], report["skipped_still_frames"], report["failed"]) == (6, 9, [])
    stored = cli(tmp, env, "search", "--text", "x", "--collection", "shots", "--frames", "--top", "50", "--json")
    spans = sorted((h["start_seconds"], h["end_seconds"]) for h in stored["results"])
    assert spans == [(0.0, 5.0), (6.0, 6.0), (7.0, 7.0), (8.0, 8.0), (9.0, 9.0), (10.0, 14.0)]
    # A skipped frame's picture (second 3 of the first still shot) finds the moment that covers it, first.
    query = tmp / "still-a.png"
    Image.fromarray(second_pattern(100, *SIZE)).save(query)
    first = cli(tmp, env, "search", "--image", query, "--collection", "shots", "--top", "3", "--json")["results"][0]
    assert first["start_seconds"] <= 3.0 <= first["end_seconds"]
    assert first["timestamp_seconds"] == 0.0 and first["media"] == "video_frame"
    # The whole video is one moment: its frames' spans follow each other within two sampling intervals.
    moments = cli(tmp, env, "search", "--text", "x", "--collection", "shots", "--json")["results"]
    assert [(m["start_seconds"], m["end_seconds"], m["frames"]) for m in moments] == [(0.0, 14.0, 6)]


def test_every_frame_embeds_each_sampled_frame(shots) -> None:
    tmp, env = shots
    # A copy of its own: one file is one item, and the other test indexes shots.mp4 into 'shots'.
    (tmp / "every").mkdir(exist_ok=True)
    video = shutil.copyfile(tmp / "shots.mp4", tmp / "every" / "shots.mp4")
    report = cli(tmp, env, "index", video, "--collection", "shots-all", "--every-frame", "--json")
    assert (report["frames"], report["skipped_still_frames"]) == (15, 0)
    (moment,) = cli(tmp, env, "search", "--text", "x", "--collection", "shots-all", "--json")["results"]
    assert (moment["start_seconds"], moment["end_seconds"], moment["frames"]) == (0.0, 14.0, 15)
    raw = cli(tmp, env, "search", "--text", "x", "--collection", "shots-all", "--frames", "--top", "50", "--json")
    assert sorted(h["timestamp_seconds"] for h in raw["results"]) == [float(s) for s in range(15)]
    assert all(h["frames"] == 1 and h["start_seconds"] == h["end_seconds"] for h in raw["results"])

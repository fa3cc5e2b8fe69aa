"""Sampling a B-frame H.264 film without its non-reference frames: true timestamps, and shots still found."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import av
import numpy as np
import pytest
from PIL import Image

from client import Client
from client.ingest.gops import trimmed_packets
from client.ingest.media import FrameSampler, iter_video_frames
from tests.support.e2e import second_pattern

FPS, SIZE = 12, (128, 96)
SAMPLING = 2.4  # five frames per sample: non-reference frames are skipped, and multiples fall on them
# (start, end, moving) in seconds: still shots and shots where the picture pans.
SHOTS = ((0, 3, False), (3, 6, True), (6, 8, False), (8, 11, True))


def picture(shot: int, step: int) -> np.ndarray:
    """Frame `step` of a shot: its own colour field, shifted a few pixels per frame in a moving shot."""
    width, height = SIZE
    wide = second_pattern(10 + shot, 2 * width, height)
    shift = 2 * step if SHOTS[shot][2] else 0
    return np.ascontiguousarray(wide[:, shift : shift + width])


@pytest.fixture(scope="module")
def film(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """H.264 with two B-frames between references (none of them a reference) and grain on every frame."""
    path = tmp_path_factory.mktemp("film") / "film.mp4"
    rng = np.random.default_rng(5)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "16", "x264-params": "bframes=2:b-adapt=0:b-pyramid=none"}
        for shot, (start, end, _moving) in enumerate(SHOTS):
            for step in range((end - start) * FPS):
                grain = rng.normal(0, 2, (SIZE[1], SIZE[0], 3))
                pixels = np.clip(picture(shot, step) + grain, 0, 255).astype(np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decoded_count(path: Path, skip: Literal["DEFAULT", "NONREF"]) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = skip
        return sum(1 for _ in container.decode(stream))


def test_each_sampled_frame_is_a_decoded_frame_with_its_own_timestamp(film: Path) -> None:
    total = SHOTS[-1][1] * FPS
    assert decoded_count(film, "DEFAULT") == total
    assert decoded_count(film, "NONREF") <= total * 2 // 3 + 2  # the B-frames are not decoded
    every = {f.timestamp_seconds: f for f in iter_video_frames(film, FPS, 64, 10**6, skip_nonref=False)}
    assert len(every) == total
    sampled = list(iter_video_frames(film, SAMPLING, 64, 10**6))
    # Without skipping, every multiple is a frame of its own.
    exact = [f.timestamp_seconds for f in iter_video_frames(film, SAMPLING, 64, 10**6, skip_nonref=False)]
    assert exact == [n * 5 / FPS for n in range(len(exact))]
    assert len(exact) - 1 <= len(sampled) <= len(exact)  # the last multiple may lie past the last reference
    moved = 0
    for n, frame in enumerate(sampled):
        own = every[frame.timestamp_seconds]  # a frame of the film, at its own time ...
        assert frame.rgb == own.rgb and frame.frame_index == own.frame_index  # ... and that frame's pixels
        assert frame.frame_index == round(frame.timestamp_seconds * FPS)
        # The first decoded frame at or after the multiple, a B-frame's width away at most.
        assert 0 <= frame.timestamp_seconds - exact[n] <= 2 / FPS + 1e-9
        moved += frame.timestamp_seconds != exact[n]
    assert moved > 0  # some multiples fell on a skipped B-frame


@pytest.mark.parametrize("fps", [0.5, 0.25])
def test_samples_far_apart_leave_group_ends_undecoded_and_take_the_same_frames(film: Path, fps: float) -> None:
    every = {f.timestamp_seconds: f for f in iter_video_frames(film, FPS, 64, 10**6, skip_nonref=False)}
    sampled = list(iter_video_frames(film, fps, 64, 10**6))
    assert [f.timestamp_seconds for f in sampled] == [n / fps for n in range(len(sampled))]
    assert all(frame.rgb == every[frame.timestamp_seconds].rgb for frame in sampled)
    with av.open(str(film)) as container:
        stream = container.streams.video[0]
        total = sum(1 for packet in container.demux(stream) if packet.size)
    with av.open(str(film)) as container:
        stream = container.streams.video[0]
        base = stream.time_base
        assert base is not None
        sampler = FrameSampler(fps)
        kept = 0
        for packet in trimmed_packets(container, stream, lambda pts: pts * base, sampler.last_before):
            kept += packet.size > 0
            for frame in packet.decode():
                if frame.pts is not None:
                    sampler.take(frame.pts * base)
    assert kept < total  # the cuts start IDR pictures, and the pictures before them after the last sample go


def test_a_shots_middle_frame_finds_the_moment_covering_it(film: Path, client: Client) -> None:
    report = client.index([film], collection="film", fps=SAMPLING)
    assert report.failed == [] and 0 < report.frames < SHOTS[-1][1] * SAMPLING - 4  # still frames were left out
    for shot, (start, end, _moving) in enumerate(SHOTS):
        middle = (start + end) / 2
        buffer = io.BytesIO()
        Image.fromarray(picture(shot, round((middle - start) * FPS))).save(buffer, "PNG")
        moment = client.search_image(buffer.getvalue(), top=1, moments=True)[0]
        assert moment.start_seconds is not None and moment.end_seconds is not None
        assert moment.start_seconds <= middle <= moment.end_seconds, (shot, moment)
        frames = client.search_image(buffer.getvalue(), top=1)
        best = frames[0].timestamp_seconds
        assert best is not None and start <= best < end, (shot, frames[0])

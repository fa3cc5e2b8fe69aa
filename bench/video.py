"""Video: `clipsearch index` of a 1080p video at 1 fps vs the seed's way (frames to PNG files, then the folder)."""

from __future__ import annotations

import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from bench.common import CpuMeter, Services, Timed, clipsearch_index, ratio
from client.ingest.media import FrameSampler

FPS = 1.0


def extract_pngs(video: Path, folder: Path, fps: float) -> int:
    """The seed's first step: decode the video and write the sampled frames as full-size PNG files."""
    sampler = FrameSampler(fps)
    written = 0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = stream.start_time or 0
        assert stream.time_base is not None  # set for every stream PyAV opens for decoding
        for frame in container.decode(stream):
            if frame.pts is None or not sampler.take(Fraction(frame.pts - start) * stream.time_base):
                continue
            written += 1
            frame.to_image().save(folder / f"frame_{written:05d}.png")
    return written


def run(services: Services, video: Path, run_id: str) -> dict[str, Any]:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        described = {
            "codec": stream.codec_context.name,
            "width": stream.width,
            "height": stream.height,
            "frame_rate": float(stream.average_rate or 0),
            "seconds": round(float(container.duration or 0) / av.time_base, 2),
        }
    # Every sampled frame, as the seed's way embeds them all (bench.moments measures skipping).
    report, instream = clipsearch_index(services, [video], f"video-{run_id}", fps=FPS, options=["--every-frame"])
    frames = report["frames"]
    with tempfile.TemporaryDirectory(prefix="clipsearch-frames-") as scratch:
        folder = Path(scratch)
        meter = CpuMeter()
        started = time.perf_counter()
        extracted = extract_pngs(video, folder, FPS)
        extract = Timed(extracted, time.perf_counter() - started, meter.seconds())
        seed_report, indexed = clipsearch_index(services, [folder], f"video-seed-{run_id}")
    if extracted != frames or seed_report["indexed"] != frames:
        raise RuntimeError(
            f"frame counts differ: {frames} indexed from the video, {extracted} extracted, "
            f"{seed_report['indexed']} indexed from the PNG files"
        )
    seed = Timed(frames, extract.seconds + indexed.seconds, extract.cpu_seconds + indexed.cpu_seconds)
    return {
        "video": described,
        "sampling_fps": FPS,
        "frames": frames,
        "instream_seconds": round(instream.seconds, 3),
        "instream_frames_s": instream.per_second,
        "instream_cpu_ms_per_frame": instream.cpu_ms_per_item,
        "seed_extract_seconds": round(extract.seconds, 3),
        "seed_index_seconds": round(indexed.seconds, 3),
        "seed_frames_s": seed.per_second,
        "seed_cpu_ms_per_frame": seed.cpu_ms_per_item,
        "instream_vs_seed": ratio(instream.per_second, seed.per_second),
        "cpu_instream_vs_seed": ratio(seed.cpu_ms_per_item, instream.cpu_ms_per_item),
    }

"""Films: `clipsearch index` of a generated 1080p film against PyAV decoding it alone, in turns in one run.

python -m bench.film [--model DIR] [--rounds N] [--seconds S] [--json OUT] runs this part alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from bench import common
from bench.common import CpuMeter, Services, Target, Timed, clipsearch_index, median, process_cpu_seconds, ratio
from bench.film_media import film
from bench.video import extract_pngs
from client.ingest.media import FrameSampler, shrunk_size

FPS = 1.0
GOAL = 0.85  # clipsearch index at default settings / the decoder alone with non-reference frames skipped
TWO_HOURS = 7200.0


def decode_alone(video: Path, short_side: int, *, skip_nonref: bool) -> tuple[Timed, int]:
    """PyAV alone, threads AUTO: decodes the film and converts the frames FrameSampler picks at FPS to RGB
    at the embedder's size (as `clipsearch index` does, swscale only). Returns (picked frames timed,
    frames decoded)."""
    meter = CpuMeter()
    started = time.perf_counter()
    sampler = FrameSampler(FPS)
    picked = decoded = 0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if skip_nonref:
            stream.codec_context.skip_frame = "NONREF"
        start = stream.start_time or 0
        assert stream.time_base is not None  # set for every stream PyAV opens for decoding
        for frame in container.decode(stream):
            decoded += 1
            if frame.pts is None or not sampler.take(Fraction(frame.pts - start) * stream.time_base):
                continue
            w, h = shrunk_size(frame.width, frame.height, short_side)
            frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="BICUBIC")
            picked += 1
    return Timed(picked, time.perf_counter() - started, meter.seconds()), decoded


def describe(video: Path) -> dict[str, Any]:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        return {
            "codec": stream.codec_context.name,
            "width": stream.width,
            "height": stream.height,
            "frame_rate": float(stream.average_rate or 0),
            "frames": stream.frames,
            "seconds": round(float(container.duration or 0) / av.time_base, 2),
            "bit_rate_mbit_s": round((container.bit_rate or 0) / 1e6, 2),
        }


def realtime(seconds_of_film: float, timed: Timed) -> float:
    """How many times faster than real time."""
    return round(seconds_of_film / timed.seconds, 2) if timed.seconds > 0 else float("nan")


def run(services: Services, video: Path, run_id: str, image_size: int, rounds: int = 3) -> dict[str, Any]:
    """Each way of reading the film, `rounds` times in turn (the article's pipeline once: it is slow)."""
    described = describe(video)
    length = described["seconds"]
    ways = ("decode_full", "decode_nonref", "index_default", "index_every_frame")
    speeds: dict[str, list[float]] = {way: [] for way in ways}
    cpu_ms: dict[str, list[float]] = {way: [] for way in ways}
    goal_ratios: list[float | None] = []
    model_cpu_ms: list[float] = []
    counts: dict[str, Any] = {}
    embedder_pid = services.stack.embedders[0].pid
    for number in range(rounds):
        timed: dict[str, Timed] = {}
        timed["decode_full"], counts["decoded_full"] = decode_alone(video, image_size, skip_nonref=False)
        timed["decode_nonref"], counts["decoded_nonref"] = decode_alone(video, image_size, skip_nonref=True)
        model_cpu = process_cpu_seconds(embedder_pid)
        report, timed["index_default"] = clipsearch_index(services, [video], f"film-{run_id}-{number}", fps=FPS)
        model_cpu_ms.append(round(1000 * (process_cpu_seconds(embedder_pid) - model_cpu) / length, 1))
        counts["index_default"] = {key: report[key] for key in ("frames", "skipped_still_frames")}
        report, timed["index_every_frame"] = clipsearch_index(
            services, [video], f"film-every-{run_id}-{number}", fps=FPS, options=["--every-frame"]
        )
        counts["index_every_frame"] = {key: report[key] for key in ("frames", "skipped_still_frames")}
        for way in ways:
            speeds[way].append(realtime(length, timed[way]))
            cpu_ms[way].append(round(1000 * timed[way].cpu_seconds / length, 1))
        goal_ratios.append(ratio(speeds["index_default"][-1], speeds["decode_nonref"][-1]))
    with tempfile.TemporaryDirectory(prefix="clipsearch-film-frames-") as scratch:
        meter = CpuMeter()
        started = time.perf_counter()
        extracted = extract_pngs(video, Path(scratch), FPS)
        extract = Timed(extracted, time.perf_counter() - started, meter.seconds())
        seed_report, indexed = clipsearch_index(services, [Path(scratch)], f"film-article-{run_id}")
    article = Timed(
        seed_report["indexed"], extract.seconds + indexed.seconds, extract.cpu_seconds + indexed.cpu_seconds
    )
    figures: dict[str, Any] = {
        "video": described,
        "sampling_fps": FPS,
        "rounds": rounds,
        "counts": counts,
        "realtime": {way: median(values) for way, values in speeds.items()},
        "realtime_each_round": speeds,
        "cpu_ms_per_film_second": {way: median(values) for way, values in cpu_ms.items()},
        "article_realtime": realtime(length, article),
        "article_cpu_ms_per_film_second": round(1000 * article.cpu_seconds / length, 1),
        "article_frames": seed_report["indexed"],
        "index_vs_decode_nonref": median(goal_ratios),
        "index_vs_decode_nonref_each_round": goal_ratios,
        "index_every_frame_vs_decode_nonref": ratio(
            median(speeds["index_every_frame"]), median(speeds["decode_nonref"])
        ),
        "goal": GOAL,
        # The embedder's own CPU time in the default index run: on cores the decoder keeps busy, index /
        # decoder can reach at most decoder CPU / (decoder CPU + the model's), whatever the client does.
        "model_cpu_ms_per_film_second": median(model_cpu_ms),
    }
    decoder_cpu = figures["cpu_ms_per_film_second"]["decode_nonref"]
    model = figures["model_cpu_ms_per_film_second"]
    figures["ceiling_cpu_bound"] = ratio(decoder_cpu, (decoder_cpu or 0) + (model or 0))
    figures["cpu_index_vs_decode_nonref"] = ratio(decoder_cpu, figures["cpu_ms_per_film_second"]["index_default"])
    speed = figures["realtime"]["index_default"]
    figures["two_hour_film_minutes"] = round(TWO_HOURS / speed / 60, 1) if speed else None
    ceiling = figures["realtime"]["decode_nonref"]
    figures["two_hour_film_minutes_decoder_alone"] = round(TWO_HOURS / ceiling / 60, 1) if ceiling else None
    return figures


def target(film_figures: dict[str, Any]) -> Target:
    return Target(
        "film: clipsearch index / decoder alone (non-reference frames skipped), real-time speed",
        film_figures["index_vs_decode_nonref"],
        GOAL,
        note=f"ceiling {film_figures['ceiling_cpu_bound']} on cores the decoder fills (decoder CPU / decoder + model "
        f"CPU); CPU-time view {film_figures['cpu_index_vs_decode_nonref']}",
    )


def rows(f: dict[str, Any], add: Any) -> None:
    """The film's lines of the table: each way's speed (times real time), CPU, the ratio and two hours."""
    v = f["video"]
    what = f"film {v['width']}x{v['height']} {v['codec']} {v['seconds']:g}s {v['frame_rate']:g}fps {v['bit_rate_mbit_s']} Mbit/s"
    r, cpu = f["realtime"], f["cpu_ms_per_film_second"]
    add(
        f"{what}: decoder alone, full / non-reference frames skipped (x real time; CPU ms per film second)",
        f"{r['decode_full']} / {r['decode_nonref']} ({cpu['decode_full']} / {cpu['decode_nonref']}); frames decoded "
        f"{f['counts']['decoded_full']} / {f['counts']['decoded_nonref']}",
    )
    default, every = f["counts"]["index_default"], f["counts"]["index_every_frame"]
    add(
        "film: clipsearch index, default / --every-frame (x real time; CPU ms per film second, every process)",
        f"{r['index_default']} / {r['index_every_frame']} ({cpu['index_default']} / {cpu['index_every_frame']}); "
        f"embedded {default['frames']} (+{default['skipped_still_frames']} still) / {every['frames']}",
    )
    add(
        "film: the article's pipeline (frames to PNG, then its loop), x real time (CPU ms per film second)",
        f"{f['article_realtime']} ({f['article_cpu_ms_per_film_second']}), {f['article_frames']} frames",
    )
    add(
        "film: index / decoder alone (non-ref skipped), median of rounds (each round); --every-frame",
        f"{f['index_vs_decode_nonref']} ({', '.join(str(x) for x in f['index_vs_decode_nonref_each_round'])}); "
        f"{f['index_every_frame_vs_decode_nonref']}",
    )
    add(
        "film: the model's CPU ms per film second in index; ceiling (decoder CPU / decoder + model); CPU view",
        f"{f['model_cpu_ms_per_film_second']}; {f['ceiling_cpu_bound']}; {f['cpu_index_vs_decode_nonref']}",
    )
    add(
        "film: a two-hour film here, clipsearch index / decoder alone",
        f"{f['two_hour_film_minutes']} / {f['two_hour_film_minutes_decoder_alone']} minutes",
    )


def embedder_image_size(services: Services) -> int:
    """The embedder's input size: what `clipsearch index` shrinks frames to."""
    from client.api import Client

    with Client(services.embedder, services.search, timeout=600) as client:
        return client.model_info().image_size or 224


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.film", description=__doc__)
    parser.add_argument("--model", type=Path, metavar="DIR", help="CLIP checkpoint (default: ViT-B/16 random weights)")
    parser.add_argument("--cache", type=Path, default=common.DEFAULT_CACHE, metavar="DIR")
    parser.add_argument("--seconds", type=int, default=120, help="length of the generated film (default 120)")
    parser.add_argument("--rounds", type=int, default=3, help="turns of each measurement (default 3)")
    parser.add_argument("--embedder-threads", type=int, default=0, metavar="N")
    parser.add_argument("--json", type=Path, metavar="OUT")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cache = common.cache_dir(args.cache)
    threads = args.embedder_threads or len(os.sched_getaffinity(0))
    load_start = common.load_average()
    model = args.model.resolve() if args.model else common.checkpoint(cache, "vit-b-16")
    print(f"generating (once) a {args.seconds}s film ...", file=sys.stderr, flush=True)
    video = film(cache, args.seconds)
    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-film-") as scratch:
        services = common.start_services(Path(scratch), model, threads)
        try:
            figures = run(services, video, uuid.uuid4().hex[:8], embedder_image_size(services), args.rounds)
        finally:
            services.stop()
    figures["load_average"] = {"start": load_start, "end": common.load_average()}
    figures["model"] = str(model)
    lines: list[tuple[str, str]] = []
    rows(figures, lambda name, value: lines.append((name, str(value))))
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}}  {value}")
    t = target(figures).to_json()
    print(f"target: {t['name']}: {t['value']} {t['comparison']} {t['goal']}: {'met' if t['met'] else 'MISSED'}")
    if t["met"] is False:
        print(f"  {t['note']}")
    print(f"load average: start {load_start}, end {figures['load_average']['end']}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

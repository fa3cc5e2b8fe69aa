"""Moments: grouped vs raw query latency, model calls saved by skipping still frames, and moment recall."""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import redis
from PIL import Image

from bench import common
from bench.common import median, percentile_ms, ratio
from client.api import Client, SearchFilter
from client.ingest.engine import IngestOptions
from client.ingest.media import VideoFrame, iter_video_frames
from client.ingest.stills import DEFAULT_STILL_THRESHOLD, StillFilter, difference, signature
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service import schema as S
from search_service.config import SearchConfig
from search_service.grouping import GROUP_FIELDS, WINDOWS
from search_service.info import parse_info
from search_service.query import DISTANCE
from search_service.resolve import adaptive_ef
from search_service.schema import NUMPY_TYPES
from search_service.storage import ITEM_FIELDS

GOAL_P50_RATIO = 1.3
GOAL_CALLS_SAVED = 2.0
GOAL_RECALL = 0.99
DIMENSION = 512
UPSERT_BATCH = 1000
WARMUP = 5
SIZE = (320, 180)
VIDEO_FPS = 10
STATIC_SHARE = 0.7


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.moments",
        description="Moments, each figure beside its baseline from the same run: a query grouping frames into "
        "moments against the same query returning frames, over stored video frames; model calls when frames "
        "like the one before are skipped against embedding every sampled frame, on a generated 10-minute video "
        "with 70%% static shots; and how often a query by a skipped frame finds its moment first.",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every figure as JSON to OUT")
    parser.add_argument(
        "--model", type=Path, metavar="DIR", help="CLIP checkpoint (default: the tiny random-weight one, cached)"
    )
    parser.add_argument(
        "--cache", type=Path, default=common.DEFAULT_CACHE, metavar="DIR", help="generated media and checkpoints"
    )
    parser.add_argument("--items", type=int, default=100_000, metavar="N", help="stored frames (default 100000)")
    parser.add_argument("--queries", type=int, default=200, metavar="N", help="queries of each kind (default 200)")
    parser.add_argument("--seconds", type=int, default=600, metavar="S", help="generated video length (default 600)")
    parser.add_argument("--rounds", type=int, default=3, metavar="N", help="query rounds, medians reported (default 3)")
    parser.add_argument(
        "--collapse",
        action="store_true",
        help="measure collapsing near-duplicate photos instead: N stored photos in sets of 1-4 copies, a query "
        "with QueryRequest.duplicates against the same query returning photos (no video figures)",
    )
    return parser


# --- query latency ---------------------------------------------------------------------------------------


def frame_vectors(rng: np.random.Generator, count: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Vectors of video frames at 1 fps: shots of 3-20 s, each a slow random walk around a shot centre.

    Returns the vectors and, for each, (video number, second)."""
    vectors = np.empty((count, DIMENSION), dtype=np.float32)
    where: list[tuple[int, int]] = []
    n = video = second = 0
    while n < count:
        length = min(int(rng.integers(3, 21)), count - n)
        centre = rng.standard_normal(DIMENSION).astype(np.float32)
        walk = np.cumsum(0.15 * rng.standard_normal((length, DIMENSION)).astype(np.float32), axis=0)
        vectors[n : n + length] = centre + walk
        where += [(video, second + s) for s in range(length)]
        n += length
        second += length + 1
        if second > 3600:  # an hour per video
            video, second = video + 1, 0
    return vectors, where


def load_frames(stub: search_pb2_grpc.SearchStub, vectors: np.ndarray, where: list[tuple[int, int]]) -> float:
    started = time.perf_counter()
    for start in range(0, len(vectors), UPSERT_BATCH):
        items = [
            pb.Item(
                id=f"f{n}",
                vector=vectors[n].tolist(),
                metadata=pb.Metadata(
                    sources=[f"file:///bench/video-{where[n][0]}.mp4"],
                    media_type=pb.MEDIA_TYPE_VIDEO_FRAME,
                    collection="moments",
                    content_hash=f"{where[n][0]:064x}",
                    timestamp_seconds=float(where[n][1]),
                    frame_interval_seconds=1.0,
                ),
            )
            for n in range(start, min(start + UPSERT_BATCH, len(vectors)))
        ]
        stub.Upsert(pb.UpsertRequest(items=items), timeout=600)
    return time.perf_counter() - started


def wait_indexed(stub: search_pb2_grpc.SearchStub) -> None:
    while True:
        stats = stub.Stats(pb.StatsRequest())
        if not stats.indexing:
            return
        time.sleep(0.5)


def photo_vectors(rng: np.random.Generator, count: int) -> tuple[np.ndarray, list[int]]:
    """Vectors of photos in sets of 1 to 4 near-duplicate copies (a copy: its original's vector nudged), and
    each photo's set number."""
    vectors = np.empty((count, DIMENSION), dtype=np.float32)
    sets: list[int] = []
    n = number = 0
    while n < count:
        copies = min(int(rng.integers(1, 5)), count - n)
        original = rng.standard_normal(DIMENSION).astype(np.float32)
        vectors[n : n + copies] = original + 0.05 * rng.standard_normal((copies, DIMENSION)).astype(np.float32)
        sets += [number] * copies
        n, number = n + copies, number + 1
    return vectors, sets


def load_photos(stub: search_pb2_grpc.SearchStub, vectors: np.ndarray, sets: list[int]) -> float:
    """Stores the photos with perceptual hashes: one random hash per set, each copy with up to 2 bits flipped."""
    rng = np.random.default_rng(11)
    set_hashes = rng.integers(0, 1 << 63, max(sets) + 1, dtype=np.int64) * 2 + rng.integers(0, 2, max(sets) + 1)
    started = time.perf_counter()
    for start in range(0, len(vectors), UPSERT_BATCH):
        items = []
        for n in range(start, min(start + UPSERT_BATCH, len(vectors))):
            flips = sum(1 << int(b) for b in rng.choice(64, int(rng.integers(0, 3)), replace=False))
            items.append(
                pb.Item(
                    id=f"p{n}",
                    vector=vectors[n].tolist(),
                    metadata=pb.Metadata(
                        sources=[f"file:///bench/photo-{n}.jpg"],
                        media_type=pb.MEDIA_TYPE_IMAGE,
                        collection="duplicates",
                        content_hash=f"{n:064x}",
                        perceptual_hash=(int(set_hashes[sets[n]]) % (1 << 64)) ^ flips,
                    ),
                )
            )
        stub.Upsert(pb.UpsertRequest(items=items), timeout=600)
    return time.perf_counter() - started


def knn_args(index: str, blob: bytes, k: int, fields: Sequence[str], ef: int) -> list[str | bytes]:
    """The FT.SEARCH a search service sends for a query's first k nearest items, read with `fields`."""
    query = f"*=>[KNN $K @{S.F_VECTOR} $BLOB EF_RUNTIME $EF AS {DISTANCE}]"
    returned = [*fields, DISTANCE]
    return ["FT.SEARCH", index, query, "SORTBY", DISTANCE, "ASC", "LIMIT", "0", str(k), "RETURN",
            str(len(returned)), *returned, "PARAMS", "6", "K", str(k), "BLOB", blob, "EF", str(max(ef, k)),
            "DIALECT", "2"]  # fmt: skip


@dataclass(frozen=True)
class SearchedAs:
    """How the service searches the index: its vectors' byte layout and the EF_RUNTIME of a query naming none."""

    numpy_type: str
    ef: int


def searched_as(redis_client: redis.Redis, index: str) -> SearchedAs:
    info = parse_info(redis_client.execute_command("FT.INFO", index))
    vector_type = str(info["attributes"][S.F_VECTOR]["data_type"]).lower()
    return SearchedAs(NUMPY_TYPES[vector_type], adaptive_ef(int(info["num_docs"]), SearchConfig().hnsw_ef_runtime))  # type: ignore[index]


def query_round(
    stub: search_pb2_grpc.SearchStub,
    redis_client: redis.Redis,
    index: str,
    queries: Sequence[list[float]],
    grouping: str,
    searched: SearchedAs,
) -> dict[str, Any]:
    """p50 of the plain query against the grouped one (`grouping`: "moments" or "duplicates"), interleaved so
    both meet the same load, and beside them the bare Redis searches each sends first: k=10 items in full,
    and the first candidate window (grouping.WINDOWS[0]) with only the fields grouping reads, with the
    vectors and the EF_RUNTIME the service uses (`searched`)."""
    times: dict[str, list[float]] = {"raw": [], "grouped": [], "knn_raw": [], "knn_window": []}
    groups = 0
    for n, vector in enumerate(queries):
        blob = np.asarray(vector, dtype=searched.numpy_type).tobytes()
        for kind in times:
            started = time.perf_counter()
            if kind in ("raw", "grouped"):
                request = pb.QueryRequest(vector=vector, k=10)
                if kind == "grouped":
                    getattr(request, grouping).SetInParent()
                matches = stub.Query(request).matches
                groups += len(matches) if kind == "grouped" else 0
            elif kind == "knn_raw":
                redis_client.execute_command(*knn_args(index, blob, 10, ITEM_FIELDS, searched.ef))
            else:
                redis_client.execute_command(*knn_args(index, blob, WINDOWS[0], GROUP_FIELDS, searched.ef))
            if n >= WARMUP:
                times[kind].append(time.perf_counter() - started)
    p50 = {kind: percentile_ms(t, 50) for kind, t in times.items()}
    # What grouping would cost if reading the window were all it added: its ceiling in this run.
    ceiling = p50["raw"] + p50["knn_window"] - p50["knn_raw"]
    return {
        "raw_p50_ms": p50["raw"],
        "raw_p95_ms": percentile_ms(times["raw"], 95),
        "grouped_p50_ms": p50["grouped"],
        "grouped_p95_ms": percentile_ms(times["grouped"], 95),
        "grouped_vs_raw": ratio(p50["grouped"], p50["raw"]),
        "redis_knn_k10_p50_ms": p50["knn_raw"],
        "redis_knn_window_p50_ms": p50["knn_window"],
        "ceiling_vs_raw": ratio(ceiling, p50["raw"]),
        "groups_per_grouped_top10": round(groups / max(1, len(queries)), 2),
        "queries": len(times["raw"]),
    }


def query_figures(
    stub: search_pb2_grpc.SearchStub,
    redis_client: redis.Redis,
    index: str,
    vectors: np.ndarray,
    rng: np.random.Generator,
    count: int,
    rounds: int,
    grouping: str,
) -> dict[str, Any]:
    """`rounds` rounds of query_round over the same queries; the figures are the rounds' medians."""
    picks = rng.integers(0, len(vectors), count + WARMUP)
    queries = [(vectors[i] + 0.3 * rng.standard_normal(DIMENSION)).astype(np.float32).tolist() for i in picks]
    searched = searched_as(redis_client, index)
    measured = [query_round(stub, redis_client, index, queries, grouping, searched) for _ in range(rounds)]
    figures: dict[str, Any] = {key: median([r[key] for r in measured]) for key in measured[0]}
    figures["rounds"] = [
        {"grouped_vs_raw": r["grouped_vs_raw"], "ceiling_vs_raw": r["ceiling_vs_raw"]} for r in measured
    ]
    figures["grouping"] = grouping
    return figures


# --- the generated video ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shot:
    start: int  # seconds
    end: int  # exclusive
    static: bool


def plan_shots(rng: np.random.Generator, seconds: int) -> list[Shot]:
    shots: list[Shot] = []
    t = static_time = 0
    while t < seconds:
        length = min(int(rng.integers(4, 21)), seconds - t)
        static = static_time < STATIC_SHARE * (t + length)
        shots.append(Shot(t, t + length, static))
        static_time += length if static else 0
        t += length
    return shots


def generated_video(cache: Path, seconds: int) -> tuple[Path, list[Shot]]:
    """An H.264 video (MPEG-4 without libx264) of shots: 70% of the time still pictures with sensor noise,
    the rest pans with moving shapes. Made once into the cache."""
    import av

    rng = np.random.default_rng(13)
    shots = plan_shots(rng, seconds)
    codec = common.video_codec()
    width, height = SIZE
    path = cache / "media" / f"moments-{width}x{height}-{seconds}s-{codec}.mp4"
    if path.is_file():
        return path, shots
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with av.open(str(partial), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=VIDEO_FPS)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "23"}
        index = 0
        for shot in shots:
            background = np.asarray(common.scene(rng, width + 200, height), dtype=np.int16)
            sprite = (int(rng.integers(20, 60)), tuple(int(v) for v in rng.integers(0, 256, 3)), rng.uniform(-8, 8, 2))
            for n in range((shot.end - shot.start) * VIDEO_FPS):
                if shot.static:
                    frame = background[:, :width].copy()
                else:
                    shift = (n * 3) % 200
                    frame = background[:, shift : shift + width].copy()
                    side, colour, velocity = sprite
                    x = int(abs((velocity[0] * n) % (2 * (width - side)) - (width - side)))
                    y = int(abs((velocity[1] * n) % (2 * (height - side)) - (height - side)))
                    frame[y : y + side, x : x + side] = colour
                frame += rng.normal(0, 2.0, frame.shape).astype(np.int16)
                pixels = np.clip(frame, 0, 255).astype(np.uint8)
                video_frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                video_frame.pts = index
                index += 1
                for packet in stream.encode(video_frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(path)
    return path, shots


def shot_of(shots: Sequence[Shot], t: float) -> int:
    return next(n for n, s in enumerate(shots) if s.start <= t < s.end)


def png(frame: VideoFrame) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (frame.width, frame.height), frame.rgb).save(out, "PNG")
    return out.getvalue()


def skip_figures(video: Path, shots: Sequence[Shot]) -> tuple[dict[str, Any], list[VideoFrame]]:
    """Decodes the video at 1 fps as the index command does: differences between consecutive sampled frames
    by kind, and the frames kept and skipped at the default threshold."""
    frames = list(iter_video_frames(video, 1.0, 224, 1 << 30))
    diffs: dict[str, list[float]] = {"still": [], "moving": [], "cut": []}
    for a, b in itertools.pairwise(frames):
        sa, sb = shot_of(shots, a.timestamp_seconds), shot_of(shots, b.timestamp_seconds)
        kind = "cut" if sa != sb else "still" if shots[sa].static else "moving"
        diffs[kind].append(difference(signature(a), signature(b)))
    stills = StillFilter(DEFAULT_STILL_THRESHOLD)
    skipped = [f for f in frames if not stills.keep(f)]
    kept = len(frames) - len(skipped)
    figures = {
        "sampled_frames": len(frames),
        "embedded_frames": kept,
        "calls_saved": ratio(len(frames), kept),
        "threshold": DEFAULT_STILL_THRESHOLD,
        "still_pairs": len(diffs["still"]),
        "still_difference_max": round(max(diffs["still"], default=0.0), 3),
        "still_difference_p99": round(float(np.percentile(diffs["still"], 99)), 3) if diffs["still"] else None,
        "moving_difference_min": round(min(diffs["moving"], default=0.0), 3),
        "moving_difference_p1": round(float(np.percentile(diffs["moving"], 1)), 3) if diffs["moving"] else None,
        "cut_difference_min": round(min(diffs["cut"], default=0.0), 3),
        "moving_pairs_under_threshold": sum(d <= DEFAULT_STILL_THRESHOLD for d in diffs["moving"] + diffs["cut"]),
    }
    return figures, skipped


def recall_figures(client: Client, video: Path, skipped: Sequence[VideoFrame]) -> dict[str, Any]:
    """Indexes the video (skipping still frames) and queries by every skipped frame's picture: found when
    the first moment covers the frame's time."""
    report = client.index([video], collection="moments-video", fps=1.0, options=IngestOptions())
    found = 0
    for frame in skipped:
        hits = client.search_image(
            png(frame), top=1, filter=SearchFilter(collections=("moments-video",)), moments=True, min_score=-1.0
        )
        if hits and hits[0].start_seconds is not None and hits[0].end_seconds is not None:
            found += hits[0].start_seconds <= frame.timestamp_seconds <= hits[0].end_seconds
    return {
        "indexed_frames": report.frames,
        "skipped_by_index": report.still_frames,
        "queries": len(skipped),
        "found_first": found,
        "recall": round(found / len(skipped), 4) if skipped else None,
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    cache = common.cache_dir(args.cache)
    model = args.model or common.checkpoint(cache, "tiny")
    results: dict[str, Any] = {"model": str(model)}
    if not args.collapse:
        video, shots = generated_video(cache, args.seconds)
        skip, skipped = skip_figures(video, shots)
        results["video"] = {"file": video.name, "seconds": args.seconds, "shots": len(shots), **skip}
    services = common.start_services(workdir / "services", model, embedder_threads=max(1, (os.cpu_count() or 2) // 2))
    try:
        if not args.collapse:
            with Client(services.embedder, services.search, timeout=600) as client:
                results["recall"] = recall_figures(client, video, skipped)
        index = "duplicates-bench" if args.collapse else "moments-bench"
        search = services.search_service(index, DIMENSION)
        rng = np.random.default_rng(5)
        with grpc.insecure_channel(search.address) as channel, redis.Redis.from_url(services.redis_url) as r:
            stub = search_pb2_grpc.SearchStub(channel)
            if args.collapse:
                vectors, sets = photo_vectors(rng, args.items)
                load_seconds = load_photos(stub, vectors, sets)
            else:
                vectors, where = frame_vectors(rng, args.items)
                load_seconds = load_frames(stub, vectors, where)
            wait_indexed(stub)
            items = stub.Stats(pb.StatsRequest()).items
            grouping = "duplicates" if args.collapse else "moments"
            query = query_figures(stub, r, index, vectors, rng, args.queries, args.rounds, grouping)
    finally:
        services.stop()
    results["query"] = {"items": items, "load_seconds": round(load_seconds, 1), **query}
    results["load_average"] = common.load_average()
    return results


def table(results: dict[str, Any]) -> str:
    q = results["query"]
    what = "moments vs frames" if q["grouping"] == "moments" else "near-duplicates collapsed vs photos"
    met = q["grouped_vs_raw"] is not None and q["grouped_vs_raw"] <= GOAL_P50_RATIO
    rows = [
        ("figure", "value", "baseline (same run)", "ratio", "goal"),
        (
            f"query p50 at {q['items']} items, k=10: {what} (median of {len(q['rounds'])} rounds)",
            f"{q['grouped_p50_ms']} ms",
            f"{q['raw_p50_ms']} ms",
            f"{q['grouped_vs_raw']}x",
            _goal(met, f"<= {GOAL_P50_RATIO}x"),
        ),
    ]
    if not met:
        rows.append(
            (
                f"ceiling: the plain query plus reading the first window ({WINDOWS[0]} candidates, grouping fields)",
                f"{q['redis_knn_window_p50_ms']} ms in Redis",
                f"{q['redis_knn_k10_p50_ms']} ms for k=10",
                f"{q['ceiling_vs_raw']}x",
                "",
            )
        )
    if "video" in results:
        v, r = results["video"], results["recall"]
        rows += [
            (
                f"model calls, {v['seconds']} s video, {v['shots']} shots (70% still), 1 fps",
                f"{v['embedded_frames']}",
                f"{v['sampled_frames']} (every frame)",
                f"{v['calls_saved']}x fewer",
                _goal(v["calls_saved"] is not None and v["calls_saved"] >= GOAL_CALLS_SAVED, f">= {GOAL_CALLS_SAVED}x"),
            ),
            (
                "query by a skipped frame finds its moment first",
                f"{r['found_first']} of {r['queries']}",
                "",
                f"{r['recall']}",
                _goal(r["recall"] is not None and r["recall"] >= GOAL_RECALL, f">= {GOAL_RECALL}"),
            ),
            (
                "frame differences (32x32, levels): still max / moving min / cut min",
                f"{v['still_difference_max']} / {v['moving_difference_min']} / {v['cut_difference_min']}",
                f"threshold {v['threshold']}",
                "",
                "",
            ),
        ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def _goal(met: bool, text: str) -> str:
    return f"{text} {'met' if met else 'NOT met'}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-moments-") as scratch:
        results = run(args, Path(scratch))
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

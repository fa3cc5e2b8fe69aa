"""A large library coming back after a restart: time to the first answer, to complete results, and what was said."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench.common import load_average
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service.config import SearchConfig
from search_service.items import Item, MediaType, Metadata
from search_service.loading import RedisLoading
from search_service.redis_server import LocalRedis, rewrite_aof
from search_service.schema import F_SOURCES
from search_service.server import build_server
from search_service.storage import item_fields

# The goals: searches answered within 30 s of Redis starting, complete within 120 s, at 1,000,000 frames.
GOAL_FIRST_ANSWER_SECONDS = 30.0
GOAL_COMPLETE_SECONDS = 120.0
FRAMES_PER_VIDEO = 1000
_WRITE_BATCH = 2000
_POLL_SECONDS = 0.5

# Modes: "index-at-load" is how Redis persists an index (its definition in the AOF's RDB base, before the
# keys: every key is indexed while Redis loads and answers nothing), as with SEARCH_INDEX_AFTER_LOAD=false;
# "index-after-load" is the service's own clean stop of its own Redis (the default): it drops the index's
# definition and rewrites the AOF, so the keys load alone and RediSearch indexes them in the background
# while the service answers partially, or exactly from a FLAT companion index once that is built
# (SEARCH_EXACT_WHILE_INDEXING, on by default).
MODES = ("index-at-load", "index-after-load")


def measure_restart(
    frames: int,
    *,
    dimension: int = 512,
    mode: str = "index-at-load",
    workdir: Path | None = None,
    stall_seconds: float = 120.0,
    give_up_seconds: float = 3600.0,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Builds a library of `frames` video frames (FRAMES_PER_VIDEO a video) in a local Redis behind a search
    service, stops it cleanly as `mode` says, starts Redis again, and measures from its start: when a query was first answered, when answers
    stopped being partial, and the "Loading the library" reports on the way. Needs about 3.5 kB of memory
    a frame twice over (Redis and its copy while rewriting the AOF)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clipsearch-restart-", dir=workdir) as tmp:
        local = LocalRedis(Path(tmp) / "redis", stall_timeout=stall_seconds)
        local.start()
        config = SearchConfig(
            host="127.0.0.1",
            port=0,
            redis_url=local.url,
            dimension=dimension,
            health_interval_seconds=0.25,
            grace_seconds=0.0,
        )
        try:
            say(f"writing {frames:,} frames of {dimension} dimensions")
            written = time.monotonic()
            query = _build_library(local, config, frames)
            build_seconds = time.monotonic() - written
            with local.client() as client:
                used_memory = int(client.info("memory")["used_memory"])
            stop_seconds = _stop(local, config, mode)
            aof_bytes = sum(f.stat().st_size for f in (Path(tmp) / "redis" / "appendonlydir").iterdir())
            say(
                f"library written in {build_seconds:.0f} s, stopped in {stop_seconds:.1f} s; restarting Redis "
                f"({aof_bytes / 1e9:.2f} GB on disk)"
            )
            result = _restart(local, config, query, give_up_seconds, say)
        finally:
            local.stop(timeout=600)
    return {
        "frames": frames,
        "dimension": dimension,
        "mode": mode,
        "redis_memory_bytes": used_memory,
        "aof_bytes": aof_bytes,
        "build_seconds": round(build_seconds, 1),
        "stop_seconds": round(stop_seconds, 1),
        **result,
        "goal_first_answer_seconds": GOAL_FIRST_ANSWER_SECONDS,
        "goal_complete_seconds": GOAL_COMPLETE_SECONDS,
        "load_average": load_average(),
    }


def _build_library(local: LocalRedis, config: SearchConfig, frames: int) -> list[float]:
    """Writes the frames as the service stores them, without an index (so no graph is built twice), then
    defines the index without scanning: Redis then holds what a long-running library holds. Returns a query
    vector (a stored frame's)."""
    from search_service.schema import NUMPY_TYPES, build_schema

    schema = build_schema(
        config.index_name, config.key_prefix, dimension=config.dimension, vector_type=config.vector_type
    )
    rng = np.random.default_rng(2024)
    query: list[float] = []
    with local.client(socket_timeout=600) as client:
        for start in range(0, frames, _WRITE_BATCH):
            count = min(_WRITE_BATCH, frames - start)
            vectors = rng.standard_normal((count, config.dimension), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            if not query:
                query = vectors[0].tolist()
            pipe = client.pipeline(transaction=False)
            for n in range(count):
                frame = start + n
                video, index = divmod(frame, FRAMES_PER_VIDEO)
                item = Item(
                    id=f"v{video:05}f{index:04}",
                    vector=vectors[n],
                    metadata=Metadata(
                        sources=(f"file:///films/{video:05}.mp4",),
                        media_type=MediaType.VIDEO_FRAME,
                        timestamp_seconds=float(index),
                        frame_index=index,
                        width=1920,
                        height=1080,
                        content_hash=f"{video:064x}",
                        frame_interval_seconds=1.0,
                    ),
                )
                sources, fields = item_fields(item, config.dimension, "frame", NUMPY_TYPES[config.vector_type])
                pipe.hset(
                    config.key_prefix + item.id,
                    mapping=dict(zip(fields[::2], fields[1::2], strict=True)) | {F_SOURCES: sources[0]},
                )
            pipe.execute()
        args = schema.create_args()
        schema_at = args.index("SCHEMA")
        client.execute_command(*args[:schema_at], "SKIPINITIALSCAN", *args[schema_at:])
    return query


def _stop(local: LocalRedis, config: SearchConfig, mode: str) -> float:
    """Stops Redis as each mode leaves it; returns the seconds the clean stop took (the service's and Redis's).

    index-at-load: the AOF rewritten with the index's definition in its RDB base, as a long-running library's
    is (Redis rewrites it as it grows), then SIGTERM. index-after-load: a search service owning this Redis
    stops (dropping the definition and rewriting the AOF, as the product does), then SIGTERM."""
    if mode == "index-at-load":
        with local.client(socket_timeout=600) as client:
            rewrite_aof(client, timeout=3600)
        started = time.monotonic()
    else:
        server = build_server(dataclasses.replace(config, redis_url=local.url), owns_redis=True)
        server.start()
        server.index.check()
        started = time.monotonic()
        server.stop(0)
    local.stop(timeout=600)
    return time.monotonic() - started


def _restart(
    local: LocalRedis, config: SearchConfig, query: list[float], give_up_seconds: float, say: Callable[[str], None]
) -> dict[str, Any]:
    reports: list[tuple[float, str]] = []
    started = time.monotonic()

    def on_loading(loading: RedisLoading) -> None:
        if not reports or time.monotonic() - started - reports[-1][0] >= 5:
            reports.append((round(time.monotonic() - started, 1), loading.message))
            say(f"  {reports[-1][0]:6.1f} s  {loading.message}")

    local.on_loading = on_loading
    starting = threading.Thread(target=local.start, name="redis-start")
    starting.start()
    server = build_server(dataclasses.replace(config, redis_url=local.url))
    server.start()
    first_answer = complete = None
    exact = False  # the complete answer came from the FLAT companion, the graph still being built
    memory_at_complete = None  # Redis's used_memory then: with the companion, its temporary share included
    partial_reports: list[tuple[float, float]] = []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = search_pb2_grpc.SearchStub(channel)
            while time.monotonic() - started < give_up_seconds:
                try:
                    response = stub.Query(pb.QueryRequest(vector=query, k=10), timeout=60)
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    time.sleep(_POLL_SECONDS)
                    continue
                now = time.monotonic() - started
                if first_answer is None:
                    first_answer = now
                    say(f"  {now:6.1f} s  first answer{' (partial)' if response.partial else ''}")
                if not response.partial:
                    complete, exact = now, server.index.read_index != server.index.schema.name
                    memory_at_complete = int(server.index.client.info("memory")["used_memory"])
                    say(f"  {now:6.1f} s  complete{' (exact, from the FLAT companion)' if exact else ''}")
                    break
                if not partial_reports or now - partial_reports[-1][0] >= 5:
                    partial_reports.append((round(now, 1), round(response.percent_indexed, 1)))
                    say(f"  {now:6.1f} s  partial results ({response.percent_indexed:.0f}% indexed)")
                time.sleep(_POLL_SECONDS)
    finally:
        server.stop(0)
        starting.join()
    redis_ready = _ready_at(reports, started, local)
    return {
        "redis_ready_seconds": redis_ready,
        "first_answer_seconds": None if first_answer is None else round(first_answer, 1),
        "complete_seconds": None if complete is None else round(complete, 1),
        "complete_from_companion": exact,
        "redis_memory_at_complete_bytes": memory_at_complete,
        "loading_reports": reports,
        "partial_reports": partial_reports,
    }


def _ready_at(reports: list[tuple[float, str]], started: float, local: LocalRedis) -> float | None:
    """When Redis finished loading, from its log's "DB loaded from append only file" line."""
    try:
        text = local.log_file.read_text(errors="replace")
    except OSError:
        return None
    for line in reversed(text.splitlines()):
        if "DB loaded from append only file" in line and "seconds" in line:
            return float(line.rsplit(": ", 1)[1].split()[0])
    return None


def format_result(result: dict[str, Any]) -> str:
    """The figures beside their goals, and the ceiling where a goal is missed."""
    first, complete = result["first_answer_seconds"], result["complete_seconds"]
    lines = [
        f"restart of {result['frames']:,} frames ({result['mode']}), load average {result['load_average']}:",
        f"  stopped in {result['stop_seconds']} s; Redis loaded its data in {result['redis_ready_seconds']} s",
        f"  first answer after {first} s (goal {GOAL_FIRST_ANSWER_SECONDS:.0f} s: {_verdict(first, GOAL_FIRST_ANSWER_SECONDS)})",
        f"  complete results after {complete} s (goal {GOAL_COMPLETE_SECONDS:.0f} s: {_verdict(complete, GOAL_COMPLETE_SECONDS)})"
        + (
            ", exact, from the FLAT companion while the graph is built" if result.get("complete_from_companion") else ""
        ),
        f"  reports: {'; '.join(f'{t} s {m}' for t, m in result['loading_reports']) or 'none'}",
    ]
    if result["partial_reports"]:
        lines.append("  partial answers: " + "; ".join(f"{t} s {p}%" for t, p in result["partial_reports"]))
    return "\n".join(lines)


def _verdict(seconds: float | None, goal: float) -> str:
    return "met" if seconds is not None and seconds <= goal else "missed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.restart", description=measure_restart.__doc__)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--dimension", type=int, default=512)
    parser.add_argument("--mode", choices=MODES, default="index-at-load")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--give-up", type=float, default=3600.0, metavar="SECONDS", help="stop querying after this long (3600)"
    )
    args = parser.parse_args(argv)
    result = measure_restart(args.frames, dimension=args.dimension, mode=args.mode, give_up_seconds=args.give_up)
    print(format_result(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    raise SystemExit(main())

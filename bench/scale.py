"""A library of N video frames on one machine: memory, ingest, query latency, moments and recall against exact.

python -m bench.scale [--frames N] [--queries Q] [--json FILE]

Stores N film-like 512-d frames (bench.films: 1,000 a film, shots that drift, cuts between) through
Search.Upsert in batches of 1,000 into its own Redis and search service, then prints each figure beside its
goal and, where a goal is missed, the best measured beside it: upserts/s, Redis bytes per frame (and the vector
index's share), plain and moments query p50/p99 over gRPC, recall@10 and first-film agreement against exact
search over the same stored vectors (film-like, and Gaussian blobs as the earlier figure), query p99 while
ingest runs at full speed against idle, the longest Lua script (SLOWLOG), and the restart (bench.restart).
It first says how much memory the run needs and refuses when the machine has less available.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench import films as F
from bench.common import load_average, percentile_ms, ratio
from bench.restart import GOAL_COMPLETE_SECONDS, GOAL_FIRST_ANSWER_SECONDS, measure_restart
from client.ids import frame_id
from clipsearch.testing.processes import DEPLOYED_SEARCH_SETTINGS, search_process
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service.info import parse_info
from search_service.redis_server import LocalRedis
from search_service.schema import NUMPY_TYPES

GOAL_BYTES_PER_FRAME = 3300
GOAL_RECALL = 0.95  # film-like, at the latency goals
GOAL_FIRST_FILM = 0.99
GOAL_BLOB_RECALL = 0.99  # of the vector type's effect: blobs, as the earlier figure
GOAL_MOMENTS_P50 = 1.5  # moments p50 over plain p50
GOAL_MOMENTS_P99 = 2.0
GOAL_INGEST_P99 = 2.0  # plain p99 while ingesting over idle p99
BATCH = 1000
EF_SWEEP = (100, 200, 400, 800, 1600, 3200)
BLOB_FRAMES = 100_000
# Memory a frame costs, with margins: Redis (about 3.3-4 kB stored FLOAT16, more while HNSW grows), this
# process's copy of the vectors for exact search (1 kB) and the query processes.
REDIS_BYTES_PER_FRAME = {"float16": 4500, "float32": 7500}
BENCH_BYTES_PER_FRAME = 1200
FIXED_BYTES = 1 << 30


def needed_bytes(frames: int, blob_frames: int, vector_type: str) -> int:
    return FIXED_BYTES + (frames + blob_frames) * (REDIS_BYTES_PER_FRAME[vector_type] + BENCH_BYTES_PER_FRAME)


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def item(film: int, frame: int, vector: np.ndarray) -> pb.Item:
    # Ids as `clipsearch index` makes them (their length counts in Redis, twice), the film's number in front
    # so that the bench can tell a result's film and frame.
    return pb.Item(
        id=f"{frame_id('films', f'{film:064x}', float(frame))}~{film}-{frame}",
        vector=vector.tolist(),
        metadata=pb.Metadata(
            sources=[f"file:///library/films/film-{film:05d}/film-{film:05d}.mkv"],
            media_type=pb.MEDIA_TYPE_VIDEO_FRAME,
            collection="films",
            content_hash=f"{film:064x}",
            timestamp_seconds=float(frame),
            frame_index=frame * 24,
            width=1920,
            height=1080,
            frame_interval_seconds=1.0,
        ),
    )


def row_of(item_id: str) -> int:
    film, frame = item_id.rsplit("~", 1)[1].split("-")
    return int(film) * F.FRAMES_PER_FILM + int(frame)


# --- queries in another process, so that this one's ingest work does not delay them -----------------------


def _query_loop(address: str, vectors: np.ndarray, stop: Any, out: Any) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        times: list[tuple[float, float]] = []
        n = 0
        while not stop.is_set():
            vector = vectors[n % len(vectors)].tolist()
            started = time.perf_counter()
            stub.Query(pb.QueryRequest(vector=vector, k=10), timeout=60)
            times.append((time.time(), time.perf_counter() - started))
            n += 1
            time.sleep(0.005)  # a user's pace, not a load test
        out.put(times)


class QueryLoad:
    """Plain queries at a steady pace from a process of their own, timed with their wall-clock start."""

    def __init__(self, address: str, vectors: np.ndarray) -> None:
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        self._out = ctx.Queue()
        self._process = ctx.Process(target=_query_loop, args=(address, vectors, self._stop, self._out), daemon=True)
        self._process.start()

    def finish(self) -> list[tuple[float, float]]:
        self._stop.set()
        times: list[tuple[float, float]] = self._out.get(timeout=120)
        self._process.join(30)
        return times


# --- phases ----------------------------------------------------------------------------------------------


def ingest(
    stub: search_pb2_grpc.SearchStub, numbers: range, vector_of: Callable[[int], np.ndarray], stored: np.ndarray
) -> dict[str, float]:
    """Upserts the films `numbers` (vector_of(number)), a batch a film; keeps each as the index stores it."""
    upsert_seconds = 0.0
    started = time.perf_counter()
    for film in numbers:
        vectors = vector_of(film)
        stored[film * F.FRAMES_PER_FILM : (film + 1) * F.FRAMES_PER_FILM] = vectors.astype(stored.dtype)
        request = pb.UpsertRequest(items=[item(film, j, v) for j, v in enumerate(vectors)])
        call = time.perf_counter()
        stub.Upsert(request, timeout=600)
        upsert_seconds += time.perf_counter() - call
    frames = len(numbers) * F.FRAMES_PER_FILM
    if not frames:
        return {}
    return {
        "frames": frames,
        "upserts_per_s": round(frames / upsert_seconds, 1),
        "wall_upserts_per_s": round(frames / (time.perf_counter() - started), 1),
    }


def wait_indexed(stub: search_pb2_grpc.SearchStub) -> pb.StatsResponse:
    while True:
        stats: pb.StatsResponse = stub.Stats(pb.StatsRequest(), timeout=120)
        if not stats.indexing:
            return stats
        time.sleep(0.5)


def timed_queries(
    stub: search_pb2_grpc.SearchStub, vectors: np.ndarray, rounds: int, ef_runtime: int = 0
) -> dict[str, Any]:
    """Plain and moments k=10 queries interleaved (the same load for both), and each plain query's ids."""
    plain: list[float] = []
    moments: list[float] = []
    ids: list[list[str]] = []
    for r in range(rounds):
        for vector in vectors:
            values = vector.tolist()
            started = time.perf_counter()
            reply = stub.Query(pb.QueryRequest(vector=values, k=10, ef_runtime=ef_runtime), timeout=60)
            plain.append(time.perf_counter() - started)
            if r == 0:
                ids.append([m.item.id for m in reply.matches])
            request = pb.QueryRequest(vector=values, k=10, ef_runtime=ef_runtime)
            request.moments.SetInParent()
            started = time.perf_counter()
            stub.Query(request, timeout=60)
            moments.append(time.perf_counter() - started)
    return {
        "plain_p50_ms": percentile_ms(plain, 50),
        "plain_p99_ms": percentile_ms(plain, 99),
        "moments_p50_ms": percentile_ms(moments, 50),
        "moments_p99_ms": percentile_ms(moments, 99),
        "ids": ids,
    }


def agreement(ids: Sequence[Sequence[str]], exact: np.ndarray, film_of: Callable[[int], int]) -> dict[str, float]:
    """recall@10 against exact, and how often the first result's film is the exact first result's film."""
    recall = [
        len({row_of(i) for i in got} & set(want.tolist())) / len(want) for got, want in zip(ids, exact, strict=True)
    ]
    first = [
        bool(got) and film_of(row_of(got[0])) == film_of(int(want[0])) for got, want in zip(ids, exact, strict=True)
    ]
    return {"recall_at_10": round(float(np.mean(recall)), 4), "first_film_agrees": round(float(np.mean(first)), 4)}


def where_bytes_go(client: Any, index: str, frames: int, bytes_per_frame: int) -> dict[str, int]:
    """A frame's bytes by part: its key and HASH (MEMORY USAGE of 200 sampled items), what FT.INFO reports
    (vector index, document table, key table, the other indexes), and the rest, allocated unreported."""
    keys: list[bytes] = []
    cursor = 0
    while len(keys) < 200:
        cursor, found = client.scan(cursor, match=f"{index}:item:*", count=1000)
        keys += found
        if cursor == 0:
            break
    sampled = [int(client.memory_usage(k, samples=0) or 0) for k in keys[:200]]
    info = parse_info(client.execute_command("FT.INFO", index))

    def per_frame(field: str) -> int:
        return round(float(info.get(field, 0) or 0) * 2**20 / frames)

    parts = {
        "key_and_hash": round(sum(sampled) / max(1, len(sampled))),
        "vector_index": per_frame("vector_index_sz_mb"),
        "document_table": per_frame("doc_table_size_mb"),
        "key_table": per_frame("key_table_size_mb"),
        "other_indexes": per_frame("total_index_memory_sz_mb")
        - per_frame("doc_table_size_mb")
        - per_frame("key_table_size_mb"),
    }
    return parts | {"unreported": bytes_per_frame - sum(parts.values())}


def slow_scripts(client: Any) -> dict[str, float]:
    """Of the Lua scripts (EVAL/EVALSHA) SLOWLOG recorded (those over 1 ms): the longest and how many took
    over 10 ms, and over 100 ms."""
    durations = []
    for entry in client.slowlog_get(100_000):
        command = entry.get("command", b"")
        name = (command if isinstance(command, bytes) else str(command).encode()).split(b" ")[0].upper()
        if name in (b"EVALSHA", b"EVAL", b"FCALL"):
            durations.append(int(entry["duration"]) / 1000)
    return {
        "slowest_script_ms": round(max(durations, default=0.0), 2),
        "scripts_over_10_ms": sum(d > 10 for d in durations),
        "scripts_over_100_ms": sum(d > 100 for d in durations),
    }


def restart_figures(frames: int, workdir: Path) -> dict[str, Any]:
    """The restart as the service does it after a clean stop (index after load), at `frames` frames."""
    if frames <= 0:
        return {"note": "not measured in this run (--restart-frames 0); python -m bench.restart --frames N does"}
    try:
        return dict(measure_restart(frames, mode="index-after-load", workdir=workdir))
    except Exception as e:  # noqa: BLE001  # a failing restart measurement is reported, the rest stands
        return {"note": f"the restart measurement failed: {e}"}


# --- the run ---------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    films = max(1, args.frames // F.FRAMES_PER_FILM)
    blob_films = max(1, min(args.blob_frames, args.frames) // F.FRAMES_PER_FILM)
    frames = films * F.FRAMES_PER_FILM
    dtype = np.float16 if args.vector_type == "float16" else np.float32
    results: dict[str, Any] = {"frames": frames, "vector_type": args.vector_type, "load_before": load_average()}
    redis_server = LocalRedis(workdir / "redis").start()
    client = redis_server.client()
    services = []
    try:
        client.config_set("slowlog-log-slower-than", "1000")
        client.config_set("slowlog-max-len", "100000")
        env = {
            "SEARCH_VECTOR_TYPE": args.vector_type,
            "SEARCH_REDIS_TIMEOUT_SECONDS": "600",
            **DEPLOYED_SEARCH_SETTINGS,
        }
        service = search_process(redis_server.url, F.DIMENSION, workdir, index="films", extra=env)
        services.append(service)
        service.start().wait_serving()
        channel = grpc.insecure_channel(service.address, options=[("grpc.max_send_message_length", 64 << 20)])
        stub = search_pb2_grpc.SearchStub(channel)
        rng = np.random.default_rng(3)
        stored = np.empty((frames, F.DIMENSION), dtype=dtype)
        # Query vectors are drawn from the first films: known before the ingest that they run during.
        early = np.concatenate([F.film(n).vectors for n in range(min(films, 20))])
        load_vectors = F.queries(rng, early[rng.integers(0, len(early), 200)])
        base_memory = int(client.info("memory")["used_memory"])
        client.slowlog_reset()

        half = films // 2
        results["ingest_first_half"] = ingest(stub, range(half), lambda n: F.film(n).vectors, stored)
        load = QueryLoad(service.address, load_vectors)
        during_started = time.time()
        # The second half goes in while a user queries: its rate is the one reported (the larger index).
        results["ingest"] = ingest(stub, range(half, films), lambda n: F.film(n).vectors, stored)
        during_ended = time.time()
        during = [t for at, t in load.finish() if during_started <= at <= during_ended]
        stats = wait_indexed(stub)
        results |= slow_scripts(client)
        # The bench's own SLOWLOG (100,000 entries of about 2.5 kB each: the scripts' arguments) is not the
        # library's memory; a Redis at its defaults keeps 128.
        client.slowlog_reset()
        used = int(client.info("memory")["used_memory"]) - base_memory
        results["bytes_per_frame"] = used // frames
        results["vector_index_bytes_per_frame"] = stats.vector_index_memory_bytes // frames
        results["bytes_by_part"] = where_bytes_go(client, "films", frames, results["bytes_per_frame"])
        results["items"] = stats.items
        idle_load = QueryLoad(service.address, load_vectors)
        time.sleep(max(5.0, min(60.0, (during_ended - during_started) / 4)))
        idle = [t for _, t in idle_load.finish()]
        results["during_ingest_p99_ms"] = percentile_ms(during, 99)
        results["idle_p99_ms"] = percentile_ms(idle, 99)
        results["during_vs_idle_p99"] = ratio(results["during_ingest_p99_ms"], results["idle_p99_ms"])
        results["queries_during_ingest"] = len(during)

        picks = rng.integers(0, frames, args.queries)
        query_vectors = F.queries(rng, stored[picks].astype(np.float32))
        exact = F.exact_top(query_vectors, stored, 10)
        film_of = lambda row: row // F.FRAMES_PER_FILM  # noqa: E731
        sweep: dict[str, Any] = {}
        for ef in (0, *EF_SWEEP):
            figures = timed_queries(stub, query_vectors, args.rounds if ef == 0 else 1, ef)
            figures |= agreement(figures.pop("ids"), exact, film_of)
            sweep[str(ef or "default")] = figures
        results["film"] = sweep
        results["film_default"] = sweep["default"]
        channel.close()

        blob_service = search_process(redis_server.url, F.DIMENSION, workdir, index="blobs", extra=env)
        blob_service.log_path = workdir / "search-blobs.log"
        services.append(blob_service)
        blob_service.start().wait_serving()
        with grpc.insecure_channel(blob_service.address) as blob_channel:
            blob_stub = search_pb2_grpc.SearchStub(blob_channel)
            blob_stored = np.empty((blob_films * F.FRAMES_PER_FILM, F.DIMENSION), dtype=dtype)
            results["blob_ingest"] = ingest(blob_stub, range(blob_films), F.blobs, blob_stored)
            wait_indexed(blob_stub)
            picks = rng.integers(0, len(blob_stored), args.queries)
            blob_queries = F.queries(rng, blob_stored[picks].astype(np.float32), noise=0.3)
            blob_exact = F.exact_top(blob_queries, blob_stored, 10)
            figures = timed_queries(blob_stub, blob_queries, 1)
            # A blob's "film" is the item itself: the first result must be the exact first result.
            results["blob"] = {"frames": len(blob_stored)} | agreement(figures.pop("ids"), blob_exact, lambda r: r)
    finally:
        for service in services:
            service.stop()
        client.close()
        redis_server.stop()
    results["float16_effect"] = F.float16_effect(min(films, 100))
    results["restart"] = restart_figures(
        frames if args.restart_frames is None else args.restart_frames, workdir / "restart"
    )
    results["load_after"] = load_average()
    return results


# --- the report ------------------------------------------------------------------------------------------


def _row(name: str, value: Any, goal: str, met: bool | None, ceiling: str = "") -> str:
    verdict = "no goal" if met is None else ("met" if met else "MISSED")
    return f"| {name} | {value} | {goal} | {verdict} | {'' if met in (True, None) else ceiling} |"


def table(r: dict[str, Any]) -> str:
    """Every figure beside its goal; where one is missed, the best this run measured beside it."""
    film = r["film_default"]
    sweep = {ef: f for ef, f in r["film"].items() if ef != "default"}
    best_ef, best = max(sweep.items(), key=lambda kv: (kv[1]["first_film_agrees"], kv[1]["recall_at_10"]))
    best_text = (
        f"EF_RUNTIME {best_ef}: recall {best['recall_at_10']}, first film {best['first_film_agrees']}, "
        f"p50/p99 {best['plain_p50_ms']}/{best['plain_p99_ms']} ms"
    )
    floor = r["vector_index_bytes_per_frame"] + F.DIMENSION * np.dtype(NUMPY_TYPES[r["vector_type"]]).itemsize
    moments50 = ratio(film["moments_p50_ms"], film["plain_p50_ms"]) or 0.0
    moments99 = ratio(film["moments_p99_ms"], film["plain_p99_ms"]) or 0.0
    during = r["during_vs_idle_p99"] or 0.0
    blob = r["blob"]
    restart = r["restart"]
    lines = [
        (
            f"{r['frames']:,} film-like frames, vectors {r['vector_type'].upper()}; load "
            f"{r['load_before']} before, {r['load_after']} after"
        ),
        "",
        "| figure | measured | goal | verdict | best measured (where missed) |",
        "|---|---|---|---|---|",
        _row(
            "upserts per second (second half, HNSW built as they arrive)", r["ingest"].get("upserts_per_s"), "-", None
        ),
        _row(
            "Redis bytes per frame (vector index's share)",
            f"{r['bytes_per_frame']:,} ({r['vector_index_bytes_per_frame']:,})",
            f"<= {GOAL_BYTES_PER_FRAME:,}",
            r["bytes_per_frame"] <= GOAL_BYTES_PER_FRAME,
            f"vectors alone (index + HASH copy): {floor:,} B",
        ),
        _row("plain query k=10 over gRPC, p50 / p99 ms", f"{film['plain_p50_ms']} / {film['plain_p99_ms']}", "-", None),
        _row(
            "moments query k=10, p50 / p99 ms",
            f"{film['moments_p50_ms']} / {film['moments_p99_ms']} ({moments50}x / {moments99}x plain)",
            f"<= {GOAL_MOMENTS_P50}x / {GOAL_MOMENTS_P99}x plain",
            moments50 <= GOAL_MOMENTS_P50 and moments99 <= GOAL_MOMENTS_P99,
            "see benchmarks.md: the candidate windows a long scene needs",
        ),
        _row(
            "film-like: recall@10 against exact",
            film["recall_at_10"],
            f">= {GOAL_RECALL}",
            film["recall_at_10"] >= GOAL_RECALL,
            best_text,
        ),
        _row(
            "film-like: first result's film agrees with exact",
            film["first_film_agrees"],
            f">= {GOAL_FIRST_FILM}",
            film["first_film_agrees"] >= GOAL_FIRST_FILM,
            best_text,
        ),
        _row(
            f"blobs ({blob['frames']:,}): recall@10 against exact",
            blob["recall_at_10"],
            f">= {GOAL_BLOB_RECALL}",
            blob["recall_at_10"] >= GOAL_BLOB_RECALL,
            f"first result agrees {blob['first_film_agrees']}",
        ),
        _row(
            "plain p99 during full-speed ingest / idle (ms)",
            f"{r['during_ingest_p99_ms']} / {r['idle_p99_ms']} ({during}x, {r['queries_during_ingest']} queries)",
            f"<= {GOAL_INGEST_P99}x",
            during <= GOAL_INGEST_P99,
            f"longest Lua script {r['slowest_script_ms']} ms",
        ),
        _row(
            "longest Lua script (SLOWLOG)",
            f"{r['slowest_script_ms']} ms ({r['scripts_over_10_ms']} over 10 ms, {r['scripts_over_100_ms']} over 100)",
            "-",
            None,
        ),
    ]
    if "note" in restart:
        lines.append(_row("after a restart: searches answered again", restart["note"], "<= 30 s", None))
    else:
        first, complete = restart["first_answer_seconds"], restart["complete_seconds"]
        lines += [
            _row(
                f"after a restart ({restart['frames']:,} frames): first answer, s",
                first,
                f"<= {GOAL_FIRST_ANSWER_SECONDS:.0f}",
                first is not None and first <= GOAL_FIRST_ANSWER_SECONDS,
                f"Redis loaded in {restart['redis_ready_seconds']} s",
            ),
            _row(
                "after a restart: complete (not partial) results, s",
                complete,
                f"<= {GOAL_COMPLETE_SECONDS:.0f}",
                complete is not None and complete <= GOAL_COMPLETE_SECONDS,
            ),
            _row(
                "after a restart: reports on the way",
                f"{len(restart['loading_reports'])} loading, {len(restart['partial_reports'])} partial answers",
                "-",
                None,
            ),
        ]
    effect = r["float16_effect"]
    lines.append(
        _row(
            f"FLOAT16's effect: exact top 10 kept over FLOAT32, film-like / blobs ({min(r['frames'], 100_000):,})",
            f"{effect['film_top10_kept']} / {effect['blob_top10_kept']} (first result kept "
            f"{effect['film_first_kept']} / {effect['blob_first_kept']}; cosines moved <= "
            f"{max(effect['film_max_cosine_change'], effect['blob_max_cosine_change'])})",
            "-",
            None,
        )
    )
    parts = r.get("bytes_by_part", {})
    if parts:
        named = ", ".join(f"{k.replace('_', ' ').replace('hash', 'HASH')} {v:,}" for k, v in parts.items())
        lines += ["", f"Where a frame's bytes go (B): {named}"]
    lines += ["", "EF_RUNTIME per query (film-like): recall@10, first film, plain p50/p99 ms"]
    lines += [
        f"  {ef}: {f['recall_at_10']}, {f['first_film_agrees']}, {f['plain_p50_ms']}/{f['plain_p99_ms']}"
        for ef, f in r["film"].items()
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="film-like frames to store (1,000 a film)")
    parser.add_argument("--blob-frames", type=int, default=BLOB_FRAMES, help="Gaussian-blob frames (at most --frames)")
    parser.add_argument("--queries", type=int, default=200, help="query vectors (recall and latency)")
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds over the queries at the default EF")
    parser.add_argument("--vector-type", choices=("float16", "float32"), default="float16")
    parser.add_argument("--workdir", type=Path, help="Redis data and logs (default: a temporary directory)")
    parser.add_argument(
        "--restart-frames", type=int, metavar="N", help="frames of the restart measurement (default --frames; 0 skips)"
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.frames < F.FRAMES_PER_FILM:
        print(f"--frames must be at least {F.FRAMES_PER_FILM} (one film)", file=sys.stderr)
        return 2
    need = needed_bytes(args.frames, min(args.blob_frames, args.frames), args.vector_type)
    have = available_bytes()
    print(f"this run needs about {need / 2**30:.1f} GiB of memory; {have / 2**30:.1f} GiB is available", flush=True)
    if need > have:
        per_frame = REDIS_BYTES_PER_FRAME[args.vector_type] + BENCH_BYTES_PER_FRAME
        fits = max(0, (have - FIXED_BYTES) // per_frame - min(args.blob_frames, args.frames)) // 1000 * 1000
        print(
            f"not enough memory for {args.frames:,} frames: free some, or run with --frames {fits:,} or fewer",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = run(args, workdir)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

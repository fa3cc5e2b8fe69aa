"""The search service's per-call cost on grpc's sync server against grpc.aio, beside the bare FT.SEARCH.

python -m bench.search_servers [--items 10000 100000] [--queries 300] starts one Redis and, over one index,
the search service as it runs (sync server, thread pool, its interceptors) and grpc.aio servers of the same
servicer: handlers as coroutines calling it in the event loop, on asyncio.to_thread, or left synchronous
(grpc.aio's migration thread pool). Each query goes to every server and straight to Redis in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.common import load_average
from bench.query import CLUSTERS, DIMENSION, WARMUP, K, clustered, direct_query, load
from clipsearch.testing.processes import base_env
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service.config import SearchConfig
from search_service.redis_server import LocalRedis, free_port
from search_service.resolve import adaptive_ef
from search_service.schema import NUMPY_TYPES
from search_service.server import build_index, build_server, connect
from search_service.servicer import SearchServicer

MODES = ("sync", "aio", "aio-thread", "aio-sync")
METHODS = ("Upsert", "Query", "Get", "List", "Delete", "Stats")
INDEX = "servers"


def _config(redis_url: str, port: int) -> SearchConfig:
    return SearchConfig(
        host="127.0.0.1",
        port=port,
        redis_url=redis_url,
        index_name=INDEX,
        key_prefix=f"{INDEX}:item:",
        dimension=DIMENSION,
        redis_timeout_seconds=300,
    )


def _aio_servicer(servicer: SearchServicer, mode: str) -> search_pb2_grpc.SearchServicer:
    """The servicer's methods as grpc.aio handlers of the given kind."""

    def wrap(method: Callable[[Any, Any], Any]) -> Callable[..., Any]:
        if mode == "aio":

            async def inline(_self: object, request: Any, context: Any) -> Any:
                return method(request, context)

            return inline
        if mode == "aio-thread":

            async def threaded(_self: object, request: Any, context: Any) -> Any:
                return await asyncio.to_thread(method, request, context)

            return threaded

        def plain(_self: object, request: Any, context: Any) -> Any:
            return method(request, context)

        return plain

    namespace = {name: wrap(getattr(servicer, name)) for name in METHODS}
    return type("AioSearch", (search_pb2_grpc.SearchServicer,), namespace)()  # type: ignore[no-any-return]


def serve(mode: str, redis_url: str, port: int) -> None:
    """Runs one server until killed; prints "ready" once it listens."""
    config = _config(redis_url, port)
    index = build_index(config, connect(redis_url, 300), "bench")
    if mode == "sync":
        server = build_server(config, index)
        server.start()
        server.set_serving(True)
        print("ready", flush=True)
        server.wait_for_termination()
        return

    async def run() -> None:
        aio = grpc.aio.server(migration_thread_pool=futures.ThreadPoolExecutor(16))
        search_pb2_grpc.add_SearchServicer_to_server(_aio_servicer(SearchServicer(index), mode), aio)
        aio.add_insecure_port(f"127.0.0.1:{port}")
        await aio.start()
        print("ready", flush=True)
        await aio.wait_for_termination()

    asyncio.run(run())


def measure(items: int, queries: int, workdir: Path) -> dict[str, Any]:
    local = LocalRedis(workdir / f"redis-{items}", appendfsync="everysec")
    local.start()
    servers: dict[str, tuple[subprocess.Popen[str], str]] = {}
    try:
        for mode in MODES:
            port = free_port()
            command = [sys.executable, "-m", "bench.search_servers", "--serve", mode, local.url, str(port)]
            process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=base_env())
            servers[mode] = (process, f"127.0.0.1:{port}")
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {mode} server did not start")
        rng = np.random.default_rng(7)
        centers = rng.standard_normal((CLUSTERS, DIMENSION), dtype=np.float32)
        channels = {mode: grpc.insecure_channel(address) for mode, (_, address) in servers.items()}
        stubs = {mode: search_pb2_grpc.SearchStub(channel) for mode, channel in channels.items()}
        load(stubs["sync"], clustered(rng, centers, items))
        probes = clustered(rng, centers, queries + WARMUP)
        times: dict[str, list[float]] = {mode: [] for mode in (*MODES, "direct", "empty")}
        # The ceiling: an empty call (a health check) to the sync server, what any gRPC call costs here.
        health = health_pb2_grpc.HealthStub(channels["sync"])
        # Both sides run the same search: the EF_RUNTIME the service picks for a query that names none.
        ef = adaptive_ef(items, SearchConfig().hnsw_ef_runtime)
        with redis.Redis.from_url(local.url) as client:
            for n, probe in enumerate(probes):
                request = pb.QueryRequest(vector=probe.tolist(), k=K, ef_runtime=ef)
                for mode in MODES:
                    started = time.perf_counter()
                    reply = stubs[mode].Query(request, timeout=60)
                    elapsed = time.perf_counter() - started
                    if len(reply.matches) != K:
                        raise RuntimeError(f"the {mode} server returned {len(reply.matches)} matches")
                    if n >= WARMUP:
                        times[mode].append(elapsed)
                started = time.perf_counter()
                direct_query(client, INDEX, probe, ef, NUMPY_TYPES[_config(local.url, 0).vector_type])
                if n >= WARMUP:
                    times["direct"].append(time.perf_counter() - started)
                started = time.perf_counter()
                health.Check(health_pb2.HealthCheckRequest(service=""), timeout=60)
                if n >= WARMUP:
                    times["empty"].append(time.perf_counter() - started)
        for channel in channels.values():
            channel.close()
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(30)
        local.stop()
    p50 = {mode: statistics.median(values) * 1000 for mode, values in times.items()}
    return {
        "items": items,
        "queries": queries,
        "ef_runtime": ef,
        "p50_ms": {mode: round(value, 3) for mode, value in p50.items()},
        "vs_direct_p50": {mode: round(p50[mode] / p50["direct"], 2) for mode in MODES},
        "ceiling": round((p50["empty"] + p50["direct"]) / p50["direct"], 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search_servers", description=__doc__)
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--serve", nargs=3, metavar=("MODE", "REDIS_URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], args.serve[1], int(args.serve[2]))
        return 0
    start = load_average()
    with tempfile.TemporaryDirectory(prefix="clipsearch-servers-") as scratch:
        for items in args.items:
            figures = measure(items, args.queries, Path(scratch))
            for mode in (*MODES, "direct"):
                ratio = figures["vs_direct_p50"].get(mode, 1.0)
                print(f"{items} items, {mode}: p50 {figures['p50_ms'][mode]} ms = {ratio}x the bare FT.SEARCH")
            print(
                f"{items} items, EF_RUNTIME {figures['ef_runtime']} on both sides: goal <= 1.5x; ceiling (an empty "
                f"gRPC call {figures['p50_ms']['empty']} ms + the bare FT.SEARCH) {figures['ceiling']}x"
            )
    print(f"load average: start {start}, end {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`clipsearch serve` restarted on a library that loads for longer than the limits: waited for, reported, searched."""

from __future__ import annotations

import argparse
import io
import os
import signal
import time
from pathlib import Path

import grpc
import numpy as np
import redis

from client import serve
from client.cli.serve import add_arguments
from client.serve.children import redis_spec
from client.serve.process import SERVICE_GRACE_SECONDS, Child, OutputRelay
from client.serve.supervisor import TICK_SECONDS
from clipsearch.testing.probes import wait_for
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service.redis_server import LocalRedis
from tests.support.e2e import start_serve
from tests.support.search import write_filler

# A real Redis setting from its own test suite (a delay per key loaded, in microseconds), and progress
# reported every KiB: the library below then loads for about 20 s, ten times the stall limit given to serve.
SLOW_LOAD = "key-load-delay 2000;loading-process-events-interval-bytes 1024"
FILLER_KEYS = 10_000
STALL_SECONDS = "2"


def test_serve_restarted_on_a_slowly_loading_library_waits_reports_and_searches(
    tmp_path: Path, tiny_clip_dir: Path
) -> None:
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
    first = start_serve(tmp_path / "first", tiny_clip_dir, "--data-dir", str(tmp_path / "data"))
    try:
        first.wait_ready()
        vectors = np.random.default_rng(11).standard_normal((20, 32), dtype=np.float32)
        with grpc.insecure_channel(first.search_address) as channel:
            search_pb2_grpc.SearchStub(channel).Upsert(
                pb.UpsertRequest(
                    items=[
                        pb.Item(id=f"frame{n}", vector=v.tolist(), metadata=pb.Metadata(sources=[f"file:///f/{n}"]))
                        for n, v in enumerate(vectors)
                    ]
                )
            )
        with redis.Redis.from_url(first.ready["redis_url"]) as client:
            rng = np.random.default_rng(12)
            pipe = client.pipeline(transaction=False)
            for n in range(FILLER_KEYS):
                pipe.hset(f"filler:{n}", "v", rng.bytes(1024))
            pipe.execute()
            client.bgrewriteaof()  # into the AOF's RDB base, where the per-key delay applies
            wait_for(lambda: not client.info("persistence")["aof_rewrite_in_progress"] or None, 60, "AOF rewrite")
            time.sleep(0.5)
    finally:
        assert first.stop(signal.SIGTERM) == 0, first.log[-3000:]
    # serve's clean stop: the search service dropped its index's definition and rewrote the AOF before
    # serve stopped Redis, so the next start loads the items alone.
    assert "index after load: dropped the definition of index " in first.log, first.log[-3000:]

    env = {**os.environ, "SEARCH_REDIS_CONFIG": SLOW_LOAD, "SEARCH_REDIS_STALL_SECONDS": STALL_SECONDS}
    started = time.monotonic()
    second = start_serve(tmp_path / "second", tiny_clip_dir, "--data-dir", str(tmp_path / "data"), env=env)
    try:
        second.wait_ready()
        took = time.monotonic() - started
        reports = [line for line in second.log.splitlines() if "| Loading the library: " in line]
        assert reports, second.log[-3000:]
        assert took > 3 * float(STALL_SECONDS), f"the library loaded in {took:.1f}s: too quickly to test the wait"
        percents = [int(line.split("Loading the library: ")[1].split("%")[0]) for line in reports]
        assert percents == sorted(percents)
        assert "did not become ready" not in second.log and "stopped loading" not in second.log
        with grpc.insecure_channel(second.search_address) as channel:
            stub = search_pb2_grpc.SearchStub(channel)

            def complete() -> pb.QueryResponse | None:
                response = stub.Query(pb.QueryRequest(vector=vectors[7].tolist(), k=1), timeout=30)
                return None if response.partial else response  # the index fills after the load

            assert wait_for(complete, 60, "the index never finished filling").matches[0].item.id == "frame7"
            assert not stub.Stats(pb.StatsRequest(), timeout=30).loading
        assert "again, as it was before the restart" in second.log, second.log[-3000:]
    finally:
        assert second.stop(signal.SIGTERM) == 0, second.log[-3000:]


def test_a_start_timeout_far_below_the_load_does_not_cut_it(tmp_path: Path) -> None:
    with LocalRedis(tmp_path / "redis") as local, local.client() as client:
        write_filler(client, 4000, seed=13)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--embedder-port", "0", "--search-port", "0", "--data-dir", str(tmp_path)])
    env = {**os.environ, "SEARCH_REDIS_CONFIG": SLOW_LOAD, "SEARCH_REDIS_STALL_SECONDS": STALL_SECONDS}
    env.pop("REDIS_URL", None)
    config = serve.build_config(args, env)
    output = io.StringIO()
    start_timeout = 2.0
    child = Child(redis_spec(config), OutputRelay(output), start_timeout=start_timeout)
    child.spawn()
    started = time.monotonic()
    try:
        while child.tick() != "serving":
            assert time.monotonic() - started < 600, output.getvalue()[-2000:]
            time.sleep(TICK_SECONDS)
    finally:
        child.stop(SERVICE_GRACE_SECONDS)
    assert time.monotonic() - started > 2 * start_timeout, "the library loaded too quickly to test the limit"
    assert "redis      | Loading the library: " in output.getvalue()

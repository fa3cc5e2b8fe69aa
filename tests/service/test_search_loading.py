"""A library coming back after a restart: Redis loading (waited for, reported), then the index filling (partial)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis
from google.rpc import error_details_pb2
from grpc_status import rpc_status as grpc_rpc_status

from client import Client
from client.cli import main
from client.errors import LibraryLoading
from clipsearch import rpc_status
from clipsearch.testing.probes import wait_for
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service.loading import RedisLoading, describe
from search_service.redis_server import LocalRedis, LocalRedisError
from tests.support.search import (
    NOT_SERVING,
    SERVING,
    SearchServerFactory,
    assert_partial_while_filling,
    make_item,
    random_vectors,
    wait_for_health,
    write_filler,
)

# Real Redis settings from its own test suite: a delay per key loaded (microseconds), and progress reported
# (and clients answered) every KiB instead of every 2 MiB, so a small library loads slowly enough to watch.
SLOW_LOAD = ("key-load-delay 1500", "loading-process-events-interval-bytes 1024")


def test_the_loading_message_says_how_far_and_how_long() -> None:
    assert describe(43.2, 118) == "Loading the library: 43%, about 2 min left"
    assert describe(43.2, 40) == "Loading the library: 43%, about 40 s left"
    assert describe(99.9, 3) == "Loading the library: 99%, about 3 s left"
    assert describe(7, None) == "Loading the library: 7%"
    assert describe(50, 3900) == "Loading the library: 50%, about 1 h 5 min left"


def test_a_load_that_progresses_is_waited_for_and_reported(redis_data_dir: Path) -> None:
    with LocalRedis(redis_data_dir) as local, local.client() as client:
        write_filler(client, 3000)
    reports: list[RedisLoading] = []
    # A stall limit far below the load's length: only progress keeps the wait going.
    slow = LocalRedis(redis_data_dir, stall_timeout=1.5, extra_config=SLOW_LOAD, on_loading=reports.append)
    started = time.monotonic()
    with slow:
        took = time.monotonic() - started
        with slow.client() as client:
            assert client.dbsize() == 3000
    assert took > 3.0, f"the load took {took:.1f}s: too quick to show the wait"
    percents = [r.percent for r in reports]
    assert len(percents) >= 3 and percents == sorted(percents) and 0 < percents[0] < percents[-1] < 100
    assert all(r.message.startswith(f"Loading the library: {int(r.percent)}%") for r in reports)


def test_a_load_that_stalls_is_given_up(redis_data_dir: Path) -> None:
    with LocalRedis(redis_data_dir) as local, local.client() as client:
        write_filler(client, 3000)
    stalled = LocalRedis(redis_data_dir, stall_timeout=1.0, extra_config=SLOW_LOAD)

    def freeze(loading: RedisLoading) -> None:
        # The server stops making progress (frozen, as a stuck disk would leave it) after its first report.
        assert stalled.pid is not None
        os.kill(stalled.pid, signal.SIGSTOP)

    stalled.on_loading = freeze
    with pytest.raises(LocalRedisError, match="stopped loading its data: nothing more loaded in 1 s"):
        stalled.start()
    assert not stalled.is_running()


def test_the_service_on_a_loading_redis_says_how_far_then_serves(
    search_server_factory: SearchServerFactory, redis_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with LocalRedis(redis_data_dir) as local:
        running = search_server_factory(redis_url=local.url)
        vectors = random_vectors(20, seed=3)
        with grpc.insecure_channel(running.address) as channel:
            stub = search_pb2_grpc.SearchStub(channel)
            stub.Upsert(pb.UpsertRequest(items=[make_item(f"i{n}", v) for n, v in enumerate(vectors)]))
            with local.client() as client:
                write_filler(client, 6000)
            local.stop()
            local.extra_config = SLOW_LOAD
            starting = threading.Thread(target=local.start)
            starting.start()
            try:
                wait_for_health(running.address, NOT_SERVING)
                stats = wait_for(lambda: _loading_stats(stub), 30, "Stats never reported the load")
                assert 0 <= stats.loading_percent < 100
                assert stats.loading_message.startswith("Loading the library: ")
                with pytest.raises(grpc.RpcError) as error:
                    stub.Query(pb.QueryRequest(vector=vectors[0], k=1))
                assert error.value.code() == grpc.StatusCode.UNAVAILABLE
                assert (error.value.details() or "").startswith("Loading the library: ")
                assert rpc_status.reason_of(error.value) == rpc_status.INDEX_LOADING
                assert 0 <= float(_error_info(error.value).metadata["percent"]) < 100
                # The Python client says how far at once instead of retrying until its deadline.
                assert main(["stats", "--search", running.address]) == 0
                assert capsys.readouterr().out.startswith("Loading the library: ")
                with Client("127.0.0.1:1", running.address, timeout=60) as client:
                    assert client.stats().loading_message.startswith("Loading the library: ")
                    asked = time.monotonic()
                    with pytest.raises(LibraryLoading, match=r"^Loading the library: \d+%.*try again once it is"):
                        client.search_vector(vectors[0])
                    assert time.monotonic() - asked < 30
                with local.client() as client:  # Redis takes CONFIG while loading: the rest loads at full speed
                    client.config_set("key-load-delay", 0)
            finally:
                starting.join()
            wait_for_health(running.address, SERVING)
            response = stub.Query(pb.QueryRequest(vector=vectors[4], k=1))
            assert response.matches[0].item.id == "i4"
            assert not stub.Stats(pb.StatsRequest()).loading


def _error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = grpc_rpc_status.from_call(error)  # type: ignore[arg-type]  # a failed call is a grpc.Call
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


def _loading_stats(stub: search_pb2_grpc.SearchStub) -> pb.StatsResponse | None:
    try:
        stats = stub.Stats(pb.StatsRequest())
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.UNAVAILABLE:  # before the service noticed the restart
            raise
        return None
    return stats if stats.loading else None


def test_searches_are_partial_while_the_index_fills(search_server_factory: SearchServerFactory, redis_url: str) -> None:
    # Items written before the index exists (as after a restart that loaded them without it): RediSearch
    # indexes them in the background while the service already answers.
    dimension, count = 512, 4000
    vectors = np.random.default_rng(5).standard_normal((count, dimension), dtype=np.float32)
    name = f"fill{time.monotonic_ns() % 10**9}"
    prefix = f"{name}:item:"
    with redis.Redis.from_url(redis_url) as client:
        pipe = client.pipeline(transaction=False)
        for n, vector in enumerate(vectors):
            pipe.hset(f"{prefix}f{n}", mapping={"id_hex": f"f{n}".encode().hex(), "vector": vector.tobytes()})
        pipe.execute()
    running = search_server_factory(index_name=name, key_prefix=prefix, dimension=dimension)
    with grpc.insecure_channel(running.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        assert_partial_while_filling(stub, running.address, vectors)

        def complete() -> pb.QueryResponse | None:
            response = stub.Query(pb.QueryRequest(vector=vectors[0].tolist(), k=3))
            return None if response.partial else response

        done = wait_for(complete, 240, "the index never finished filling")
        assert done.percent_indexed == 100.0 and done.matches[0].item.id == "f0"
        assert not stub.Stats(pb.StatsRequest()).indexing

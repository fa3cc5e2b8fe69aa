"""Faults: Redis going away and coming back, restarts (AOF), an index with other settings, a dropped index."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import redis

from clipsearch.testing.probes import wait_for
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service.redis_server import LocalRedis
from tests.support.search import (
    NOT_SERVING,
    SERVING,
    SearchServerFactory,
    make_item,
    random_vectors,
    wait_for_health,
)


def wait_until_indexed(stub: search_pb2_grpc.SearchStub, within: float = 60.0) -> pb.StatsResponse:
    """Stats once RediSearch reports 100% indexed: counts are only final then."""

    def indexed() -> pb.StatsResponse | None:
        try:
            stats = stub.Stats(pb.StatsRequest())
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            return None
        return stats if stats.percent_indexed == 100.0 and not stats.indexing else None

    return wait_for(indexed, within, f"the index was not 100% indexed within {within:.0f}s")


def upsert_items(stub: search_pb2_grpc.SearchStub, count: int, seed: int) -> list[list[float]]:
    vectors = random_vectors(count, seed=seed)
    stub.Upsert(
        pb.UpsertRequest(
            items=[
                make_item(f"i{n:03}", v, sources=[f"file:///d/{n}.jpg"], collection=f"c{n % 3}", tags=["t"])
                for n, v in enumerate(vectors)
            ]
        )
    )
    return vectors


def assert_all_there(stub: search_pb2_grpc.SearchStub, vectors: list[list[float]]) -> None:
    stats = wait_until_indexed(stub)
    assert stats.items == len(vectors)
    assert sum(c.items for c in stats.collections) == len(vectors)
    best = stub.Query(pb.QueryRequest(vector=vectors[7], k=1, filter=pb.Filter(tags=["t"]))).matches[0]
    assert best.item.id == "i007" and best.item.metadata.sources == ["file:///d/7.jpg"]
    got = stub.Get(pb.GetRequest(ids=["i000"], with_vectors=True)).items[0]
    assert list(got.vector) == vectors[0]


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_items_survive_a_redis_restart(
    search_server_factory: SearchServerFactory, redis_data_dir: Path, how: str
) -> None:
    # appendfsync always: with SIGKILL the test must not depend on the once-a-second fsync timing.
    with LocalRedis(redis_data_dir, appendfsync="always") as local:
        running = search_server_factory(redis_url=local.url)
        with grpc.insecure_channel(running.address) as channel:
            stub = search_pb2_grpc.SearchStub(channel)
            vectors = upsert_items(stub, 120, seed=40)
            port = local.port
            local.stop() if how == "stop" else local.kill()
            local.start()
            assert local.port == port
            wait_for_health(running.address, SERVING)
            assert_all_there(stub, vectors)


def test_redis_down_means_unavailable_and_not_serving_until_it_returns(
    search_server_factory: SearchServerFactory, redis_data_dir: Path
) -> None:
    with LocalRedis(redis_data_dir, appendfsync="always") as local:
        running = search_server_factory(redis_url=local.url)
        with grpc.insecure_channel(running.address) as channel:
            stub = search_pb2_grpc.SearchStub(channel)
            vectors = upsert_items(stub, 20, seed=41)
            local.kill()

            for call, request in (
                (stub.Query, pb.QueryRequest(vector=vectors[0])),
                (stub.Upsert, pb.UpsertRequest(items=[make_item("late", vectors[1])])),
                (stub.Stats, pb.StatsRequest()),
                (stub.List, pb.ListRequest()),
            ):
                with pytest.raises(grpc.RpcError) as error:
                    call(request)
                assert error.value.code() == grpc.StatusCode.UNAVAILABLE
                assert f"Redis at redis://127.0.0.1:{local.port}/0 is unreachable" in error.value.details()  # type: ignore[operator]
            wait_for_health(running.address, NOT_SERVING)

            local.start()  # same port, same data directory; the service is not restarted
            wait_for_health(running.address, SERVING)
            assert_all_there(stub, vectors)
            assert stub.Upsert(pb.UpsertRequest(items=[make_item("late", vectors[1])])).created == 1


def test_an_index_with_another_dimension_fails_every_call_with_a_way_out(
    search_server_factory: SearchServerFactory,
) -> None:
    first = search_server_factory()
    with grpc.insecure_channel(first.address) as channel:
        search_pb2_grpc.SearchStub(channel).Upsert(pb.UpsertRequest(items=[make_item("old", random_vectors(1)[0])]))

    second = search_server_factory(
        index_name=first.config.index_name, key_prefix=first.config.key_prefix, dimension=64, wait=False
    )
    v64 = random_vectors(1, dimension=64)[0]
    with grpc.insecure_channel(second.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        calls = [
            (stub.Upsert, pb.UpsertRequest(items=[make_item("new", v64)])),
            (stub.Query, pb.QueryRequest(vector=v64)),
            (stub.Get, pb.GetRequest(ids=["old"])),
            (stub.List, pb.ListRequest()),
            (stub.Delete, pb.DeleteRequest(ids=["old"])),
            (stub.Stats, pb.StatsRequest()),
            (stub.ListCollections, pb.ListCollectionsRequest()),
        ]
        for call, request in calls:
            with pytest.raises(grpc.RpcError) as error:
                call(request)
            assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            details = error.value.details()
            assert "dimension 32 instead of 64" in details  # type: ignore[operator]
            assert "SEARCH_DIM=32" in details and "SEARCH_INDEX" in details  # type: ignore[operator]
            assert f"FT.DROPINDEX {first.config.index_name} DD" in details  # type: ignore[operator]
    wait_for_health(second.address, NOT_SERVING)
    with grpc.insecure_channel(first.address) as channel:  # the existing index is untouched
        assert search_pb2_grpc.SearchStub(channel).Stats(pb.StatsRequest()).items == 1


def test_an_index_with_another_algorithm_is_a_failed_precondition(search_server_factory: SearchServerFactory) -> None:
    first = search_server_factory(algorithm="flat")
    second = search_server_factory(index_name=first.config.index_name, key_prefix=first.config.key_prefix, wait=False)
    with grpc.insecure_channel(second.address) as channel, pytest.raises(grpc.RpcError) as error:
        search_pb2_grpc.SearchStub(channel).Stats(pb.StatsRequest())
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "algorithm FLAT instead of HNSW" in error.value.details()  # type: ignore[operator]
    assert "SEARCH_ALGORITHM=flat" in error.value.details()  # type: ignore[operator]


def test_a_dropped_index_is_recreated_and_its_items_reindexed(
    search_server_factory: SearchServerFactory, redis_url: str
) -> None:
    running = search_server_factory()
    with grpc.insecure_channel(running.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        vectors = upsert_items(stub, 30, seed=42)
        with redis.Redis.from_url(redis_url) as client:
            client.execute_command("FT.DROPINDEX", running.config.index_name)  # keeps the hashes
        # The watcher re-creates the index; RediSearch then indexes the existing hashes again.
        assert_all_there(stub, vectors)


def test_a_wrong_password_is_unavailable_with_the_reason(
    search_server_factory: SearchServerFactory, redis_data_dir: Path
) -> None:
    with LocalRedis(redis_data_dir, password="right") as local:
        running = search_server_factory(redis_url=f"redis://:wrong@127.0.0.1:{local.port}/0", wait=False)
        with grpc.insecure_channel(running.address) as channel, pytest.raises(grpc.RpcError) as error:
            search_pb2_grpc.SearchStub(channel).Stats(pb.StatsRequest())
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        details = error.value.details()
        assert f"Redis at redis://:***@127.0.0.1:{local.port}/0 is unreachable" in details  # type: ignore[operator]
        assert "password" in details and ":wrong@" not in details  # type: ignore[operator]
        wait_for_health(running.address, NOT_SERVING)

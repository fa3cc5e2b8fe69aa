"""Index after load: a clean stop of the service's own Redis leaves the index's definition out of the AOF's base,
and the next start creates it again, exactly, and fills it in the background, answering exactly from a FLAT
companion meanwhile (or partially, with SEARCH_EXACT_WHILE_INDEXING off)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import redis

from clipsearch.testing.probes import wait_for
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service.catalog import F_DROPPED, catalog_key
from search_service.companion import companion_name
from search_service.info import parse_info
from search_service.redis_calls import execute
from search_service.redis_server import LocalRedis, rewrite_aof
from search_service.server import build_index, connect
from tests.support.search import (
    NOT_SERVING,
    RunningSearch,
    SearchServerFactory,
    assert_partial_while_filling,
    make_item,
    random_vectors,
    wait_for_health,
)

MODEL_A = pb.EmbeddingModel(model_id="models/a", family="clip", dimension=32, fingerprint="sha256:aaaa")
MODEL_B = pb.EmbeddingModel(model_id="models/b", family="clip", dimension=16, fingerprint="sha256:bbbb")
MODEL_C = pb.EmbeddingModel(model_id="models/c", family="clip", dimension=8, fingerprint="sha256:cccc")


@pytest.fixture
def local(redis_data_dir: Path) -> Iterator[LocalRedis]:
    """A Redis of the test's own, which the services below own (SEARCH_REDIS_OWNED, as under serve)."""
    with LocalRedis(redis_data_dir) as server:
        yield server


def own(factory: SearchServerFactory, local: LocalRedis, **overrides: Any) -> RunningSearch:
    return factory(redis_url=local.url, redis_owned=True, **overrides)


def stop_and_start_redis_alone(running: RunningSearch, local: LocalRedis) -> None:
    """The clean stop of the service and then its Redis, and Redis started again with no service."""
    running.server.stop(0)
    local.stop()
    local.start()


def listed(local: LocalRedis) -> set[str]:
    with local.client() as client:
        return {name.decode() for name in execute(client, "FT._LIST")}


def info(local: LocalRedis, index: str) -> dict[str, Any]:
    with local.client() as client:
        return parse_info(execute(client, "FT.INFO", index))


def upsert(address: str, items: list[pb.Item], **request: Any) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        for start in range(0, len(items), 1000):
            stub.Upsert(pb.UpsertRequest(items=items[start : start + 1000], **request))


def complete(running: RunningSearch, index: str, local: LocalRedis, items: int, **request: Any) -> dict[str, Any]:
    """Waits until the service answers completely from the index itself, its exact companion gone; then the
    index holds every item, none failed."""
    vector = random_vectors(1, running.server.index.dimension)[0]

    def done() -> pb.QueryResponse | None:
        with grpc.insecure_channel(running.address) as channel:
            response = search_pb2_grpc.SearchStub(channel).Query(pb.QueryRequest(vector=vector, k=1, **request))
        if response.partial or companion_name(index) in listed(local):
            return None
        return response if running.server.index.read_index == index else None

    wait_for(done, 60, "the index never finished filling")
    found = info(local, index)
    assert (int(found["num_docs"]), int(found["hash_indexing_failures"])) == (items, 0)
    return found


def each_finds_itself(address: str, items: list[pb.Item], **request: Any) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        for item in items:
            response = stub.Query(pb.QueryRequest(vector=item.vector, k=1, **request))
            assert not response.partial
            assert response.matches[0].item.id == item.id
            assert response.matches[0].score == pytest.approx(1.0, abs=1e-3)


def test_a_clean_stop_leaves_the_keys_alone_in_the_aof_and_the_next_start_indexes_them(
    local: LocalRedis, search_server_factory: SearchServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    first = own(search_server_factory, local)
    name, prefix = first.config.index_name, first.config.key_prefix
    items = [make_item(f"i{n}", v, sources=[f"file:///p/{n}.jpg"]) for n, v in enumerate(random_vectors(40, seed=1))]
    upsert(first.address, items)
    with caplog.at_level(logging.INFO, logger="search_service.server"):
        stop_and_start_redis_alone(first, local)
    assert (
        f"index after load: dropped the definition of index {name!r} (FLOAT32, 32-d, 40 items kept in Redis) "
        "and rewrote the append-only file in "
    ) in caplog.text
    # Loaded from the rewritten base: the keys, no index over them, and the record to create it again.
    assert name not in listed(local)
    with local.client() as client:
        assert len(list(client.scan_iter(match=f"{prefix}*"))) == 40
        assert client.hexists(catalog_key(name), F_DROPPED)

    again = own(search_server_factory, local, index_name=name)
    complete(again, name, local, 40)
    each_finds_itself(again.address, items)
    with local.client() as client:
        assert not client.hexists(catalog_key(name), F_DROPPED)  # served: an index lost later is made as configured


def test_a_float32_index_comes_back_float32_under_a_float16_configuration(
    local: LocalRedis, search_server_factory: SearchServerFactory
) -> None:
    first = own(search_server_factory, local, vector_type="float32")
    name = first.config.index_name
    items = [make_item(f"i{n}", v) for n, v in enumerate(random_vectors(30, seed=2))]
    upsert(first.address, items)
    stop_and_start_redis_alone(first, local)

    again = own(search_server_factory, local, index_name=name, vector_type="float16")
    found = complete(again, name, local, 30)
    assert found["attributes"]["vector"]["data_type"] == "FLOAT32"
    each_finds_itself(again.address, items)
    with grpc.insecure_channel(again.address) as channel:
        stats = search_pb2_grpc.SearchStub(channel).Stats(pb.StatsRequest())
    assert stats.settings.vector_type == pb.VECTOR_TYPE_FLOAT32


def test_an_index_comes_back_as_it_was_and_a_changed_dimension_is_reported_as_before(
    local: LocalRedis, search_server_factory: SearchServerFactory
) -> None:
    first = own(search_server_factory, local)
    name = first.config.index_name
    items = [make_item(f"i{n}", v) for n, v in enumerate(random_vectors(10, seed=3))]
    upsert(first.address, items)
    stop_and_start_redis_alone(first, local)

    # Configured for another model's dimension meanwhile: the index is made as it was (its items index) and
    # the service says what differs, as it does for any existing index.
    other = own(search_server_factory, local, index_name=name, dimension=16, wait=False)
    wait_for_health(other.address, NOT_SERVING)
    with grpc.insecure_channel(other.address) as channel, pytest.raises(grpc.RpcError) as refused:
        search_pb2_grpc.SearchStub(channel).Query(pb.QueryRequest(vector=random_vectors(1, 16)[0], k=1))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "dimension 32 instead of 16" in (refused.value.details() or "")
    other.server.stop(0)

    again = own(search_server_factory, local, index_name=name)
    complete(again, name, local, 10)
    each_finds_itself(again.address, items)


def test_a_reindexed_generation_comes_back_through_its_alias_and_a_reindex_in_progress_is_left_alone(
    local: LocalRedis, search_server_factory: SearchServerFactory
) -> None:
    first = own(search_server_factory, local)
    name = first.config.index_name
    old = [make_item(f"a{n}", v) for n, v in enumerate(random_vectors(6, 32, seed=4))]
    new = [make_item(f"b{n}", v) for n, v in enumerate(random_vectors(12, 16, seed=5))]
    staged = [make_item(f"c{n}", v) for n, v in enumerate(random_vectors(3, 8, seed=6))]
    upsert(first.address, old, model=MODEL_A)
    with grpc.insecure_channel(first.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        stub.BeginReindex(pb.BeginReindexRequest(model=MODEL_B))
        upsert(first.address, new, model=MODEL_B, staging=True)
        assert stub.FinishReindex(pb.FinishReindexRequest(model=MODEL_B)).index == f"{name}:g1"
        assert stub.BeginReindex(pb.BeginReindexRequest(model=MODEL_C)).staging_index == f"{name}:g2"
        upsert(first.address, staged, model=MODEL_C, staging=True)
    stop_and_start_redis_alone(first, local)
    assert f"{name}:g1" not in listed(local) and f"{name}:g2" in listed(local)
    with local.client() as client, pytest.raises(redis.ResponseError, match="Unknown index"):
        execute(client, "FT.INFO", name)  # the alias went with its index

    again = own(search_server_factory, local, index_name=name)
    complete(again, f"{name}:g1", local, 12)
    assert int(info(local, name)["num_docs"]) == 12  # through the alias
    each_finds_itself(again.address, new, model=MODEL_B)
    with grpc.insecure_channel(again.address) as channel:
        resumed = search_pb2_grpc.SearchStub(channel).BeginReindex(pb.BeginReindexRequest(model=MODEL_C))
    assert resumed.resumed and resumed.staged_items == 3 and resumed.live_items == 12


@pytest.mark.parametrize(
    "settings",
    [{"redis_owned": True, "index_after_load": False}, {"redis_owned": False}],
    ids=["turned-off", "redis-not-owned"],
)
def test_turned_off_or_on_a_redis_it_does_not_own_the_index_stays_defined(
    local: LocalRedis,
    search_server_factory: SearchServerFactory,
    caplog: pytest.LogCaptureFixture,
    settings: dict[str, bool],
) -> None:
    first = search_server_factory(redis_url=local.url, **settings)
    name = first.config.index_name
    items = [make_item(f"i{n}", v) for n, v in enumerate(random_vectors(10, seed=7))]
    upsert(first.address, items)
    with caplog.at_level(logging.INFO, logger="search_service.server"):
        stop_and_start_redis_alone(first, local)
    assert "index after load" not in caplog.text
    assert name in listed(local) and int(info(local, name)["num_docs"]) == 10  # indexed while Redis loaded
    with local.client() as client:
        assert not client.hexists(catalog_key(name), F_DROPPED)


def test_a_stop_cut_short_after_the_drop_still_comes_back_exactly(
    local: LocalRedis, search_server_factory: SearchServerFactory
) -> None:
    first = search_server_factory(redis_url=local.url, vector_type="float32")
    name = first.config.index_name
    items = [make_item(f"i{n}", v) for n, v in enumerate(random_vectors(20, seed=8))]
    upsert(first.address, items)
    first.server.stop(0)
    with local.client() as client:
        rewrite_aof(client)  # a base that holds the definition, as a long-running library's does
    # A stop that dies after dropping the definition, before the AOF is rewritten: the increments replay the
    # drop after the base loads (the index built from it meanwhile), and the next start creates it again.
    index = build_index(first.config, connect(local.url, 5.0), "the test's Redis")
    assert index.drop_for_restart() is not None
    index.close()
    local.kill()
    local.start()
    assert name not in listed(local)
    again = own(search_server_factory, local, index_name=name, vector_type="float16")
    found = complete(again, name, local, 20)
    assert found["attributes"]["vector"]["data_type"] == "FLOAT32"
    each_finds_itself(again.address, items)


def test_without_exact_answers_searches_are_partial_while_the_index_fills_after_a_restart(
    local: LocalRedis, search_server_factory: SearchServerFactory
) -> None:
    dimension, count = 512, 4000
    first = own(search_server_factory, local, dimension=dimension)
    name = first.config.index_name
    vectors = np.random.default_rng(9).standard_normal((count, dimension), dtype=np.float32)
    upsert(first.address, [make_item(f"f{n}", v.tolist()) for n, v in enumerate(vectors)])
    stop_and_start_redis_alone(first, local)

    again = own(search_server_factory, local, index_name=name, dimension=dimension, exact_while_indexing=False)
    assert companion_name(name) not in listed(local)
    with grpc.insecure_channel(again.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        assert_partial_while_filling(stub, again.address, vectors)
    assert companion_name(name) not in listed(local)
    complete(again, name, local, count)
    with grpc.insecure_channel(again.address) as channel:
        done = search_pb2_grpc.SearchStub(channel).Query(pb.QueryRequest(vector=vectors[0].tolist(), k=3))
    assert not done.partial and done.percent_indexed == 100.0 and done.matches[0].item.id == "f0"


# --- exact answers while the graph is built (SEARCH_EXACT_WHILE_INDEXING) ----------------------------------

FRAMES, FILM_DIMENSION = 4000, 512  # an HNSW graph of seconds here, a FLAT index of about 0.1 s


def film_library(rng: np.random.Generator) -> tuple[list[pb.Item], np.ndarray]:
    """FRAMES unrelated frames, and near a query: video a's frames at 0-5 s and 20-23 s (two moments) and
    three copies of one photo (one perceptual hash: duplicates)."""
    query = rng.standard_normal(FILM_DIMENSION).astype(np.float32)

    def near() -> list[float]:
        return (query + 0.05 * rng.standard_normal(FILM_DIMENSION)).astype(np.float32).tolist()

    others = rng.standard_normal((FRAMES, FILM_DIMENSION), dtype=np.float32)
    items = [make_item(f"f{n}", v.tolist()) for n, v in enumerate(others)]
    items += [
        make_item(
            f"a-{t}",
            near(),
            sources=["file:///films/a.mp4"],
            media_type=pb.MEDIA_TYPE_VIDEO_FRAME,
            content_hash="aa",
            timestamp_seconds=float(t),
            frame_interval_seconds=1.0,
        )
        for t in (0, 1, 2, 3, 4, 5, 20, 21, 22, 23)
    ]
    items += [
        make_item(
            f"p-{n}",
            near(),
            sources=[f"file:///photos/p{n}.jpg"],
            media_type=pb.MEDIA_TYPE_IMAGE,
            content_hash=f"e{n}",
            perceptual_hash=0x0F0F_3C3C_5A5A_A5A5,
        )
        for n in range(3)
    ]
    return items, query


def exact_top(items: list[pb.Item], vector: np.ndarray, k: int) -> list[tuple[str, float]]:
    """The k most similar items by cosine, computed here over the stored vectors."""
    stored = np.array([list(item.vector) for item in items], dtype=np.float64)
    scores = (stored / np.linalg.norm(stored, axis=1, keepdims=True)) @ (vector / np.linalg.norm(vector))
    return [(items[i].id, float(scores[i])) for i in np.argsort(-scores)[:k]]


def grouped(response: pb.QueryResponse) -> list[tuple[str, float, float, int, list[str]]]:
    return [
        (m.item.id, m.start_seconds, m.end_seconds, m.frames, sorted(d.item.id for d in m.duplicates))
        for m in response.matches
    ]


def graph_percent(local: LocalRedis, index: str) -> float:
    found = info(local, index)
    return 100.0 if float(found["percent_indexed"]) >= 1.0 and not int(found["indexing"]) else 0.0


def test_while_the_graph_is_built_after_a_restart_searches_are_exact_from_a_flat_companion(
    local: LocalRedis, search_server_factory: SearchServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The whole test: the health check may drop the companion as soon as the graph completes, before the
    # last block below starts.
    caplog.set_level(logging.INFO, logger="search_service")
    rng = np.random.default_rng(11)
    items, near_query = film_library(rng)
    first = own(search_server_factory, local, dimension=FILM_DIMENSION)
    name = first.config.index_name
    upsert(first.address, items)
    stop_and_start_redis_alone(first, local)

    probes = rng.standard_normal((4, FILM_DIMENSION)).astype(np.float32)
    moments = pb.QueryRequest(vector=near_query.tolist(), k=5, moments=pb.MomentOptions())
    duplicates = pb.QueryRequest(vector=near_query.tolist(), k=5, duplicates=pb.DuplicateOptions())
    with caplog.at_level(logging.INFO, logger="search_service"):
        again = own(search_server_factory, local, index_name=name, dimension=FILM_DIMENSION)
        with grpc.insecure_channel(again.address) as channel:
            stub = search_pb2_grpc.SearchStub(channel)

            def exact() -> pb.QueryResponse | None:
                response = stub.Query(pb.QueryRequest(vector=probes[0].tolist(), k=10))
                return None if response.partial else response

            answers = [wait_for(exact, 30, "searches never stopped being partial")]
            # EF_RUNTIME, named or not, is not sent to the FLAT field, which would refuse it.
            answers += [stub.Query(pb.QueryRequest(vector=p.tolist(), k=10, ef_runtime=500)) for p in probes[1:]]
            as_moments, as_duplicates = stub.Query(moments), stub.Query(duplicates)
            stats = stub.Stats(pb.StatsRequest())
            page = stub.List(pb.ListRequest(page_size=5))
            assert companion_name(name) in listed(local)
            assert graph_percent(local, name) < 100.0  # after all of the above: the graph was still being built

    for probe, answer in zip(probes, answers, strict=True):
        assert not answer.partial and answer.percent_indexed == 100.0
        expected = exact_top(items, probe, 10)
        assert [m.item.id for m in answer.matches] == [item_id for item_id, _ in expected]
        assert [m.score for m in answer.matches] == pytest.approx([score for _, score in expected], abs=1e-5)
    assert not as_moments.partial and not as_duplicates.partial
    assert {(m.item.metadata.content_hash, m.start_seconds, m.end_seconds, m.frames) for m in as_moments.matches} >= {
        ("aa", 0.0, 5.0, 6),
        ("aa", 20.0, 23.0, 4),
    }
    assert [len(m.duplicates) for m in as_duplicates.matches if m.item.id.startswith("p-")] == [2]
    assert (stats.items, stats.indexing, stats.percent_indexed) == (len(items), False, 100.0)
    assert page.total == len(items) and len(page.items) == 5
    assert f"answered exactly by {companion_name(name)!r} until the HNSW graph of {name!r} is complete" in caplog.text

    # The graph complete: the companion is dropped (one line says so) and searches go to the graph.
    with caplog.at_level(logging.INFO, logger="search_service"):
        complete(again, name, local, len(items))
    assert f"index {name!r} complete: dropped {companion_name(name)!r}, its exact companion" in caplog.text
    with grpc.insecure_channel(again.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        assert grouped(stub.Query(moments)) == grouped(as_moments)
        assert grouped(stub.Query(duplicates)) == grouped(as_duplicates)
        assert stub.Stats(pb.StatsRequest()).items == len(items)


def restarted_with_a_companion(
    local: LocalRedis, search_server_factory: SearchServerFactory, count: int
) -> tuple[RunningSearch, list[pb.Item]]:
    """A library of `count` film-sized frames after a clean stop and restart, served by a service that checks
    once, at its start: the companion that check created stays until the service stops."""
    first = own(search_server_factory, local, dimension=FILM_DIMENSION)
    vectors = random_vectors(count, FILM_DIMENSION, seed=12)
    items = [make_item(f"i{n}", v) for n, v in enumerate(vectors)]
    upsert(first.address, items)
    stop_and_start_redis_alone(first, local)
    again = own(
        search_server_factory,
        local,
        index_name=first.config.index_name,
        dimension=FILM_DIMENSION,
        health_interval_seconds=3600.0,
    )
    assert {again.config.index_name, companion_name(again.config.index_name)} <= listed(local)
    return again, items


def test_a_clean_stop_while_the_companion_exists_keeps_neither_definition(
    local: LocalRedis, search_server_factory: SearchServerFactory
) -> None:
    running, items = restarted_with_a_companion(local, search_server_factory, 300)
    name = running.config.index_name
    stop_and_start_redis_alone(running, local)
    assert not {name, companion_name(name)} & listed(local)
    with local.client() as client:
        assert client.hexists(catalog_key(name), F_DROPPED)

    again = own(search_server_factory, local, index_name=name, dimension=FILM_DIMENSION)
    complete(again, name, local, len(items))
    each_finds_itself(again.address, items[:20])


def test_after_a_crash_a_companion_in_the_aof_loads_and_is_dropped_once_the_graph_is_complete(
    local: LocalRedis, search_server_factory: SearchServerFactory
) -> None:
    running, items = restarted_with_a_companion(local, search_server_factory, 300)
    name = running.config.index_name
    wait_for(lambda: graph_percent(local, name) == 100.0, 30, "the graph was never complete")
    with local.client() as client:
        rewrite_aof(client)  # its base holds both definitions, as Redis's own rewrite may leave it
    local.kill()
    running.server.stop(0)  # its Redis gone: nothing dropped
    local.start()
    assert {name, companion_name(name)} <= listed(local)  # both built while Redis loaded

    again = own(search_server_factory, local, index_name=name, dimension=FILM_DIMENSION)
    complete(again, name, local, len(items))
    each_finds_itself(again.address, items[:20])


def test_a_companion_another_replica_dropped_sends_searches_to_the_index(
    local: LocalRedis, search_server_factory: SearchServerFactory
) -> None:
    running, items = restarted_with_a_companion(local, search_server_factory, 1500)
    name = running.config.index_name
    assert running.server.index.read_index == companion_name(name)  # as its one check found
    with local.client() as client:
        execute(client, "FT.DROPINDEX", companion_name(name))
    with grpc.insecure_channel(running.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        found = stub.Query(pb.QueryRequest(vector=items[7].vector, k=1))  # no error: asked of the index itself
        assert found.partial or found.matches[0].item.id == "i7"  # partial if the graph is not complete yet
        assert running.server.index.read_index == name
        stub.Stats(pb.StatsRequest())


def test_after_a_restart_the_companion_is_made_in_a_redis_holding_mostly_other_keys(
    local: LocalRedis, search_server_factory: SearchServerFactory
) -> None:
    # One SCAN call of 1,000 keys would find none of 3 items among 50,000 other keys 19 times in 20: the
    # catalog's record of the clean stop says they are there.
    first = own(search_server_factory, local)
    upsert(first.address, [make_item(f"i{n}", v) for n, v in enumerate(random_vectors(3, seed=5))])
    with local.client() as client:
        pipe = client.pipeline(transaction=False)
        for n in range(50_000):
            pipe.set(f"other:{n}", "x")
        pipe.execute()
    stop_and_start_redis_alone(first, local)
    again = own(search_server_factory, local, index_name=first.config.index_name, health_interval_seconds=3600.0)
    assert companion_name(again.config.index_name) in listed(local)

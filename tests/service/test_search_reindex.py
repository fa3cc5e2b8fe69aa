"""The index records its embedding model and refuses another's; reindexing into a staging index and switching."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
import redis

from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.support.search import SearchServerFactory, drop_search_index, make_item, random_vectors

MODEL_A = pb.EmbeddingModel(model_id="models/a", family="clip", dimension=32, fingerprint="sha256:aaaa")
MODEL_B = pb.EmbeddingModel(model_id="models/b", family="clip", dimension=16, fingerprint="sha256:bbbb")


def items(count: int, dimension: int, seed: int = 0, prefix: str = "item") -> list[pb.Item]:
    return [
        make_item(f"{prefix}{i}", v, sources=[f"file:///p/{prefix}{i}.jpg"])
        for i, v in enumerate(random_vectors(count, dimension, seed))
    ]


@pytest.fixture
def stub_and_url(search_server_factory: SearchServerFactory) -> Iterator[tuple[search_pb2_grpc.SearchStub, str, str]]:
    running = search_server_factory()
    channel = grpc.insecure_channel(running.address)
    yield search_pb2_grpc.SearchStub(channel), running.config.redis_url or "", running.config.index_name
    channel.close()


def test_the_first_write_naming_a_model_records_it_and_another_model_is_refused(stub_and_url) -> None:
    stub = stub_and_url[0]
    stub.Upsert(pb.UpsertRequest(items=items(3, 32)))  # no model: today's behaviour, nothing recorded
    assert not stub.Stats(pb.StatsRequest()).settings.HasField("model")
    legacy = pb.EmbeddingModel(model_id="models/a", dimension=32)  # an embedder reporting no family/fingerprint
    stub.Upsert(pb.UpsertRequest(items=items(2, 32, seed=1, prefix="x"), model=legacy))
    assert stub.Stats(pb.StatsRequest()).settings.model.model_id == "models/a"
    # The same model with its family and fingerprint now reported: accepted, and the record completed.
    stub.Upsert(pb.UpsertRequest(items=items(1, 32, seed=2, prefix="y"), model=MODEL_A))
    assert stub.Stats(pb.StatsRequest()).settings.model == MODEL_A

    other = pb.EmbeddingModel(model_id="models/c", family="clip", dimension=32, fingerprint="sha256:cccc")
    for call in (
        lambda: stub.Upsert(pb.UpsertRequest(items=items(1, 32, prefix="z"), model=other)),
        lambda: stub.Query(pb.QueryRequest(vector=random_vectors(1, 32)[0], model=other)),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = caught.value.details()
        assert "models/a" in details and "models/c" in details and "clipsearch reindex" in details  # type: ignore[operator]
    assert len(stub.Query(pb.QueryRequest(vector=random_vectors(1, 32)[0], model=MODEL_A, k=10)).matches) == 6
    assert len(stub.Query(pb.QueryRequest(vector=random_vectors(1, 32)[0], k=10)).matches) == 6
    # Same model id but other weights (fingerprints differ), same dimension: refused too.
    with pytest.raises(grpc.RpcError) as caught:
        stub.Query(
            pb.QueryRequest(
                vector=random_vectors(1, 32)[0],
                model=pb.EmbeddingModel(model_id="models/a", family="clip", dimension=32, fingerprint="sha256:other"),
            )
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_reindex_is_resumable_serves_the_old_index_until_the_switch_and_migrates_a_plain_index(
    stub_and_url,
) -> None:
    stub, url, name = stub_and_url
    old = items(10, 32)
    stub.Upsert(pb.UpsertRequest(items=old, model=MODEL_A))
    status = stub.BeginReindex(pb.BeginReindexRequest(model=MODEL_B))
    assert not status.resumed and status.staged_items == 0 and status.live_items == 10
    assert status.live_model == MODEL_A and status.staging_index == f"{name}:g1"

    new = items(10, 16, seed=5)
    stub.Upsert(pb.UpsertRequest(items=new[:4], model=MODEL_B, staging=True))
    # During the reindex, queries and writes still use the old index and model.
    hits = stub.Query(pb.QueryRequest(vector=old[3].vector, model=MODEL_A, k=1)).matches
    assert hits[0].item.id == "item3" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Query(pb.QueryRequest(vector=new[0].vector, model=MODEL_B))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Staging writes must name the reindex's model.
    with pytest.raises(grpc.RpcError) as caught:
        stub.Upsert(pb.UpsertRequest(items=items(1, 32), model=MODEL_A, staging=True))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # Interrupted here: beginning again resumes, and the staged ids are known.
    resumed = stub.BeginReindex(pb.BeginReindexRequest(model=MODEL_B))
    assert resumed.resumed and resumed.staged_items == 4 and resumed.staging_index == status.staging_index
    staged = stub.StagedIds(pb.StagedIdsRequest(ids=[i.id for i in old])).ids
    assert list(staged) == ["item0", "item1", "item2", "item3"]
    # Another model cannot begin while this one is in progress.
    with pytest.raises(grpc.RpcError) as caught:
        stub.BeginReindex(pb.BeginReindexRequest(model=MODEL_A))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    stub.Upsert(pb.UpsertRequest(items=new[4:], model=MODEL_B, staging=True))
    finished = stub.FinishReindex(pb.FinishReindexRequest(model=MODEL_B))
    assert (finished.items, finished.dropped_items, finished.index) == (10, 10, f"{name}:g1")

    stats = stub.Stats(pb.StatsRequest())
    assert stats.items == 10 and stats.settings.index_name == name
    assert stats.settings.dimension == 16 and stats.settings.model == MODEL_B
    hits = stub.Query(pb.QueryRequest(vector=new[7].vector, model=MODEL_B, k=1)).matches
    assert hits[0].item.id == "item7" and list(hits[0].item.metadata.sources) == ["file:///p/item7.jpg"]
    with redis.Redis.from_url(url, protocol=3) as client:
        assert list(client.scan_iter(match=f"{name}:item:*")) == []  # the old keys are gone
        # The configured name is now an alias of the new index, for anyone querying Redis directly.
        assert client.execute_command("FT.SEARCH", name, "*", "LIMIT", "0", "0")[b"total_results"] == 10

    # A second reindex goes from an aliased generation to the next one; an abort leaves the live index alone.
    stub.BeginReindex(pb.BeginReindexRequest(model=MODEL_A))
    stub.Upsert(pb.UpsertRequest(items=old[:2], model=MODEL_A, staging=True))
    aborted = stub.AbortReindex(pb.AbortReindexRequest())
    assert aborted.aborted and aborted.discarded_items == 2
    assert not stub.AbortReindex(pb.AbortReindexRequest()).aborted
    again = stub.BeginReindex(pb.BeginReindexRequest(model=MODEL_A))
    assert again.staging_index == f"{name}:g3" and again.staged_items == 0
    stub.Upsert(pb.UpsertRequest(items=old, model=MODEL_A, staging=True))
    stub.FinishReindex(pb.FinishReindexRequest(model=MODEL_A))
    stats = stub.Stats(pb.StatsRequest())
    assert stats.items == 10 and stats.settings.dimension == 32 and stats.settings.model == MODEL_A
    with redis.Redis.from_url(url, protocol=3) as client:
        assert list(client.scan_iter(match=f"{name}:g1:*")) == []
        assert list(client.scan_iter(match=f"{name}:g2:*")) == []


def test_another_instance_notices_a_switch_at_once_though_it_reads_the_catalog_at_most_once_a_second(
    search_server_factory: SearchServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Queries trust the catalog they read last (and the health check reads it again); here for an hour, so
    # only noticing the switch can pass.
    monkeypatch.setattr("search_service.index.CATALOG_MAX_AGE_SECONDS", 3600.0)
    first = search_server_factory()
    second = search_server_factory(index_name=first.config.index_name, health_interval_seconds=3600.0)
    model_c = pb.EmbeddingModel(model_id="models/c", family="clip", dimension=32, fingerprint="sha256:cccc")
    old, new = items(6, 32), items(6, 32, seed=7)
    with grpc.insecure_channel(first.address) as a, grpc.insecure_channel(second.address) as b:
        stub_a, stub_b = search_pb2_grpc.SearchStub(a), search_pb2_grpc.SearchStub(b)
        stub_a.Upsert(pb.UpsertRequest(items=old, model=MODEL_A))
        assert stub_b.Query(pb.QueryRequest(vector=old[2].vector, model=MODEL_A, k=1)).matches[0].item.id == "item2"
        # 0 -> 1: the name becomes an alias (same dimension); 1 -> 2: generation 1 is dropped; each time the
        # old model's query comes first and meets the switched index. 2 -> 3: the new model's query comes
        # first, and is accepted though the catalog this instance read names the old model.
        steps = ((model_c, new, True), (MODEL_A, old, True), (model_c, new, False))
        for model, vectors, stale_first in steps:
            stub_a.BeginReindex(pb.BeginReindexRequest(model=model))
            stub_a.Upsert(pb.UpsertRequest(items=vectors, model=model, staging=True))
            stub_a.FinishReindex(pb.FinishReindexRequest(model=model))
            stale = MODEL_A if model == model_c else model_c
            for query_model in (stale, model) if stale_first else (model, stale):
                if query_model == stale:
                    with pytest.raises(grpc.RpcError) as caught:
                        stub_b.Query(pb.QueryRequest(vector=vectors[0].vector, model=stale))
                    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                    assert "clipsearch reindex" in (caught.value.details() or "")
                    continue
                hits = stub_b.Query(pb.QueryRequest(vector=vectors[4].vector, model=model, k=1)).matches
                assert hits[0].item.id == "item4" and hits[0].score == pytest.approx(1.0, abs=1e-5)
                assert list(hits[0].item.metadata.sources) == ["file:///p/item4.jpg"]


def test_begin_reindex_refuses_a_model_without_id_or_with_an_impossible_dimension(stub_and_url) -> None:
    stub = stub_and_url[0]
    for model in (
        None,
        pb.EmbeddingModel(model_id="", dimension=32),
        pb.EmbeddingModel(model_id="models/x", dimension=0),
        pb.EmbeddingModel(model_id="models/x", dimension=32769),
        pb.EmbeddingModel(model_id="models/x", dimension=2**32 - 1),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            stub.BeginReindex(pb.BeginReindexRequest(model=model))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, model
        assert "model" in (caught.value.details() or "")
    assert not stub.AbortReindex(pb.AbortReindexRequest()).aborted  # nothing began


def test_the_fixtures_clean_up_removes_every_generation_and_the_catalog(
    search_server_factory: SearchServerFactory,
) -> None:
    running = search_server_factory()
    name, url = running.config.index_name, running.config.redis_url or ""
    with grpc.insecure_channel(running.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        stub.Upsert(pb.UpsertRequest(items=items(3, 32), model=MODEL_A))
        stub.BeginReindex(pb.BeginReindexRequest(model=MODEL_B))
        stub.Upsert(pb.UpsertRequest(items=items(3, 16), model=MODEL_B, staging=True))
        stub.FinishReindex(pb.FinishReindexRequest(model=MODEL_B))  # the name is an alias now
        stub.BeginReindex(pb.BeginReindexRequest(model=MODEL_A))  # left in progress
        stub.Upsert(pb.UpsertRequest(items=items(2, 32), model=MODEL_A, staging=True))
    running.server.stop(0)
    with redis.Redis.from_url(url, protocol=3) as client:
        # A staging index dropped without its keys, as a crash in the middle of an abort leaves it.
        client.execute_command("FT.DROPINDEX", f"{name}:g2")
        assert len(list(client.scan_iter(match=f"{name}:*"))) == 5
        drop_search_index(url, name)
        assert list(client.scan_iter(match=f"{name}:*")) == []
        assert list(client.scan_iter(match=f"clipsearch-meta:{name}*")) == []
        indexes = [i.decode() if isinstance(i, bytes) else i for i in client.execute_command("FT._LIST")]
        assert not [i for i in indexes if i == name or i.startswith(f"{name}:")]
        with pytest.raises(redis.ResponseError):
            client.execute_command("FT.SEARCH", name, "*")

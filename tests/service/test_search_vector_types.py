"""FLOAT16 vectors: new indexes store them, an existing FLOAT32 index keeps working, and a reindex converts it."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import redis

from client.cli import main
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service.info import parse_info
from search_service.redis_calls import execute
from tests.support.search import SearchServerFactory, make_item, random_vectors

MODEL = pb.EmbeddingModel(model_id="models/a", family="clip", dimension=32, fingerprint="sha256:aaaa")


def vector_type_in_redis(url: str, index: str) -> str:
    with redis.Redis.from_url(url, protocol=3) as client:
        info = parse_info(execute(client, "FT.INFO", index))
    return str(info["attributes"]["vector"]["data_type"])


def test_a_new_index_stores_float16_and_answers_as_float32_did(search_server_factory: SearchServerFactory) -> None:
    running = search_server_factory(vector_type="float16")
    vectors = random_vectors(20, seed=3)
    with grpc.insecure_channel(running.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        stub.Upsert(pb.UpsertRequest(items=[make_item(f"i{n}", v) for n, v in enumerate(vectors)], model=MODEL))
        assert stub.Stats(pb.StatsRequest()).settings.vector_type == pb.VECTOR_TYPE_FLOAT16
        assert vector_type_in_redis(running.config.redis_url or "", running.config.index_name) == "FLOAT16"
        stored = stub.Get(pb.GetRequest(ids=["i4"], with_vectors=True)).items[0].vector
        # Rounded to 11 significant bits: within a thousandth of each value.
        assert np.allclose(stored, vectors[4], rtol=1e-3, atol=1e-4) and list(stored) != list(vectors[4])
        hit = stub.Query(pb.QueryRequest(vector=vectors[7], k=1)).matches[0]
        assert hit.item.id == "i7" and hit.score == pytest.approx(1.0, abs=1e-3)
        # Values past FLOAT16's range (65504) or below its smallest are scaled, not turned into infinities or
        # zeros: cosine ignores length.
        huge = (np.asarray(vectors[9]) * 1e6).tolist()
        tiny = [1e-30 * (n % 3 + 1) for n in range(32)]
        stub.Upsert(pb.UpsertRequest(items=[make_item("huge", huge), make_item("tiny", tiny)]))
        for wanted, vector in (("huge", huge), ("tiny", tiny)):
            hits = stub.Query(pb.QueryRequest(vector=vector, k=2)).matches
            assert wanted in {h.item.id for h in hits} and hits[0].score == pytest.approx(1.0, abs=1e-3)


def test_an_existing_float32_index_keeps_working_and_a_reindex_converts_it(
    search_server_factory: SearchServerFactory,
) -> None:
    old = search_server_factory(vector_type="float32")
    vectors = random_vectors(12, seed=8)
    with grpc.insecure_channel(old.address) as channel:
        search_pb2_grpc.SearchStub(channel).Upsert(
            pb.UpsertRequest(items=[make_item(f"i{n}", v) for n, v in enumerate(vectors[:10])], model=MODEL)
        )
    # The same index served by a service configured for FLOAT16: used as it is, read and written as FLOAT32.
    new = search_server_factory(vector_type="float16", index_name=old.config.index_name)
    url = new.config.redis_url or ""
    with grpc.insecure_channel(new.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        assert stub.Stats(pb.StatsRequest()).settings.vector_type == pb.VECTOR_TYPE_FLOAT32
        stub.Upsert(pb.UpsertRequest(items=[make_item("i10", vectors[10])], model=MODEL))
        got = stub.Get(pb.GetRequest(ids=["i3", "i10"], with_vectors=True)).items
        assert [list(i.vector) for i in got] == [pytest.approx(vectors[3], abs=0), pytest.approx(vectors[10], abs=0)]
        assert stub.Query(pb.QueryRequest(vector=vectors[10], k=1)).matches[0].item.id == "i10"

        # A reindex (as `clipsearch reindex` runs it, here with the same model) builds a FLOAT16 generation.
        status = stub.BeginReindex(pb.BeginReindexRequest(model=MODEL))
        assert vector_type_in_redis(url, status.staging_index) == "FLOAT16"
        live = stub.List(pb.ListRequest(page_size=100, with_vectors=True)).items
        stub.Upsert(pb.UpsertRequest(items=list(live), model=MODEL, staging=True))
        # Until the switch, the live index answers in FLOAT32.
        assert stub.Stats(pb.StatsRequest()).settings.vector_type == pb.VECTOR_TYPE_FLOAT32
        finished = stub.FinishReindex(pb.FinishReindexRequest(model=MODEL))
        assert finished.items == 11
        assert stub.Stats(pb.StatsRequest()).settings.vector_type == pb.VECTOR_TYPE_FLOAT16
        hit = stub.Query(pb.QueryRequest(vector=vectors[5], k=1)).matches[0]
        assert hit.item.id == "i5" and hit.score == pytest.approx(1.0, abs=1e-3)
        stored = stub.Get(pb.GetRequest(ids=["i5"], with_vectors=True)).items[0].vector
        assert np.allclose(stored, vectors[5], rtol=1e-3, atol=1e-4)
    # The service configured for FLOAT32 follows the switch: it reads the new generation as FLOAT16.
    with grpc.insecure_channel(old.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        assert stub.Query(pb.QueryRequest(vector=vectors[2], k=1)).matches[0].item.id == "i2"
        assert stub.Stats(pb.StatsRequest()).settings.vector_type == pb.VECTOR_TYPE_FLOAT16


def test_reindex_copy_converts_a_float32_index_without_embedder_or_files(
    search_server_factory: SearchServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    old = search_server_factory(vector_type="float32")
    vectors = random_vectors(30, seed=12)
    with grpc.insecure_channel(old.address) as channel:
        search_pb2_grpc.SearchStub(channel).Upsert(
            pb.UpsertRequest(
                items=[make_item(f"i{n}", v, sources=[f"file:///gone/{n}.jpg"]) for n, v in enumerate(vectors)],
                model=MODEL,
            )
        )
    new = search_server_factory(vector_type="float16", index_name=old.config.index_name)
    # No embedder listens at that address, and the files are gone: neither is needed.
    code = main(["reindex", "--copy", "--search", new.address, "--embedder", "127.0.0.1:9"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "30 items copied with their stored vectors" in out and "30 items in the index now" in out
    assert vector_type_in_redis(new.config.redis_url or "", f"{new.config.index_name}:g1") == "FLOAT16"
    with grpc.insecure_channel(new.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        assert stub.Stats(pb.StatsRequest()).settings.vector_type == pb.VECTOR_TYPE_FLOAT16
        assert stub.Stats(pb.StatsRequest()).settings.model == MODEL
        hit = stub.Query(pb.QueryRequest(vector=vectors[17], k=1)).matches[0]
        assert hit.item.id == "i17" and list(hit.item.metadata.sources) == ["file:///gone/17.jpg"]


def test_reindex_copy_refuses_an_index_that_records_no_model(
    search_server_factory: SearchServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    running = search_server_factory()
    with grpc.insecure_channel(running.address) as channel:
        search_pb2_grpc.SearchStub(channel).Upsert(pb.UpsertRequest(items=[make_item("a", random_vectors(1)[0])]))
    code = main(["reindex", "--copy", "--search", running.address, "--embedder", "127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code != 0 and "records no model" in err and "without --copy" in err and "Traceback" not in err


def test_the_first_query_after_a_start_uses_an_existing_float32_index_as_it_is(redis_url: str) -> None:
    """The first query of a fresh service (no health check yet) verifies the index and adopts its FLOAT32
    type before encoding the query vector, so it does not send a FLOAT16 blob to a FLOAT32 index."""
    import dataclasses

    from search_service.items import Item, MediaType, Metadata
    from search_service.schema import NUMPY_TYPES, build_schema
    from search_service.server import build_index
    from search_service.storage import item_fields
    from tests.support.search import search_test_config

    config = dataclasses.replace(search_test_config(redis_url), vector_type="float16")
    client = redis.Redis.from_url(redis_url, protocol=3)
    old = build_schema(config.index_name, config.key_prefix, dimension=config.dimension, vector_type="float32")
    execute(client, *old.create_args())
    vectors = random_vectors(5, config.dimension, seed=3)
    for n, vector in enumerate(vectors):
        item = Item(
            id=f"old{n}",
            vector=np.asarray(vector, dtype=np.float32),
            metadata=Metadata(sources=(f"file:///old/{n}.jpg",), media_type=MediaType.IMAGE),
        )
        sources, fields = item_fields(item, config.dimension, "item", NUMPY_TYPES["float32"])
        client.hset(config.key_prefix + item.id, items=[*fields, "sources", sources[0]])
    index = build_index(config, client, "test")
    try:
        matches = index.query(np.asarray(vectors[2], dtype=np.float32), k=3)
        assert matches[0].item.id == "old2"
        assert index.schema.vector.vector_type == "float32"
    finally:
        execute(client, "FT.DROPINDEX", config.index_name, "DD")
        index.close()

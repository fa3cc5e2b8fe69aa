"""Hostile input: clear statuses, no crash, nothing of a rejected request written, query syntax never injected."""

from __future__ import annotations

import itertools
import math

import grpc
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.support.search import TEST_DIMENSION, SearchServerFactory, make_item, random_vectors

HOSTILE = [
    "@{}|*()-~\"'",
    "a b",
    " lead",
    "trail ",
    "back\\slash",
    "\\",
    "*",
    "-neg",
    "~opt",
    "a|b",
    "$p0",
    "{x}",
    "@tags:{cat}",
    "(a)",
    "'quoted'",
    '"dq"',
    "日本語 ✓",
    "emoji 🐈",
    "a,b",
    "semi;colon",
    "%20",
    ".",
]


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call(request)
    return error.value


def assert_invalid(call, request, *fragments: str) -> None:
    error = rpc_error(call, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    for fragment in fragments:
        assert fragment in error.details()  # type: ignore[operator]


@pytest.fixture
def seeded(search_stub: search_pb2_grpc.SearchStub) -> search_pb2_grpc.SearchStub:
    """Three stored items; tests check they are all that is stored after each rejected request."""
    search_stub.Upsert(
        pb.UpsertRequest(
            items=[
                make_item(f"keep{n}", v, sources=[f"file:///k/{n}.jpg"])
                for n, v in enumerate(random_vectors(3, seed=30))
            ]
        )
    )
    return search_stub


def assert_unchanged(stub: search_pb2_grpc.SearchStub) -> None:
    listed = stub.List(pb.ListRequest(with_vectors=True))
    assert [i.id for i in listed.items] == ["keep0", "keep1", "keep2"]
    assert stub.Stats(pb.StatsRequest()).items == 3
    assert [list(i.metadata.sources) for i in listed.items] == [[f"file:///k/{n}.jpg"] for n in range(3)]


good = random_vectors(1, seed=31)[0]
zeros = [0.0] * TEST_DIMENSION


def with_value(position: int, value: float) -> list[float]:
    vector = list(good)
    vector[position] = value
    return vector


@pytest.mark.parametrize(
    ("items", "fragments"),
    [
        ([], ["items is empty"]),
        ([make_item("short", good[:-1])], ["items[0] (id 'short').vector has 31 values", "expects 32"]),
        ([make_item("long", [*good, 1.0])], ["33 values"]),
        ([make_item("none", [])], ["0 values"]),
        ([make_item("nan", with_value(5, math.nan))], ["vector[5] is nan", "finite"]),
        ([make_item("inf", with_value(0, math.inf))], ["vector[0] is inf"]),
        ([make_item("-inf", with_value(31, -math.inf))], ["vector[31] is -inf"]),
        ([make_item("zero", zeros)], ["all zeros"]),
        (
            [make_item("dup", good), make_item("other", good), make_item("dup", good)],
            ["items[2] (id 'dup'): duplicate id, also at items[0]"],
        ),
        ([make_item("", good)], ["items[0].id"]),
        ([make_item("has space", good)], ["printable ASCII"]),
        ([make_item("ünïcode", good)], ["printable ASCII"]),
        ([make_item("tab\tid", good)], ["printable ASCII"]),
        ([make_item("x" * 257, good)], ["1 to 256"]),
        ([make_item("s", good, sources=["file:///a b.jpg"])], ["metadata.sources[0]", "absolute URI"]),
        ([make_item("s", good, sources=["relative/path.jpg"])], ["absolute URI"]),
        ([make_item("s", good, sources=["file:///ü.jpg"])], ["absolute URI"]),
        ([make_item("s", good, sources=[""])], ["1 to 4096"]),
        ([make_item("s", good, sources=["file:///" + "a" * 4090])], ["1 to 4096"]),
        ([make_item("t", good, tags=[""])], ["metadata.tags[0] has 0 bytes"]),
        ([make_item("t", good, tags=["ok", "bad\x1fsep"])], ["metadata.tags[1]", "control character"]),
        ([make_item("t", good, tags=["new\nline"])], ["control character"]),
        ([make_item("t", good, tags=["é" * 129])], ["258 bytes"]),
        ([make_item("c", good, collection="ü" * 65)], ["metadata.collection has 130 bytes", "at most 128"]),
        ([make_item("h", good, content_hash="ABCDEF")], ["lower-case hex"]),
        ([make_item("h", good, content_hash="xyz")], ["lower-case hex"]),
        ([make_item("ts", good, timestamp_seconds=math.nan)], ["timestamp_seconds is nan"]),
        ([make_item("m", good, media_type=7)], ["media_type=7 is not a known MediaType"]),
    ],
)
def test_rejected_upserts_write_nothing(
    seeded: search_pb2_grpc.SearchStub, items: list[pb.Item], fragments: list[str]
) -> None:
    valid = make_item("valid-but-in-a-bad-batch", random_vectors(1, seed=32)[0])
    error = rpc_error(seeded.Upsert, pb.UpsertRequest(items=[*items, valid] if items else []))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    for fragment in fragments:
        assert fragment in error.details()  # type: ignore[operator]
    assert_unchanged(seeded)


def test_too_many_items_in_one_batch(seeded: search_pb2_grpc.SearchStub) -> None:
    items = [make_item(f"i{n}", good) for n in range(1001)]
    assert_invalid(seeded.Upsert, pb.UpsertRequest(items=items), "1001 items", "at most 1000")
    assert_unchanged(seeded)


@pytest.mark.parametrize(
    ("request_", "fragments"),
    [
        (pb.QueryRequest(vector=good[:10]), ["vector has 10 values"]),
        (pb.QueryRequest(vector=with_value(3, math.nan)), ["vector[3] is nan"]),
        (pb.QueryRequest(vector=zeros), ["all zeros"]),
        (pb.QueryRequest(), ["0 values"]),
        (pb.QueryRequest(vector=good, k=1001), ["k=1001", "1 to 1000"]),
        (pb.QueryRequest(vector=good, k=2**31 - 1), ["k=2147483647"]),
        (pb.QueryRequest(vector=good, k=-5), ["k=-5"]),
        (pb.QueryRequest(vector=good, offset=-1), ["offset=-1", ">= 0"]),
        (pb.QueryRequest(vector=good, k=1000, offset=9001), ["offset + k = 10001", "at most 10000"]),
        (pb.QueryRequest(vector=good, k=10, offset=2**31 - 1), ["offset + k"]),
        (pb.QueryRequest(vector=good, ef_runtime=-1), ["ef_runtime=-1"]),
        (pb.QueryRequest(vector=good, min_score=math.nan), ["min_score is NaN"]),
        (pb.QueryRequest(vector=good, filter=pb.Filter(min_timestamp_seconds=math.nan)), ["min_timestamp_seconds"]),
        (
            pb.QueryRequest(vector=good, filter=pb.Filter(min_timestamp_seconds=5, max_timestamp_seconds=1)),
            ["greater than"],
        ),
        (pb.QueryRequest(vector=good, filter=pb.Filter(sources=["not a uri"])), ["filter.sources[0]"]),
        (pb.QueryRequest(vector=good, filter=pb.Filter(source_dir="file:///a dir/")), ["filter.source_dir"]),
        (pb.QueryRequest(vector=good, filter=pb.Filter(tags=[""])), ["filter.tags[0]"]),
        (pb.QueryRequest(vector=good, filter=pb.Filter(content_hashes=["NOT-HEX"])), ["filter.content_hashes[0]"]),
        (pb.QueryRequest(vector=good, filter=pb.Filter(media_type=99)), ["filter.media_type=99"]),  # type: ignore[arg-type]
    ],
)
def test_bad_queries_are_invalid_argument(
    seeded: search_pb2_grpc.SearchStub, request_: pb.QueryRequest, fragments: list[str]
) -> None:
    assert_invalid(seeded.Query, request_, *fragments)
    assert_unchanged(seeded)


def test_bad_get_list_and_delete_requests(seeded: search_pb2_grpc.SearchStub) -> None:
    assert_invalid(seeded.Get, pb.GetRequest(ids=["ok", "bad id"]), "ids[1]")
    assert_invalid(seeded.Get, pb.GetRequest(ids=[f"i{n}" for n in range(1001)]), "at most 1000")
    assert_invalid(seeded.List, pb.ListRequest(page_size=1001), "page_size=1001")
    assert_invalid(seeded.List, pb.ListRequest(page_size=-1), "page_size=-1")
    for token in ("not-a-token", "'] @id_hex:*", "6a6", "ZZ"):
        assert_invalid(seeded.List, pb.ListRequest(page_token=token), "page_token")
    assert_invalid(seeded.Delete, pb.DeleteRequest(ids=["keep0", "bad id"]), "ids[1]")
    assert_invalid(seeded.Delete, pb.DeleteRequest(sources=["file:///k/0.jpg", "no scheme"]), "sources[1]")
    assert_invalid(seeded.Delete, pb.DeleteRequest(collection="x" * 129), "129 bytes")
    assert_unchanged(seeded)


def test_unknown_names_give_empty_results_not_errors(seeded: search_pb2_grpc.SearchStub) -> None:
    for f in (
        pb.Filter(collections=["no-such-collection"]),
        pb.Filter(tags=["no-such-tag"]),
        pb.Filter(sources=["file:///no/such.jpg"]),
        pb.Filter(source_dir="file:///nowhere"),
        pb.Filter(content_hashes=["ffff"]),
    ):
        assert list(seeded.Query(pb.QueryRequest(vector=good, filter=f)).matches) == []
        assert seeded.List(pb.ListRequest(filter=f)).total == 0
    reply = seeded.Delete(pb.DeleteRequest(collection="no-such-collection"))
    assert (reply.deleted, reply.updated) == (0, 0)
    reply = seeded.Delete(pb.DeleteRequest(sources=["file:///no/such.jpg"]))
    assert (reply.deleted, reply.updated) == (0, 0)
    assert_unchanged(seeded)


def test_query_syntax_characters_are_data_not_syntax(search_stub: search_pb2_grpc.SearchStub) -> None:
    vectors = random_vectors(len(HOSTILE) + 1, seed=33)
    items = [
        make_item(
            f"h{n}",
            vectors[n],
            tags=[value, "common"],
            collection=value,
            sources=[f"file:///dir{n}/@{{}}|*()-~\"'\\%20{n}.jpg"],
        )
        for n, value in enumerate(HOSTILE)
    ]
    items.append(
        make_item("plain", vectors[-1], tags=["cat", "common"], collection="cat", sources=["file:///plain/cat.jpg"])
    )
    search_stub.Upsert(pb.UpsertRequest(items=items))

    got = search_stub.Get(pb.GetRequest(ids=[i.id for i in items]))
    assert [i.metadata for i in got.items] == [i.metadata for i in items]  # exact round trip
    for n, value in enumerate(HOSTILE):
        for f in (
            pb.Filter(tags=[value]),
            pb.Filter(collections=[value]),
            pb.Filter(tags=[value, "common"]),
            pb.Filter(sources=[items[n].metadata.sources[0]]),
            pb.Filter(source_dir=f"file:///dir{n}"),
        ):
            listed = search_stub.List(pb.ListRequest(filter=f))
            assert [i.id for i in listed.items] == [f"h{n}"], (value, f)
            matches = search_stub.Query(pb.QueryRequest(vector=good, k=100, filter=f)).matches
            assert [m.item.id for m in matches] == [f"h{n}"], (value, f)
    names = [c.name for c in search_stub.ListCollections(pb.ListCollectionsRequest()).collections]
    assert names == sorted([*HOSTILE, "cat"])
    # "lead" and "trail" (without the spaces) are other tags; "*" and "a|b" match only themselves.
    for value in ("lead", "trail", "a", "b"):
        assert search_stub.List(pb.ListRequest(filter=pb.Filter(tags=[value]))).total == 0


def test_sources_up_to_the_size_limit_work_in_every_filter(search_stub: search_pb2_grpc.SearchStub) -> None:
    deep = "file:///" + "/".join(f"{n:03}{'x' * 46}" for n in range(81))  # 81 directory levels, 4058 bytes
    source = (deep + "/" + "y" * 4096)[:4096]
    search_stub.Upsert(
        pb.UpsertRequest(
            items=[make_item("long", good, sources=[source]), make_item("short", good, sources=["file:///000/s.jpg"])]
        )
    )
    parent = source[: source.rindex("/") + 1]
    ancestor = parent[: parent.index("/", 300) + 1]
    for f in (pb.Filter(sources=[source]), pb.Filter(source_dir=parent), pb.Filter(source_dir=ancestor)):
        assert [i.id for i in search_stub.List(pb.ListRequest(filter=f)).items] == ["long"]
    assert search_stub.Get(pb.GetRequest(ids=["long"])).items[0].metadata.sources == [source]
    assert search_stub.Delete(pb.DeleteRequest(sources=[source])).deleted == 1


def test_delete_by_hostile_collection_and_source_only_touches_those(search_stub: search_pb2_grpc.SearchStub) -> None:
    v = random_vectors(3, seed=34)
    search_stub.Upsert(
        pb.UpsertRequest(
            items=[
                make_item("star", v[0], collection="*", sources=["file:///x/%2A"]),
                make_item("other", v[1], collection="other", sources=["file:///x/other"]),
                make_item("pipe", v[2], collection="other|*", sources=["file:///x/a%7Cb"]),
            ]
        )
    )
    assert search_stub.Delete(pb.DeleteRequest(collection="*")).deleted == 1
    assert search_stub.Delete(pb.DeleteRequest(sources=["file:///x/*"])).deleted == 0
    assert [i.id for i in search_stub.List(pb.ListRequest()).items] == ["other", "pipe"]


def test_a_key_of_another_type_under_the_prefix_fails_the_whole_batch(
    search_server_factory: SearchServerFactory, redis_url: str
) -> None:
    running = search_server_factory()
    with redis.Redis.from_url(redis_url) as client:
        client.set(f"{running.config.key_prefix}squatter", "not a hash")
    with grpc.insecure_channel(running.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        v = random_vectors(2, seed=35)
        error = rpc_error(stub.Upsert, pb.UpsertRequest(items=[make_item("fine", v[0]), make_item("squatter", v[1])]))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "squatter" in error.details() and "nothing was written" in error.details()  # type: ignore[operator]
        assert list(stub.Get(pb.GetRequest(ids=["fine", "squatter"])).missing_ids) == ["fine", "squatter"]


def test_requests_over_the_message_limit_are_resource_exhausted(search_server_factory: SearchServerFactory) -> None:
    running = search_server_factory(max_message_bytes=1024 * 1024)
    with grpc.insecure_channel(running.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        items = [make_item(f"i{n}", good, tags=["x" * 200] * 50) for n in range(200)]  # about 2 MB
        assert rpc_error(stub.Upsert, pb.UpsertRequest(items=items)).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.Stats(pb.StatsRequest()).items == 0


# Tags: 1 to 256 bytes of UTF-8 without control characters; collections: up to 128 bytes.
_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)
_tags = _text.filter(lambda t: len(t.encode()) <= 256)
_collections = _text.filter(lambda t: len(t.encode()) <= 128)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tag=_tags, collection=_collections)
def test_any_tag_and_collection_round_trip_and_filter_exactly(
    search_stub: search_pb2_grpc.SearchStub, tag: str, collection: str
) -> None:
    item_id = f"p{next(_counter)}"
    search_stub.Upsert(pb.UpsertRequest(items=[make_item(item_id, good, tags=[tag], collection=collection)]))
    stored = search_stub.Get(pb.GetRequest(ids=[item_id])).items[0].metadata
    assert (list(stored.tags), stored.collection) == ([tag], collection)
    listed = search_stub.List(
        pb.ListRequest(filter=pb.Filter(tags=[tag], collections=[collection]), page_size=1000)
    ).items
    assert item_id in [i.id for i in listed]
    assert all(tag in i.metadata.tags and i.metadata.collection == collection for i in listed)


_counter = itertools.count()


_printable = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
_segments = st.lists(st.text(_printable.filter(lambda c: c != "/"), min_size=1, max_size=12), min_size=1, max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segments=_segments)
def test_any_printable_source_filters_exactly_by_source_and_directory(
    search_stub: search_pb2_grpc.SearchStub, segments: list[str]
) -> None:
    item_id = f"s{next(_counter)}"
    source = "file:///" + "/".join(segments)
    search_stub.Upsert(pb.UpsertRequest(items=[make_item(item_id, good, sources=[source])]))
    directories = ["file:///" + "/".join(segments[:n]) for n in range(len(segments))]
    for f in [pb.Filter(sources=[source])] + [pb.Filter(source_dir=d) for d in directories]:
        listed = search_stub.List(pb.ListRequest(filter=f, page_size=1000)).items
        assert item_id in [i.id for i in listed], f
        for item in listed:  # nothing else matches: only items with that source, or a source under that dir
            wanted = f.sources[0] if f.sources else f.source_dir + ("" if f.source_dir.endswith("/") else "/")
            assert any(s == wanted or (not f.sources and s.startswith(wanted)) for s in item.metadata.sources)

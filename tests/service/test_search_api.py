"""The Search service over real gRPC and a real Redis: upsert, get, query, filters, paging, delete, stats, list."""

from __future__ import annotations

import functools
import operator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from clipsearch.testing.probes import health_status
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.support.search import (
    SERVING,
    TEST_DIMENSION,
    SearchServerFactory,
    make_item,
    random_vectors,
)


def cosine(a: list[float], b: list[float]) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def ids(matches: list[pb.Match] | list[pb.Item]) -> list[str]:
    return [m.item.id if isinstance(m, pb.Match) else m.id for m in matches]


def count(stub: search_pb2_grpc.SearchStub) -> int:
    return stub.Stats(pb.StatsRequest()).items


@pytest.fixture
def flat_stub(search_server_factory: SearchServerFactory):
    """A stub on a FLAT (exact) index, for tests that compare against brute force."""
    with grpc.insecure_channel(search_server_factory(algorithm="flat").address) as channel:
        yield search_pb2_grpc.SearchStub(channel)


def test_health_reports_serving_for_the_server_and_the_service(search_address: str) -> None:
    assert health_status(search_address) == SERVING
    assert health_status(search_address, "clipsearch.v1.Search") == SERVING


def test_upsert_then_get_round_trips_every_field(search_stub: search_pb2_grpc.SearchStub) -> None:
    vectors = random_vectors(2)
    frame = make_item(
        "video-1#42",
        vectors[0],
        sources=["file:///videos/trip%20to%20Rome.mp4"],
        media_type=pb.MEDIA_TYPE_VIDEO_FRAME,
        collection="travel",
        timestamp_seconds=12.5,
        frame_index=300,
        content_hash="0123456789abcdef",
        width=1920,
        height=1080,
        tags=["rome", "day 2"],
    )
    photo = make_item("photo-1", vectors[1], sources=["file:///photos/cat.jpg"], media_type=pb.MEDIA_TYPE_IMAGE)

    reply = search_stub.Upsert(pb.UpsertRequest(items=[frame, photo]))
    assert (reply.upserted, reply.created) == (2, 2)

    got = search_stub.Get(pb.GetRequest(ids=["photo-1", "nope", "video-1#42"], with_vectors=True))
    assert ids(got.items) == ["photo-1", "video-1#42"]  # request order
    assert list(got.missing_ids) == ["nope"]
    stored_frame = got.items[1]
    assert stored_frame.metadata == frame.metadata
    assert list(stored_frame.vector) == list(frame.vector)  # float32 values, stored as given
    assert got.items[0].metadata.collection == "default"  # empty collection means "default"

    without = search_stub.Get(pb.GetRequest(ids=["photo-1"]))
    assert len(without.items[0].vector) == 0


def test_query_returns_nearest_first_with_cosine_scores(flat_stub: search_pb2_grpc.SearchStub) -> None:
    vectors = random_vectors(30, seed=1)
    flat_stub.Upsert(pb.UpsertRequest(items=[make_item(f"i{n}", v) for n, v in enumerate(vectors)]))
    query = random_vectors(1, seed=2)[0]

    reply = flat_stub.Query(pb.QueryRequest(vector=query, k=5, with_vectors=True))

    expected = sorted(range(30), key=lambda n: -cosine(query, vectors[n]))[:5]
    assert ids(reply.matches) == [f"i{n}" for n in expected]
    for match, n in zip(reply.matches, expected, strict=False):
        assert match.score == pytest.approx(cosine(query, vectors[n]), abs=1e-5)
        assert list(match.item.vector) == list(np.asarray(vectors[n], dtype=np.float32))
    # The item itself is its own nearest neighbour with score 1, whatever its length.
    scaled = (np.asarray(vectors[7]) * 3.5).tolist()
    best = flat_stub.Query(pb.QueryRequest(vector=scaled, k=1)).matches[0]
    assert best.item.id == "i7" and best.score == pytest.approx(1.0, abs=1e-5)
    assert len(best.item.vector) == 0  # only with with_vectors


def test_k_zero_means_ten_and_offset_pages_through_the_ranking(flat_stub: search_pb2_grpc.SearchStub) -> None:
    vectors = random_vectors(25, seed=3)
    flat_stub.Upsert(pb.UpsertRequest(items=[make_item(f"i{n:02}", v) for n, v in enumerate(vectors)]))
    query = random_vectors(1, seed=4)[0]

    assert len(flat_stub.Query(pb.QueryRequest(vector=query)).matches) == 10
    everything = ids(flat_stub.Query(pb.QueryRequest(vector=query, k=25)).matches)
    assert len(everything) == 25
    pages = [ids(flat_stub.Query(pb.QueryRequest(vector=query, k=7, offset=p * 7)).matches) for p in range(4)]
    assert [len(p) for p in pages] == [7, 7, 7, 4]
    assert functools.reduce(operator.iadd, pages, []) == everything


def test_hnsw_query_honours_offset_and_ef_runtime(search_stub: search_pb2_grpc.SearchStub) -> None:
    vectors = random_vectors(40, seed=5)
    search_stub.Upsert(pb.UpsertRequest(items=[make_item(f"i{n:02}", v) for n, v in enumerate(vectors)]))
    query = vectors[0]
    first = ids(search_stub.Query(pb.QueryRequest(vector=query, k=20, ef_runtime=500)).matches)
    second = ids(search_stub.Query(pb.QueryRequest(vector=query, k=10, offset=10, ef_runtime=1)).matches)
    assert first[0] == "i00"
    assert second == first[10:]  # ef_runtime is raised to offset + k, so paging stays consistent


def test_min_score_drops_weaker_matches(flat_stub: search_pb2_grpc.SearchStub) -> None:
    vectors = random_vectors(20, seed=6)
    flat_stub.Upsert(pb.UpsertRequest(items=[make_item(f"i{n}", v) for n, v in enumerate(vectors)]))
    query = vectors[3]
    all_matches = flat_stub.Query(pb.QueryRequest(vector=query, k=20)).matches
    threshold = (all_matches[4].score + all_matches[5].score) / 2

    kept = flat_stub.Query(pb.QueryRequest(vector=query, k=20, min_score=threshold)).matches

    assert ids(kept) == ids(all_matches)[:5]
    assert all(m.score >= threshold for m in kept)
    assert flat_stub.Query(pb.QueryRequest(vector=query, k=20, min_score=1.5)).matches == []


@pytest.fixture
def catalogue(flat_stub: search_pb2_grpc.SearchStub) -> search_pb2_grpc.SearchStub:
    """Eight items with varied metadata on a FLAT index."""
    v = random_vectors(8, seed=7)
    items = [
        make_item(
            "a",
            v[0],
            sources=["file:///photos/2024/a.jpg"],
            collection="photos",
            tags=["cat", "indoor"],
            media_type=pb.MEDIA_TYPE_IMAGE,
            content_hash="aa",
        ),
        make_item(
            "b",
            v[1],
            sources=["file:///photos/2024/may/b.jpg"],
            collection="photos",
            tags=["cat"],
            media_type=pb.MEDIA_TYPE_IMAGE,
            content_hash="bb",
        ),
        make_item(
            "c",
            v[2],
            sources=["file:///photos/2023/c.jpg", "file:///backup/c.jpg"],
            collection="photos",
            tags=["dog"],
            media_type=pb.MEDIA_TYPE_IMAGE,
            content_hash="cc",
        ),
        make_item(
            "f0",
            v[3],
            sources=["file:///videos/v.mp4"],
            collection="videos",
            tags=["cat"],
            media_type=pb.MEDIA_TYPE_VIDEO_FRAME,
            timestamp_seconds=0.0,
            content_hash="ff",
        ),
        make_item(
            "f1",
            v[4],
            sources=["file:///videos/v.mp4"],
            collection="videos",
            media_type=pb.MEDIA_TYPE_VIDEO_FRAME,
            timestamp_seconds=2.5,
            content_hash="ff",
        ),
        make_item(
            "f2",
            v[5],
            sources=["file:///videos/v.mp4"],
            collection="videos",
            media_type=pb.MEDIA_TYPE_VIDEO_FRAME,
            timestamp_seconds=5.0,
            content_hash="ff",
        ),
        make_item("s", v[6], sources=["https://example.com/img/s.png"], collection="web", tags=["Cat"]),
        make_item("p", v[7], sources=["file:///photos/2024-old/p.jpg"], collection="photos"),
    ]
    flat_stub.Upsert(pb.UpsertRequest(items=items))
    return flat_stub


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        (pb.Filter(collections=["videos"]), {"f0", "f1", "f2"}),
        (pb.Filter(collections=["web", "videos"]), {"f0", "f1", "f2", "s"}),
        (pb.Filter(collections=["nonexistent"]), set()),
        (pb.Filter(sources=["file:///backup/c.jpg"]), {"c"}),
        (pb.Filter(sources=["file:///photos/2024/a.jpg", "https://example.com/img/s.png"]), {"a", "s"}),
        (pb.Filter(source_dir="file:///photos/2024"), {"a", "b"}),  # not 2024-old: a directory, not a prefix
        (pb.Filter(source_dir="file:///photos/2024/"), {"a", "b"}),
        (pb.Filter(source_dir="file:///photos/"), {"a", "b", "c", "p"}),
        (pb.Filter(source_dir="https://example.com/"), {"s"}),
        (pb.Filter(tags=["cat"]), {"a", "b", "f0"}),  # tags are case-sensitive: not "Cat"
        (pb.Filter(tags=["cat", "indoor"]), {"a"}),  # all of them
        (pb.Filter(media_type=pb.MEDIA_TYPE_VIDEO_FRAME), {"f0", "f1", "f2"}),
        (pb.Filter(media_type=pb.MEDIA_TYPE_IMAGE), {"a", "b", "c"}),
        (pb.Filter(min_timestamp_seconds=2.5, max_timestamp_seconds=5.0), {"f1", "f2"}),  # inclusive
        (pb.Filter(max_timestamp_seconds=2.5, media_type=pb.MEDIA_TYPE_VIDEO_FRAME), {"f0", "f1"}),
        (pb.Filter(min_timestamp_seconds=1.0), {"f1", "f2"}),
        (pb.Filter(content_hashes=["cc", "ff"]), {"c", "f0", "f1", "f2"}),
        (pb.Filter(collections=["photos"], tags=["cat"], source_dir="file:///photos/2024/may"), {"b"}),
    ],
)
def test_each_filter_field_restricts_query_and_list(
    catalogue: search_pb2_grpc.SearchStub, filter_: pb.Filter, expected: set[str]
) -> None:
    query = random_vectors(1, seed=8)[0]
    matches = catalogue.Query(pb.QueryRequest(vector=query, k=100, filter=filter_)).matches
    assert set(ids(matches)) == expected
    listed = catalogue.List(pb.ListRequest(filter=filter_))
    assert ids(listed.items) == sorted(expected)
    assert listed.total == len(expected)
    paged, token = [], ""
    while True:  # a filter and a page token together
        page = catalogue.List(pb.ListRequest(filter=filter_, page_size=2, page_token=token))
        paged += ids(page.items)
        token = page.next_page_token
        if not token:
            break
    assert paged == sorted(expected)


def test_filter_is_applied_inside_the_knn_search(flat_stub: search_pb2_grpc.SearchStub) -> None:
    query = random_vectors(1, seed=9)[0]
    near = [(np.asarray(query) + 0.01 * np.asarray(v)).tolist() for v in random_vectors(50, seed=10)]
    far = random_vectors(5, seed=11)
    flat_stub.Upsert(
        pb.UpsertRequest(
            items=[make_item(f"near{n}", v, collection="a") for n, v in enumerate(near)]
            + [make_item(f"far{n}", v, collection="b") for n, v in enumerate(far)]
        )
    )
    # The 50 nearest items are all in collection "a"; a filter applied after a top-k cut would find none.
    reply = flat_stub.Query(pb.QueryRequest(vector=query, k=5, filter=pb.Filter(collections=["b"])))
    assert sorted(ids(reply.matches)) == [f"far{n}" for n in range(5)]


def test_reupsert_replaces_metadata_but_merges_sources(search_stub: search_pb2_grpc.SearchStub) -> None:
    v = random_vectors(2, seed=12)
    first = search_stub.Upsert(
        pb.UpsertRequest(items=[make_item("x", v[0], sources=["file:///a/x.jpg"], tags=["old"], collection="one")])
    )
    again = search_stub.Upsert(
        pb.UpsertRequest(
            items=[
                make_item("x", v[1], sources=["file:///b/x.jpg", "file:///a/x.jpg"], tags=["new"], collection="two"),
                make_item("y", v[1], sources=["file:///b/y.jpg"]),
            ]
        )
    )
    assert (first.upserted, first.created) == (1, 1)
    assert (again.upserted, again.created) == (2, 1)

    item = search_stub.Get(pb.GetRequest(ids=["x"], with_vectors=True)).items[0]
    assert list(item.metadata.sources) == ["file:///a/x.jpg", "file:///b/x.jpg"]
    assert list(item.metadata.tags) == ["new"]
    assert item.metadata.collection == "two"
    assert list(item.vector) == v[1]
    # Both places are searchable, the old tag and collection are not.
    for f in (pb.Filter(source_dir="file:///a/"), pb.Filter(sources=["file:///b/x.jpg"])):
        assert "x" in ids(search_stub.List(pb.ListRequest(filter=f)).items)
    assert search_stub.List(pb.ListRequest(filter=pb.Filter(tags=["old"]))).total == 0
    assert search_stub.List(pb.ListRequest(filter=pb.Filter(collections=["one"]))).total == 0


def test_delete_by_ids(search_stub: search_pb2_grpc.SearchStub) -> None:
    v = random_vectors(3, seed=13)
    search_stub.Upsert(pb.UpsertRequest(items=[make_item(f"i{n}", x) for n, x in enumerate(v)]))
    reply = search_stub.Delete(pb.DeleteRequest(ids=["i0", "i2", "never-existed"]))
    assert (reply.deleted, reply.updated) == (2, 0)
    assert ids(search_stub.List(pb.ListRequest()).items) == ["i1"]


def test_delete_by_sources_removes_sources_and_items_left_without_one(search_stub: search_pb2_grpc.SearchStub) -> None:
    v = random_vectors(3, seed=14)
    search_stub.Upsert(
        pb.UpsertRequest(
            items=[
                make_item("one-place", v[0], sources=["file:///a/1.jpg"]),
                make_item("two-places", v[1], sources=["file:///a/2.jpg", "file:///b/2.jpg"]),
                make_item("elsewhere", v[2], sources=["file:///c/3.jpg"]),
            ]
        )
    )

    reply = search_stub.Delete(pb.DeleteRequest(sources=["file:///a/1.jpg", "file:///a/2.jpg"]))

    assert (reply.deleted, reply.updated) == (1, 1)
    left = search_stub.Get(pb.GetRequest(ids=["one-place", "two-places", "elsewhere"]))
    assert list(left.missing_ids) == ["one-place"]
    assert list(left.items[0].metadata.sources) == ["file:///b/2.jpg"]
    assert search_stub.List(pb.ListRequest(filter=pb.Filter(source_dir="file:///a/"))).total == 0
    assert search_stub.List(pb.ListRequest(filter=pb.Filter(source_dir="file:///b/"))).total == 1


def test_delete_by_collection(search_stub: search_pb2_grpc.SearchStub) -> None:
    v = random_vectors(1205, seed=15)  # more than one internal round of 1000 keys
    for start in range(0, 1205, 1000):
        search_stub.Upsert(
            pb.UpsertRequest(
                items=[
                    make_item(f"i{n}", v[n], collection="big" if n % 5 else "small")
                    for n in range(start, min(start + 1000, 1205))
                ]
            )
        )
    reply = search_stub.Delete(pb.DeleteRequest(collection="big"))
    assert (reply.deleted, reply.updated) == (964, 0)
    assert [(c.name, c.items) for c in search_stub.ListCollections(pb.ListCollectionsRequest()).collections] == [
        ("small", 241)
    ]


def test_delete_refuses_nothing_set_and_ids_with_a_collection(search_stub: search_pb2_grpc.SearchStub) -> None:
    for request, message in (
        (pb.DeleteRequest(), "nothing to delete"),
        (pb.DeleteRequest(ids=["a"], collection="c"), "set without sources"),
    ):
        with pytest.raises(grpc.RpcError) as error:
            search_stub.Delete(request)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in error.value.details()  # type: ignore[operator]


def test_stats_and_list_collections(search_server_factory: SearchServerFactory) -> None:
    running = search_server_factory()
    with grpc.insecure_channel(running.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        empty = stub.Stats(pb.StatsRequest())
        assert empty.items == 0 and list(empty.collections) == []
        v = random_vectors(6, seed=16)
        stub.Upsert(
            pb.UpsertRequest(
                items=[make_item(f"i{n}", x, collection=["b", "a", "Ä", ""][n % 4]) for n, x in enumerate(v)]
            )
        )

        stats = stub.Stats(pb.StatsRequest())
        collections = stub.ListCollections(pb.ListCollectionsRequest()).collections

    expected = [("a", 2), ("b", 2), ("default", 1), ("Ä", 1)]  # sorted by name
    assert [(c.name, c.items) for c in collections] == expected
    assert [(c.name, c.items) for c in stats.collections] == expected
    assert stats.items == 6
    assert stats.percent_indexed == 100.0 and not stats.indexing
    assert stats.redis_memory_bytes > stats.vector_index_memory_bytes > 0
    assert stats.redis_version == "8.2.3"
    assert stats.settings == pb.IndexSettings(
        index_name=running.config.index_name,
        key_prefix=running.config.key_prefix,
        algorithm=pb.ALGORITHM_HNSW,
        dimension=TEST_DIMENSION,
        distance_metric="COSINE",
        m=16,
        ef_construction=200,
        ef_runtime=100,
    )


def test_list_pages_by_id_and_survives_deletes_between_pages(search_stub: search_pb2_grpc.SearchStub) -> None:
    v = random_vectors(25, seed=17)
    names = [f"item-{n:02}" for n in range(25)]
    search_stub.Upsert(pb.UpsertRequest(items=[make_item(name, x) for name, x in zip(names, v, strict=False)]))

    first = search_stub.List(pb.ListRequest(page_size=10))
    assert ids(first.items) == names[:10] and first.total == 25 and first.next_page_token
    # A clean-up job deletes what it has seen; the next page must not skip anything.
    search_stub.Delete(pb.DeleteRequest(ids=names[:10]))
    second = search_stub.List(pb.ListRequest(page_size=10, page_token=first.next_page_token, with_vectors=True))
    assert ids(second.items) == names[10:20] and second.total == 15
    assert list(second.items[0].vector) == v[10]
    third = search_stub.List(pb.ListRequest(page_size=10, page_token=second.next_page_token))
    assert ids(third.items) == names[20:] and third.next_page_token == ""
    assert len(search_stub.List(pb.ListRequest()).items) == 15  # page_size 0 means 100


def test_list_orders_by_id_bytes(search_stub: search_pb2_grpc.SearchStub) -> None:
    names = ["b", "B", "a~", "a", "_", "0", "a!", "~"]
    search_stub.Upsert(
        pb.UpsertRequest(items=[make_item(n, x) for n, x in zip(names, random_vectors(8, seed=18), strict=False)])
    )
    pages, token = [], ""
    while True:
        page = search_stub.List(pb.ListRequest(page_size=3, page_token=token))
        pages.append(ids(page.items))
        token = page.next_page_token
        if not token:
            break
    assert functools.reduce(operator.iadd, pages, []) == sorted(names)
    assert [len(p) for p in pages] == [3, 3, 2]


def test_concurrent_upserts_of_one_id_keep_every_source(search_address: str) -> None:
    vector = random_vectors(1, seed=19)[0]

    def writer(worker: int) -> None:
        with grpc.insecure_channel(search_address) as channel:
            stub = search_pb2_grpc.SearchStub(channel)
            for n in range(10):
                stub.Upsert(
                    pb.UpsertRequest(items=[make_item("shared", vector, sources=[f"file:///w{worker}/{n}.jpg"])])
                )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    with grpc.insecure_channel(search_address) as channel:
        item = search_pb2_grpc.SearchStub(channel).Get(pb.GetRequest(ids=["shared"])).items[0]
    assert sorted(item.metadata.sources) == sorted(f"file:///w{w}/{n}.jpg" for w in range(8) for n in range(10))

"""Query with moments over real gRPC and a real Redis: grouping, k, paging, filters, min_score, old items."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import redis

from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service.info import parse_info
from search_service.redis_calls import execute
from tests.support.search import TEST_DIMENSION, SearchServerFactory, make_item


@pytest.fixture
def stub(search_server_factory: SearchServerFactory):
    with grpc.insecure_channel(search_server_factory(algorithm="flat").address) as channel:
        yield search_pb2_grpc.SearchStub(channel)


def near(base: np.ndarray, rng: np.random.Generator, noise: float) -> list[float]:
    return (base + noise * rng.standard_normal(TEST_DIMENSION)).astype(np.float32).tolist()


def video_frames(
    video: str, times: list[float], base: np.ndarray, rng: np.random.Generator, *, interval: float = 1.0, **meta
) -> list[pb.Item]:
    return [
        make_item(
            f"{video}-{t:g}",
            near(base, rng, 0.05),
            sources=[f"file:///videos/{video}.mp4"],
            media_type=pb.MEDIA_TYPE_VIDEO_FRAME,
            content_hash=video.encode().hex(),
            timestamp_seconds=t,
            frame_interval_seconds=interval,
            **meta,
        )
        for t in times
    ]


@pytest.fixture
def library(stub: search_pb2_grpc.SearchStub) -> np.ndarray:
    """Two shots of video a (0-7 s and 20-24 s), one of video b (3-5 s), photos, all near the query."""
    rng = np.random.default_rng(1)
    query = rng.standard_normal(TEST_DIMENSION).astype(np.float32)
    items = video_frames("a", [float(t) for t in range(8)], query, rng)
    items += video_frames("a", [20.0, 21.0, 22.0, 23.0, 24.0], query, rng, tags=["late"])
    items += video_frames("b", [3.0, 4.0, 5.0], query, rng)
    items += [
        make_item(f"photo-{i}", near(query, rng, 0.05), media_type=pb.MEDIA_TYPE_IMAGE, content_hash=f"c{i}")
        for i in range(3)
    ]
    stub.Upsert(pb.UpsertRequest(items=items))
    return query


def moments(stub: search_pb2_grpc.SearchStub, query: np.ndarray, **fields) -> list[pb.Match]:
    request = pb.QueryRequest(vector=query.tolist(), moments=pb.MomentOptions(), **fields)
    return list(stub.Query(request).matches)


def test_frames_come_back_as_moments_with_spans_and_photos_alone(stub, library) -> None:
    result = moments(stub, library, k=10)
    summary = sorted((m.item.metadata.content_hash, m.start_seconds, m.end_seconds, m.frames) for m in result)
    assert summary == [
        ("61", 0.0, 7.0, 8),
        ("61", 20.0, 24.0, 5),
        ("62", 3.0, 5.0, 3),
        ("c0", 0.0, 0.0, 1),
        ("c1", 0.0, 0.0, 1),
        ("c2", 0.0, 0.0, 1),
    ]
    scores = [m.score for m in result]
    assert scores == sorted(scores, reverse=True)
    for m in result:
        if m.item.metadata.media_type == pb.MEDIA_TYPE_VIDEO_FRAME:
            assert m.start_seconds <= m.item.metadata.timestamp_seconds <= m.end_seconds
    raw = stub.Query(pb.QueryRequest(vector=library.tolist(), k=100)).matches
    best = {m.item.metadata.content_hash: m.item.id for m in reversed(raw)}  # the best of each hash wins
    assert {m.item.id for m in result if m.item.metadata.content_hash == "62"} == {best["62"]}
    assert all(m.frames == 1 for m in raw)


def test_k_counts_moments_and_offset_pages_are_stable(stub, library) -> None:
    everything = [m.item.id for m in moments(stub, library, k=10)]
    pages = [m.item.id for p in range(3) for m in moments(stub, library, k=2, offset=2 * p)]
    assert pages == everything
    assert len(moments(stub, library, k=2)) == 2


def test_filters_and_min_score_apply_to_the_frames(stub, library) -> None:
    late = moments(stub, library, k=10, filter=pb.Filter(tags=["late"]))
    assert [(m.start_seconds, m.end_seconds, m.frames) for m in late] == [(20.0, 24.0, 5)]
    frames_only = moments(stub, library, k=10, filter=pb.Filter(media_type=pb.MEDIA_TYPE_VIDEO_FRAME))
    assert len(frames_only) == 3
    raw = stub.Query(pb.QueryRequest(vector=library.tolist(), k=100)).matches
    threshold = raw[5].score
    kept = moments(stub, library, k=10, min_score=threshold)
    assert sum(m.frames for m in kept) == sum(1 for m in raw if m.score >= threshold)
    assert all(m.score >= threshold for m in kept)


def test_a_larger_gap_joins_the_two_shots(stub, library) -> None:
    result = moments(stub, library, k=10, filter=pb.Filter(content_hashes=["61"]))
    assert len(result) == 2
    joined = stub.Query(
        pb.QueryRequest(
            vector=library.tolist(),
            moments=pb.MomentOptions(gap_seconds=13.0),
            filter=pb.Filter(content_hashes=["61"]),
        )
    ).matches
    assert [(m.start_seconds, m.end_seconds, m.frames) for m in joined] == [(0.0, 24.0, 13)]


def test_items_without_an_interval_or_span_read_as_one_frame_spans(stub) -> None:
    rng = np.random.default_rng(2)
    query = rng.standard_normal(TEST_DIMENSION).astype(np.float32)
    old = video_frames("old", [0.0, 1.0, 2.0, 9.0], query, rng, interval=0.0)
    stub.Upsert(pb.UpsertRequest(items=old))
    got = stub.Get(pb.GetRequest(ids=["old-0"])).items[0].metadata
    assert (got.frame_interval_seconds, got.span_end_seconds) == (0.0, 0.0)
    raw = stub.Query(pb.QueryRequest(vector=query.tolist(), k=1, filter=pb.Filter(tags=[]))).matches[0]
    assert (raw.start_seconds, raw.end_seconds, raw.frames) == (
        raw.item.metadata.timestamp_seconds,
        raw.item.metadata.timestamp_seconds,
        1,
    )
    result = moments(stub, query, k=10)
    assert sorted((m.start_seconds, m.end_seconds, m.frames) for m in result) == [(0.0, 2.0, 3), (9.0, 9.0, 1)]


def test_a_skipped_span_is_stored_and_returned(stub) -> None:
    rng = np.random.default_rng(3)
    query = rng.standard_normal(TEST_DIMENSION).astype(np.float32)
    stub.Upsert(pb.UpsertRequest(items=video_frames("s", [4.0], query, rng, span_end_seconds=11.0)))
    match = stub.Query(pb.QueryRequest(vector=query.tolist(), k=1)).matches[0]
    assert (match.start_seconds, match.end_seconds, match.item.metadata.span_end_seconds) == (4.0, 11.0, 11.0)


@pytest.mark.parametrize("gap", [-1.0, float("nan"), 1e6])
def test_a_bad_gap_is_invalid_argument(stub, gap: float) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Query(pb.QueryRequest(vector=[1.0] * TEST_DIMENSION, moments=pb.MomentOptions(gap_seconds=gap)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "gap_seconds" in (info.value.details() or "")


def test_a_bad_span_end_is_invalid_argument(stub) -> None:
    item = make_item("x", [1.0] * TEST_DIMENSION, span_end_seconds=float("inf"))
    with pytest.raises(grpc.RpcError) as info:
        stub.Upsert(pb.UpsertRequest(items=[item]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "span_end_seconds" in (info.value.details() or "")


@pytest.mark.parametrize("algorithm", ["hnsw", "flat"])
@pytest.mark.parametrize("shot", [150, 500])
def test_a_long_shot_is_one_moment_and_the_photos_behind_it_are_found(
    search_server_factory: SearchServerFactory, redis_url: str, algorithm: str, shot: int
) -> None:
    # A shot of 150 frames fills the first window (100): the second comes from the same KNN's cursor. One of
    # 500 fills both: the third window is searched anew.
    running = search_server_factory(algorithm=algorithm)
    rng = np.random.default_rng(shot)
    query = rng.standard_normal(TEST_DIMENSION).astype(np.float32)
    # The shot drifts away from the query: its best frames are its first, so each window holds one run.
    drift = rng.standard_normal(TEST_DIMENSION).astype(np.float32)
    items = [
        make_item(
            f"long-{t}",
            (query + 0.3 * drift * t / shot).tolist(),
            media_type=pb.MEDIA_TYPE_VIDEO_FRAME,
            content_hash="0a0b",
            timestamp_seconds=float(t),
            frame_interval_seconds=1.0,
        )
        for t in range(shot)
    ]
    items += [make_item(f"photo-{i}", near(query, rng, 2.0), media_type=pb.MEDIA_TYPE_IMAGE) for i in range(4)]
    with grpc.insecure_channel(running.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        stub.Upsert(pb.UpsertRequest(items=items))
        result = moments(stub, query, k=5)
        assert (result[0].start_seconds, result[0].end_seconds, result[0].frames) == (0.0, shot - 1.0, shot)
        assert sorted(m.item.id for m in result[1:]) == [f"photo-{i}" for i in range(4)]
        pages = [m.item.id for p in range(5) for m in moments(stub, query, k=1, offset=p)]
        assert pages == [m.item.id for m in result]
    # Every cursor was let go, not left to expire.
    with redis.Redis.from_url(redis_url, protocol=3) as client:
        info = parse_info(execute(client, "FT.INFO", running.config.index_name))
    assert info["cursor_stats"][b"index_total"] == 0, info["cursor_stats"]


def test_moments_are_answered_when_redis_has_no_cursor_left(
    search_server_factory: SearchServerFactory, redis_url: str
) -> None:
    running = search_server_factory()
    rng = np.random.default_rng(4)
    query = rng.standard_normal(TEST_DIMENSION).astype(np.float32)
    index = running.config.index_name
    with grpc.insecure_channel(running.address) as channel, redis.Redis.from_url(redis_url, protocol=3) as client:
        stub = search_pb2_grpc.SearchStub(channel)
        stub.Upsert(pb.UpsertRequest(items=video_frames("v", [0.0, 1.0, 2.0, 9.0], query, rng)))
        # Other clients hold every cursor RediSearch gives an index.
        held = []
        with pytest.raises(redis.ResponseError, match="(?i)too many cursors"):
            for _ in range(1000):
                held.append(execute(client, "FT.AGGREGATE", index, "*", "WITHCURSOR", "COUNT", "1")[1])
        try:
            result = moments(stub, query, k=10)
        finally:
            for cursor in held:
                execute(client, "FT.CURSOR", "DEL", index, str(cursor))
    assert sorted((m.start_seconds, m.end_seconds, m.frames) for m in result) == [(0.0, 2.0, 3), (9.0, 9.0, 1)]

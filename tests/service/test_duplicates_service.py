"""Query with duplicates over real gRPC and a real Redis: copies collapsed, look-alikes apart, k and paging,
filters, min_score, items without a hash, video frames, moments alongside, and bad distances."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from client.ingest.phash import image_hash
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.support.photos import copies, encode, reframed, scene
from tests.support.search import TEST_DIMENSION, SearchServerFactory, make_item


@pytest.fixture
def stub(search_server_factory: SearchServerFactory):
    with grpc.insecure_channel(search_server_factory(algorithm="flat").address) as channel:
        yield search_pb2_grpc.SearchStub(channel)


def hash_of(data: bytes) -> int:
    h = image_hash(data)
    assert h is not None
    return h


def photos(
    name: str, seed: int, query: np.ndarray, rng: np.random.Generator, *, kinds: tuple[str, ...] = (), **meta
) -> list[pb.Item]:
    """An item for each copy of a generated scene (all of them unless `kinds`), vectors near the query."""
    files = copies(scene(seed))
    return [
        make_item(
            f"{name}-{kind}",
            (query + 0.05 * rng.standard_normal(TEST_DIMENSION)).astype(np.float32).tolist(),
            sources=[f"file:///photos/{name}.{kind}"],
            media_type=pb.MEDIA_TYPE_IMAGE,
            content_hash=f"{name}-{kind}".encode().hex(),
            perceptual_hash=hash_of(data),
            **meta,
        )
        for kind, data in files.items()
        if not kinds or kind in kinds
    ]


def query(stub: search_pb2_grpc.SearchStub, vector: np.ndarray, **fields) -> list[pb.Match]:
    request = pb.QueryRequest(vector=vector.tolist(), duplicates=pb.DuplicateOptions(), **fields)
    return list(stub.Query(request).matches)


def copies_of(match: pb.Match) -> list[str]:
    return sorted([match.item.id, *(d.item.id for d in match.duplicates)])


@pytest.fixture
def library(stub: search_pb2_grpc.SearchStub) -> np.ndarray:
    """Photo a in 4 copies (tagged "a"), b in 2, c alone, and d: c's scene reframed (a look-alike)."""
    rng = np.random.default_rng(2)
    q = rng.standard_normal(TEST_DIMENSION).astype(np.float32)
    items = photos("a", 1, q, rng, tags=["a"])
    items += photos("b", 2, q, rng, kinds=("png", "q60.jpg"))
    items += photos("c", 3, q, rng, kinds=("png",))
    look_alike = reframed(scene(3), 0.25)
    vector = (q + 0.05 * rng.standard_normal(TEST_DIMENSION)).astype(np.float32).tolist()
    items.append(
        make_item("d", vector, media_type=pb.MEDIA_TYPE_IMAGE, perceptual_hash=hash_of(encode(look_alike, "PNG")))
    )
    stub.Upsert(pb.UpsertRequest(items=items))
    return q


def test_copies_come_back_as_one_match_listing_the_others(stub, library) -> None:
    result = query(stub, library, k=10)
    assert sorted(copies_of(m) for m in result) == [
        ["a-half.jpg", "a-png", "a-q60.jpg", "a-q95.jpg"],
        ["b-png", "b-q60.jpg"],
        ["c-png"],
        ["d"],
    ]
    raw = {m.item.id: m.score for m in stub.Query(pb.QueryRequest(vector=library.tolist(), k=100)).matches}
    assert [m.score for m in result] == sorted((m.score for m in result), reverse=True)
    for m in result:
        group = [m.item.id, *(d.item.id for d in m.duplicates)]
        # The best copy leads, the others follow best first, each with its own score and metadata.
        assert [raw[i] for i in group] == sorted((raw[i] for i in group), reverse=True)
        assert m.score == pytest.approx(raw[m.item.id])
        assert all(d.score == pytest.approx(raw[d.item.id]) for d in m.duplicates)
        assert all(d.item.metadata.sources for d in m.duplicates)
        assert m.frames == 1
    plain = stub.Query(pb.QueryRequest(vector=library.tolist(), k=10)).matches
    assert len(plain) == 8 and all(not m.duplicates for m in plain)


def test_k_counts_collapsed_matches_and_pages_are_stable(stub) -> None:
    rng = np.random.default_rng(3)
    q = rng.standard_normal(TEST_DIMENSION).astype(np.float32)
    items = []
    for n in range(12):
        items += photos(f"p{n}", 10 + n, q, rng, kinds=("png", "half.jpg"))
    stub.Upsert(pb.UpsertRequest(items=items))
    everything = query(stub, q, k=12)
    assert len(everything) == 12 and all(len(m.duplicates) == 1 for m in everything)
    pages = [m for offset in (0, 5, 10) for m in query(stub, q, k=5, offset=offset)]
    assert [copies_of(m) for m in pages] == [copies_of(m) for m in everything]
    assert len(query(stub, q, k=3)) == 3


def test_filters_and_min_score_apply_to_the_copies(stub, library) -> None:
    tagged = query(stub, library, k=10, filter=pb.Filter(tags=["a"]))
    assert [copies_of(m) for m in tagged] == [["a-half.jpg", "a-png", "a-q60.jpg", "a-q95.jpg"]]
    raw = stub.Query(pb.QueryRequest(vector=library.tolist(), k=100)).matches
    threshold = raw[3].score
    kept = query(stub, library, k=10, min_score=threshold)
    listed = [d for m in kept for d in (m, *m.duplicates)]
    assert sorted(m.item.id for m in listed) == sorted(m.item.id for m in raw if m.score >= threshold)
    assert all(m.score >= threshold for m in listed)


def test_items_without_a_hash_video_frames_and_other_collections_are_never_collapsed(stub) -> None:
    rng = np.random.default_rng(4)
    q = rng.standard_normal(TEST_DIMENSION).astype(np.float32)
    same = hash_of(encode(scene(5), "PNG"))

    def vector() -> list[float]:
        return (q + 0.05 * rng.standard_normal(TEST_DIMENSION)).astype(np.float32).tolist()

    items = [
        make_item("old-1", vector(), media_type=pb.MEDIA_TYPE_IMAGE),  # written before hashes
        make_item("old-2", vector(), media_type=pb.MEDIA_TYPE_IMAGE),
        make_item("frame-1", vector(), media_type=pb.MEDIA_TYPE_VIDEO_FRAME, perceptual_hash=same, content_hash="a1"),
        make_item("frame-2", vector(), media_type=pb.MEDIA_TYPE_VIDEO_FRAME, perceptual_hash=same, content_hash="a2"),
        make_item("here", vector(), media_type=pb.MEDIA_TYPE_IMAGE, perceptual_hash=same, collection="one"),
        make_item("there", vector(), media_type=pb.MEDIA_TYPE_IMAGE, perceptual_hash=same, collection="two"),
        make_item("here-too", vector(), media_type=pb.MEDIA_TYPE_IMAGE, perceptual_hash=same, collection="one"),
    ]
    stub.Upsert(pb.UpsertRequest(items=items))
    result = query(stub, q, k=10)
    assert sorted(copies_of(m) for m in result) == [
        ["frame-1"],
        ["frame-2"],
        ["here", "here-too"],
        ["old-1"],
        ["old-2"],
        ["there"],
    ]
    both = stub.Query(
        pb.QueryRequest(vector=q.tolist(), k=10, duplicates=pb.DuplicateOptions(), moments=pb.MomentOptions())
    ).matches
    assert sorted(copies_of(m) for m in both) == sorted(copies_of(m) for m in result)
    stored = stub.Get(pb.GetRequest(ids=["here", "old-1"])).items
    assert stored[0].metadata.HasField("perceptual_hash") and stored[0].metadata.perceptual_hash == same
    assert not stored[1].metadata.HasField("perceptual_hash")


def test_a_distance_of_zero_merges_exact_hashes_only_and_bad_distances_are_refused(stub, library) -> None:
    exact = stub.Query(
        pb.QueryRequest(vector=library.tolist(), k=10, duplicates=pb.DuplicateOptions(max_distance=0))
    ).matches
    default = query(stub, library, k=10)
    assert sum(1 + len(m.duplicates) for m in exact) == 8
    assert len(exact) >= len(default)
    for bad in (-1, 13):
        with pytest.raises(grpc.RpcError) as raised:
            stub.Query(pb.QueryRequest(vector=library.tolist(), duplicates=pb.DuplicateOptions(max_distance=bad)))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "max_distance" in (raised.value.details() or "")

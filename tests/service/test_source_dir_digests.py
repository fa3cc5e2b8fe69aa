"""Directory digests: stored short, and items written with whole SHA-1 digests are still found by directory."""

from __future__ import annotations

import hashlib

import grpc
import redis

from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service import schema as S
from search_service.storage import DIR_DIGEST_DIGITS
from tests.support.search import SearchServerFactory, make_item, random_vectors


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def listed(stub: search_pb2_grpc.SearchStub, source_dir: str) -> set[str]:
    return {i.id for i in stub.List(pb.ListRequest(filter=pb.Filter(source_dir=source_dir))).items}


def test_directories_are_stored_short_and_whole_digests_written_before_still_match(
    search_server_factory: SearchServerFactory, redis_url: str
) -> None:
    running = search_server_factory()
    prefix = running.config.key_prefix
    v = random_vectors(3, seed=21)
    with grpc.insecure_channel(running.address) as channel, redis.Redis.from_url(redis_url) as client:
        stub = search_pb2_grpc.SearchStub(channel)
        stub.Upsert(
            pb.UpsertRequest(
                items=[
                    make_item("new", v[0], sources=["file:///films/a/new.mkv"]),
                    make_item("old", v[1], sources=["file:///films/b/old.mkv"]),
                    make_item("gone", v[2], sources=["file:///films/b/gone.mkv"]),
                ]
            )
        )
        stored = client.hget(prefix + "new", S.F_SOURCE_DIRS)
        assert stored is not None
        assert stored.decode().split(S.TAG_SEPARATOR) == [
            sha1(d)[:DIR_DIGEST_DIGITS] for d in ("file:///", "file:///films/", "file:///films/a/")
        ]
        # "old" as an earlier version wrote it: every directory's whole SHA-1.
        whole = S.TAG_SEPARATOR.join(sha1(d) for d in ("file:///", "file:///films/", "file:///films/b/"))
        client.hset(prefix + "old", S.F_SOURCE_DIRS, whole)
        client.hset(prefix + "gone", S.F_SOURCE_DIRS, whole)

        assert listed(stub, "file:///films/") == {"new", "old", "gone"}
        assert listed(stub, "file:///films/b") == {"old", "gone"}
        assert listed(stub, "file:///films/a/") == {"new"}
        found = stub.Query(pb.QueryRequest(vector=v[1], k=5, filter=pb.Filter(source_dir="file:///films/b/")))
        assert [m.item.id for m in found.matches] == ["old", "gone"]  # v[1] is "old"'s own vector
        stub.Delete(pb.DeleteRequest(sources=["file:///films/b/gone.mkv"]))
        assert listed(stub, "file:///films/b/") == {"old"}

        # Written again (its content found at a second place), an item takes short digests for both places.
        stub.Upsert(pb.UpsertRequest(items=[make_item("old", v[1], sources=["file:///films/c/old.mkv"])]))
        rewritten = client.hget(prefix + "old", S.F_SOURCE_DIRS)
        assert rewritten is not None
        assert {len(d) for d in rewritten.decode().split(S.TAG_SEPARATOR)} == {DIR_DIGEST_DIGITS}
        assert listed(stub, "file:///films/b/") == listed(stub, "file:///films/c/") == {"old"}

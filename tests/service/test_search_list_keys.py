"""List pages by the items' keys: ids with quotes and backslashes page in order, and items of the earlier
layout (with the id_hex field) are read and listed beside new ones."""

from __future__ import annotations

import grpc
import redis

from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.support.search import SearchServerFactory, make_item, random_vectors


def test_ids_of_any_printable_character_page_in_order_with_old_layout_items(
    search_server_factory: SearchServerFactory,
) -> None:
    running = search_server_factory()
    ids = ["a'b", "a\\c", 'a"d', "a\\'e", "b", "b'", "c~", "Z"]
    vectors = random_vectors(len(ids) + 1, seed=4)
    with grpc.insecure_channel(running.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        stub.Upsert(pb.UpsertRequest(items=[make_item(i, v) for i, v in zip(ids, vectors, strict=False)]))
        # An item as earlier versions wrote it: with its id hex-encoded in id_hex.
        with redis.Redis.from_url(running.config.redis_url or "") as client:
            old = stub.Get(pb.GetRequest(ids=["b"], with_vectors=True)).items[0]
            client.hset(f"{running.config.key_prefix}old", mapping={"id_hex": b"old".hex(), "vector": client.hget(f"{running.config.key_prefix}b", "vector"), "media_type": "image", "collection": "default", "sources": "file:///o.jpg", "timestamp": "0.0", "frame_index": "0", "width": "0", "height": "0"})  # fmt: skip
        listed: list[str] = []
        token = ""
        while True:
            page = stub.List(pb.ListRequest(page_size=3, page_token=token))
            listed += [i.id for i in page.items]
            assert page.total == len(ids) + 1
            token = page.next_page_token
            if not token:
                break
        assert listed == sorted([*ids, "old"], key=lambda i: i.encode())
        got = stub.Get(pb.GetRequest(ids=["old", "nothing"], with_vectors=True))
        assert [i.id for i in got.items] == ["old"] and list(got.missing_ids) == ["nothing"]
        assert list(got.items[0].vector) == list(old.vector) and list(got.items[0].metadata.sources) == [
            "file:///o.jpg"
        ]

"""Vector index blocks fitted to Redis's allocator: the service's indexes get them, and they save memory."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis

from clipsearch.testing.probes import wait_for
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service import blocks, companion
from search_service.companion import companion_name
from search_service.info import parse_info
from search_service.items import Item
from search_service.redis_calls import execute
from search_service.redis_server import BLOCK_BUDGET_FILE, LocalRedis
from search_service.schema import NUMPY_TYPES, VectorType, build_schema
from search_service.server import build_index
from tests.support.search import (
    SearchServerFactory,
    make_item,
    random_vectors,
    search_test_config,
    unique_index_name,
)


@pytest.fixture
def client(local_redis: LocalRedis) -> Iterator[redis.Redis]:
    with local_redis.client() as c:
        yield c


def block_size_of(client: redis.Redis, index: str) -> int:
    return blocks.block_size(execute(client, "FT.DEBUG", "VECSIM_INFO", index, "vector"))


def budget(client: redis.Redis) -> str:
    return dict(execute(client, "FT.CONFIG", "GET", blocks.BUDGET))[blocks.BUDGET.encode()].decode()


@contextlib.contextmanager
def budget_set_to(client: redis.Redis, value: str) -> Iterator[None]:
    before = budget(client)
    execute(client, "FT.CONFIG", "SET", blocks.BUDGET, value)
    try:
        yield
    finally:
        execute(client, "FT.CONFIG", "SET", blocks.BUDGET, before)


def test_the_service_and_its_exact_companion_get_fitted_blocks_and_the_setting_is_put_back(
    search_server_factory: SearchServerFactory, client: redis.Redis
) -> None:
    with budget_set_to(client, "123456789"):
        running = search_server_factory(vector_type="float16", dimension=512, exact_while_indexing=True)
        name = running.config.index_name
        assert block_size_of(client, name) == blocks.FITTED_BLOCK
        assert budget(client) == "123456789"
        assert not [i for i in execute(client, "FT._LIST") if i.decode().endswith(blocks.PROBE_SUFFIX)]
        with grpc.insecure_channel(running.address) as channel:
            stub = search_pb2_grpc.SearchStub(channel)
            vectors = random_vectors(3, dimension=512, seed=5)
            stub.Upsert(pb.UpsertRequest(items=[make_item(f"i{n}", v) for n, v in enumerate(vectors)]))
            assert stub.Query(pb.QueryRequest(vector=vectors[1], k=1)).matches[0].item.id == "i1"
        # The index lost with its items stored: the service creates it again, fitted; its exact companion too.
        execute(client, "FT.DROPINDEX", name)
        wait_for(lambda: name.encode() in execute(client, "FT._LIST"), 30, "the index was not created again")
        assert block_size_of(client, name) == blocks.FITTED_BLOCK
        companion.create(client, running.server.index.schema, "test")
        assert block_size_of(client, companion_name(name)) == blocks.FITTED_BLOCK
        companion.drop(client, name)
        assert budget(client) == "123456789"


def indexed(client: redis.Redis, name: str) -> bool:
    return companion.percent_indexed(parse_info(execute(client, "FT.INFO", name))) >= 100.0


def settled_memory(client: redis.Redis) -> int:
    """used_memory once it stops moving: a dropped index may still be freeing in the background."""
    deadline = time.monotonic() + 10
    last = int(client.info("memory")["used_memory"])
    while True:
        time.sleep(0.05)
        now = int(client.info("memory")["used_memory"])
        if now == last or time.monotonic() > deadline:
            return now
        last = now


@pytest.mark.parametrize(("vector_type", "dimension"), [("float16", 512), ("float32", 512), ("float16", 768)])
def test_fitted_blocks_take_less_memory_than_the_default(
    tmp_path: Path, vector_type: VectorType, dimension: int
) -> None:
    # Two blocks' worth of vectors under an index of each kind: the default blocks are one size class too large for
    # the allocator (a quarter more for power-of-two vectors), the fitted ones are not. A Redis of its own and keys
    # written once, before either index, so only the index's memory moves between the readings.
    count = 2 * blocks.FITTED_BLOCK
    prefix = "blocks:item:"
    rows = np.random.default_rng(3).standard_normal((count, dimension)).astype(NUMPY_TYPES[vector_type])
    cost: dict[str, float] = {}
    with LocalRedis(tmp_path / "redis") as server, server.client() as client:
        pipe = client.pipeline(transaction=False)
        for n, row in enumerate(rows):
            pipe.hset(f"{prefix}{n}", "vector", row.tobytes())
        pipe.execute()
        for kind in ("default", "fitted"):
            name = f"blocks-{kind}"
            schema = build_schema(name, prefix, dimension=dimension, vector_type=vector_type)
            before = settled_memory(client)
            if kind == "fitted":
                blocks.create(client, schema)
            else:
                execute(client, *schema.create_args())
            wait_for(lambda: indexed(client, name), 60, f"{name} did not finish indexing")  # noqa: B023 - called at once
            cost[kind] = (settled_memory(client) - before) / count
            assert block_size_of(client, name) == (blocks.FITTED_BLOCK if kind == "fitted" else 1024)
            execute(client, "FT.DROPINDEX", name)
    # Measured: 258-265 B a vector less (FLOAT16, 512), 518-525 (FLOAT32, 512), 259-266 (FLOAT16, 768: 1.75 MiB
    # for 1.5).
    assert cost["default"] - cost["fitted"] >= 200, cost


def test_a_redis_that_refuses_the_setting_gets_an_index_with_default_blocks(
    local_redis: LocalRedis, client: redis.Redis
) -> None:
    user, password = "blocks-limited", "limited-password"
    execute(client, "ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-ft.config", "-ft.debug")
    name = unique_index_name()
    try:
        with redis.Redis(host="127.0.0.1", port=local_redis.port, username=user, password=password) as limited:
            blocks.create(limited, build_schema(name, f"{name}:item:", dimension=64, vector_type="float16"))
        assert block_size_of(client, name) == 1024
    finally:
        execute(client, "ACL", "DELUSER", user)
        with contextlib.suppress(redis.ResponseError):
            execute(client, "FT.DROPINDEX", name)


def loaded_block_size(server: LocalRedis, index: str) -> int:
    """The block size of `index` once Redis, just started, has loaded it from its files."""
    with server.client() as connection:

        def loaded() -> int | None:
            try:
                return block_size_of(connection, index)
            except redis.ResponseError:  # still loading
                return None

        return wait_for(loaded, 30, f"{index} was not loaded")


def test_an_index_redis_loads_after_a_crash_keeps_its_fitted_blocks(tmp_path: Path) -> None:
    # Redis sizes the blocks of an index it loads from its own files by the VSS_MAX_RESIZE it has while loading:
    # the service keeps the budget that fitted them in the data directory, and LocalRedis loads RediSearch with it.
    with LocalRedis(tmp_path / "redis") as server:
        config = replace(search_test_config(server.url), data_dir=server.data_dir, dimension=512, vector_type="float16")
        name = config.index_name
        with server.client() as client:
            index = build_index(config, client, "test", keeps_block_budget=True)
            index.check()
            vectors = np.asarray(random_vectors(3, dimension=512, seed=8), dtype=np.float32)
            index.upsert([Item(f"i{n}", v) for n, v in enumerate(vectors)])
            assert block_size_of(client, name) == blocks.FITTED_BLOCK
        kept = server.data_dir / BLOCK_BUDGET_FILE
        assert int(kept.read_text()) > 1020 * 1024
        server.kill()
        server.start()
        assert loaded_block_size(server, name) == blocks.FITTED_BLOCK
        with server.client() as client:
            index = build_index(config, client, "test", keeps_block_budget=True)
            index.check()
            assert index.query(vectors[2], k=1)[0].item.id == "i2"
        # What it guards against: without the budget kept (or with one that cannot be read), the default blocks.
        for damaged in (None, "not a number\n"):
            if damaged is None:
                kept.unlink()
            else:
                kept.write_text(damaged)
            server.kill()
            server.start()
            assert loaded_block_size(server, name) == 1024

"""Pytest fixtures for the search tests: a session Redis, and search servers each with an index of its own."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import redis

from client import Client
from clipsearch.testing.probes import wait_for_status
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service.catalog import catalog_key, delete_prefix, garbage_key
from search_service.config import SearchConfig
from search_service.libraries import libraries_key, status_key
from search_service.redis_server import LocalRedis, rewrite_aof
from search_service.server import SearchServer, build_server

TEST_DIMENSION = 32
SERVING = "SERVING"
NOT_SERVING = "NOT_SERVING"


@dataclass(frozen=True)
class RunningSearch:
    """A started in-process search server."""

    address: str
    config: SearchConfig
    server: SearchServer


def wait_for_health(address: str, status: str, within: float = 60.0) -> None:
    """Waits until the server reports `status` ("SERVING", "NOT_SERVING"); fails the test if it never does."""
    wait_for_status(address, status, within, interval=0.01)


def unique_index_name() -> str:
    return f"t{uuid.uuid4().hex[:16]}"


def search_test_config(redis_url: str, index_name: str | None = None) -> SearchConfig:
    """A search server's settings for tests: loopback, a free port, an index of its own (unique unless named),
    the tiny CLIP's dimension, quick health checks and no shutdown grace. Vectors are stored FLOAT32, so that
    round trips compare to the last bit; FLOAT16 has tests of its own (test_search_vector_types.py)."""
    name = index_name or unique_index_name()
    return SearchConfig(
        host="127.0.0.1",
        port=0,
        redis_url=redis_url,
        index_name=name,
        key_prefix=f"{name}:item:",
        dimension=TEST_DIMENSION,
        vector_type="float32",
        health_interval_seconds=0.1,
        grace_seconds=0.0,
    )


@pytest.fixture(scope="session")
def local_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """A redis-server with RediSearch for the whole test session, in a temporary directory."""
    with LocalRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(local_redis: LocalRedis) -> str:
    return local_redis.url


SearchServerFactory = Callable[..., RunningSearch]


@pytest.fixture
def search_server_factory(redis_url: str) -> Iterator[SearchServerFactory]:
    """Builds started search servers: factory(dimension=64, algorithm="flat", redis_url=..., wait=True, ...).

    Each gets a new index name and key prefix unless index_name is given; keyword arguments override
    SearchConfig fields. With wait=True the factory returns once the server reports SERVING. The servers
    are stopped and their indexes dropped (with their items) after the test.
    """
    started: list[RunningSearch] = []

    def factory(*, wait: bool = True, **overrides: Any) -> RunningSearch:
        config = dataclasses.replace(search_test_config(redis_url, overrides.pop("index_name", None)), **overrides)
        server = build_server(config)
        server.start()
        running = RunningSearch(f"127.0.0.1:{server.port}", config, server)
        started.append(running)
        if wait:
            wait_for_health(running.address, SERVING)
        return running

    yield factory
    for running in started:
        running.server.stop(0)
    for running in started:
        with contextlib.suppress(redis.RedisError):  # that Redis is gone
            drop_search_index(running.config.redis_url or redis_url, running.config.index_name)


def drop_search_index(redis_url: str, index_name: str) -> None:
    """Removes everything of a search service's index from Redis: every generation a reindex built (live,
    staging, or left by an aborted one) and the plain index, with their keys; the alias; the catalog keys.

    `FT.DROPINDEX <name> DD` alone is not enough once a reindex ran: the name is then an alias.
    """
    own = re.compile(re.escape(index_name) + r"(:g\d+)?(:exact)?")  # a generation, and an exact companion
    with redis.Redis.from_url(redis_url, protocol=3, socket_timeout=5) as client:
        run: Callable[..., Any] = client.execute_command
        with contextlib.suppress(redis.ResponseError):  # no alias: no reindex finished
            run("FT.ALIASDEL", index_name)
        for raw in run("FT._LIST"):
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            if own.fullmatch(name):
                with contextlib.suppress(redis.ResponseError):  # dropped meanwhile
                    run("FT.DROPINDEX", name, "DD")
        # Keys an index no longer covers: generations dropped without their keys, the garbage not yet collected.
        prefixes = {p.decode() for p in client.smembers(garbage_key(index_name))}
        for key in client.scan_iter(match=f"{_glob_escape(index_name)}:g*"):
            found = re.match(re.escape(index_name) + r":g\d+:item:", key.decode(errors="replace"))
            if found:
                prefixes.add(found.group())
        for prefix in prefixes:
            delete_prefix(client, prefix)
        client.delete(
            catalog_key(index_name), garbage_key(index_name), libraries_key(index_name), status_key(index_name)
        )


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@pytest.fixture
def search_address(search_server_factory: SearchServerFactory) -> str:
    """ "127.0.0.1:PORT" of a SERVING search server with its own empty index of dimension 32."""
    return search_server_factory().address


@pytest.fixture
def search_stub(search_address: str) -> Iterator[search_pb2_grpc.SearchStub]:
    with grpc.insecure_channel(search_address) as channel:
        yield search_pb2_grpc.SearchStub(channel)


@pytest.fixture
def redis_data_dir(tmp_path: Path) -> Path:
    """A fresh directory for a LocalRedis of the test's own."""
    path = tmp_path / "redis"
    path.mkdir()
    return path


def random_vectors(count: int, dimension: int = TEST_DIMENSION, seed: int = 0) -> list[list[float]]:
    """Random float32 vectors (standard normal), never all zero."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, dimension)).astype(np.float32).tolist()


def make_item(item_id: str, vector: list[float], **metadata: Any) -> pb.Item:
    """An Item proto; keyword arguments are Metadata fields."""
    return pb.Item(id=item_id, vector=vector, metadata=pb.Metadata(**metadata))


def write_filler(client: redis.Redis, keys: int, *, seed: int = 7, prefix: str = "filler:") -> None:
    """Writes `keys` incompressible 1 KiB keys, then rewrites the AOF so that they load from its RDB base, where
    Redis's per-key load delay (`key-load-delay`) applies: a library that loads slowly enough to watch."""
    rng = np.random.default_rng(seed)
    pipe = client.pipeline(transaction=False)
    for n in range(keys):
        pipe.hset(f"{prefix}{n}", "v", rng.bytes(1024))
    pipe.execute()
    rewrite_aof(client)


def assert_partial_while_filling(stub: search_pb2_grpc.SearchStub, address: str, vectors: np.ndarray) -> None:
    """What a service whose index is still filling answers (its first query, the client's note, Stats, unless
    the index finished meanwhile on a fast machine): partial results, and how far it is."""
    first = stub.Query(pb.QueryRequest(vector=vectors[0].tolist(), k=3))
    assert first.partial and 0 <= first.percent_indexed < 100
    with Client("127.0.0.1:1", address) as client:
        hits = client.search_vector(vectors[1], top=3)
    assert hits.partial and hits.note.startswith("Partial results: the library is still loading (")
    stats = stub.Stats(pb.StatsRequest())
    if stats.indexing:
        assert 0 <= stats.percent_indexed < 100
        assert stats.loading_message.startswith("Loading the library: ")

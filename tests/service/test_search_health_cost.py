"""The health check of a ready index costs no FT.INFO (which blocks Redis for seconds at a million frames)."""

from __future__ import annotations

from pathlib import Path

import redis

from search_service.index import SearchIndex
from search_service.redis_calls import execute
from search_service.redis_server import LocalRedis
from search_service.server import build_index
from tests.support.search import search_test_config


def ft_info_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    entry = stats.get("cmdstat_FT.INFO") or stats.get("cmdstat_ft.info") or {}
    return int(entry.get("calls", 0))


def test_a_ready_index_is_checked_without_ft_info_until_the_interval(tmp_path: Path) -> None:
    # A Redis of its own: the command counts are per server, and other tests' services check theirs.
    with LocalRedis(tmp_path) as local:
        client = redis.Redis.from_url(local.url)
        index = build_index(search_test_config(local.url), client, "test")
        count_checks(client, index)


def count_checks(client: redis.Redis, index: SearchIndex) -> None:
    try:
        index.check()  # creates the index and reads it in full
        before = ft_info_calls(client)
        for _ in range(20):
            index.check()
        assert ft_info_calls(client) == before

        index.info_interval = 0.0  # the interval has passed: the next check reads it in full again
        index.check()
        assert ft_info_calls(client) == before + 1
    finally:
        execute(client, "FT.DROPINDEX", index.schema.name, "DD")
        index.close()


def test_a_dropped_index_is_still_noticed_and_created_again(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    index = build_index(search_test_config(redis_url), client, "test")
    try:
        index.check()
        execute(client, "FT.DROPINDEX", index.schema.name)
        index.check()  # within the interval, yet FT._LIST no longer lists it: a full check re-creates it
        names = {n.decode() if isinstance(n, bytes) else n for n in execute(client, "FT._LIST")}
        assert index.schema.name in names
    finally:
        execute(client, "FT.DROPINDEX", index.schema.name, "DD")
        index.close()

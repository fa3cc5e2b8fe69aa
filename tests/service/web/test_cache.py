"""The web server's disk cache: bounded in size, least recently used files evicted first, shared safely."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from client.web.cache import DiskCache, cache_key


def _files(directory: Path) -> set[Path]:
    return {p for p in directory.rglob("*") if p.is_file()}


def test_keys_are_hex_and_differ_for_different_parts() -> None:
    key = cache_key("thumb", ("/a/b.png", 1, 2, 3, 4), "hash", None, 320)
    assert len(key) == 32 and all(c in "0123456789abcdef" for c in key)
    assert key == cache_key("thumb", ("/a/b.png", 1, 2, 3, 4), "hash", None, 320)
    assert key != cache_key("thumb", ("/a/b.png", 1, 2, 3, 5), "hash", None, 320)
    assert cache_key("ab", "c") != cache_key("a", "bc")


def test_put_then_get_and_unknown_keys_are_none(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, 1 << 20)
    key = cache_key("x")
    assert cache.get(key) is None
    cache.put(key, b"data")
    assert cache.get(key) == b"data"
    cache.put(key, b"other data")
    assert cache.get(key) == b"other data"
    assert cache.total_bytes == len(b"other data")
    assert not [p for p in _files(tmp_path) if p.name.startswith(".tmp")]


def test_bad_keys_are_refused(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, 1 << 20)
    for key in ("../../etc/passwd", "ab", "ABCDEF", "abc/def"):
        with pytest.raises(ValueError, match="bad cache key"):
            cache.get(key)


def test_the_total_stays_under_the_bound_and_the_least_recently_used_go_first(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, 10_000)
    keys = [cache_key(n) for n in range(12)]
    old = time.time() - 3600
    for n, key in enumerate(keys[:9]):
        cache.put(key, bytes(1000))
        # Older files first; the first one is read later, which makes it recent again.
        os.utime(tmp_path / key[:2] / key, (old + n, old + n))
    assert cache.get(keys[0]) == bytes(1000)
    for key in keys[9:]:
        cache.put(key, bytes(1000))
    assert cache.total_bytes <= 10_000
    assert sum(p.stat().st_size for p in _files(tmp_path)) == cache.total_bytes
    assert cache.get(keys[0]) is not None  # read recently: kept
    assert cache.get(keys[1]) is None and cache.get(keys[2]) is None  # the oldest: evicted
    assert all(cache.get(key) is not None for key in keys[9:])


def test_a_new_cache_on_the_same_folder_counts_what_is_there(tmp_path: Path) -> None:
    first = DiskCache(tmp_path, 1 << 20)
    first.put(cache_key(1), bytes(300))
    first.put(cache_key(2), bytes(200))
    second = DiskCache(tmp_path, 1 << 20)
    assert second.total_bytes == 500
    assert second.get(cache_key(1)) == bytes(300)


def test_something_larger_than_the_whole_cache_is_not_stored(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, 100)
    cache.put(cache_key("small"), bytes(50))
    cache.put(cache_key("huge"), bytes(500))
    assert cache.get(cache_key("huge")) is None
    assert cache.get(cache_key("small")) == bytes(50)

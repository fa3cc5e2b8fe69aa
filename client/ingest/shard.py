"""Sharded ingest: which files one of N index workers takes, by a stable hash of each file's path."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from ..uris import PathLike, absolute, uri_to_path
from .media import Found, Problem

JOB_INDEX_VARIABLE = "JOB_COMPLETION_INDEX"
MAX_SHARDS = 1_000_000

_SPEC = re.compile(r"([0-9]+)/([0-9]+)")


class ShardError(ValueError):
    """A shard given in a form that cannot be used; the message says which form is expected."""


def shard_of(path: PathLike, count: int) -> int:
    """The shard (0 to count-1) that the file at `path` belongs to."""
    return _shard_of_bytes(os.fsencode(absolute(path)), count)


def _shard_of_bytes(resolved: bytes, count: int) -> int:
    digest = hashlib.sha256(resolved).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (index from 0 to count-1): the files whose absolute path (symlinks
    resolved, as the index stores it) hashes to `index`, by the first 8 bytes of its SHA-256, big-endian,
    modulo `count`. That depends on nothing but the path and the count, so workers that see the library
    at the same paths take every file exactly once, on any machine and in any order. A Kubernetes
    Indexed Job gives each pod its index in JOB_COMPLETION_INDEX (shard_from_job).
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ShardError(f"the number of shards must be from 1 to {MAX_SHARDS}, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ShardError(
                f"shard {self.index}/{self.count} does not exist: with {self.count} shards the index "
                f"runs from 0 to {self.count - 1}"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, path: PathLike) -> bool:
        """Whether the file at `path` (resolved to its absolute path) is this shard's."""
        return shard_of(path, self.count) == self.index

    def holds_source(self, uri: str) -> bool:
        """Whether the stored source (a file:// URI, already absolute and resolved) is this shard's.

        The path is taken as stored, not resolved again: the file may be gone, or a symlink made since.
        """
        try:
            path = uri_to_path(uri)
        except ValueError:
            return False
        return _shard_of_bytes(os.fsencode(path), self.count) == self.index


def parse_shard(text: str) -> Shard:
    """ "I/N" -> Shard(I, N); ShardError says what is wrong with any other text."""
    match = _SPEC.fullmatch(text.strip())
    if match is None:
        raise ShardError(f"bad shard {text!r}: expected INDEX/COUNT, e.g. 0/4 (indexes run from 0 to COUNT-1)")
    return Shard(int(match.group(1)), int(match.group(2)))


def shard_from_job(count: int, env: Mapping[str, str] | None = None) -> Shard:
    """Shard JOB_COMPLETION_INDEX of `count`, as a Kubernetes Indexed Job numbers its pods."""
    env = os.environ if env is None else env
    raw = env.get(JOB_INDEX_VARIABLE, "").strip()
    if not raw:
        raise ShardError(
            f"--shards needs {JOB_INDEX_VARIABLE}, which a Kubernetes Indexed Job sets in each pod; "
            "elsewhere give --shard INDEX/COUNT"
        )
    if not re.fullmatch(r"[0-9]+", raw):
        raise ShardError(f"{JOB_INDEX_VARIABLE}={raw!r} is not a shard index (a whole number from 0)")
    try:
        return Shard(int(raw), count)
    except ShardError as exc:
        raise ShardError(f"{JOB_INDEX_VARIABLE}={raw}: {exc} (the Job's completions must equal --shards)") from None


def select(found: Iterable[Found | Problem], shard: Shard | None) -> Iterator[Found | Problem]:
    """What discover() found that is this shard's, in its order: files, and the problems of paths that
    hash to this shard, so N shards report each problem once, as one run would."""
    for item in found:
        if shard is None or shard.holds(item.path):
            yield item

"""The exact companion: a FLAT index over the live index's keys that answers exactly while the HNSW graph is built."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import redis

from search_service import blocks
from search_service.info import parse_info
from search_service.redis_calls import execute, is_missing_index
from search_service.schema import IndexSchema

log = logging.getLogger(__name__)

SUFFIX = ":exact"
# Keys looked at (one SCAN call) to tell whether an index about to be created has items to index.
_PROBE_COUNT = 1000


def companion_name(index: str) -> str:
    """The companion of the physical index `index`."""
    return index + SUFFIX


def companion_schema(schema: IndexSchema) -> IndexSchema:
    """The companion of `schema`: the same prefix, fields and vector type and dimension, a FLAT vector field."""
    flat = replace(schema.vector, algorithm="flat")
    return replace(schema.with_vector(flat), name=companion_name(schema.name))


def wanted(schema: IndexSchema, client: redis.Redis, *, restarting: bool = False) -> bool:
    """Whether creating `schema` now calls for a companion: an HNSW index over keys already stored (after a
    restart with index after load, or an index lost and created again), which RediSearch indexes in the
    background at a few thousand frames a second, while a FLAT index takes 40,000 to 70,000 a second.

    `restarting`: the catalog recorded the index as a clean stop dropped it, its keys kept. Otherwise one
    SCAN call looks for keys under its prefix (in a Redis holding mostly other keys it may miss them; the
    answers are then partial until the graph is complete)."""
    if schema.vector.algorithm != "hnsw":
        return False
    if restarting:
        return True
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in schema.prefix) + "*"
    _, keys = client.scan(0, match=pattern, count=_PROBE_COUNT)
    return bool(keys)


def create(client: redis.Redis, schema: IndexSchema, redis_label: str) -> None:
    """Creates the companion of `schema` (one that exists already, another replica's, is left as it is).

    The caller creates the HNSW index right after it, not once the companion is complete: RediSearch 2.10.5
    scans the keys for one new index at a time, in the order the indexes were created (measured at 100,000
    frames: the HNSW index stayed at 0% until the FLAT one was complete, which took 1.5-2.4 s, no longer than
    alone within this busy machine's noise), so the cheap one is complete first either way, and the graph
    loses no time waiting for a check to notice it."""
    companion = companion_schema(schema)
    try:
        blocks.create(client, companion)
    except redis.ResponseError as e:
        if "already exists" not in str(e).lower():
            raise
        return
    log.info(
        "created %r, a FLAT index over the items of %r in Redis at %s: it answers searches exactly until the "
        "HNSW graph is built, then is dropped (about 1.25 KB of memory a frame meanwhile)",
        companion.name,
        schema.name,
        redis_label,
    )


def drop(client: redis.Redis, index: str) -> bool:
    """Drops the companion of `index`, its keys kept (they are the live index's); False when there was none."""
    try:
        execute(client, "FT.DROPINDEX", companion_name(index))
    except redis.ResponseError as e:
        if is_missing_index(e):  # none, or another replica dropped it first
            return False
        raise
    return True


def read(client: redis.Redis, index: str) -> dict[str, Any] | None:
    """The companion's FT.INFO, parsed; None when there is none."""
    try:
        return parse_info(execute(client, "FT.INFO", companion_name(index)))
    except redis.ResponseError as e:
        if is_missing_index(e):
            return None
        raise


def percent_indexed(info: Mapping[str, Any]) -> float:
    """How much of its keys an index (parsed FT.INFO) has indexed: 100.0 once complete."""
    percent = float(info.get("percent_indexed", 1.0) or 0.0) * 100.0
    if percent >= 100.0 and not int(info.get("indexing", 0) or 0):
        return 100.0
    return min(percent, 99.99)


@dataclass(frozen=True)
class Reads:
    """Where searches go, as a check found it: the live index, or its companion while that is further along."""

    live: str  # the live index this was decided for
    index: str
    percent: float  # of the library the answers see: 100.0 when complete

    @property
    def exact(self) -> bool:
        """The companion answers."""
        return self.index != self.live


def choose(client: redis.Redis, live: str, live_info: Mapping[str, Any]) -> Reads:
    """Where searches go while the live index (parsed FT.INFO) is incomplete: to its companion, if there is
    one that is complete or further along. (FT.INFO of a FLAT index is cheap: 0.2 ms at 200,000 frames.)"""
    percent = percent_indexed(live_info)
    found = read(client, live)
    if found is None or percent_indexed(found) < percent:
        return Reads(live, live, percent)
    return Reads(live, companion_name(live), percent_indexed(found))


def follow(
    client: redis.Redis, live: str, info: Mapping[str, Any], before: Reads | None, *, enabled: bool, was_partial: bool
) -> Reads:
    """Where searches go after a full check of the live index (parsed FT.INFO), logging what changed: while it
    is incomplete, to its companion if `enabled` and that is complete or further along; once it is complete,
    to it, and its companion, if any, is dropped (several replicas may race: a missing one is fine).
    `before` is the last check's answer, `was_partial` whether searches were partial since."""
    percent = percent_indexed(info)
    first = before is None or before.live != live  # of this process, or of this live index
    was_exact = not first and before is not None and before.exact
    if percent < 100.0:
        reads = choose(client, live, info) if enabled else Reads(live, live, percent)
        if reads.exact and reads.percent >= 100.0 and (was_partial or not was_exact):
            log.info(
                "searches see the whole library: answered exactly by %r until the HNSW graph of %r is complete "
                "(%.0f%% so far)",
                reads.index,
                live,
                percent,
            )
        return reads
    # Looked for at a first check (one left by a crash), and when searches were exact or partial until now.
    if (first or was_exact or was_partial) and drop(client, live):
        log.info(
            "index %r complete: dropped %r, its exact companion; searches go to the graph", live, companion_name(live)
        )
    elif was_exact:
        log.info("index %r complete (its exact companion dropped by another replica): searches go to it", live)
    elif was_partial:
        log.info("index %r complete: searches see the whole library", live)
    return Reads(live, live, 100.0)

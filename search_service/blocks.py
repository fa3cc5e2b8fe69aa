"""Vector index blocks sized to fit Redis's allocator: FT.CREATE with RediSearch's block budget set for it."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import redis

from search_service.redis_calls import execute
from search_service.schema import IndexSchema, VectorField

log = logging.getLogger(__name__)

# RediSearch stores an index's vectors (and HNSW's graph) in blocks of 1,024 elements, one allocation each.
# A block of 1,024 vectors of a power-of-two size (512 FLOAT16 values: 1 MiB) plus its header is just over
# one of jemalloc's size classes, so each block takes the next class: 1.25 MiB, 256 B a vector spent on
# nothing (measured: 3,179 B a frame with blocks of 1,024, 2,916 B with 1,020). Blocks of 1,020 fit.
FITTED_BLOCK = 1020
BUDGET = "VSS_MAX_RESIZE"
PROBE_SUFFIX = ":blocks"


def create(client: redis.Redis, schema: IndexSchema) -> int | None:
    """FT.CREATE `schema`, with vector blocks of FITTED_BLOCK elements where this Redis lets the service choose;
    returns the VSS_MAX_RESIZE that fitted them, or None where the blocks are RediSearch's default.

    RediSearch 2.10 takes no BLOCK_SIZE for HNSW: it gives an index blocks of min(1024, VSS_MAX_RESIZE / the
    element's estimated size) elements when VSS_MAX_RESIZE is set. The estimate is RediSearch's own, so it is
    read back from an empty probe index (FT.DEBUG VECSIM_INFO); the setting is put back right after, since
    it is global. A Redis that refuses FT.CONFIG or FT.DEBUG (a managed one, an ACL) gets the default blocks.
    """
    with _fitted_blocks(client, schema) as budget:
        execute(client, *schema.create_args())
    return budget


@contextmanager
def _fitted_blocks(client: redis.Redis, schema: IndexSchema) -> Iterator[int | None]:
    try:
        before = _budget(client)
        budget = _fitted_budget(client, schema)
        execute(client, "FT.CONFIG", "SET", BUDGET, str(budget))
    except (redis.ResponseError, LookupError, ValueError) as e:
        log.info("vector blocks of %r left at RediSearch's default size: %s", schema.name, e)
        yield None
        return
    log.info("vector blocks of %r fitted to the allocator: %s %s while it is created", schema.name, BUDGET, budget)
    try:
        yield budget
    finally:
        try:
            execute(client, "FT.CONFIG", "SET", BUDGET, before)
        except redis.RedisError as e:
            log.warning("could not set RediSearch's %s back to %s: %s", BUDGET, before, e)


def _fitted_budget(client: redis.Redis, schema: IndexSchema) -> int:
    """The VSS_MAX_RESIZE that gives `schema`'s vector field blocks of FITTED_BLOCK elements.

    A probe with budget P = 1023 × the vector's bytes (less than 1,024 elements, since an element is more
    than its vector) gets blocks of n = floor(P / e) elements, so the element's size e is in (P/(n+1), P/n].
    A budget of FITTED_BLOCK × P / n then gives FITTED_BLOCK elements, or one more."""
    vector = schema.vector
    probe_budget = 1023 * vector_bytes(vector)
    execute(client, "FT.CONFIG", "SET", BUDGET, str(probe_budget))
    probe = schema.name + PROBE_SUFFIX
    execute(client, "FT.CREATE", probe, "ON", "HASH", "PREFIX", "1", probe + ":", "SCHEMA", *vector.args())
    try:
        elements = block_size(execute(client, "FT.DEBUG", "VECSIM_INFO", probe, vector.name))
    finally:
        execute(client, "FT.DROPINDEX", probe)
    if elements <= 0:
        raise ValueError(f"the probe index reported blocks of {elements} elements")
    return -(-FITTED_BLOCK * probe_budget // elements)


def vector_bytes(vector: VectorField) -> int:
    return vector.dimension * np.dtype(vector.numpy_type).itemsize


def block_size(vecsim_info: Any) -> int:
    """The elements per block in FT.DEBUG VECSIM_INFO's reply: the graph's (BACKEND_INDEX) for HNSW, which
    RediSearch fronts with a FLAT buffer, or the index's own for FLAT."""
    info = _as_map(vecsim_info)
    backend = info.get("BACKEND_INDEX")
    if backend is not None:
        info = _as_map(backend)
    return int(info["BLOCK_SIZE"])


def _budget(client: redis.Redis) -> str:
    reply = execute(client, "FT.CONFIG", "GET", BUDGET)
    # RESP2: [[name, value]]; RESP3: {name: value}.
    pairs = reply.items() if isinstance(reply, Mapping) else (tuple(pair) for pair in reply)
    for name, value in pairs:
        if _text(name) == BUDGET:
            return _text(value)
    raise LookupError(f"FT.CONFIG GET {BUDGET} returned {reply!r}")


def _as_map(reply: Any) -> dict[str, Any]:
    if isinstance(reply, Mapping):
        return {_text(k): v for k, v in reply.items()}
    if isinstance(reply, Sequence) and not isinstance(reply, (str, bytes)):
        return {_text(reply[i]): reply[i + 1] for i in range(0, len(reply) - 1, 2)}
    raise ValueError(f"unexpected FT.DEBUG VECSIM_INFO reply {reply!r}")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

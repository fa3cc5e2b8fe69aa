"""Calling Redis: any command with a typed result, and what Redis errors mean to the service's callers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from search_service.errors import Unavailable


def execute(client: redis.Redis, *args: str | bytes) -> Any:
    """Runs one command; the reply's shape depends on the command (RESP3: maps as dicts)."""
    run: Callable[..., Any] = client.execute_command  # redis-py leaves execute_command unannotated
    return run(*args)


def is_missing_index(error: redis.ResponseError) -> bool:
    text = str(error).lower()
    return "unknown index name" in text or "no such index" in text


def is_unknown_command(error: redis.ResponseError) -> bool:
    return "unknown command" in str(error).lower()


def as_unavailable(error: redis.RedisError, redis_label: str, index_name: str) -> tuple[Unavailable, bool] | None:
    """The Unavailable to report for `error`, and whether the index must be verified again before the next
    call (Redis restarted, reloaded, or lost the index); None for an error that is not about availability."""
    if isinstance(error, redis.BusyLoadingError):
        return Unavailable(f"Redis at {redis_label} is loading the library; retry shortly"), True
    if isinstance(error, redis.TimeoutError):
        return Unavailable(
            f"Redis at {redis_label} did not answer in time ({error}): it is overloaded or "
            "busy with a long command; retry, or raise SEARCH_REDIS_TIMEOUT_SECONDS"
        ), False
    if isinstance(error, redis.ConnectionError):
        return Unavailable(f"Redis at {redis_label} is unreachable: {error}"), True
    if isinstance(error, redis.ResponseError):
        if is_missing_index(error):
            return Unavailable(
                f"the index {index_name!r} is missing from Redis at {redis_label}; it is being re-created, retry"
            ), True
        if str(error).startswith("LOADING"):
            return Unavailable(f"Redis at {redis_label} is loading its data; retry shortly"), True
        if str(error).startswith("BUSY"):  # another client's long script (e.g. a large upsert) is running
            return Unavailable(f"Redis at {redis_label} is busy: {error}; retry shortly"), False
    return None

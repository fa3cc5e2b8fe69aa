"""Retrying calls that find a service unavailable: gRPC's retries and the client's, under one policy."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from clipsearch import rpc_status

Result = TypeVar("Result")


@dataclass(frozen=True)
class RetryPolicy:
    """How a call that meets UNAVAILABLE is retried; nothing else is retried.

    Two things retry, both set here. gRPC retries a call that meets a replica starting or stopping, up
    to `attempts` times with backoff between `backoff` and `max_backoff` seconds, on another replica
    where there is one (round_robin skips replicas that are down). When the whole service stays
    unavailable (it restarts, or waits for Redis: "UNAVAILABLE: retry with backoff"), run() repeats the
    call after `first_delay` seconds, doubling up to `max_delay`, while the call's deadline allows. The
    channel's reconnect backoff is capped at `max_delay` too: gRPC's default grows to 120 s, so a service
    back after a minute's outage could otherwise wait past the calls' deadlines for a reconnect.
    """

    attempts: int = 5
    backoff: float = 0.2
    max_backoff: float = 3.0
    first_delay: float = 0.25
    max_delay: float = 4.0

    def method_config(self, service: str) -> dict[str, Any]:
        """The methodConfig entry of a channel's service config: gRPC's own retries for a service."""
        return {
            "name": [{"service": service}],
            "retryPolicy": {
                "maxAttempts": self.attempts,
                "initialBackoff": f"{self.backoff:g}s",
                "maxBackoff": f"{self.max_backoff:g}s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }

    def channel_options(self) -> list[tuple[str, Any]]:
        return [
            # Retries need the request buffered; the defaults (256 KiB) would exclude image batches.
            ("grpc.per_rpc_retry_buffer_size", 128 << 20),
            ("grpc.retry_buffer_size", 512 << 20),
            ("grpc.enable_retries", 1),
            ("grpc.max_reconnect_backoff_ms", int(self.max_delay * 1000)),
        ]

    def run(
        self, attempt: Callable[[float], Result], deadline: float, *, unavailable_until: float | None = None
    ) -> Result:
        """attempt(seconds left) until it returns, or raises other than UNAVAILABLE, or the deadline (or
        `unavailable_until`, for UNAVAILABLE) nears."""
        delay = self.first_delay
        give_up = deadline if unavailable_until is None else min(deadline, unavailable_until)
        while True:
            remaining = deadline - time.monotonic()
            try:
                return attempt(max(remaining, 0.001))
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() + delay >= give_up:
                    raise
                if rpc_status.reason_of(exc) == rpc_status.INDEX_LOADING:
                    raise  # a library loading takes minutes: say how far now rather than wait out the deadline
                time.sleep(delay)
                delay = min(delay * 2, self.max_delay)

"""How far a library is in coming back after a restart: Redis loading its data, then the vector index filling."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

LOADING_PREFIX = "Loading the library"
# Redis's INFO persistence reports loading_eta_seconds of 1 while it knows nothing yet; shown as no ETA.
_MIN_ETA_SECONDS = 1.0


def describe(percent: float, eta_seconds: float | None) -> str:
    """ "Loading the library: 43%, about 2 min left" (without the ETA when it is unknown)."""
    shown = min(99, math.floor(percent)) if percent < 100 else 100
    text = f"{LOADING_PREFIX}: {shown}%"
    if eta_seconds is not None and eta_seconds > _MIN_ETA_SECONDS:
        text += f", about {duration(eta_seconds)} left"
    return text


def duration(seconds: float) -> str:
    """A rough duration for people: "40 s", "2 min", "1 h 5 min"."""
    if seconds < 60:
        return f"{max(1, math.ceil(seconds / 5) * 5 if seconds > 10 else math.ceil(seconds))} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"


@dataclass(frozen=True)
class RedisLoading:
    """What INFO persistence says while Redis loads its data (it refuses other commands until done)."""

    percent: float
    eta_seconds: float | None
    loaded_bytes: int

    @property
    def message(self) -> str:
        return describe(self.percent, self.eta_seconds)


def parse_persistence(info: Mapping[str, Any]) -> RedisLoading | None:
    """The loading state in a parsed INFO persistence reply; None when Redis is not loading."""
    if not int(info.get("loading", 0) or 0):
        return None
    eta = float(info.get("loading_eta_seconds", -1) or -1)
    return RedisLoading(
        percent=float(info.get("loading_loaded_perc", 0.0) or 0.0),
        eta_seconds=eta if eta > 0 else None,
        loaded_bytes=int(info.get("loading_loaded_bytes", 0) or 0),
    )


def redis_loading(client: redis.Redis) -> RedisLoading | None:
    """Asks Redis whether it is loading (INFO is one of the few commands it answers meanwhile)."""
    return parse_persistence(client.info("persistence"))


@dataclass(frozen=True)
class IndexFill:
    """The vector index filling in the background after its keys loaded: searches see only part of the library.

    `percent` is RediSearch's percent_indexed of its background scan over the existing keys.
    """

    percent: float
    eta_seconds: float | None

    @property
    def message(self) -> str:
        return describe(self.percent, self.eta_seconds)


class FillRate:
    """Estimates the time left from how fast the percentage grew between checks."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._first: tuple[float, float] | None = None

    def reset(self) -> None:
        self._first = None

    def eta(self, percent: float) -> float | None:
        now = self._clock()
        if self._first is None or percent < self._first[1]:
            self._first = (now, percent)
            return None
        start, start_percent = self._first
        if percent <= start_percent or now <= start:
            return None
        rate = (percent - start_percent) / (now - start)
        return (100.0 - percent) / rate

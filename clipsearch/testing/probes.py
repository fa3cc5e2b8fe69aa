"""Asking a server for its grpc.health.v1 status, and waiting until a condition holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

T = TypeVar("T")

UNREACHABLE = "UNREACHABLE"
# Probes reconnect quickly: gRPC's default reconnect backoff grows to many seconds while a server starts.
PROBE_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.enable_http_proxy", 0),
)


class WaitTimeout(AssertionError):
    """A condition did not hold in time. An AssertionError, so that a test reports it as a failure."""


def health_status(target: str | grpc.Channel, service: str = "", timeout: float = 2.0) -> str:
    """The grpc.health.v1 status ("SERVING", "NOT_SERVING", …) of `service` ("" is the whole server), or
    "UNREACHABLE" when the call fails. `target` is an address (a plaintext channel is opened for the one
    call) or a channel, e.g. one with TLS credentials."""
    if isinstance(target, str):
        with grpc.insecure_channel(target, options=PROBE_CHANNEL_OPTIONS) as channel:
            return health_status(channel, service, timeout)
    request = health_pb2.HealthCheckRequest(service=service)
    try:
        response = health_pb2_grpc.HealthStub(target).Check(request, timeout=timeout)
    except grpc.RpcError:
        return UNREACHABLE
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def wait_for(
    condition: Callable[[], T | None],
    within: float,
    message: str | Callable[[], str],
    *,
    interval: float = 0.05,
) -> T:
    """Calls `condition` every `interval` seconds until it returns a true value, and returns that value.

    Raises WaitTimeout with `message` (or what `message()` says then, e.g. the last state seen) once `within`
    seconds pass. An exception from `condition` ends the wait: that is how a condition reports that waiting
    longer is pointless (a process exited, an unexpected error).
    """
    deadline = time.monotonic() + within
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise WaitTimeout(message() if callable(message) else message)
        time.sleep(interval)
    return result


def wait_for_status(
    target: str | grpc.Channel, status: str, within: float, service: str = "", *, interval: float = 0.05
) -> None:
    """Waits until the server (or one of its services) reports `status`; WaitTimeout names the last one."""
    last = [UNREACHABLE]

    def reached() -> bool:
        last[0] = health_status(target, service)
        return last[0] == status

    name = target if isinstance(target, str) else "the server"
    wait_for(reached, within, lambda: f"{name} is {last[0]}, not {status}, after {within:.0f} s", interval=interval)

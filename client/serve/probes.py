"""Readiness probes for serve's children (gRPC health or a cheap call, Redis PING) and the model query."""

from __future__ import annotations

import socket
import time
import urllib.request
from typing import TYPE_CHECKING, Any

import grpc

from ..security import ChannelSecurity
from ..targets import split_host_port

if TYPE_CHECKING:
    from clipsearch.v1.embedder_pb2 import ModelInfo

PROBE_TIMEOUT_SECONDS = 2.0

# Probes reconnect quickly: gRPC's default reconnect backoff grows to minutes while a model loads.
PROBE_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_http_proxy", 0),
)


def _embedder_stub(channel: grpc.Channel) -> Any:
    from clipsearch.v1 import embedder_pb2_grpc

    stub: Any = embedder_pb2_grpc.EmbedderStub  # the generated gRPC module has no type hints
    return stub(channel)


def _search_stub(channel: grpc.Channel) -> Any:
    from clipsearch.v1 import search_pb2_grpc

    stub: Any = search_pb2_grpc.SearchStub  # the generated gRPC module has no type hints
    return stub(channel)


class GrpcProbe:
    """Asks a service whether it is SERVING: grpc.health.v1 when installed, else a cheap RPC."""

    def __init__(self, address: str, kind: str, security: ChannelSecurity | None = None) -> None:
        self.address = address
        self.kind = kind
        # The channel carries the token and the TLS settings.
        self.channels = (security or ChannelSecurity()).load()
        self.channel = self.channels.open(address, PROBE_CHANNEL_OPTIONS)
        self.answered = False  # the last check reached the server, whatever it said

    def ready(self) -> bool:
        try:
            from grpc_health.v1 import health_pb2, health_pb2_grpc
        except ImportError:
            return self._answers_a_call()
        try:
            response = health_pb2_grpc.HealthStub(self.channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=PROBE_TIMEOUT_SECONDS
            )
        except grpc.RpcError:
            self.answered = False
            return False
        self.answered = True
        status: int = response.status
        serving: int = health_pb2.HealthCheckResponse.SERVING
        return status == serving

    def refusal(self) -> str | None:
        """Why serve cannot connect to a service that listens: its TLS settings and serve's do not match."""
        if self.answered:
            return None
        try:
            host, port = split_host_port(self.address)
        except ValueError:
            return None
        return self.channels.diagnose(host, int(port)) or None

    def loading(self) -> bool:
        """Whether the search service is waiting for its Redis to load the library (Stats says so)."""
        if self.kind != "search" or not self.answered:
            return False
        from clipsearch.v1 import search_pb2

        try:
            stats = _search_stub(self.channel).Stats(search_pb2.StatsRequest(), timeout=PROBE_TIMEOUT_SECONDS)
        except grpc.RpcError:
            return False
        return bool(stats.loading)

    def problem(self) -> str | None:
        """Why a running service that is not ready never will be, if it says so: the search service
        answers FAILED_PRECONDITION while the existing index was built for another dimension."""
        if self.kind != "search" or not self.answered:
            return None
        from clipsearch.v1 import search_pb2

        try:
            _search_stub(self.channel).Stats(search_pb2.StatsRequest(), timeout=PROBE_TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                return str(error.details())
        return None

    def _answers_a_call(self) -> bool:
        try:
            if self.kind == "embedder":
                from clipsearch.v1 import embedder_pb2

                _embedder_stub(self.channel).GetModelInfo(
                    embedder_pb2.GetModelInfoRequest(), timeout=PROBE_TIMEOUT_SECONDS
                )
            else:
                from clipsearch.v1 import search_pb2

                _search_stub(self.channel).Stats(search_pb2.StatsRequest(), timeout=PROBE_TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            self.answered = error.code() != grpc.StatusCode.UNAVAILABLE
            return False
        self.answered = True
        return True

    def close(self) -> None:
        self.channel.close()


class _QuietProbe:
    """What a probe says beyond readiness, for probes with nothing more to say: no refusal, no problem, never
    loading, nothing to close."""

    def refusal(self) -> str | None:
        return None

    def problem(self) -> str | None:
        return None

    def loading(self) -> bool:
        return False

    def close(self) -> None:
        pass


class RedisProbe(_QuietProbe):
    """Asks a Redis server for PONG over a plain socket (RESP inline command)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._loading = False

    def ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=PROBE_TIMEOUT_SECONDS) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            self._loading = False
            return False
        self._loading = reply.startswith(b"-LOADING")
        return reply.startswith(b"+PONG")

    def loading(self) -> bool:
        """Whether the last PING met Redis loading its data (the wrapper gives up if the load stalls)."""
        return self._loading


class WebProbe(_QuietProbe):
    """Asks the web page's server for /healthz, which answers without a password."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/healthz"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=PROBE_TIMEOUT_SECONDS) as response:
                return int(response.status) == 200
        except (OSError, ValueError):
            return False


class AliveProbe(_QuietProbe):
    """Ready once the process has lived `seconds` (a child that serves nothing, such as the indexer): one
    that exits sooner, on a configuration error, stops serve with its last words."""

    def __init__(self, seconds: float = 1.0) -> None:
        self._ready_at = time.monotonic() + seconds

    def ready(self) -> bool:
        return time.monotonic() >= self._ready_at


Probe = GrpcProbe | RedisProbe | WebProbe | AliveProbe


def model_info(address: str, security: ChannelSecurity | None = None) -> ModelInfo:
    """The embedder's ModelInfo message."""
    from clipsearch.v1 import embedder_pb2

    with (security or ChannelSecurity()).load().open(address, PROBE_CHANNEL_OPTIONS) as channel:
        info: ModelInfo = _embedder_stub(channel).GetModelInfo(embedder_pb2.GetModelInfoRequest(), timeout=30)
    return info

"""gRPC server plumbing both services share: limits, health, reflection, interceptors, shutdown."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from clipsearch import grpctypes

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_GRACE_SECONDS = 10.0
# Connections older than this are closed (GOAWAY, in-flight calls finishing within the age grace), so
# long-lived clients resolve the service's name again and spread calls over replicas added since.
DEFAULT_MAX_CONNECTION_AGE_SECONDS = 300.0
DEFAULT_MAX_CONNECTION_AGE_GRACE_SECONDS = 30.0
# gRPC takes both in milliseconds as a 32-bit integer.
MAX_CONNECTION_AGE_LIMIT_SECONDS = (2**31 - 1) // 1000

log = logging.getLogger(__name__)

# Adds one servicer to a server, e.g. functools.partial(add_EmbedderServicer_to_server, servicer).
Registrar = Callable[[grpc.Server], None]


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer to serve, under its full proto name (e.g. "clipsearch.v1.Embedder")."""

    name: str
    register: Registrar


@dataclass(frozen=True)
class ServerOptions:
    """How a server is built: limits, worker threads, interceptors, transport credentials."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_workers: int = 16
    interceptors: Sequence[grpctypes.ServerInterceptor] = field(default_factory=tuple)
    credentials: grpc.ServerCredentials | None = None
    # 0: connections live as long as the client keeps them.
    max_connection_age_seconds: float = DEFAULT_MAX_CONNECTION_AGE_SECONDS
    max_connection_age_grace_seconds: float = DEFAULT_MAX_CONNECTION_AGE_GRACE_SECONDS


class GrpcServer:
    """A started-or-not gRPC server with its bound port and health status."""

    def __init__(
        self, server: grpc.Server, port: int, health_servicer: health.HealthServicer, service_names: Sequence[str]
    ) -> None:
        self.server = server
        self.port = port
        self.health = health_servicer
        self.service_names = tuple(service_names)

    def start(self) -> None:
        self.server.start()

    def set_serving(self, serving: bool) -> None:
        """Reports SERVING or NOT_SERVING for the server as a whole ("") and for each service."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.service_names):
            self.health.set(name, status)

    def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Reports NOT_SERVING, lets in-flight calls finish for up to `grace` seconds, then stops."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self.server.wait_for_termination(timeout)


def create_server(address: str, services: Sequence[ServiceBinding], options: ServerOptions | None = None) -> GrpcServer:
    """Builds a server on `address` ("127.0.0.1:0" picks a free port) with health and reflection.

    Health starts as NOT_SERVING; call set_serving(True) once the service is ready.
    """
    options = options or ServerOptions()
    limit = options.max_message_bytes
    channel_options: list[tuple[str, int]] = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),
    ]
    if options.max_connection_age_seconds > 0:
        channel_options += [
            ("grpc.max_connection_age_ms", max(1, round(options.max_connection_age_seconds * 1000))),
            ("grpc.max_connection_age_grace_ms", round(options.max_connection_age_grace_seconds * 1000)),
        ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="grpc"),
        interceptors=list(options.interceptors),
        options=channel_options,
    )
    for binding in services:
        binding.register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [binding.name for binding in services]
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    try:
        if options.credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, options.credentials)
    except RuntimeError:  # grpcio raises this, rather than returning 0, when it cannot bind
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {address}: address in use or not available")
    grpc_server = GrpcServer(server, port, health_servicer, names)
    grpc_server.set_serving(False)
    return grpc_server


def run_until_signalled(
    server: GrpcServer, grace: float = DEFAULT_GRACE_SECONDS, on_stop: Callable[[], None] | None = None
) -> None:
    """Blocks until SIGTERM or SIGINT, then stops the server gracefully and runs on_stop."""
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        log.info("received %s, stopping (grace %.0fs)", signal.Signals(signum).name, grace)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    stop.wait()
    server.stop(grace)
    if on_stop is not None:
        on_stop()


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def fail(message: str, code: int = 2) -> None:
    """Exits the process with one line on stderr: for start-up errors a user must fix."""
    print(message, file=sys.stderr)
    raise SystemExit(code)

"""Prometheus metrics for the gRPC servers: per-call counts, latencies and in-flight calls, served on /metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from clipsearch import grpctypes
from clipsearch.serving import GrpcServer

log = logging.getLogger(__name__)

# Seconds: from a quick text embedding or search (milliseconds) to a large image batch (tens of seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Called with (request, response) after a call of one method succeeds, e.g. to count the items it stored.
ResponseHook = Callable[[Any, Any], None]


def _split_method(full_method: str) -> tuple[str, str]:
    """ "/clipsearch.v1.Search/Query" -> ("clipsearch.v1.Search", "Query")."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service or "unknown", method or "unknown"


class GrpcMetrics(grpctypes.ServerInterceptor):
    """A server interceptor that records every call of a known method in `registry`:

    grpc_server_started_total{grpc_service, grpc_method}
    grpc_server_handled_total{grpc_service, grpc_method, grpc_code}   (grpc_code: OK, INVALID_ARGUMENT, ...)
    grpc_server_handling_seconds{grpc_service, grpc_method}           (histogram, until the response is ready)
    grpc_server_in_flight_requests{grpc_service, grpc_method}

    Put it first among the interceptors, so that calls other interceptors refuse are counted too.
    `on_response` maps full method names ("/clipsearch.v1.Search/Upsert") to hooks run after a success.
    """

    def __init__(self, registry: CollectorRegistry, *, on_response: Mapping[str, ResponseHook] | None = None) -> None:
        labels = ("grpc_service", "grpc_method")
        self.started = Counter("grpc_server_started", "RPCs started on the server.", labels, registry=registry)
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by status code.",
            (*labels, "grpc_code"),
            registry=registry,
        )
        self.latency = Histogram(
            "grpc_server_handling_seconds",
            "Time to handle an RPC, until its response or error is ready.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge("grpc_server_in_flight_requests", "RPCs being handled now.", labels, registry=registry)
        self._on_response = dict(on_response or {})

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpctypes.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpctypes.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:  # an unknown method: gRPC answers UNIMPLEMENTED; not counted, to bound the labels
            return None
        full_method = handler_call_details.method
        labels = _split_method(full_method)
        hook = self._on_response.get(full_method)
        codecs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary, labels, hook), **codecs)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._unary(handler.stream_unary, labels, hook), **codecs)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(self._streaming(handler.unary_stream, labels), **codecs)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(self._streaming(handler.stream_stream, labels), **codecs)
        return handler

    def _unary(
        self, behavior: Callable[[Any, grpc.ServicerContext], Any], labels: tuple[str, str], hook: ResponseHook | None
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            started = self._start(labels)
            try:
                response = behavior(request, context)
            except BaseException:
                self._finish(labels, started, _code(context, failed=True))
                raise
            code = _code(context, failed=False)
            self._finish(labels, started, code)
            if hook is not None and code is grpc.StatusCode.OK:
                try:
                    hook(request, response)
                except Exception:  # a metrics hook must never fail the call
                    log.exception("metrics hook for %s/%s failed", *labels)
            return response

        return wrapper

    def _streaming(
        self, behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]], labels: tuple[str, str]
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = self._start(labels)
            try:
                yield from behavior(request, context)
            except GeneratorExit:  # the client went away before the stream ended
                self._finish(labels, started, grpc.StatusCode.CANCELLED)
                raise
            except BaseException:
                self._finish(labels, started, _code(context, failed=True))
                raise
            self._finish(labels, started, _code(context, failed=False))

        return wrapper

    def _start(self, labels: tuple[str, str]) -> float:
        self.started.labels(*labels).inc()
        self.in_flight.labels(*labels).inc()
        return time.perf_counter()

    def _finish(self, labels: tuple[str, str], started: float, code: grpc.StatusCode) -> None:
        self.latency.labels(*labels).observe(time.perf_counter() - started)
        self.in_flight.labels(*labels).dec()
        self.handled.labels(*labels, code.name).inc()


def _code(context: grpc.ServicerContext, *, failed: bool) -> grpc.StatusCode:
    """The status the call ends with: what the handler set or aborted with, else OK or UNKNOWN (an exception)."""
    code: grpc.StatusCode | None = context.code()  # type: ignore[attr-defined]  # grpc-stubs lacks it
    if code is not None:
        return code
    if failed:
        return grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.OK if context.is_active() else grpc.StatusCode.CANCELLED


class MetricsPortError(OSError):
    """The metrics endpoint cannot listen on its host and port."""


class MetricsEndpoint:
    """A running Prometheus HTTP endpoint (GET /metrics) for one registry."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as error:
            raise MetricsPortError(f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from None
        self.host = host
        self.port: int = self._server.server_port
        self._lock = threading.Lock()
        self._closed = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stops serving and joins the server thread; closing twice is a no-op."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def start_metrics_endpoint(host: str, port: int, registry: CollectorRegistry) -> MetricsEndpoint:
    """Serves `registry` at http://host:port/metrics (port 0: any free one) until close().

    Raises MetricsPortError when it cannot listen there.
    """
    return MetricsEndpoint(host, port, registry)


def metrics_endpoint_beside(
    server: GrpcServer, host: str, port: int | None, registry: CollectorRegistry
) -> MetricsEndpoint | None:
    """The metrics endpoint of a built, not yet started `server`, when a port is set (else None).

    When the endpoint cannot listen, the server is stopped and MetricsPortError raised.
    """
    if port is None:
        return None
    try:
        return start_metrics_endpoint(host, port, registry)
    except MetricsPortError:
        server.stop(0)
        raise

"""Builds and runs the embedder gRPC server (python -m embedder_service)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence

from PIL import Image
from prometheus_client import CollectorRegistry

from clipsearch import grpctypes
from clipsearch.auth import auth_interceptors
from clipsearch.envconfig import ConfigError
from clipsearch.metrics import GrpcMetrics, MetricsEndpoint, MetricsPortError, metrics_endpoint_beside
from clipsearch.serving import (
    DEFAULT_GRACE_SECONDS,
    GrpcServer,
    ServerOptions,
    ServiceBinding,
    configure_logging,
    create_server,
    fail,
    run_until_signalled,
)
from clipsearch.tls import optional_server_credentials, security_summary
from clipsearch.v1 import embedder_pb2_grpc
from embedder_service.batching import BatchingEmbedder, BatchingOptions
from embedder_service.config import EmbedderConfig
from embedder_service.families import UnsupportedCheckpoint
from embedder_service.inference import RuntimeUnavailable
from embedder_service.metrics import EmbedderMetrics
from embedder_service.model import ClipEmbedder, ModelNotFound, prefer_sleeping_openmp_threads
from embedder_service.servicer import SERVICE_NAME, EmbedderServicer

log = logging.getLogger("embedder_service")


class EmbedderServer(GrpcServer):
    """The gRPC server with its batcher and metrics endpoint, which start and stop with it."""

    def __init__(
        self, base: GrpcServer, batcher: BatchingEmbedder, registry: CollectorRegistry, metrics: MetricsEndpoint | None
    ) -> None:
        super().__init__(base.server, base.port, base.health, base.service_names)
        self.batcher = batcher
        self.registry = registry
        self.metrics = metrics

    def start(self) -> None:
        self.batcher.start()
        super().start()

    def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Stops the gRPC server (in-flight calls get `grace` seconds), then the batcher and metrics endpoint."""
        super().stop(grace)
        self.batcher.close()
        if self.metrics is not None:
            self.metrics.close()


def create_embedder(config: EmbedderConfig) -> ClipEmbedder:
    """The (not yet loaded) model the configuration names."""
    return ClipEmbedder(
        config.model,
        dtype=config.dtype,
        device=config.device,
        threads=config.threads,
        text_batch_size=config.limits.max_batch_texts,
        image_pass_size=config.image_pass_size,
        runtime=config.runtime,
        cache_dir=config.cache_dir,
        calibration_dir=config.calibration_dir,
    )


def build_server(
    config: EmbedderConfig,
    embedder: ClipEmbedder | None = None,
    *,
    interceptors: Sequence[grpctypes.ServerInterceptor] = (),
    registry: CollectorRegistry | None = None,
) -> EmbedderServer:
    """A server for `config` (not started, health NOT_SERVING); loads the model first if needed.

    `interceptors` wrap every call (metrics, authentication); they run in the given order, after the
    server's own call metrics and before the token check that config.auth_token adds. Metrics go to
    `registry` (a new one by default), served over HTTP when config.metrics_port is set.
    """
    embedder = embedder or create_embedder(config)
    embedder.load()
    registry = CollectorRegistry() if registry is None else registry
    batching = BatchingOptions(
        enabled=config.dynamic_batching,
        max_images=min(config.batch_max_size, config.limits.max_batch_images),
        max_texts=min(config.batch_max_size, config.limits.max_batch_texts),
        max_wait_seconds=config.batch_max_wait_ms / 1000,
    )
    batcher = BatchingEmbedder(embedder, batching, observer=EmbedderMetrics(registry))
    servicer = EmbedderServicer(batcher, config.limits, fast_resize=config.fast_resize)
    binding = ServiceBinding(
        SERVICE_NAME, functools.partial(embedder_pb2_grpc.add_EmbedderServicer_to_server, servicer)
    )
    options = ServerOptions(
        max_message_bytes=config.limits.max_message_bytes,
        max_workers=config.workers,
        interceptors=(GrpcMetrics(registry), *interceptors, *auth_interceptors(config.auth_token)),
        credentials=optional_server_credentials(config.tls),
        max_connection_age_seconds=config.max_connection_age_seconds,
        max_connection_age_grace_seconds=config.max_connection_age_grace_seconds,
    )
    base = create_server(config.address, [binding], options)
    metrics = metrics_endpoint_beside(base, config.host, config.metrics_port, registry)
    return EmbedderServer(base, batcher, registry, metrics)


def main(env: Mapping[str, str] | None = None) -> None:
    """Loads the model, then serves until SIGTERM/SIGINT. Start-up problems exit with one line."""
    try:
        config = EmbedderConfig.from_env(env)
    except ConfigError as error:
        fail(f"embedder: {error}")
    configure_logging(config.log_level)
    prefer_sleeping_openmp_threads()
    # Pillow refuses images over twice this itself; ours is the stricter check (before decoding).
    Image.MAX_IMAGE_PIXELS = config.limits.max_image_pixels
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    embedder = create_embedder(config)
    started = time.monotonic()
    try:
        info = embedder.load()
    except (ModelNotFound, RuntimeUnavailable, UnsupportedCheckpoint) as error:
        fail(f"embedder: {error}")
    log.info(
        "loaded %s (%s, %s) in %.1fs: %d-d vectors, %dpx input, %s on %s (%s), %d threads, images in passes of %s",
        info.model_id,
        info.family,
        info.fingerprint[:19],
        time.monotonic() - started,
        info.dimension,
        info.image_size,
        info.dtype,
        info.device,
        info.runtime,
        config.threads,
        embedder.image_pass_size or "any size",
    )
    try:
        server = build_server(config, embedder)
    except MetricsPortError as error:
        fail(f"embedder: {error} (set EMBEDDER_METRICS_PORT)")
    except OSError as error:
        fail(f"embedder: {error} (set EMBEDDER_HOST / EMBEDDER_PORT)")
    server.start()
    server.set_serving(True)
    host = f"[{config.host}]" if ":" in config.host else config.host
    log.info(
        "embedder serving %s on %s:%d (%s)",
        SERVICE_NAME,
        host,
        server.port,
        security_summary(config.tls, config.auth_token),
    )
    if server.metrics is not None:
        log.info("metrics on %s", server.metrics.url)
    run_until_signalled(server, config.grace_seconds)
    log.info("embedder stopped")

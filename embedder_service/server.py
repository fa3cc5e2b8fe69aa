"""Builds and runs the embedder gRPC server (python -m embedder_service)."""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence

import grpc
from PIL import Image

from clipsearch.envconfig import ConfigError
from clipsearch.serving import (GrpcServer, ServerOptions, ServiceBinding, configure_logging, create_server,
                                fail, run_until_signalled)
from clipsearch.v1 import embedder_pb2_grpc
from embedder_service.config import EmbedderConfig
from embedder_service.model import ClipEmbedder, ModelNotFound
from embedder_service.servicer import SERVICE_NAME, EmbedderServicer

log = logging.getLogger("embedder_service")


def create_embedder(config: EmbedderConfig) -> ClipEmbedder:
    """The (not yet loaded) model the configuration names."""
    return ClipEmbedder(config.model, dtype=config.dtype, device=config.device, threads=config.threads,
                        text_batch_size=config.limits.max_batch_texts)


def build_server(config: EmbedderConfig, embedder: ClipEmbedder | None = None, *,
                 interceptors: Sequence[grpc.ServerInterceptor] = ()) -> GrpcServer:
    """A server for `config` (not started, health NOT_SERVING); loads the model first if needed.

    `interceptors` wrap every call (metrics, authentication); they run in the given order.
    """
    embedder = embedder or create_embedder(config)
    embedder.load()
    servicer = EmbedderServicer(embedder, config.limits, fast_resize=config.fast_resize)
    binding = ServiceBinding(SERVICE_NAME,
                             functools.partial(embedder_pb2_grpc.add_EmbedderServicer_to_server, servicer))
    options = ServerOptions(max_message_bytes=config.limits.max_message_bytes, max_workers=config.workers,
                            interceptors=tuple(interceptors))
    return create_server(config.address, [binding], options)


def main(env: Mapping[str, str] | None = None) -> None:
    """Loads the model, then serves until SIGTERM/SIGINT. Start-up problems exit with one line."""
    try:
        config = EmbedderConfig.from_env(env)
    except ConfigError as error:
        fail(f"embedder: {error}")
    configure_logging(config.log_level)
    # Pillow refuses images over twice this itself; ours is the stricter check (before decoding).
    Image.MAX_IMAGE_PIXELS = config.limits.max_image_pixels
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    embedder = create_embedder(config)
    started = time.monotonic()
    try:
        info = embedder.load()
    except ModelNotFound as error:
        fail(f"embedder: {error}")
    log.info("loaded %s in %.1fs: %d-d vectors, %dpx input, %s on %s, %d threads", info.model_id,
             time.monotonic() - started, info.dimension, info.image_size, info.dtype, info.device, config.threads)
    try:
        server = build_server(config, embedder)
    except OSError as error:
        fail(f"embedder: {error} (set EMBEDDER_HOST / EMBEDDER_PORT)")
    server.start()
    server.set_serving(True)
    host = f"[{config.host}]" if ":" in config.host else config.host
    log.info("embedder serving %s on %s:%d", SERVICE_NAME, host, server.port)
    run_until_signalled(server, config.grace_seconds)
    log.info("embedder stopped")

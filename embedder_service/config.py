"""Embedder configuration from environment variables.

| Variable                     | Default                        | Meaning                                             |
|------------------------------|--------------------------------|-----------------------------------------------------|
| EMBEDDER_HOST                | 127.0.0.1                      | address to listen on (0.0.0.0 or :: for all)        |
| EMBEDDER_PORT                | 50051                          | port to listen on (0 picks a free one)              |
| CLIP_MODEL                   | openai/clip-vit-base-patch16   | local checkpoint directory, or a hub id in the HF   |
|                              |                                | cache (or downloadable)                             |
| EMBEDDER_DTYPE               | auto                           | auto, fp32 or bf16; auto = bf16 where the device    |
|                              |                                | computes it natively (AVX-512 BF16/AMX, CUDA bf16)  |
| EMBEDDER_DEVICE              | auto                           | auto, cpu, cuda or cuda:N; auto = cuda if available |
| EMBEDDER_THREADS             | all cores                      | torch compute threads                               |
| EMBEDDER_MAX_BATCH           | 64                             | most images per EmbedImages call                    |
| EMBEDDER_MAX_TEXTS           | 256                            | most texts per EmbedTexts call                      |
| EMBEDDER_MAX_LABELS          | 1000                           | most labels per Classify call                       |
| EMBEDDER_MAX_TEXT_BYTES      | 65536                          | most UTF-8 bytes in one text or label               |
| EMBEDDER_MAX_IMAGE_PIXELS    | 100000000                      | most pixels (width*height) in one image             |
| EMBEDDER_MAX_MESSAGE_BYTES   | 67108864                       | largest request/response message                    |
| EMBEDDER_FAST_RESIZE         | false                          | faster, slightly inexact resizing of large images   |
| EMBEDDER_WORKERS             | 16                             | gRPC worker threads (concurrent calls)              |
| EMBEDDER_GRACE_SECONDS       | 10                             | on SIGTERM, how long in-flight calls may finish     |
| EMBEDDER_LOG_LEVEL           | info                           | debug, info, warning or error                       |
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from clipsearch.envconfig import (ConfigError, env_bool, env_choice, env_float, env_int, env_str,
                                  environ)
from clipsearch.serving import DEFAULT_GRACE_SECONDS, DEFAULT_MAX_MESSAGE_BYTES

DEFAULT_MODEL = "openai/clip-vit-base-patch16"
DEFAULT_PORT = 50051

__all__ = ["ConfigError", "DEFAULT_MODEL", "DEFAULT_PORT", "EmbedderConfig", "Limits"]


def _all_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Limits:
    """What one call may ask for; reported to clients in ModelInfo."""

    max_batch_images: int = 64
    max_batch_texts: int = 256
    max_labels: int = 1000
    max_text_bytes: int = 64 * 1024
    max_image_pixels: int = 100_000_000
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class EmbedderConfig:
    """Everything the embedder server needs to start."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    model: str = DEFAULT_MODEL
    dtype: str = "auto"
    device: str = "auto"
    threads: int = field(default_factory=_all_cores)
    limits: Limits = field(default_factory=Limits)
    fast_resize: bool = False
    workers: int = 16
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    log_level: str = "info"

    @property
    def address(self) -> str:
        """host:port for gRPC, with IPv6 hosts in brackets."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EmbedderConfig:
        """Reads the variables in this module's table; a bad value raises ConfigError naming it."""
        env = environ() if env is None else env
        limits = Limits(
            max_batch_images=env_int(env, "EMBEDDER_MAX_BATCH", Limits.max_batch_images, minimum=1),
            max_batch_texts=env_int(env, "EMBEDDER_MAX_TEXTS", Limits.max_batch_texts, minimum=1),
            max_labels=env_int(env, "EMBEDDER_MAX_LABELS", Limits.max_labels, minimum=1),
            max_text_bytes=env_int(env, "EMBEDDER_MAX_TEXT_BYTES", Limits.max_text_bytes, minimum=1),
            max_image_pixels=env_int(env, "EMBEDDER_MAX_IMAGE_PIXELS", Limits.max_image_pixels, minimum=1),
            max_message_bytes=env_int(env, "EMBEDDER_MAX_MESSAGE_BYTES", Limits.max_message_bytes,
                                      minimum=1024, maximum=2**31 - 1),
        )
        device = env_str(env, "EMBEDDER_DEVICE", "auto").lower()
        if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
            raise ConfigError(f"EMBEDDER_DEVICE={device!r} is not one of: auto, cpu, cuda, cuda:N")
        grace = env_float(env, "EMBEDDER_GRACE_SECONDS", DEFAULT_GRACE_SECONDS, minimum=0.0)
        if not math.isfinite(grace):
            raise ConfigError(f"EMBEDDER_GRACE_SECONDS={grace} is not a finite number of seconds")
        return cls(
            host=env_str(env, "EMBEDDER_HOST", "127.0.0.1"),
            port=env_int(env, "EMBEDDER_PORT", DEFAULT_PORT, minimum=0, maximum=65535),
            model=env_str(env, "CLIP_MODEL", DEFAULT_MODEL),
            dtype=env_choice(env, "EMBEDDER_DTYPE", "auto", ("auto", "fp32", "bf16")),
            device=device,
            threads=env_int(env, "EMBEDDER_THREADS", _all_cores(), minimum=1, maximum=1024),
            limits=limits,
            fast_resize=env_bool(env, "EMBEDDER_FAST_RESIZE", False),
            workers=env_int(env, "EMBEDDER_WORKERS", 16, minimum=1, maximum=1024),
            grace_seconds=grace,
            log_level=env_choice(env, "EMBEDDER_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
        )

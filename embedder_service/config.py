"""Embedder configuration from environment variables.

| Variable                     | Default                        | Meaning                                             |
|------------------------------|--------------------------------|-----------------------------------------------------|
| EMBEDDER_HOST                | 127.0.0.1                      | address to listen on (0.0.0.0 or :: for all)        |
| EMBEDDER_PORT                | 50051                          | port to listen on (0 picks a free one)              |
| CLIP_MODEL                   | openai/clip-vit-base-patch16   | local checkpoint directory, or a hub id in the HF   |
|                              |                                | cache (or downloadable)                             |
| EMBEDDER_DTYPE               | auto                           | auto, fp32, bf16 or int8; auto = bf16 where the     |
|                              |                                | device computes it natively (AVX-512 BF16/AMX, CUDA |
|                              |                                | bf16), else fp32; int8 (opt-in, CPU, OpenVINO or    |
|                              |                                | ONNX Runtime) is quantized after training           |
| EMBEDDER_RUNTIME             | auto                           | auto, torch, openvino or onnxruntime; auto = torch  |
|                              |                                | on CUDA, OpenVINO on CPUs with VNNI/AVX-512 BF16/   |
|                              |                                | AMX, ONNX Runtime on AVX2-only CPUs, torch where    |
|                              |                                | neither is installed (docs/benchmarks.md)           |
| EMBEDDER_CACHE_DIR           | ~/.cache/clipsearch/models     | where models converted for OpenVINO / ONNX Runtime  |
|                              |                                | are kept, keyed by checkpoint, runtime version and  |
|                              |                                | precision                                           |
| EMBEDDER_CALIBRATION_DIR     | (unset)                        | images to calibrate int8 on (up to 300); unset =    |
|                              |                                | a built-in generated set                            |
| EMBEDDER_DEVICE              | auto                           | auto, cpu, cuda or cuda:N; auto = cuda if available |
| EMBEDDER_THREADS             | all cores                      | the runtime's compute threads                       |
| EMBEDDER_MAX_BATCH           | 64                             | most images per EmbedImages call                    |
| EMBEDDER_MAX_TEXTS           | 256                            | most texts per EmbedTexts call                      |
| EMBEDDER_MAX_LABELS          | 1000                           | most labels per Classify call                       |
| EMBEDDER_MAX_TEXT_BYTES      | 65536                          | most UTF-8 bytes in one text or label               |
| EMBEDDER_MAX_IMAGE_PIXELS    | 100000000                      | most pixels (width*height) in one image             |
| EMBEDDER_MAX_MESSAGE_BYTES   | 67108864                       | largest request/response message                    |
| EMBEDDER_FAST_RESIZE         | false                          | faster, slightly inexact resizing of large images   |
|                              |                                | (vectors within a cosine of 0.999 of exact)         |
| EMBEDDER_WORKERS             | 16                             | gRPC worker threads (concurrent calls)              |
| EMBEDDER_DYNAMIC_BATCHING    | true                           | merge concurrent requests into shared forward       |
|                              |                                | passes; false = one request per pass, in turn       |
| EMBEDDER_BATCH_MAX_SIZE      | 32                             | most images or texts merged into one forward pass   |
|                              |                                | (also capped by EMBEDDER_MAX_BATCH/_MAX_TEXTS); a   |
|                              |                                | larger request runs alone                           |
| EMBEDDER_BATCH_MAX_WAIT_MS   | 5                              | longest wait, once a request is queued and the      |
|                              |                                | model free, for more requests to join its pass;     |
|                              |                                | after an idle spell, only while they keep coming    |
| EMBEDDER_IMAGE_PASS_SIZE     | auto                           | most images per model forward pass; a larger batch  |
|                              |                                | runs as several passes. auto = 4 on a CPU in fp32,  |
|                              |                                | 8 in bf16 (cache-sized passes run fastest there),   |
|                              |                                | a whole batch on CUDA; 0 = a whole batch always     |
| EMBEDDER_METRICS_PORT        | (unset)                        | Prometheus /metrics HTTP port on EMBEDDER_HOST;     |
|                              |                                | unset or 0 = no metrics endpoint                    |
| OMP_WAIT_POLICY              | PASSIVE                        | OpenMP's own: PASSIVE threads sleep between torch   |
|                              |                                | operations instead of spinning (ACTIVE), leaving    |
|                              |                                | the cores to request threads and the batcher        |
| EMBEDDER_GRACE_SECONDS       | 10                             | on SIGTERM, how long in-flight calls may finish     |
| EMBEDDER_LOG_LEVEL           | info                           | debug, info, warning or error                       |
| CLIPSEARCH_AUTH_TOKEN        | (unset)                        | shared token every call must carry as metadata      |
|                              |                                | "authorization: Bearer <token>" (health checks and  |
|                              |                                | reflection exempt); unset = no authentication       |
| CLIPSEARCH_AUTH_TOKEN_FILE   | (unset)                        | a file holding that token, instead of the variable  |
| EMBEDDER_TLS_CERT            | (unset)                        | PEM certificate chain; with EMBEDDER_TLS_KEY the    |
|                              |                                | server speaks TLS, without both plaintext           |
| EMBEDDER_TLS_KEY             | (unset)                        | PEM private key of that certificate (unencrypted)   |
| EMBEDDER_TLS_CLIENT_CA       | (unset)                        | PEM CA certificate(s): when set, clients must show  |
|                              |                                | a certificate it signed (mutual TLS)                |

| Variable                                  | Default | Meaning                                            |
|-------------------------------------------|---------|----------------------------------------------------|
| EMBEDDER_MAX_CONNECTION_AGE_SECONDS       | 300     | a client connection older than this is closed      |
|                                           |         | (GOAWAY), so long-lived clients resolve the        |
|                                           |         | service's name again and reach new replicas;       |
|                                           |         | 0 = connections live as long as clients keep them  |
| EMBEDDER_MAX_CONNECTION_AGE_GRACE_SECONDS | 30      | how long calls in flight on such a connection may  |
|                                           |         | still finish before it is cut                      |
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from clipsearch.auth import token_from_env
from clipsearch.envconfig import (
    ConfigError,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_seconds,
    env_str,
    environ,
)
from clipsearch.serving import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_MAX_CONNECTION_AGE_GRACE_SECONDS,
    DEFAULT_MAX_CONNECTION_AGE_SECONDS,
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_CONNECTION_AGE_LIMIT_SECONDS,
)
from clipsearch.tls import ServerTls

DEFAULT_MODEL = "openai/clip-vit-base-patch16"
DEFAULT_PORT = 50051

__all__ = ["DEFAULT_MODEL", "DEFAULT_PORT", "ConfigError", "EmbedderConfig", "Limits"]


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
    runtime: str = "auto"
    cache_dir: Path | None = None  # None: towers.default_cache_dir()
    calibration_dir: Path | None = None  # None: the built-in calibration set
    threads: int = field(default_factory=_all_cores)
    limits: Limits = field(default_factory=Limits)
    fast_resize: bool = False
    workers: int = 16
    dynamic_batching: bool = True
    batch_max_size: int = 32
    batch_max_wait_ms: float = 5.0
    image_pass_size: int | None = None  # None: auto (model.default_image_pass_size); 0: no limit
    metrics_port: int | None = None  # None: no metrics endpoint; 0: any free port
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    max_connection_age_seconds: float = DEFAULT_MAX_CONNECTION_AGE_SECONDS  # 0: unlimited
    max_connection_age_grace_seconds: float = DEFAULT_MAX_CONNECTION_AGE_GRACE_SECONDS
    log_level: str = "info"
    auth_token: str | None = field(default=None, repr=False)  # None: authentication off
    tls: ServerTls | None = None  # None: plaintext

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
            max_message_bytes=env_int(
                env, "EMBEDDER_MAX_MESSAGE_BYTES", Limits.max_message_bytes, minimum=1024, maximum=2**31 - 1
            ),
        )
        device = env_str(env, "EMBEDDER_DEVICE", "auto").lower()
        if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
            raise ConfigError(f"EMBEDDER_DEVICE={device!r} is not one of: auto, cpu, cuda, cuda:N")
        grace = env_float(env, "EMBEDDER_GRACE_SECONDS", DEFAULT_GRACE_SECONDS, minimum=0.0)
        max_wait_ms = env_float(env, "EMBEDDER_BATCH_MAX_WAIT_MS", 5.0, minimum=0.0)
        if not math.isfinite(max_wait_ms) or max_wait_ms > 60_000:
            raise ConfigError(f"EMBEDDER_BATCH_MAX_WAIT_MS={max_wait_ms} must be between 0 and 60000")
        if not math.isfinite(grace):
            raise ConfigError(f"EMBEDDER_GRACE_SECONDS={grace} is not a finite number of seconds")
        return cls(
            host=env_str(env, "EMBEDDER_HOST", "127.0.0.1"),
            port=env_int(env, "EMBEDDER_PORT", DEFAULT_PORT, minimum=0, maximum=65535),
            model=env_str(env, "CLIP_MODEL", DEFAULT_MODEL),
            dtype=env_choice(env, "EMBEDDER_DTYPE", "auto", ("auto", "fp32", "bf16", "int8")),
            device=device,
            runtime=env_choice(env, "EMBEDDER_RUNTIME", "auto", ("auto", "torch", "openvino", "onnxruntime")),
            cache_dir=_optional_dir(env, "EMBEDDER_CACHE_DIR"),
            calibration_dir=_calibration_dir(env),
            threads=env_int(env, "EMBEDDER_THREADS", _all_cores(), minimum=1, maximum=1024),
            limits=limits,
            fast_resize=env_bool(env, "EMBEDDER_FAST_RESIZE", False),
            workers=env_int(env, "EMBEDDER_WORKERS", 16, minimum=1, maximum=1024),
            dynamic_batching=env_bool(env, "EMBEDDER_DYNAMIC_BATCHING", True),
            batch_max_size=env_int(env, "EMBEDDER_BATCH_MAX_SIZE", 32, minimum=1),
            batch_max_wait_ms=max_wait_ms,
            image_pass_size=_image_pass_size(env),
            metrics_port=env_int(env, "EMBEDDER_METRICS_PORT", 0, minimum=0, maximum=65535) or None,
            grace_seconds=grace,
            max_connection_age_seconds=env_seconds(
                env,
                "EMBEDDER_MAX_CONNECTION_AGE_SECONDS",
                DEFAULT_MAX_CONNECTION_AGE_SECONDS,
                maximum=MAX_CONNECTION_AGE_LIMIT_SECONDS,
            ),
            max_connection_age_grace_seconds=env_seconds(
                env,
                "EMBEDDER_MAX_CONNECTION_AGE_GRACE_SECONDS",
                DEFAULT_MAX_CONNECTION_AGE_GRACE_SECONDS,
                maximum=MAX_CONNECTION_AGE_LIMIT_SECONDS,
            ),
            log_level=env_choice(env, "EMBEDDER_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            auth_token=token_from_env(env),
            tls=ServerTls.from_env(env, "EMBEDDER"),
        )


def _image_pass_size(env: Mapping[str, str]) -> int | None:
    if env.get("EMBEDDER_IMAGE_PASS_SIZE", "").strip().lower() in ("", "auto"):
        return None
    return env_int(env, "EMBEDDER_IMAGE_PASS_SIZE", 0, minimum=0, maximum=4096)


def _optional_dir(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    return Path(value).expanduser() if value else None


def _calibration_dir(env: Mapping[str, str]) -> Path | None:
    directory = _optional_dir(env, "EMBEDDER_CALIBRATION_DIR")
    if directory is not None and not directory.is_dir():
        raise ConfigError(f"EMBEDDER_CALIBRATION_DIR={directory} is not a directory")
    return directory

"""Embedder configuration from the environment: defaults, parsing, one-line errors naming the variable."""

from __future__ import annotations

import pytest

from embedder_service.config import DEFAULT_MODEL, ConfigError, EmbedderConfig, Limits
from embedder_service.model import cpu_supports_bf16, resolve_dtype


def test_defaults_listen_on_loopback_port_50051() -> None:
    config = EmbedderConfig.from_env({})
    assert (config.host, config.port, config.address) == ("127.0.0.1", 50051, "127.0.0.1:50051")
    assert config.model == DEFAULT_MODEL == "openai/clip-vit-base-patch16"
    assert (config.dtype, config.device, config.fast_resize) == ("auto", "auto", False)
    assert config.threads >= 1
    assert config.limits == Limits()
    assert config.limits.max_message_bytes == 64 * 1024 * 1024


def test_every_variable_is_read() -> None:
    config = EmbedderConfig.from_env(
        {
            "EMBEDDER_HOST": "::",
            "EMBEDDER_PORT": "6000",
            "CLIP_MODEL": "/models/clip",
            "EMBEDDER_DTYPE": "BF16",
            "EMBEDDER_DEVICE": "cuda:1",
            "EMBEDDER_THREADS": "3",
            "EMBEDDER_MAX_BATCH": "8",
            "EMBEDDER_MAX_TEXTS": "9",
            "EMBEDDER_MAX_LABELS": "10",
            "EMBEDDER_MAX_TEXT_BYTES": "11",
            "EMBEDDER_MAX_IMAGE_PIXELS": "12",
            "EMBEDDER_MAX_MESSAGE_BYTES": "4096",
            "EMBEDDER_FAST_RESIZE": "true",
            "EMBEDDER_WORKERS": "2",
            "EMBEDDER_GRACE_SECONDS": "1.5",
            "EMBEDDER_LOG_LEVEL": "DEBUG",
            "EMBEDDER_IMAGE_PASS_SIZE": "6",
        }
    )
    assert config == EmbedderConfig(
        host="::",
        port=6000,
        model="/models/clip",
        dtype="bf16",
        device="cuda:1",
        threads=3,
        limits=Limits(8, 9, 10, 11, 12, 4096),
        fast_resize=True,
        workers=2,
        grace_seconds=1.5,
        log_level="debug",
        image_pass_size=6,
    )
    assert config.address == "[::]:6000"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EMBEDDER_PORT", "http"),
        ("EMBEDDER_PORT", "70000"),
        ("EMBEDDER_DTYPE", "fp16"),
        ("EMBEDDER_DEVICE", "tpu"),
        ("EMBEDDER_THREADS", "0"),
        ("EMBEDDER_MAX_BATCH", "-1"),
        ("EMBEDDER_MAX_MESSAGE_BYTES", "10"),
        ("EMBEDDER_FAST_RESIZE", "maybe"),
        ("EMBEDDER_GRACE_SECONDS", "nan"),
        ("EMBEDDER_LOG_LEVEL", "loud"),
        ("EMBEDDER_IMAGE_PASS_SIZE", "-1"),
        ("EMBEDDER_IMAGE_PASS_SIZE", "big"),
        ("EMBEDDER_IMAGE_PASS_SIZE", "5000"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        EmbedderConfig.from_env({name: value})
    message = str(error.value)
    assert name in message and "\n" not in message


def test_image_pass_size_is_auto_unless_set() -> None:
    assert EmbedderConfig.from_env({}).image_pass_size is None
    assert EmbedderConfig.from_env({"EMBEDDER_IMAGE_PASS_SIZE": " Auto "}).image_pass_size is None
    assert EmbedderConfig.from_env({"EMBEDDER_IMAGE_PASS_SIZE": "0"}).image_pass_size == 0


def test_dtype_auto_is_bf16_only_where_the_cpu_has_native_bf16() -> None:
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
        flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    native = bool({"avx512_bf16", "amx_bf16"} & set(flags))
    assert cpu_supports_bf16() is native
    assert resolve_dtype("auto", "cpu") == ("bf16" if native else "fp32")
    assert resolve_dtype("fp32", "cpu") == "fp32" and resolve_dtype("bf16", "cpu") == "bf16"

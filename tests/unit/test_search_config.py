"""The search service's configuration from environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipsearch.envconfig import ConfigError
from search_service.config import SearchConfig, redact_url


def test_defaults() -> None:
    config = SearchConfig.from_env({})
    assert config == SearchConfig()
    assert (config.address, config.redis_url, config.data_dir) == ("127.0.0.1:50052", None, Path("data/redis"))
    assert (config.index_name, config.key_prefix, config.dimension, config.algorithm) == (
        "clipsearch",
        "clipsearch:item:",
        512,
        "hnsw",
    )
    assert (config.hnsw_m, config.hnsw_ef_construction, config.hnsw_ef_runtime) == (16, 200, 100)
    assert (config.max_message_bytes, config.appendfsync, config.log_level) == (64 * 1024 * 1024, "everysec", "INFO")
    assert (config.index_after_load, config.redis_owned, config.exact_while_indexing) == (True, False, True)


def test_every_variable_is_read() -> None:
    config = SearchConfig.from_env(
        {
            "SEARCH_HOST": "0.0.0.0",
            "SEARCH_PORT": "6000",
            "REDIS_URL": "rediss://:pw@redis.example:6380/2",
            "SEARCH_DATA_DIR": "/var/lib/cs",
            "SEARCH_REDIS_APPENDFSYNC": "always",
            "SEARCH_INDEX_AFTER_LOAD": "false",
            "SEARCH_EXACT_WHILE_INDEXING": "false",
            "SEARCH_REDIS_OWNED": "true",
            "SEARCH_INDEX": "photos",
            "SEARCH_DIM": "768",
            "SEARCH_ALGORITHM": "FLAT",
            "SEARCH_HNSW_M": "32",
            "SEARCH_HNSW_EF_CONSTRUCTION": "400",
            "SEARCH_HNSW_EF_RUNTIME": "50",
            "SEARCH_QUERY_TIMEOUT_MS": "0",
            "SEARCH_REDIS_TIMEOUT_SECONDS": "2.5",
            "SEARCH_HEALTH_INTERVAL_SECONDS": "0.5",
            "SEARCH_MAX_MESSAGE_BYTES": "2097152",
            "SEARCH_GRACE_SECONDS": "3",
            "SEARCH_LOG_LEVEL": "debug",
        }
    )
    assert config == SearchConfig(
        host="0.0.0.0",
        port=6000,
        redis_url="rediss://:pw@redis.example:6380/2",
        data_dir=Path("/var/lib/cs"),
        appendfsync="always",
        index_after_load=False,
        exact_while_indexing=False,
        redis_owned=True,
        index_name="photos",
        key_prefix="photos:item:",
        dimension=768,
        algorithm="flat",
        hnsw_m=32,
        hnsw_ef_construction=400,
        hnsw_ef_runtime=50,
        query_timeout_ms=0,
        redis_timeout_seconds=2.5,
        health_interval_seconds=0.5,
        max_message_bytes=2097152,
        grace_seconds=3.0,
        log_level="DEBUG",
    )
    assert SearchConfig.from_env({"SEARCH_KEY_PREFIX": "cs:"}).key_prefix == "cs:"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SEARCH_PORT": "http"}, "SEARCH_PORT='http' is not an integer"),
        ({"SEARCH_PORT": "70000"}, "SEARCH_PORT=70000 is above the maximum 65535"),
        ({"SEARCH_DIM": "0"}, "SEARCH_DIM=0 is below the minimum 1"),
        ({"SEARCH_ALGORITHM": "ivf"}, "SEARCH_ALGORITHM='ivf' is not one of: hnsw, flat"),
        ({"SEARCH_REDIS_APPENDFSYNC": "sometimes"}, "SEARCH_REDIS_APPENDFSYNC='sometimes' is not one of"),
        ({"REDIS_URL": "http://:hunter2@localhost:6379"}, "REDIS_URL='http://:***@localhost:6379' must start with"),
        ({"SEARCH_INDEX": "my index"}, "SEARCH_INDEX='my index' must not contain spaces"),
        ({"SEARCH_HNSW_EF_RUNTIME": "-1"}, "SEARCH_HNSW_EF_RUNTIME=-1 is below the minimum 1"),
        ({"SEARCH_INDEX_AFTER_LOAD": "maybe"}, "SEARCH_INDEX_AFTER_LOAD='maybe' is not a boolean"),
        ({"SEARCH_EXACT_WHILE_INDEXING": "2"}, "SEARCH_EXACT_WHILE_INDEXING='2' is not a boolean"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        SearchConfig.from_env(env)
    assert message in str(error.value)
    assert "hunter2" not in str(error.value)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:secret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("rediss://user:secret@host.example:6380", "rediss://user:***@host.example:6380"),
        ("redis://user@host.example", "redis://user@host.example"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted

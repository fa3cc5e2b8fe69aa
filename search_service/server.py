"""Builds and runs the search gRPC server: `python -m search_service`."""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from clipsearch.auth import auth_interceptors
from clipsearch.envconfig import ConfigError
from clipsearch.metrics import GrpcMetrics, MetricsEndpoint, metrics_endpoint_beside
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
from clipsearch.v1 import search_pb2_grpc
from search_service.config import SearchConfig, redact_url
from search_service.errors import IndexMismatch, Unavailable
from search_service.index import SearchIndex
from search_service.loading import LOADING_PREFIX, RedisLoading
from search_service.redis_server import LocalRedis, LocalRedisError, remember_block_budget, rewrite_aof
from search_service.schema import build_schema
from search_service.servicer import SearchServicer

SERVICE_NAME = "clipsearch.v1.Search"
LOADING_LOG_SECONDS = 10.0

log = logging.getLogger(__name__)


class RedisWatcher:
    """Checks Redis and the index every `interval` seconds and reports the outcome (True: ready).

    It re-creates the index when Redis comes back without it, so the service recovers by itself.
    """

    def __init__(self, index: SearchIndex, report: Callable[[bool], None], interval: float) -> None:
        self._index = index
        self._report = report
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redis-watcher", daemon=True)
        self._last: tuple[bool, str] | None = None
        self._last_logged = -math.inf

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            self.check_once()
            if self._stop.wait(self._interval):
                return

    def _log(self, state: tuple[bool, str], unexpected: Exception | None) -> None:
        self._last_logged = time.monotonic()
        if state[0] and state[1]:
            log.info("SERVING partial results, the index is still filling: %s", state[1])
        elif state[0]:
            log.info("Redis at %s and index %r ready: SERVING", self._index.redis_label, self._index.schema.name)
        else:
            log.warning("NOT_SERVING: %s", state[1], exc_info=unexpected)

    def check_once(self) -> None:
        unexpected: Exception | None = None
        try:
            self._index.check()
            state = (True, "")
        except (Unavailable, IndexMismatch) as e:
            state = (False, str(e))
        except Exception as e:  # noqa: BLE001 - the watcher must outlive any surprise
            unexpected = e
            state = (False, f"{type(e).__name__}: {e}")
        fill = self._index.fill if state[0] else None
        if fill is not None:
            state = (True, fill.message)
        loading = state[1].startswith(LOADING_PREFIX)
        if loading and self._last is not None and self._last[1].startswith(LOADING_PREFIX):
            # a load in progress: a line every LOADING_LOG_SECONDS, not one at every check
            if time.monotonic() - self._last_logged >= LOADING_LOG_SECONDS:
                self._log(state, unexpected)
        elif state != self._last:  # log transitions only, not every interval
            self._log(state, unexpected)
        self._last = state
        self._report(state[0])


class LoadingReport:
    """Reports a local Redis's load, a line every LOADING_LOG_SECONDS: "Loading the library: 43%, ..."."""

    def __init__(self, write: Callable[[str], None], interval: float = LOADING_LOG_SECONDS) -> None:
        self._write = write
        self._interval = interval
        self._last = -math.inf

    def __call__(self, loading: RedisLoading) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._write(loading.message)


class SearchServer(GrpcServer):
    """The gRPC server plus the watcher that keeps its health (and the search_redis_up gauge) in step with
    Redis, and the metrics endpoint, if any."""

    def __init__(
        self,
        base: GrpcServer,
        index: SearchIndex,
        health_interval: float,
        *,
        registry: CollectorRegistry | None = None,
        metrics: MetricsEndpoint | None = None,
        before_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(base.server, base.port, base.health, base.service_names)
        self.index = index
        self._before_close = before_close  # once no call is in flight, before the Redis client closes
        self.registry = CollectorRegistry() if registry is None else registry
        self.metrics = metrics
        self._redis_up = Gauge(
            "search_redis_up",
            "1 while Redis answers and the index is ready (health SERVING), else 0.",
            registry=self.registry,
        )
        self._watcher = RedisWatcher(index, self._report_health, health_interval)
        self._stopped = False

    def _report_health(self, ready: bool) -> None:
        self.set_serving(ready)
        self._redis_up.set(1 if ready else 0)

    def start(self) -> None:
        super().start()
        self._watcher.start()

    def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Stops serving (health NOT_SERVING first), the watcher, runs before_close (see index_after_load),
        then closes the Redis client."""
        if self._stopped:
            return
        self._stopped = True
        self._watcher.stop()  # first: it would create the index again
        super().stop(grace)
        if self._before_close is not None:
            self._before_close()
        self.index.close()
        if self.metrics is not None:
            self.metrics.close()


def index_after_load(index: SearchIndex) -> None:
    """A clean stop of a Redis the service owns, just before that Redis stops: drops the live index's
    definition (its keys kept, the definition recorded in the catalog) and rewrites the append-only file, so
    the next start loads the keys alone and answers within seconds while RediSearch indexes them in the
    background. Failures are logged, never raised: the stop goes on."""
    try:
        dropped = index.drop_for_restart()
    except redis.RedisError as e:
        log.warning(
            "could not drop the definition of index %r before Redis stops (%s): it stays defined, and the next "
            "start may index every item while Redis loads",
            index.schema.name,
            e,
        )
        return
    if dropped is None:
        return
    record, items = dropped
    what = (
        f"dropped the definition of index {record.index!r} ({record.vector.vector_type.upper()}, "
        f"{record.vector.dimension}-d, {items} items kept in Redis)"
    )
    try:
        seconds = rewrite_aof(index.client)
    except (LocalRedisError, redis.RedisError) as e:
        log.warning(
            "%s, but the append-only file's rewrite failed (%s): the next start may index every item twice, "
            "while Redis loads and again in the background",
            what,
            e,
        )
        return
    log.info(
        "index after load: %s and rewrote the append-only file in %.1f s; the next start loads the keys alone "
        "and indexes them in the background while it answers searches",
        what,
        seconds,
    )


def connect(url: str, timeout: float) -> redis.Redis:
    """A Redis client for REDIS_URL (redis://, rediss://, unix://); connects lazily."""
    return redis.Redis.from_url(
        url,
        protocol=3,  # the index parses RESP3 replies
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 5.0),
        # Few, short retries, so a caller hears UNAVAILABLE quickly when Redis is down; none after a timeout,
        # which would run a slow command (a large upsert) a second time while Redis is still busy with it.
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2, supported_errors=(redis.ConnectionError,)),
    )


def build_index(
    config: SearchConfig, client: redis.Redis, redis_label: str, *, keeps_block_budget: bool = False
) -> SearchIndex:
    """The index on `client`. `keeps_block_budget`: the Redis's data directory is config.data_dir, and the
    budget that fits an index's vector blocks is kept there for its next start (redis_server.py)."""
    schema = build_schema(
        config.index_name,
        config.key_prefix,
        dimension=config.dimension,
        algorithm=config.algorithm,
        m=config.hnsw_m,
        ef_construction=config.hnsw_ef_construction,
        ef_runtime=config.hnsw_ef_runtime,
        vector_type=config.vector_type,
    )
    return SearchIndex(
        client,
        schema,
        redis_label=redis_label,
        query_timeout_ms=config.query_timeout_ms,
        exact_while_indexing=config.exact_while_indexing,
        on_fitted_blocks=functools.partial(remember_block_budget, config.data_dir) if keeps_block_budget else None,
    )


def build_server(
    config: SearchConfig,
    index: SearchIndex | None = None,
    *,
    registry: CollectorRegistry | None = None,
    owns_redis: bool = False,
) -> SearchServer:
    """The search server on config.address, not yet started; health turns SERVING once Redis answers and
    the index is verified. Without `index`, it connects to config.redis_url. Metrics go to `registry` (a
    new one by default), served over HTTP when config.metrics_port is set. When the service owns its Redis
    (`owns_redis`: it started it; or SEARCH_REDIS_OWNED) and SEARCH_INDEX_AFTER_LOAD is on, its stop runs
    index_after_load."""
    if index is None:
        if config.redis_url is None:
            raise ConfigError("REDIS_URL is not set and no index was given")
        index = build_index(
            config, connect(config.redis_url, config.redis_timeout_seconds), redact_url(config.redis_url)
        )
    servicer = SearchServicer(index)
    registry = CollectorRegistry() if registry is None else registry
    upserted = Counter(
        "search_items_upserted", "Items written by Upsert calls (created or replaced).", registry=registry
    )
    call_metrics = GrpcMetrics(
        registry, on_response={f"/{SERVICE_NAME}/Upsert": lambda _request, response: upserted.inc(response.upserted)}
    )
    base = create_server(
        config.address,
        [ServiceBinding(SERVICE_NAME, functools.partial(search_pb2_grpc.add_SearchServicer_to_server, servicer))],
        ServerOptions(
            max_message_bytes=config.max_message_bytes,
            interceptors=(call_metrics, *auth_interceptors(config.auth_token)),
            credentials=optional_server_credentials(config.tls),
            max_connection_age_seconds=config.max_connection_age_seconds,
            max_connection_age_grace_seconds=config.max_connection_age_grace_seconds,
        ),
    )
    metrics = metrics_endpoint_beside(base, config.host, config.metrics_port, registry)
    before_close = None
    if config.index_after_load and (owns_redis or config.redis_owned):
        before_close = functools.partial(index_after_load, index)
    return SearchServer(
        base, index, config.health_interval_seconds, registry=registry, metrics=metrics, before_close=before_close
    )


def main() -> None:
    try:
        config = SearchConfig.from_env()
    except ConfigError as e:
        fail(f"search service: {e}")
        return
    configure_logging(config.log_level)
    local: LocalRedis | None = None
    url = config.redis_url
    if url is None:
        local = LocalRedis(
            config.data_dir,
            appendfsync=config.appendfsync,
            stall_timeout=config.redis_stall_seconds,
            on_loading=LoadingReport(log.info),
            extra_config=config.redis_config,
        )
        try:
            local.start()
        except LocalRedisError as e:
            fail(f"search service: cannot start the built-in Redis: {e}")
            return
        log.info(
            "started redis-server %s with RediSearch (data %s, AOF appendfsync %s)",
            local.url,
            local.data_dir,
            config.appendfsync,
        )
        url = local.url
    try:
        # serve's Redis (SEARCH_REDIS_OWNED) runs on SEARCH_DATA_DIR too.
        keeps = local is not None or (config.redis_owned and config.data_dir.is_dir())
        index = build_index(
            config, connect(url, config.redis_timeout_seconds), redact_url(url), keeps_block_budget=keeps
        )
        server = build_server(config, index, owns_redis=local is not None)
    except (ConfigError, OSError) as e:
        if local is not None:
            local.stop()
        fail(f"search service: {e}")
        return
    server.start()
    log.info(
        "search service listening on %s:%d (index %r, dimension %d, %s; %s)",
        config.host,
        server.port,
        config.index_name,
        config.dimension,
        config.algorithm.upper(),
        security_summary(config.tls, config.auth_token),
    )
    if server.metrics is not None:
        log.info("metrics on %s", server.metrics.url)

    def on_stop() -> None:
        if local is not None:
            local.stop()
            log.info("stopped the built-in redis-server")

    run_until_signalled(server, config.grace_seconds, on_stop=on_stop)

"""Resolving the configured index to its live generation (through the catalog), and verifying it in Redis."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

import redis

from search_service import blocks, companion
from search_service import catalog as C
from search_service import schema as S
from search_service.catalog import Catalog, DroppedIndex, EmbeddingModel, Generation
from search_service.errors import (
    IndexMismatch,
    InvalidArgument,
    Loading,
    ModelMismatch,
    NoReindexInProgress,
    ReindexModelMismatch,
)
from search_service.info import mismatch_message, parse_info
from search_service.items import (
    HnswParams,
)
from search_service.loading import FillRate, IndexFill, RedisLoading, redis_loading
from search_service.redis_calls import as_unavailable, execute, is_missing_index, is_unknown_command
from search_service.schema import IndexSchema, VectorField, build_schema
from search_service.scripts import CHECK_LUA, REMOVE_SOURCES_LUA, UPSERT_LUA

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a query may rely on the catalog it read last (see require_ready); a query that meets a switched
# index within that time notices it (SearchIndex._nearest) and reads the catalog again.
CATALOG_MAX_AGE_SECONDS = 1.0
# How often a health check reads a ready index's FT.INFO (its item count, its HNSW settings) in full.
INFO_INTERVAL_SECONDS = 300.0

# The EF_RUNTIME a query uses when it names none, at least: HNSW on film frames (shots of near-identical
# frames) needs a breadth that grows with the index. Measured with bench.scale on film-like vectors, the first
# result's film agreed with exact search 0.99 of the time or more from EF 200 at 30k frames, EF 400 at 100k
# and EF 800 at 300k (0.83 at EF 100); this follows 100 * sqrt(items / 3,125): 566 at 100k, 980 at 300k,
# 1,789 at 1M.
EF_ITEMS_PER_UNIT = 3_125
EF_CAP = 4_000


def adaptive_ef(items: int, configured: int) -> int:
    """The default EF_RUNTIME of an index of `items`: the configured one, or more for a large index."""
    return max(configured, min(EF_CAP, round(100 * math.sqrt(max(items, 0) / EF_ITEMS_PER_UNIT))))


class Stale(Exception):
    """The catalog changed between resolving the index and writing: resolve it again."""


class IndexBase:
    """Resolves the live generation of the configured index through the catalog and verifies it."""

    def __init__(
        self,
        client: redis.Redis,
        schema: IndexSchema,
        *,
        redis_label: str,
        query_timeout_ms: int = 10_000,
        exact_while_indexing: bool = True,
        on_fitted_blocks: Callable[[int], None] | None = None,
    ) -> None:
        self._client = client
        self.configured = schema  # SEARCH_INDEX, SEARCH_KEY_PREFIX, SEARCH_DIM: generation 0
        # SEARCH_VECTOR_TYPE: of a new index and of the generation a reindex builds. An existing generation 0
        # keeps the type it was created with (see check).
        self.configured_vector_type: S.VectorType = schema.vector.vector_type
        self.schema = schema  # the live generation's physical index
        self.catalog = Catalog(Generation(0, schema.name, schema.prefix, schema.vector.dimension, None), None)
        self.redis_label = redis_label
        self._timeout = str(query_timeout_ms)
        self._ready = False
        self._catalog_read_at = -math.inf
        self._hnsw = HnswParams(schema.vector.m, schema.vector.ef_construction, schema.vector.ef_runtime)
        self._items = 0  # of the live index, as its last full check found
        # FT.INFO walks the whole index: at a million frames it blocks Redis for seconds. A ready, complete
        # index is confirmed with FT._LIST at each health check, and read in full only this often.
        self.info_interval = INFO_INTERVAL_SECONDS
        self._info_read_at = -math.inf
        self._checked_schema: IndexSchema | None = None
        self._upsert_script = client.register_script(UPSERT_LUA)
        self._check_script = client.register_script(CHECK_LUA)
        # How far the library is in coming back after a restart, as of the last check (the health watcher
        # checks every second): Redis loading (calls refused), then the index filling (searches partial).
        self.loading: RedisLoading | None = None
        self.fill: IndexFill | None = None
        self._fill_rate = FillRate()
        # SEARCH_EXACT_WHILE_INDEXING: an HNSW index created over stored items gets a FLAT companion, which
        # answers searches (exactly) until the graph is complete (companion.py).
        self.exact_while_indexing = exact_while_indexing
        self._reads: companion.Reads | None = None  # where searches go, as of the last full check
        self._remove_sources_script = client.register_script(REMOVE_SOURCES_LUA)
        # Told the VSS_MAX_RESIZE that fitted the blocks of an index the service created (blocks.py): the
        # service's own Redis loads RediSearch with it from then on (redis_server.remember_block_budget).
        self.on_fitted_blocks = on_fitted_blocks

    @property
    def dimension(self) -> int:
        return self.schema.vector.dimension

    @property
    def client(self) -> redis.Redis:
        return self._client

    @property
    def query_timeout_ms(self) -> str:
        return self._timeout

    def schema_of(self, generation: Generation) -> IndexSchema:
        """The physical index of a generation: the configured one, or one a reindex built."""
        if generation.number == 0:
            return self.configured
        v = self.configured.vector
        vector_type = generation.vector_type if generation.vector_type in S.VECTOR_TYPES else "float32"
        return build_schema(
            generation.index,
            generation.prefix,
            dimension=generation.dimension,
            algorithm=v.algorithm,
            m=v.m,
            ef_construction=v.ef_construction,
            ef_runtime=v.ef_runtime,
            vector_type=vector_type,
        )

    def refresh(self) -> Catalog:
        """Reads the catalog (Redis errors propagate); a switched live generation is verified again."""
        base = self.configured
        read_at = time.monotonic()
        found = C.read_catalog(
            self._client, index_name=base.name, key_prefix=base.prefix, dimension=base.vector.dimension
        )
        self._catalog_read_at = read_at
        if (found.live.number, found.live.index) != (self.catalog.live.number, self.catalog.live.index):
            self.schema = self.schema_of(found.live)
            self._hnsw = HnswParams(
                self.schema.vector.m, self.schema.vector.ef_construction, self.schema.vector.ef_runtime
            )
            self._ready = False
        self.catalog = found
        return found

    def close(self) -> None:
        self._client.close()

    # --- health and index verification -------------------------------------------------------------

    def check(self) -> None:
        """Verifies Redis answers and the index exists with the configured settings; creates it if missing.

        Raises Unavailable or IndexMismatch; on success the index is ready for calls.
        """
        with self.redis_errors():
            self._ping()
            self.refresh()
            if self._still_ready():
                return
            try:
                raw = execute(self._client, "FT.INFO", self.schema.name)
            except redis.ResponseError as e:
                if is_unknown_command(e):
                    self._ready = False
                    raise IndexMismatch(
                        f"Redis at {self.redis_label} has no RediSearch module (FT.INFO is unknown): use Redis 8 "
                        "or Redis Stack, or unset REDIS_URL to let the service start its own Redis"
                    ) from None
                if not is_missing_index(e):
                    raise
                self._create()
                raw = execute(self._client, "FT.INFO", self.schema.name)
            info = parse_info(raw)
            if self.catalog.dropped is not None:  # the index exists again: the record has served
                self._client.hdel(C.catalog_key(self.configured.name), C.F_DROPPED)
        self._adopt_vector_type(info)
        problems = self.schema.mismatches(info)
        if problems:
            self._ready = False
            raise IndexMismatch(mismatch_message(self.schema, info, problems, self.redis_label))
        self._note_hnsw(info)
        self._items = int(info.get("num_docs", 0) or 0)
        self._note_fill(info)
        self._info_read_at = time.monotonic()
        self._checked_schema = self.schema
        self._ready = True

    def _still_ready(self) -> bool:
        """True when the index was found ready and complete, was read in full within info_interval, and is
        still listed: then the check ends without FT.INFO."""
        if not self._ready or self.fill is not None or self.schema is not self._checked_schema:
            return False
        if self.read_index != self.schema.name:  # the graph is being built: watch it until complete
            return False
        if time.monotonic() - self._info_read_at >= self.info_interval:
            return False
        listed = {name.decode() if isinstance(name, bytes) else str(name) for name in execute(self._client, "FT._LIST")}
        return self.schema.name in listed

    def _adopt_vector_type(self, info: Mapping[str, Any]) -> None:
        """An index created with another vector type than configured is used as it is: its vectors are read
        and written in its own type (`clipsearch reindex` converts it to the configured one)."""
        vector = info.get("attributes", {}).get(S.F_VECTOR, {})
        found = str(vector.get("data_type", "")).lower() if isinstance(vector, Mapping) else ""
        if found not in S.VECTOR_TYPES or found == self.schema.vector.vector_type:
            return
        log.info("index %r stores %s vectors; using them as they are", self.schema.name, found.upper())
        adopted = self.schema.with_vector_type(found)
        if self.schema is self.configured:
            self.configured = adopted
        self.schema = adopted

    @property
    def default_ef(self) -> int:
        """The EF_RUNTIME of a query that names none (see adaptive_ef)."""
        return adaptive_ef(self._items, self._hnsw.ef_runtime)

    @property
    def read_index(self) -> str:
        """The index searches go to: the live one, or its exact companion while the graph is built."""
        reads = self._reads
        return reads.index if reads is not None and reads.live == self.schema.name else self.schema.name

    def reads_graph(self, index: str) -> bool:
        """Whether `index` (as read_index named it) is an HNSW graph, which takes EF_RUNTIME (FLAT refuses it)."""
        return index == self.schema.name and self.schema.vector.algorithm == "hnsw"

    def reading(self, run: Callable[[str], T]) -> T:
        """run(read_index): FT.SEARCH, FT.AGGREGATE or FT.INFO on the index searches go to. A companion gone
        meanwhile (another replica dropped it, the graph complete) sends it to the live index, read again to
        say how complete it is."""
        name = self.read_index
        try:
            return run(name)
        except redis.ResponseError as e:
            if name == self.schema.name or not is_missing_index(e):
                raise
        self._note_fill(parse_info(execute(self._client, "FT.INFO", self.schema.name)))
        return run(self.schema.name)

    def read(self, command: str, *args: str | bytes, index: str | None = None) -> Any:
        """FT.SEARCH or FT.AGGREGATE (`command` index `args`) on `index`, by default the one searches go to."""
        if index is not None:
            return execute(self._client, command, index, *args)
        return self.reading(lambda name: execute(self._client, command, name, *args))

    def read_info(self) -> dict[str, Any]:
        """FT.INFO (parsed) of the index searches go to; while that is the companion, the vector index memory
        it reports includes the graph's being built."""

        def run(name: str) -> dict[str, Any]:
            info = parse_info(execute(self._client, "FT.INFO", name))
            if name != self.schema.name:
                graph = parse_info(execute(self._client, "FT.INFO", self.schema.name))
                info["vector_index_sz_mb"] = float(info.get("vector_index_sz_mb", 0.0) or 0.0) + float(
                    graph.get("vector_index_sz_mb", 0.0) or 0.0
                )
            return info

        return self.reading(run)

    def _ping(self) -> None:
        """PING; while Redis loads its data, raises Loading saying how far it is."""
        try:
            self._client.ping()
            self.loading = None
            return
        except redis.BusyLoadingError:
            pass
        self._ready = False
        self.fill = None
        self._fill_rate.reset()
        loading = redis_loading(self._client)
        self.loading = loading
        if loading is None:  # it finished between the two calls
            self._client.ping()
            return
        raise Loading(loading.message, loading.percent, loading.eta_seconds)

    def _note_fill(self, info: Mapping[str, Any]) -> None:
        """Notes where searches go and whether they see the whole library: RediSearch may still be indexing
        existing keys into the live index, and its exact companion answers meanwhile (companion.follow)."""
        self._reads = companion.follow(
            self._client,
            self.schema.name,
            info,
            self._reads,
            enabled=self.exact_while_indexing,
            was_partial=self.fill is not None,
        )
        percent = self._reads.percent
        if percent >= 100.0:
            self.fill = None
            self._fill_rate.reset()
        else:
            self.fill = IndexFill(percent, self._fill_rate.eta(percent))

    def _create(self) -> None:
        schema, again = self.schema, ""
        dropped = self.catalog.dropped
        if dropped is not None and dropped.index != schema.name:
            dropped = None  # the record of another generation's index
        if dropped is not None:
            # As a clean stop dropped it: its keys hold vectors of that type and dimension, whatever the
            # configuration says now (a difference is then reported as for any existing index).
            schema = schema.with_vector(replace(dropped.vector, ef_runtime=schema.vector.ef_runtime))
            again = " again, as it was before the restart; its items are indexed in the background"
        if self.exact_while_indexing and companion.wanted(schema, self._client, restarting=dropped is not None):
            companion.create(self._client, schema, self.redis_label)  # first: RediSearch fills it first
        try:
            budget = blocks.create(self._client, schema)
            if budget is not None and self.on_fitted_blocks is not None:
                self.on_fitted_blocks(budget)
            if self.schema is not self.configured:  # a reindexed generation lost its index: the alias follows
                execute(self._client, "FT.ALIASUPDATE", self.configured.name, schema.name)
            log.info(
                "created RediSearch index %r (prefix %r, %s, %s, dimension %d) in Redis at %s%s",
                schema.name,
                schema.prefix,
                schema.vector.algorithm.upper(),
                schema.vector.vector_type.upper(),
                schema.vector.dimension,
                self.redis_label,
                again,
            )
        except redis.ResponseError as e:
            if "already exists" not in str(e).lower():  # another service instance created it first
                raise

    def drop_for_restart(self) -> tuple[DroppedIndex, int] | None:
        """Drops the live index's definition, its keys kept, and records it in the catalog (one transaction):
        a Redis restarted from an AOF rewritten after this loads the keys alone, and check() then creates the
        index again exactly as it was, to fill in the background while searches are answered partially (or by
        its exact companion). A companion of the live index is dropped first.

        Returns the record and the items the index held; None (logged) when there is no live index, or one
        this service could not create again as it is. A staging index of a reindex in progress is left as it
        is. Redis errors propagate.
        """
        self.refresh()
        name = self.schema.name
        self._reads = None
        if companion.drop(self._client, name):
            log.info(
                "dropped %r, the exact companion of %r (a clean stop never keeps it)",
                companion.companion_name(name),
                name,
            )
        try:
            info = parse_info(execute(self._client, "FT.INFO", name))
        except redis.ResponseError as e:
            if not is_missing_index(e):
                raise
            log.info("index %r is not defined in Redis at %s: nothing to drop", name, self.redis_label)
            return None
        vector = self._vector_as_built(info)
        problems = ["its vector field"] if vector is None else self.schema.with_vector(vector).mismatches(info)
        if vector is None or problems:
            log.warning(
                "leaving the definition of index %r in Redis: it could not be created again as it is (%s)",
                name,
                "; ".join(problems),
            )
            return None
        record = DroppedIndex(name, vector)
        transaction: Any = self._client.pipeline(transaction=True)  # redis-py's Pipeline is unannotated
        with transaction as pipe:
            pipe.hset(C.catalog_key(self.configured.name), C.F_DROPPED, record.to_json())
            pipe.execute_command("FT.DROPINDEX", name)  # without DD: the keys stay
            pipe.execute()
        self._ready = False
        return record, int(info.get("num_docs", 0) or 0)

    def _vector_as_built(self, info: Mapping[str, Any]) -> VectorField | None:
        """The vector field of an index (parsed FT.INFO) as it was built; None if not one this service makes."""
        found = info.get("attributes", {}).get(S.F_VECTOR, {})
        if not isinstance(found, Mapping):
            return None
        vector_type = str(found.get("data_type", "")).lower()
        algorithm = str(found.get("algorithm", "")).lower()
        if vector_type not in S.VECTOR_TYPES or algorithm not in S.ALGORITHMS or not isinstance(found.get("dim"), int):
            return None
        configured = self.schema.vector
        return replace(
            configured,
            dimension=found["dim"],
            algorithm=algorithm,
            m=int(found.get("m", configured.m)),
            ef_construction=int(found.get("ef_construction", configured.ef_construction)),
            vector_type=vector_type,
        )

    def _note_hnsw(self, info: Mapping[str, Any]) -> None:
        if self.schema.vector.algorithm != "hnsw":
            return
        built = self._vector_as_built(info) or self.schema.vector
        found = HnswParams(built.m, built.ef_construction, self.schema.vector.ef_runtime)
        if found != self._hnsw:
            if (found.m, found.ef_construction) != (self.schema.vector.m, self.schema.vector.ef_construction):
                log.warning(
                    "index %r was built with M=%d EF_CONSTRUCTION=%d, not the configured M=%d "
                    "EF_CONSTRUCTION=%d; using it as built",
                    self.schema.name,
                    found.m,
                    found.ef_construction,
                    self.schema.vector.m,
                    self.schema.vector.ef_construction,
                )
            self._hnsw = found

    def require_ready(self, max_age: float = 0.0) -> None:
        """Makes sure the index is verified and the catalog read: within the last `max_age` seconds, or now.

        Writes and the reindex RPCs read the catalog every time (0); queries accept one up to
        CATALOG_MAX_AGE_SECONDS old, which saves a round trip to Redis per query.
        """
        if self._ready and (max_age <= 0 or time.monotonic() - self._catalog_read_at > max_age):
            with self.redis_errors():
                self.refresh()
        if not self._ready:
            self.check()

    def switched(self) -> bool:
        """Reads the catalog again: whether the live generation changed since it was last read (another
        service instance finished a reindex). Redis errors propagate."""
        before = (self.catalog.live.number, self.catalog.live.index)
        self.refresh()
        return (self.catalog.live.number, self.catalog.live.index) != before

    def check_model(self, model: EmbeddingModel | None) -> None:
        """Raises ModelMismatch when the live index holds another model's vectors (or another dimension)."""
        if model is None:
            return
        recorded = self.catalog.live.model
        if recorded is not None and not recorded.same_as(model):
            raise ModelMismatch(C.mismatch(self.configured.name, recorded, model))
        if model.dimension and model.dimension != self.dimension:
            raise ModelMismatch(C.dimension_mismatch(self.configured.name, self.dimension, model))

    def check_model_fresh(self, model: EmbeddingModel) -> None:
        """check_model against a catalog up to CATALOG_MAX_AGE_SECONDS old; read again before refusing, as
        another service instance may have just switched the index to this very model."""
        self.require_ready(CATALOG_MAX_AGE_SECONDS)
        try:
            self.check_model(model)
        except ModelMismatch:
            self.require_ready()
            self.check_model(model)

    @contextmanager
    def redis_errors(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as e:
            failure = as_unavailable(e, self.redis_label, self.schema.name)
            if failure is None:
                raise
            error, recheck = failure
            if recheck:
                self._ready = False
            raise error from None

    def _write_target(self, model: EmbeddingModel | None, staging: bool) -> tuple[IndexSchema, list[str]]:
        """The index a write goes to, and the arguments of the upsert script's guard."""
        none = ["", "", "", ""]
        if not staging:
            self.check_model(model)
            fields = list(model.fields("").values()) if model else none
            return self.schema, [C.F_GENERATION, str(self.catalog.live.number), C.LIVE_MODEL, *fields, "1"]
        stage = self.catalog.staging
        if model is None:
            raise InvalidArgument("staging is set without model: name the model of the reindex")
        if stage is None or stage.model is None:
            raise NoReindexInProgress(
                f"no reindex of the index {self.configured.name!r} is in progress: begin one (clipsearch reindex)"
            )
        if not stage.model.same_as(model):
            raise ReindexModelMismatch(C.mismatch(self.configured.name, stage.model, model, staging=True))
        guard = [C.F_STAGING_GENERATION, str(stage.number), C.STAGING_MODEL, *model.fields("").values(), "0"]
        return self.schema_of(stage), guard

"""Reindexing: a staging index for another model, filled by the caller, then switched in with one transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from clipsearch.limits import MAX_DIMENSION
from search_service import blocks, companion
from search_service import catalog as C
from search_service.catalog import Catalog, EmbeddingModel, Generation
from search_service.errors import (
    IndexMismatch,
    InvalidArgument,
    NoReindexInProgress,
    ReindexInProgress,
    ReindexModelMismatch,
)
from search_service.info import parse_info
from search_service.redis_calls import execute, is_missing_index
from search_service.resolve import IndexBase
from search_service.validation import check_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReindexStatus:
    staging: Generation
    staged_items: int
    resumed: bool
    live_model: EmbeddingModel | None
    live_items: int


@dataclass(frozen=True)
class FinishResult:
    items: int
    dropped_items: int
    index: str


class Reindexer:
    """Begins, finishes or aborts the reindex of one SearchIndex (see search.proto, BeginReindex)."""

    def __init__(self, index: IndexBase) -> None:
        self._index = index
        self._name = index.configured.name
        self._key = C.catalog_key(self._name)

    @property
    def _client(self) -> redis.Redis:
        return self._index.client

    def _transaction(self) -> Any:  # redis-py's Pipeline is unannotated; WATCH/MULTI/EXEC through it
        return self._client.pipeline(transaction=True)

    def _catalog(self) -> Catalog:
        self._index.require_ready()
        return self._index.catalog

    def _count(self, index: str) -> int:
        try:
            return int(parse_info(execute(self._client, "FT.INFO", index)).get("num_docs", 0))
        except redis.ResponseError as e:
            if is_missing_index(e):
                return 0
            raise

    def _ensure_index(self, generation: Generation) -> None:
        schema = self._index.schema_of(generation)
        try:
            execute(self._client, "FT.INFO", schema.name)
        except redis.ResponseError as e:
            if not is_missing_index(e):
                raise
            blocks.create(self._client, schema)
            log.info(
                "created the staging index %r (dimension %d, %s)",
                schema.name,
                generation.dimension,
                schema.vector.vector_type.upper(),
            )

    def begin(self, model: EmbeddingModel) -> ReindexStatus:
        if not model.model_id or model.dimension <= 0:
            raise InvalidArgument("model.model_id and model.dimension are required")
        if model.dimension > MAX_DIMENSION:
            raise InvalidArgument(f"model.dimension={model.dimension}; at most {MAX_DIMENSION}")
        with self._index.redis_errors():
            C.collect_garbage(self._client, self._name)
            catalog = self._catalog()
            resumed = catalog.staging is not None
            if catalog.staging is not None:
                staged = catalog.staging.model
                if staged is None or not staged.same_as(model):
                    raise ReindexModelMismatch(
                        f"a reindex of {self._name!r} to the model "
                        f"{staged.describe() if staged else '(unknown)'} is in progress: finish it with an "
                        "embedder serving that model, or abort it (clipsearch reindex --abort)"
                    )
                stage = catalog.staging
            else:
                stage = self._new_staging(catalog, model)
            # The catalog is written before the index is created: a crash in between leaves a staging entry
            # whose index the next begin creates, never an index nothing refers to.
            self._ensure_index(stage)
            return ReindexStatus(
                stage, self._count(stage.index), resumed, catalog.live.model, self._count(self._index.read_index)
            )

    def _new_staging(self, catalog: Catalog, model: EmbeddingModel) -> Generation:
        number = int(self._client.hincrby(self._key, "next_generation", 1))
        if number <= catalog.live.number:
            number = catalog.live.number + 1
            self._client.hset(self._key, "next_generation", str(number))
        name, prefix = C.generation_name(self._name, number)
        live_prefix = catalog.live.prefix
        if prefix.startswith(live_prefix) or live_prefix.startswith(prefix):
            raise IndexMismatch(
                f"the staging keys {prefix!r} would overlap the live keys {live_prefix!r}: set SEARCH_KEY_PREFIX "
                "to a prefix that is not a prefix of '<SEARCH_INDEX>:g' (the default, '<SEARCH_INDEX>:item:', is fine)"
            )
        # The new generation stores vectors as this service is configured to: a reindex converts the type.
        vector_type = self._index.configured_vector_type
        stage = Generation(number, name, prefix, model.dimension, model, vector_type)
        fields = {
            C.F_STAGING_GENERATION: str(number),
            "staging_index": name,
            "staging_prefix": prefix,
            "staging_dimension": str(model.dimension),
            C.F_STAGING_VECTOR_TYPE: vector_type,
            **model.fields(C.STAGING_MODEL),
        }
        with self._transaction() as pipe:
            pipe.watch(self._key)
            if pipe.hget(self._key, C.F_STAGING_GENERATION):
                raise ReindexInProgress("another reindex began at the same time; run clipsearch reindex again")
            pipe.multi()
            pipe.hset(self._key, mapping=fields)
            pipe.execute()
        return stage

    def staged_ids(self, ids: Sequence[str]) -> list[str]:
        check_ids(ids)
        with self._index.redis_errors():
            stage = self._catalog().staging
            if stage is None:
                raise NoReindexInProgress(f"no reindex of {self._name!r} is in progress")
            pipe = self._client.pipeline(transaction=False)
            for item_id in ids:
                pipe.exists(stage.prefix + item_id)
            found = pipe.execute()
        return [item_id for item_id, there in zip(ids, found, strict=True) if there]

    def finish(self, model: EmbeddingModel | None) -> FinishResult:
        with self._index.redis_errors():
            catalog = self._catalog()
            stage, live = catalog.staging, catalog.live
            if stage is None or stage.model is None:
                raise NoReindexInProgress(f"no reindex of {self._name!r} is in progress: nothing to finish")
            if model is not None and not stage.model.same_as(model):
                raise ReindexModelMismatch(C.mismatch(self._name, stage.model, model, staging=True))
            live_index = self._index.schema.name
            dropped = self._count(self._index.read_index)
            with self._transaction() as pipe:
                pipe.watch(self._key)
                if pipe.hget(self._key, C.F_STAGING_GENERATION) != str(stage.number).encode():
                    raise IndexMismatch("the reindex changed while finishing (aborted by another caller?)")
                pipe.multi()
                if live.number == 0:
                    # The configured name is a plain index: it goes, and the name becomes an alias.
                    pipe.execute_command("FT.DROPINDEX", live_index)
                    pipe.execute_command("FT.ALIASADD", self._name, stage.index)
                else:
                    pipe.execute_command("FT.ALIASUPDATE", self._name, stage.index)
                    pipe.execute_command("FT.DROPINDEX", live_index)
                pipe.sadd(C.garbage_key(self._name), live.prefix)
                pipe.hset(
                    self._key,
                    mapping={
                        C.F_GENERATION: str(stage.number),
                        "index": stage.index,
                        "prefix": stage.prefix,
                        "dimension": str(stage.dimension),
                        C.F_VECTOR_TYPE: stage.vector_type or "float32",
                        **stage.model.fields(C.LIVE_MODEL),
                    },
                )
                pipe.hdel(self._key, *_STAGING_FIELDS)
                pipe.execute()
            log.info("reindex finished: %r now serves %r (model %s)", self._name, stage.index, stage.model.describe())
            companion.drop(self._client, live_index)  # one the old generation had while its graph was built
            self._index.require_ready()
            C.collect_garbage(self._client, self._name)
            return FinishResult(self._count(stage.index), dropped, stage.index)

    def abort(self) -> int | None:
        """Staged items discarded, or None when no reindex was in progress."""
        with self._index.redis_errors():
            stage = self._catalog().staging
            if stage is None:
                C.collect_garbage(self._client, self._name)
                return None
            discarded = self._count(stage.index)
            with self._transaction() as pipe:
                pipe.watch(self._key)
                pipe.multi()
                pipe.sadd(C.garbage_key(self._name), stage.prefix)
                pipe.hdel(self._key, *_STAGING_FIELDS)
                pipe.execute()
            try:
                execute(self._client, "FT.DROPINDEX", stage.index)
            except redis.ResponseError as e:
                if not is_missing_index(e):
                    raise
            C.collect_garbage(self._client, self._name)
            return discarded


_STAGING_FIELDS = (
    C.F_STAGING_GENERATION,
    "staging_index",
    "staging_prefix",
    "staging_dimension",
    C.F_STAGING_VECTOR_TYPE,
    *EmbeddingModel("").fields(C.STAGING_MODEL),
)

"""Items in Redis HASHes indexed by RediSearch: upsert, KNN query, get, list, delete, stats."""

from __future__ import annotations

import builtins  # SearchIndex.list shadows list in the class's signatures
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import redis

from clipsearch.limits import (
    DEFAULT_K,
    DEFAULT_PAGE_SIZE,
    MAX_BATCH,
    MAX_EF_RUNTIME,
    MAX_IDS,
    MAX_K,
    MAX_PAGE_SIZE,
    MAX_WINDOW,
)
from search_service import catalog as C
from search_service import schema as S
from search_service.catalog import EmbeddingModel
from search_service.duplicates import check_max_distance
from search_service.errors import IndexMismatch, InvalidArgument, QueryTimeout
from search_service.grouping import GROUP_FIELDS, Candidate, candidates_from_reply, grouped_query
from search_service.items import (
    DeleteResult,
    DuplicateOptions,
    Filter,
    Item,
    Match,
    MomentOptions,
    Page,
    Stats,
    UpsertResult,
)
from search_service.moments import check_gap, single
from search_service.query import DISTANCE, QueryBuilder, filter_query, params_args
from search_service.resolve import CATALOG_MAX_AGE_SECONDS, IndexBase, Stale
from search_service.storage import ITEM_FIELDS, decode_tag, encode_tag, item_fields, item_from_fields
from search_service.validation import (
    check_collection,
    check_id,
    check_ids,
    check_page_token,
    check_source,
    unique,
    vector_bytes,
)

log = logging.getLogger(__name__)


def _quoted(text: bytes) -> bytes:
    """A string literal of a RediSearch expression."""
    return b"'" + text.replace(b"\\", b"\\\\").replace(b"'", b"\\'") + b"'"


_SCAN_BATCH = 1000  # keys per round when deleting by collection or source
# Items written per Lua script. A script holds every other Redis client while it runs, and each item's HNSW
# insertion takes about 0.1-0.5 ms at a million items: a batch of 1,000 in one script held searches for
# hundreds of milliseconds. Chunks of this size keep a search's wait near one chunk's (bench.scale measures it).
UPSERT_CHUNK = 8


class SearchIndex(IndexBase):
    """The items of one RediSearch index, over a redis-py client (which it owns and closes)."""

    # --- writes -------------------------------------------------------------------------------------

    def upsert(
        self, items: Sequence[Item], *, model: EmbeddingModel | None = None, staging: bool = False
    ) -> UpsertResult:
        """Writes the batch, merging each item's sources with those already stored.

        The batch is checked whole before any of it is written (a refused batch writes nothing), then written
        in chunks of UPSERT_CHUNK items, each atomic; a failure midway (Redis lost) may leave part of it
        written, and writing it again is safe.

        With `model`, the index must hold that model's vectors (one that records none records it); with
        `staging`, the batch goes to the staging index of the reindex in progress for `model`.
        """
        for _ in range(3):  # again when a reindex switched the index between resolving it and writing
            try:
                return self._upsert(items, model, staging)
            except Stale:
                self._ready = False
        raise IndexMismatch("the index kept changing during the upsert (a reindex switching?); retry")

    def _upsert(self, items: Sequence[Item], model: EmbeddingModel | None, staging: bool) -> UpsertResult:
        if not items:
            raise InvalidArgument("items is empty: send 1 to 1000 items")
        if len(items) > MAX_BATCH:
            raise InvalidArgument(f"{len(items)} items in one batch; at most {MAX_BATCH}: split the batch")
        seen: dict[str, int] = {}
        args: list[str | bytes] = [S.TAG_SEPARATOR, S.F_SOURCES, S.F_SOURCE_DIRS]
        for i, item in enumerate(items):
            where = f"items[{i}]"
            check_id(item.id, where + ".id")
            where = f"items[{i}] (id {item.id!r})"
            if item.id in seen:
                raise InvalidArgument(f"{where}: duplicate id, also at items[{seen[item.id]}]")
            seen[item.id] = i
        self.require_ready()
        target, guard = self._write_target(model, staging)
        catalog = C.catalog_key(self.configured.name)
        keys: list[str] = []
        written: list[list[str | bytes]] = []
        for i, item in enumerate(items):
            sources, fields = item_fields(
                item, target.vector.dimension, f"items[{i}] (id {item.id!r})", target.vector.numpy_type
            )
            keys.append(target.prefix + item.id)
            written.append([S.TAG_SEPARATOR.join(sources), str(len(fields) // 2), *fields])
        args[3:3] = guard
        with self.redis_errors():
            try:
                # The whole batch is checked before any of it is written; then it is written in chunks, all
                # sent at once, each chunk one script (other clients' searches run between them).
                self._check_script(keys=[catalog, *keys], args=args)
                pipe = self._client.pipeline(transaction=False)
                for start in range(0, len(keys), UPSERT_CHUNK):
                    chunk = [part for fields in written[start : start + UPSERT_CHUNK] for part in fields]
                    self._upsert_script(
                        keys=[catalog, *keys[start : start + UPSERT_CHUNK]], args=[*args, *chunk], client=pipe
                    )
                replies = pipe.execute(raise_on_error=False)
                failed = next((r for r in replies if isinstance(r, Exception)), None)
                if failed is not None:
                    raise failed
                created = sum(int(r) for r in replies)
                if not staging:
                    self._items += created  # the adaptive EF follows growth between full checks
            except redis.ResponseError as e:
                if str(e).startswith("STALE"):
                    raise Stale() from None
                if "MODELMISMATCH" in str(e):
                    self.refresh()
                    self._write_target(model, staging)  # raises ModelMismatch, naming the recorded model
                    raise Stale() from None
                if "WRONGTYPE" not in str(e):
                    raise
                raise IndexMismatch(
                    f"{e}; nothing was written: delete that key or set SEARCH_KEY_PREFIX to a "
                    "prefix only this service uses"
                ) from None
        return UpsertResult(upserted=len(items), created=int(created))

    def delete_ids(self, ids: Sequence[str]) -> DeleteResult:
        ids = unique(ids)
        check_ids(ids)
        self.require_ready()
        with self.redis_errors():
            deleted = self._client.delete(*(self._key(i) for i in ids)) if ids else 0
        return DeleteResult(deleted=int(deleted))

    def delete_sources(
        self, sources: Sequence[str], *, collection: str | None = None, ids: Sequence[str] = ()
    ) -> DeleteResult:
        """Removes the sources from the items listing them; deletes items left with none.

        Only items of `collection` and, when `ids` is not empty, only those items are changed. Each item
        changes atomically (in a Lua script), so one that keeps a source is never lost.
        """
        sources = unique(sources)
        if not sources:
            raise InvalidArgument("sources is empty: give 1 to 1000 source URIs")
        if len(sources) > MAX_IDS:
            raise InvalidArgument(f"{len(sources)} sources; at most {MAX_IDS} per call")
        for i, source in enumerate(sources):
            check_source(source, f"sources[{i}]")
        ids = unique(ids)
        check_ids(ids)
        scope = "" if collection is None else encode_tag(check_collection(collection, "collection"))
        args = [S.TAG_SEPARATOR, S.F_SOURCES, S.F_SOURCE_DIRS, S.F_COLLECTION, scope, *sources]
        builder = QueryBuilder().tags(S.F_SOURCES, sources)
        if scope:
            builder.tags(S.F_COLLECTION, [scope])
        query, params = builder.build()
        deleted = updated = 0
        self.require_ready()
        with self.redis_errors():
            if ids:
                d, u = self._remove_sources_script(keys=[self._key(i) for i in ids], args=args)
                return DeleteResult(deleted=int(d), updated=int(u))
            while True:
                keys = self._matching_keys(query, params)
                if not keys:
                    break
                d, u = self._remove_sources_script(keys=keys, args=args)
                deleted, updated = deleted + int(d), updated + int(u)
                if d == 0 and u == 0:
                    break  # the index still lists keys that no longer hold the sources; nothing left to do
        return DeleteResult(deleted=deleted, updated=updated)

    def delete_collection(self, collection: str) -> DeleteResult:
        collection = check_collection(collection, "collection")
        query, params = QueryBuilder().tags(S.F_COLLECTION, [encode_tag(collection)]).build()
        deleted = 0
        self.require_ready()
        with self.redis_errors():
            while True:
                keys = self._matching_keys(query, params)
                if not keys:
                    break
                removed = int(self._client.delete(*keys))
                deleted += removed
                if removed == 0:
                    break
        return DeleteResult(deleted=deleted)

    def _matching_keys(self, query: str, params: Mapping[str, str | bytes]) -> builtins.list[bytes]:
        reply = self._search(query, params, "NOCONTENT", "LIMIT", "0", str(_SCAN_BATCH))
        return [r[b"id"] for r in reply[b"results"]]

    # --- reads --------------------------------------------------------------------------------------

    def query(
        self,
        vector: np.ndarray,
        *,
        k: int = 0,
        offset: int = 0,
        filter: Filter | None = None,
        min_score: float | None = None,
        ef_runtime: int = 0,
        with_vectors: bool = False,
        moments: MomentOptions | None = None,
        duplicates: DuplicateOptions | None = None,
        model: EmbeddingModel | None = None,
    ) -> builtins.list[Match]:
        """The k nearest items (or groups: moments, see moments.py, and collapsed near-duplicate photos, see
        duplicates.py) to `vector` among those matching `filter`, skipping the first `offset`; with `model`,
        only if the index holds that model's vectors.

        The catalog read up to CATALOG_MAX_AGE_SECONDS ago is trusted; a search that finds the index switched
        (by a reindex another service instance finished) reads it again and runs once more.
        """
        for _ in range(3):
            try:
                return self._query(
                    vector, k, offset, filter, min_score, ef_runtime, with_vectors, moments, duplicates, model
                )
            except Stale:
                continue
        raise IndexMismatch("the index kept changing during the query (a reindex switching?); retry")

    def _query(
        self,
        vector: np.ndarray,
        k: int,
        offset: int,
        filter: Filter | None,
        min_score: float | None,
        ef_runtime: int,
        with_vectors: bool,
        moments: MomentOptions | None,
        duplicates: DuplicateOptions | None,
        model: EmbeddingModel | None,
    ) -> builtins.list[Match]:
        if model is not None:
            self.check_model_fresh(model)
        vector_bytes(vector, self.dimension, "vector")  # a bad vector is refused before anything else
        k = DEFAULT_K if k == 0 else k
        if not 1 <= k <= MAX_K:
            raise InvalidArgument(f"k={k}; it must be 1 to {MAX_K} (0 means {DEFAULT_K})")
        if offset < 0:
            raise InvalidArgument(f"offset={offset}; it must be >= 0")
        if offset + k > MAX_WINDOW:
            raise InvalidArgument(f"offset + k = {offset + k}; it must be at most {MAX_WINDOW}")
        if not 0 <= ef_runtime <= MAX_EF_RUNTIME:
            raise InvalidArgument(f"ef_runtime={ef_runtime}; it must be 0 (the index default) to {MAX_EF_RUNTIME}")
        if min_score is not None and math.isnan(min_score):
            raise InvalidArgument("min_score is NaN")
        gap = None if moments is None else check_gap(moments.gap_seconds)
        distance = None if duplicates is None else check_max_distance(duplicates.max_distance)
        base = filter_query(filter or Filter())
        self.require_ready(CATALOG_MAX_AGE_SECONDS)
        # Encoded once the index is verified: the first check after a start adopts the stored vector type.
        blob = vector_bytes(vector, self.dimension, "vector", self.schema.vector.numpy_type)

        if moments is None and duplicates is None:
            fields = [*ITEM_FIELDS, *([S.F_VECTOR] if with_vectors else [])]
            return [single(m) for m in self._nearest(base, blob, offset, k, min_score, ef_runtime, fields)]

        def fetch_candidates(n: int) -> builtins.list[Candidate]:
            results = self._knn(base, blob, 0, n, ef_runtime, GROUP_FIELDS)
            return candidates_from_reply(results, len(self.schema.prefix.encode()), DISTANCE.encode(), min_score)

        def fetch_items(ids: Sequence[str]) -> builtins.list[Item | None]:
            with self.redis_errors():
                return self._fetch([self._key(i).encode() for i in ids], with_vectors)

        return grouped_query(fetch_candidates, fetch_items, k=k, offset=offset, gap_seconds=gap, max_distance=distance)

    def _nearest(
        self,
        builder: QueryBuilder,
        blob: bytes,
        offset: int,
        k: int,
        min_score: float | None,
        ef_runtime: int,
        fields: Sequence[str],
    ) -> builtins.list[Match]:
        fields = [*fields, DISTANCE]
        with_vectors = S.F_VECTOR in fields
        results = self._knn(builder, blob, offset, k, ef_runtime, fields)
        matches = []
        for result in results:
            attrs = result.get(b"extra_attributes", {})
            score = 1.0 - float(attrs[DISTANCE.encode()])
            if min_score is not None and np.float32(score) < min_score:  # as reported: a float32
                break  # best first: every later match scores lower
            item = item_from_fields(self._id_of(result[b"id"]), attrs, with_vectors, self.schema.vector.numpy_type)
            matches.append(Match(item, score))
        return matches

    def _knn(
        self, builder: QueryBuilder, blob: bytes, offset: int, k: int, ef_runtime: int, fields: Sequence[str]
    ) -> builtins.list[dict[bytes, Any]]:
        """FT.SEARCH results offset to offset + k nearest to `blob`, read with `fields` and the distance."""
        base = builder.build()[0]
        params = dict(builder.params)
        params |= {"K": str(offset + k), "BLOB": blob}
        fields = [*fields, DISTANCE] if DISTANCE not in fields else fields

        def search(index: str) -> dict[bytes, Any]:  # the live index, or its exact companion (FLAT: no EF)
            knn = f"KNN $K @{S.F_VECTOR} $BLOB"
            if self.reads_graph(index):
                params["EF"] = str(max(ef_runtime or self.default_ef, offset + k))
                knn += " EF_RUNTIME $EF"
            query = f"({base})=>[{knn} AS {DISTANCE}]" if base != "*" else f"*=>[{knn} AS {DISTANCE}]"
            options = ["SORTBY", DISTANCE, "ASC", "LIMIT", str(offset), str(k), "RETURN", str(len(fields)), *fields]
            return self._search(query, params, *options, index=index)

        with self.redis_errors():
            try:
                reply = self.reading(search)
            except redis.ResponseError:
                # The live index dropped, or (generation 0 turned alias) another dimension: switched?
                if self.switched():
                    raise Stale() from None
                raise
            # Keys of another prefix: the configured name is now an alias of a newer generation.
            prefix = self.schema.prefix.encode()
            if not all(r[b"id"].startswith(prefix) for r in reply[b"results"]) and self.switched():
                raise Stale()
        results: builtins.list[dict[bytes, Any]] = reply[b"results"]
        return results

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> tuple[builtins.list[Item], builtins.list[str]]:
        """The items found, in request order, and the ids not found."""
        check_ids(ids)
        self.require_ready()
        with self.redis_errors():
            found = self._fetch([self._key(i).encode() for i in ids], with_vectors)
        items = [item for item in found if item is not None]
        missing = [item_id for item_id, item in zip(ids, found, strict=False) if item is None]
        return items, missing

    def list(
        self, filter: Filter | None = None, *, page_size: int = 0, page_token: str = "", with_vectors: bool = False
    ) -> Page:
        """Items matching `filter` ordered by id, a page at a time (keyset paging: stable under writes)."""
        page_size = DEFAULT_PAGE_SIZE if page_size == 0 else page_size
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument(
                f"page_size={page_size}; it must be 1 to {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})"
            )
        check_page_token(page_token)
        query, params = filter_query(filter or Filter()).build()
        prefix = self.schema.prefix.encode()
        args: list[str | bytes] = [query, "LOAD", "1", "@__key"]
        if page_token:
            # Keys sort as ids do (one prefix); the last key is spliced in quoted, its quote and backslashes
            # escaped (FILTER takes no parameters).
            after = _quoted(prefix + bytes.fromhex(page_token))
            args += ["FILTER", b"@__key > " + after]
        args += [
            "SORTBY",
            "2",
            "@__key",
            "ASC",
            "MAX",
            str(page_size + 1),
            "LIMIT",
            "0",
            str(page_size + 1),
            *params_args(params),
            "DIALECT",
            "2",
            "TIMEOUT",
            self._timeout,
        ]
        self.require_ready()
        with self.redis_errors():
            reply = self.read("FT.AGGREGATE", *args)
            self._raise_on_timeout(reply)
            keys = [
                key
                for r in reply[b"results"]
                if (key := r.get(b"extra_attributes", {}).get(b"__key")) is not None and key.startswith(prefix)
            ]
            page_keys = keys[:page_size]
            found = self._fetch(page_keys, with_vectors)
            total = int(self._search(query, params, "LIMIT", "0", "0")[b"total_results"])
        page_ids = [key[len(prefix) :].hex() for key in page_keys]
        next_token = page_ids[-1] if len(keys) > page_size else ""
        return Page(items=[item for item in found if item is not None], next_page_token=next_token, total=total)

    def count(self, filter: Filter | None = None) -> int:
        """How many items match `filter` (no sorting, no fetching)."""
        query, params = filter_query(filter or Filter()).build()
        self.require_ready()
        with self.redis_errors():
            return int(self._search(query, params, "LIMIT", "0", "0")[b"total_results"])

    def list_collections(self) -> builtins.list[tuple[str, int]]:
        """(name, items) of every collection, sorted by name."""
        self.require_ready()
        with self.redis_errors():
            return self._collections()

    def stats(self) -> Stats:
        self.require_ready()
        with self.redis_errors():
            info = self.read_info()
            memory = self._client.info("memory")
            server = self._client.info("server")
            collections = self._collections()
        return Stats(
            items=int(info.get("num_docs", 0)),
            collections=collections,
            redis_memory_bytes=int(memory.get("used_memory", 0)),
            vector_index_memory_bytes=int(float(info.get("vector_index_sz_mb", 0.0)) * 1024 * 1024),
            indexing=bool(int(info.get("indexing", 0))),
            percent_indexed=float(info.get("percent_indexed", 1.0)) * 100.0,
            hnsw=self._hnsw,
            redis_version=str(server.get("redis_version", "")),
            model=self.catalog.live.model,
            indexing_eta_seconds=self.fill.eta_seconds if self.fill is not None else None,
        )

    def _collections(self) -> builtins.list[tuple[str, int]]:
        reply = self.read(
            "FT.AGGREGATE",
            "*",
            "GROUPBY",
            "1",
            f"@{S.F_COLLECTION}",
            "REDUCE",
            "COUNT",
            "0",
            "AS",
            "count",
            "DIALECT",
            "2",
            "TIMEOUT",
            self._timeout,
        )
        self._raise_on_timeout(reply)
        counts: dict[str, int] = {}
        for result in reply[b"results"]:
            attrs = result[b"extra_attributes"]
            raw = attrs.get(S.F_COLLECTION.encode())
            if raw is None:
                continue
            name = decode_tag(raw.decode())
            counts[name] = counts.get(name, 0) + int(attrs[b"count"])
        return sorted(counts.items())

    # --- internals ----------------------------------------------------------------------------------

    def _key(self, item_id: str) -> str:
        return self.schema.prefix + item_id

    def _id_of(self, key: bytes) -> str:
        return key[len(self.schema.prefix.encode()) :].decode("ascii")

    def _search(
        self, query: str, params: Mapping[str, str | bytes], *options: str, index: str | None = None
    ) -> dict[bytes, Any]:
        reply: dict[bytes, Any] = self.read(
            "FT.SEARCH",
            query,
            *options,
            *params_args(params),
            "DIALECT",
            "2",
            "TIMEOUT",
            self._timeout,
            index=index,
        )
        self._raise_on_timeout(reply)
        return reply

    def _raise_on_timeout(self, reply: Mapping[bytes, Any]) -> None:
        warnings = [w.decode(errors="replace") if isinstance(w, bytes) else str(w) for w in reply.get(b"warning", [])]
        if any("timeout" in w.lower() for w in warnings):
            raise QueryTimeout(
                f"RediSearch stopped the query at its time limit ({self._timeout} ms); "
                "narrow the filter or raise SEARCH_QUERY_TIMEOUT_MS"
            )
        for warning in warnings:
            log.warning("RediSearch: %s", warning)

    def _fetch(self, keys: Sequence[bytes], with_vectors: bool) -> builtins.list[Item | None]:
        # media_type is written with every item: a key without it is absent (or not an item).
        fields = [S.F_MEDIA_TYPE, *ITEM_FIELDS, *([S.F_VECTOR] if with_vectors else [])]
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, fields)
        replies = pipe.execute(raise_on_error=False)
        items: list[Item | None] = []
        for key, values in zip(keys, replies, strict=False):
            if isinstance(values, Exception) or values[0] is None:
                items.append(None)  # absent, or a key of another type that is not an item
                continue
            attrs = {name.encode(): value for name, value in zip(fields, values, strict=False) if value is not None}
            items.append(item_from_fields(self._id_of(key), attrs, with_vectors, self.schema.vector.numpy_type))
        return items

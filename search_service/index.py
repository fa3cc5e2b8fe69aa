"""Items in Redis HASHes indexed by RediSearch: upsert, delete and KNN query (reads by id and page: reads.py)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import redis

from clipsearch.limits import DEFAULT_K, MAX_BATCH, MAX_EF_RUNTIME, MAX_IDS, MAX_K, MAX_WINDOW
from search_service import catalog as C
from search_service import schema as S
from search_service.catalog import EmbeddingModel
from search_service.duplicates import check_max_distance
from search_service.errors import IndexMismatch, InvalidArgument
from search_service.grouping import GROUP_FIELDS, Candidate, candidate_bound, candidates_from_reply, grouped_query
from search_service.items import (
    DeleteResult,
    DuplicateOptions,
    Filter,
    Item,
    Match,
    MomentOptions,
    UpsertResult,
)
from search_service.moments import check_gap, single
from search_service.query import DISTANCE, QueryBuilder, filter_query, params_args
from search_service.reads import IndexReads
from search_service.redis_calls import execute, is_missing_index
from search_service.resolve import CATALOG_MAX_AGE_SECONDS, Stale
from search_service.storage import ITEM_FIELDS, encode_tag, item_fields, item_from_fields
from search_service.validation import (
    check_collection,
    check_id,
    check_ids,
    check_source,
    unique,
    vector_bytes,
)
from search_service.windows import CursorWindows, Page

_SCAN_BATCH = 1000  # keys per round when deleting by collection or source
# Items written per Lua script, one script per round trip. A script holds every other Redis client while it
# runs, and each item's HNSW insertion takes about 1 ms at a million items: a batch of 1,000 in one script held
# searches for hundreds of milliseconds. Pipelined chunks are no better, since Redis runs every command a client
# has sent before it serves the next client: with 200,000 frames and a search always waiting, a pipeline of
# 1,000 items raised the search p99 from 4-5 ms to 40 ms, round trips of 8 items to 17 ms, of 4 items to 11 ms
# (while writing 1,080, 680 and 520 items a second: the searches took the rest). A search waits for one chunk.
UPSERT_CHUNK = 4
# A grouped query's cursor is deleted when the query is done; one left behind (the service stopped) goes then.
CURSOR_MAX_IDLE_MS = 10_000
# FT.AGGREGATE's name for a row's key.
KEY = "__key"
T = TypeVar("T")


class SearchIndex(IndexReads):
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
                # The whole batch is checked before any of it is written; then it is written in chunks, each
                # one script and one round trip (other clients' searches run between them).
                self._check_script(keys=[catalog, *keys], args=args)
                created = 0
                for start in range(0, len(keys), UPSERT_CHUNK):
                    chunk = [part for fields in written[start : start + UPSERT_CHUNK] for part in fields]
                    created += int(
                        self._upsert_script(keys=[catalog, *keys[start : start + UPSERT_CHUNK]], args=[*args, *chunk])
                    )
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

    def _matching_keys(self, query: str, params: Mapping[str, str | bytes]) -> list[bytes]:
        reply = self._search(query, params, "NOCONTENT", "LIMIT", "0", str(_SCAN_BATCH))
        return [r[b"id"] for r in reply[b"results"]]

    # --- vector search --------------------------------------------------------------------------------------

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
    ) -> list[Match]:
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
    ) -> list[Match]:
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

        def fetch_candidates(n: int) -> list[Candidate]:
            results = self._knn(base, blob, 0, n, ef_runtime, GROUP_FIELDS)
            return candidates_from_reply(results, len(self.schema.prefix.encode()), DISTANCE.encode(), min_score)

        windows = self._candidate_windows(
            base, blob, ef_runtime, min_score, fetch_candidates, candidate_bound(offset + k)
        )

        def fetch_items(ids: Sequence[str]) -> list[Item | None]:
            with self.redis_errors():  # the cursor let go in the same round trip
                return self._fetch([self._key(i).encode() for i in ids], with_vectors, windows.release())

        try:
            return grouped_query(windows.fetch, fetch_items, k=k, offset=offset, gap_seconds=gap, max_distance=distance)
        finally:
            windows.close()

    def _nearest(
        self,
        builder: QueryBuilder,
        blob: bytes,
        offset: int,
        k: int,
        min_score: float | None,
        ef_runtime: int,
        fields: Sequence[str],
    ) -> list[Match]:
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

    def _knn_query(
        self, builder: QueryBuilder, blob: bytes, k: int, ef_runtime: int, index: str
    ) -> tuple[str, dict[str, str | bytes]]:
        """The KNN query of the k nearest to `blob` on `index` (the live index, or its exact companion: FLAT
        takes no EF_RUNTIME), and its parameters."""
        base = builder.build()[0]
        params = dict(builder.params) | {"K": str(k), "BLOB": blob}
        knn = f"KNN $K @{S.F_VECTOR} $BLOB"
        if self.reads_graph(index):
            params["EF"] = str(max(ef_runtime or self.default_ef, k))
            knn += " EF_RUNTIME $EF"
        query = f"({base})=>[{knn} AS {DISTANCE}]" if base != "*" else f"*=>[{knn} AS {DISTANCE}]"
        return query, params

    def _knn(
        self, builder: QueryBuilder, blob: bytes, offset: int, k: int, ef_runtime: int, fields: Sequence[str]
    ) -> list[dict[bytes, Any]]:
        """FT.SEARCH results offset to offset + k nearest to `blob`, read with `fields` and the distance."""
        fields = [*fields, DISTANCE] if DISTANCE not in fields else fields

        def search(index: str) -> dict[bytes, Any]:
            query, params = self._knn_query(builder, blob, offset + k, ef_runtime, index)
            options = ["SORTBY", DISTANCE, "ASC", "LIMIT", str(offset), str(k), "RETURN", str(len(fields)), *fields]
            return self._search(query, params, *options, index=index)

        with self.redis_errors():
            reply = self._read_knn(search)
            self._check_prefix(r[b"id"] for r in reply[b"results"])
        results: list[dict[bytes, Any]] = reply[b"results"]
        return results

    def _read_knn(self, search: Callable[[str], T]) -> T:
        try:
            return self.reading(search)
        except redis.ResponseError:
            # The live index dropped, or (generation 0 turned alias) another dimension: switched?
            if self.switched():
                raise Stale() from None
            raise

    def _check_prefix(self, keys: Iterable[bytes]) -> None:
        # Keys of another prefix: the configured name is now an alias of a newer generation.
        prefix = self.schema.prefix.encode()
        if not all(key.startswith(prefix) for key in keys) and self.switched():
            raise Stale()

    def _candidate_windows(
        self,
        builder: QueryBuilder,
        blob: bytes,
        ef_runtime: int,
        min_score: float | None,
        search: Callable[[int], list[Candidate]],
        bound: int,
    ) -> CursorWindows:
        """A grouped query's candidate windows (windows.py): the first two from one FT.AGGREGATE read through
        a cursor, on the index it was opened on."""
        opened_on = [self.read_index]
        load = [KEY, *GROUP_FIELDS]
        prefix_bytes = len(self.schema.prefix.encode())

        def page(reply: list[Any]) -> Page:
            body, cursor = reply
            try:
                self._raise_on_timeout(body)
                rows = [{b"id": r[b"extra_attributes"][KEY.encode()], **r} for r in body[b"results"]]
                self._check_prefix(r[b"id"] for r in rows)
            except Exception:
                if cursor:  # not the caller's yet: let it go here
                    send(let_go(int(cursor)))
                raise
            return Page(candidates_from_reply(rows, prefix_bytes, DISTANCE.encode(), min_score), int(cursor))

        def open_cursor(k: int, count: int) -> Page | None:
            def aggregate(index: str) -> list[Any] | None:
                opened_on[0] = index
                query, params = self._knn_query(builder, blob, k, ef_runtime, index)
                try:
                    # Sorted before the fields are loaded: only the rows read are loaded.
                    reply: list[Any] = execute(
                        self._client,
                        *("FT.AGGREGATE", index, query, "SORTBY", "2", f"@{DISTANCE}", "ASC", "MAX", str(k)),
                        *("LOAD", str(len(load)), *(f"@{f}" for f in load)),
                        *("WITHCURSOR", "COUNT", str(count), "MAXIDLE", str(CURSOR_MAX_IDLE_MS)),
                        *params_args(params),
                        *("DIALECT", "2", "TIMEOUT", self._timeout),
                    )
                except redis.ResponseError as e:
                    if "too many cursors" in str(e).lower():  # RediSearch keeps 128 an index: search instead
                        return None
                    raise
                return reply

            with self.redis_errors():
                reply = self._read_knn(aggregate)
                return None if reply is None else page(reply)

        def read_cursor(cursor: int, count: int) -> Page | None:
            with self.redis_errors():
                try:
                    reply = execute(self._client, "FT.CURSOR", "READ", opened_on[0], str(cursor), "COUNT", str(count))
                except redis.ResponseError as e:
                    if "cursor not found" in str(e).lower() or is_missing_index(e):
                        return None
                    raise
                return page(reply)

        def let_go(cursor: int) -> tuple[str, ...]:
            return ("FT.CURSOR", "DEL", opened_on[0], str(cursor))

        def send(command: tuple[str, ...]) -> None:
            with contextlib.suppress(redis.RedisError):  # an idle cursor goes after CURSOR_MAX_IDLE_MS anyway
                execute(self._client, *command)

        return CursorWindows(search, open_cursor, read_cursor, let_go, send, bound=bound)

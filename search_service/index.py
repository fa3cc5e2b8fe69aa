"""Items in Redis HASHes indexed by RediSearch: validation, upsert, KNN query, get, list, delete, stats."""

from __future__ import annotations

import enum
import hashlib
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import redis

from search_service import schema as S
from search_service.schema import IndexSchema

log = logging.getLogger(__name__)

MAX_BATCH = 1000
MAX_IDS = 1000
MAX_ID_BYTES = 256
MAX_SOURCE_BYTES = 4096
MAX_TAG_BYTES = 256
MAX_COLLECTION_BYTES = 128
MAX_CONTENT_HASH_CHARS = 128
DEFAULT_COLLECTION = "default"
DEFAULT_K = 10
MAX_K = 1000
MAX_WINDOW = 10_000  # offset + k
MAX_EF_RUNTIME = 100_000
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_SCAN_BATCH = 1000  # keys per round when deleting by collection or source

_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_ID_BYTES}}}")
_SOURCE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x7e]*")
_HEX = re.compile(r"[0-9a-f]*")
_PAGE_TOKEN = re.compile(rf"(?:[0-9a-f]{{2}}){{1,{MAX_ID_BYTES}}}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DISTANCE = "knn_distance"


class SearchError(Exception):
    """Base of the errors the service reports to callers."""


class InvalidArgument(SearchError):
    """A malformed request; nothing of it was written."""


class IndexMismatch(SearchError):
    """Redis is not as the configuration expects: the index has other settings, RediSearch is missing, or
    a key under the prefix is not an item."""


class Unavailable(SearchError):
    """Redis cannot be reached (or is loading, or the index is being re-created); retry later."""


class QueryTimeout(SearchError):
    """RediSearch stopped the query at its time limit; its results would have been partial."""


class MediaType(enum.Enum):
    """What an item was taken from."""

    UNSPECIFIED = "unspecified"
    IMAGE = "image"
    VIDEO_FRAME = "video_frame"


@dataclass(frozen=True)
class Metadata:
    """Everything stored about an item besides its vector."""

    sources: tuple[str, ...] = ()
    media_type: MediaType = MediaType.UNSPECIFIED
    collection: str = DEFAULT_COLLECTION
    timestamp_seconds: float = 0.0
    frame_index: int = 0
    content_hash: str = ""
    width: int = 0
    height: int = 0
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Item:
    """An id, its vector (None when not requested) and metadata."""

    id: str
    vector: np.ndarray | None
    metadata: Metadata = field(default_factory=Metadata)


@dataclass(frozen=True)
class Filter:
    """Restricts a query, list or delete to items matching every field that is set."""

    collections: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    source_dir: str = ""
    tags: tuple[str, ...] = ()
    media_type: MediaType = MediaType.UNSPECIFIED
    min_timestamp_seconds: float | None = None
    max_timestamp_seconds: float | None = None
    content_hashes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Match:
    item: Item
    score: float  # cosine similarity, higher is closer


@dataclass(frozen=True)
class UpsertResult:
    upserted: int
    created: int


@dataclass(frozen=True)
class DeleteResult:
    deleted: int
    updated: int = 0


@dataclass(frozen=True)
class Page:
    items: list[Item]
    next_page_token: str
    total: int


@dataclass(frozen=True)
class HnswParams:
    m: int
    ef_construction: int
    ef_runtime: int


@dataclass(frozen=True)
class Stats:
    items: int
    collections: list[tuple[str, int]]
    redis_memory_bytes: int
    vector_index_memory_bytes: int
    indexing: bool
    percent_indexed: float
    hnsw: HnswParams
    redis_version: str


def encode_tag(value: str) -> str:
    """How a free-text TAG value (a tag, a collection) is indexed: percent-encoded UTF-8.

    RediSearch trims spaces around TAG values and cannot index an empty one; the encoding keeps every
    value exact, and only [A-Za-z0-9_.~%-] reaches the index.
    """
    return quote(value, safe="")


def decode_tag(value: str) -> str:
    return unquote(value)


def source_dir_digest(directory: str) -> str:
    """How a directory URI (ending in "/") is indexed in the source_dirs field, as the Lua scripts write it."""
    return hashlib.sha1(directory.encode("ascii")).hexdigest()


# Shared by the Lua scripts: splitting a multi-valued field and deriving a source's directories.
_LUA_COMMON = r"""
local SEP, F_SOURCES, F_DIRS = ARGV[1], ARGV[2], ARGV[3]
local function split(s)
  local out = {}
  if not s or s == '' then return out end
  local start = 1
  while true do
    local i = string.find(s, SEP, start, true)
    if not i then out[#out + 1] = string.sub(s, start); return out end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
end
-- The SHA-1 of every ancestor directory URI of every source (file:///a/b/c.jpg: file:///, file:///a/,
-- file:///a/b/). Digests keep the field small: a deep path's directories, spelled out, grow quadratically.
local function dirs_of(sources)
  local out, seen = {}, {}
  for _, src in ipairs(sources) do
    local _, authority_end = string.find(src, '://', 1, true)
    local pos
    if authority_end then pos = authority_end + 1 else pos = (string.find(src, ':', 1, true) or 0) + 1 end
    while true do
      local i = string.find(src, '/', pos, true)
      if not i or i >= #src then break end
      local dir = redis.sha1hex(string.sub(src, 1, i))
      if not seen[dir] then seen[dir] = true; out[#out + 1] = dir end
      pos = i + 1
    end
  end
  return out
end
-- Writes the sources and their directories with one HSET: every write re-indexes the item.
local function set_sources(key, sources)
  if #sources == 0 then redis.call('HDEL', key, F_SOURCES, F_DIRS); return end
  local dirs = dirs_of(sources)
  if #dirs == 0 then redis.call('HDEL', key, F_DIRS) end
  local fields = {F_SOURCES, table.concat(sources, SEP)}
  if #dirs > 0 then fields[3] = F_DIRS; fields[4] = table.concat(dirs, SEP) end
  redis.call('HSET', key, unpack(fields))
end
"""

# KEYS: item keys. ARGV[4..]: for each item, its new sources (joined), a count N, then N field/value pairs.
# Checks every key before writing any, so a batch is written whole or not at all.
_UPSERT_LUA = (
    _LUA_COMMON
    + r"""
for _, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'hash' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE key ' .. key .. ' holds a ' .. kind .. ', not an item hash')
  end
end
local created, pos = 0, 4
for _, key in ipairs(KEYS) do
  local sources, seen = {}, {}
  local existing = redis.call('HGET', key, F_SOURCES)
  if redis.call('EXISTS', key) == 0 then created = created + 1 end
  for _, list in ipairs({split(existing), split(ARGV[pos])}) do
    for _, s in ipairs(list) do
      if not seen[s] then seen[s] = true; sources[#sources + 1] = s end
    end
  end
  local n = tonumber(ARGV[pos + 1])
  local fields = {}
  for j = pos + 2, pos + 1 + 2 * n do fields[#fields + 1] = ARGV[j] end
  pos = pos + 2 + 2 * n
  if #sources > 0 then
    fields[#fields + 1] = F_SOURCES; fields[#fields + 1] = table.concat(sources, SEP)
    local dirs = dirs_of(sources)
    if #dirs > 0 then fields[#fields + 1] = F_DIRS; fields[#fields + 1] = table.concat(dirs, SEP) end
  end
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(fields))  -- one write: the item is indexed once
end
return created
"""
)

# KEYS: item keys. ARGV[4]: the collection field; ARGV[5]: the (encoded) collection an item must be in, or ''
# for any; ARGV[6..]: sources to remove. The collection is checked here, not only in the query that found the
# keys, because an upsert may have moved an item to another collection since. Returns {deleted, updated}.
_REMOVE_SOURCES_LUA = (
    _LUA_COMMON
    + r"""
local F_COLLECTION, scope = ARGV[4], ARGV[5]
local remove = {}
for j = 6, #ARGV do remove[ARGV[j]] = true end
local deleted, updated = 0, 0
for _, key in ipairs(KEYS) do
  if redis.call('TYPE', key)['ok'] == 'hash'
      and (scope == '' or redis.call('HGET', key, F_COLLECTION) == scope) then
    local old = split(redis.call('HGET', key, F_SOURCES))
    local kept = {}
    for _, s in ipairs(old) do if not remove[s] then kept[#kept + 1] = s end end
    if #kept < #old then
      if #kept == 0 then
        redis.call('DEL', key); deleted = deleted + 1
      else
        set_sources(key, kept); updated = updated + 1
      end
    end
  end
end
return {deleted, updated}
"""
)

_ITEM_FIELDS = (
    S.F_COLLECTION,
    S.F_SOURCES,
    S.F_TAGS,
    S.F_CONTENT_HASH,
    S.F_MEDIA_TYPE,
    S.F_TIMESTAMP,
    S.F_FRAME_INDEX,
    S.F_WIDTH,
    S.F_HEIGHT,
)


class SearchIndex:
    """The items of one RediSearch index, over a redis-py client (which it owns and closes)."""

    def __init__(
        self, client: redis.Redis, schema: IndexSchema, *, redis_label: str, query_timeout_ms: int = 10_000
    ) -> None:
        self._client = client
        self.schema = schema
        self.redis_label = redis_label
        self._timeout = str(query_timeout_ms)
        self._ready = False
        self._hnsw = HnswParams(schema.vector.m, schema.vector.ef_construction, schema.vector.ef_runtime)
        self._upsert_script = client.register_script(_UPSERT_LUA)
        self._remove_sources_script = client.register_script(_REMOVE_SOURCES_LUA)

    @property
    def dimension(self) -> int:
        return self.schema.vector.dimension

    def close(self) -> None:
        self._client.close()

    # --- health and index verification -------------------------------------------------------------

    def check(self) -> None:
        """Verifies Redis answers and the index exists with the configured settings; creates it if missing.

        Raises Unavailable or IndexMismatch; on success the index is ready for calls.
        """
        with self._redis_errors():
            self._client.ping()
            try:
                raw = self._client.execute_command("FT.INFO", self.schema.name)
            except redis.ResponseError as e:
                if _is_unknown_command(e):
                    self._ready = False
                    raise IndexMismatch(
                        f"Redis at {self.redis_label} has no RediSearch module (FT.INFO is unknown): use Redis 8 "
                        "or Redis Stack, or unset REDIS_URL to let the service start its own Redis"
                    ) from None
                if not _is_missing_index(e):
                    raise
                self._create()
                raw = self._client.execute_command("FT.INFO", self.schema.name)
            info = _parse_info(raw)
        problems = self.schema.mismatches(info)
        if problems:
            self._ready = False
            raise IndexMismatch(self._mismatch_message(info, problems))
        self._note_hnsw(info)
        self._ready = True

    def _create(self) -> None:
        try:
            self._client.execute_command(*self.schema.create_args())
            log.info(
                "created RediSearch index %r (prefix %r, %s, dimension %d) in Redis at %s",
                self.schema.name,
                self.schema.prefix,
                self.schema.vector.algorithm.upper(),
                self.dimension,
                self.redis_label,
            )
        except redis.ResponseError as e:
            if "already exists" not in str(e).lower():  # another service instance created it first
                raise

    def _mismatch_message(self, info: Mapping[str, Any], problems: list[str]) -> str:
        vector = info.get("attributes", {}).get(S.F_VECTOR, {})
        hint = ""
        if isinstance(vector.get("dim"), int) and vector.get("algorithm"):
            hint = (
                f"set SEARCH_DIM={vector['dim']} and SEARCH_ALGORITHM={str(vector['algorithm']).lower()} to use it, or "
            )
        return (
            f"the RediSearch index {self.schema.name!r} in Redis at {self.redis_label} does not match the "
            f"configuration: {'; '.join(problems)}. To resolve: {hint}set SEARCH_INDEX to another name for a "
            f"new index, or drop this one (FT.DROPINDEX {self.schema.name} DD, which deletes its items) "
            "and restart the service"
        )

    def _note_hnsw(self, info: Mapping[str, Any]) -> None:
        vector = info.get("attributes", {}).get(S.F_VECTOR, {})
        if self.schema.vector.algorithm != "hnsw":
            return
        m = vector.get("m", self.schema.vector.m)
        ef_construction = vector.get("ef_construction", self.schema.vector.ef_construction)
        found = HnswParams(int(m), int(ef_construction), self.schema.vector.ef_runtime)
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

    def _require_ready(self) -> None:
        if not self._ready:
            self.check()

    @contextmanager
    def _redis_errors(self) -> Iterator[None]:
        try:
            yield
        except redis.BusyLoadingError:
            self._ready = False
            raise Unavailable(f"Redis at {self.redis_label} is loading its data; retry shortly") from None
        except redis.TimeoutError as e:
            raise Unavailable(
                f"Redis at {self.redis_label} did not answer in time ({e}): it is overloaded or "
                "busy with a long command; retry, or raise SEARCH_REDIS_TIMEOUT_SECONDS"
            ) from None
        except redis.ConnectionError as e:
            self._ready = False
            raise Unavailable(f"Redis at {self.redis_label} is unreachable: {e}") from None
        except redis.ResponseError as e:
            if _is_missing_index(e):
                self._ready = False
                raise Unavailable(
                    f"the index {self.schema.name!r} is missing from Redis at {self.redis_label}; "
                    "it is being re-created, retry"
                ) from None
            if str(e).startswith("LOADING"):
                self._ready = False
                raise Unavailable(f"Redis at {self.redis_label} is loading its data; retry shortly") from None
            if str(e).startswith("BUSY"):  # another client's long script (e.g. a large upsert) is running
                raise Unavailable(f"Redis at {self.redis_label} is busy: {e}; retry shortly") from None
            raise

    # --- writes -------------------------------------------------------------------------------------

    def upsert(self, items: Sequence[Item]) -> UpsertResult:
        """Writes the batch atomically, merging each item's sources with those already stored."""
        if not items:
            raise InvalidArgument("items is empty: send 1 to 1000 items")
        if len(items) > MAX_BATCH:
            raise InvalidArgument(f"{len(items)} items in one batch; at most {MAX_BATCH}: split the batch")
        seen: dict[str, int] = {}
        keys: list[str] = []
        args: list[str | bytes] = [S.TAG_SEPARATOR, S.F_SOURCES, S.F_SOURCE_DIRS]
        for i, item in enumerate(items):
            where = f"items[{i}]"
            _check_id(item.id, where + ".id")
            where = f"items[{i}] (id {item.id!r})"
            if item.id in seen:
                raise InvalidArgument(f"{where}: duplicate id, also at items[{seen[item.id]}]")
            seen[item.id] = i
            blob = self._vector_bytes(item.vector, where + ".vector")
            meta = item.metadata
            sources = _unique(meta.sources)
            for j, source in enumerate(sources):
                _check_source(source, f"{where}.metadata.sources[{j}]")
            tags = _unique(meta.tags)
            for j, tag in enumerate(tags):
                _check_tag(tag, f"{where}.metadata.tags[{j}]")
            collection = _check_collection(meta.collection, f"{where}.metadata.collection")
            _check_content_hash(meta.content_hash, f"{where}.metadata.content_hash")
            if not math.isfinite(meta.timestamp_seconds):
                raise InvalidArgument(
                    f"{where}.metadata.timestamp_seconds is {meta.timestamp_seconds}; it must be finite"
                )
            fields: list[str | bytes] = [
                S.F_ID,
                item.id.encode("ascii").hex(),
                S.F_VECTOR,
                blob,
                S.F_COLLECTION,
                encode_tag(collection),
                S.F_MEDIA_TYPE,
                meta.media_type.value,
                S.F_TIMESTAMP,
                repr(float(meta.timestamp_seconds)),
                S.F_FRAME_INDEX,
                str(int(meta.frame_index)),
                S.F_WIDTH,
                str(int(meta.width)),
                S.F_HEIGHT,
                str(int(meta.height)),
            ]
            if meta.content_hash:
                fields += [S.F_CONTENT_HASH, meta.content_hash]
            if tags:
                fields += [S.F_TAGS, S.TAG_SEPARATOR.join(encode_tag(t) for t in tags)]
            keys.append(self._key(item.id))
            args += [S.TAG_SEPARATOR.join(sources), str(len(fields) // 2), *fields]
        self._require_ready()
        with self._redis_errors():
            try:
                created = self._upsert_script(keys=keys, args=args)
            except redis.ResponseError as e:
                if "WRONGTYPE" not in str(e):
                    raise
                raise IndexMismatch(
                    f"{e}; nothing was written: delete that key or set SEARCH_KEY_PREFIX to a "
                    "prefix only this service uses"
                ) from None
        return UpsertResult(upserted=len(items), created=int(created))

    def delete_ids(self, ids: Sequence[str]) -> DeleteResult:
        ids = _unique(ids)
        if len(ids) > MAX_IDS:
            raise InvalidArgument(f"{len(ids)} ids; at most {MAX_IDS} per call")
        for i, item_id in enumerate(ids):
            _check_id(item_id, f"ids[{i}]")
        self._require_ready()
        with self._redis_errors():
            deleted = self._client.delete(*(self._key(i) for i in ids)) if ids else 0
        return DeleteResult(deleted=int(deleted))

    def delete_sources(
        self, sources: Sequence[str], *, collection: str | None = None, ids: Sequence[str] = ()
    ) -> DeleteResult:
        """Removes the sources from the items listing them; deletes items left with none.

        Only items of `collection` and, when `ids` is not empty, only those items are changed. Each item
        changes atomically (in a Lua script), so one that keeps a source is never lost.
        """
        sources = _unique(sources)
        if not sources:
            raise InvalidArgument("sources is empty: give 1 to 1000 source URIs")
        if len(sources) > MAX_IDS:
            raise InvalidArgument(f"{len(sources)} sources; at most {MAX_IDS} per call")
        for i, source in enumerate(sources):
            _check_source(source, f"sources[{i}]")
        ids = _unique(ids)
        if len(ids) > MAX_IDS:
            raise InvalidArgument(f"{len(ids)} ids; at most {MAX_IDS} per call")
        for i, item_id in enumerate(ids):
            _check_id(item_id, f"ids[{i}]")
        scope = "" if collection is None else encode_tag(_check_collection(collection, "collection"))
        args = [S.TAG_SEPARATOR, S.F_SOURCES, S.F_SOURCE_DIRS, S.F_COLLECTION, scope, *sources]
        builder = _QueryBuilder().tags(S.F_SOURCES, sources)
        if scope:
            builder.tags(S.F_COLLECTION, [scope])
        query, params = builder.build()
        deleted = updated = 0
        self._require_ready()
        with self._redis_errors():
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
        collection = _check_collection(collection, "collection")
        query, params = _QueryBuilder().tags(S.F_COLLECTION, [encode_tag(collection)]).build()
        deleted = 0
        self._require_ready()
        with self._redis_errors():
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
    ) -> list[Match]:
        """The k nearest items to `vector` among those matching `filter`, skipping the first `offset`."""
        blob = self._vector_bytes(vector, "vector")
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
        builder = self._filter(filter or Filter())
        base = builder.build()[0]
        params = dict(builder.params)
        params |= {"K": str(offset + k), "BLOB": blob}
        knn = f"KNN $K @{S.F_VECTOR} $BLOB"
        if self.schema.vector.algorithm == "hnsw":
            params["EF"] = str(max(ef_runtime or self._hnsw.ef_runtime, offset + k))
            knn += " EF_RUNTIME $EF"
        query = f"({base})=>[{knn} AS {_DISTANCE}]" if base != "*" else f"*=>[{knn} AS {_DISTANCE}]"
        fields = [*_ITEM_FIELDS, *([S.F_VECTOR] if with_vectors else []), _DISTANCE]
        self._require_ready()
        with self._redis_errors():
            reply = self._search(
                query,
                params,
                "SORTBY",
                _DISTANCE,
                "ASC",
                "LIMIT",
                str(offset),
                str(k),
                "RETURN",
                str(len(fields)),
                *fields,
            )
        matches = []
        for result in reply[b"results"]:
            attrs = result.get(b"extra_attributes", {})
            score = 1.0 - float(attrs[_DISTANCE.encode()])
            if min_score is not None and score < min_score:
                break  # best first: every later match scores lower
            matches.append(Match(self._item(result[b"id"], attrs, with_vectors), score))
        return matches

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> tuple[list[Item], list[str]]:
        """The items found, in request order, and the ids not found."""
        if len(ids) > MAX_IDS:
            raise InvalidArgument(f"{len(ids)} ids; at most {MAX_IDS} per call")
        for i, item_id in enumerate(ids):
            _check_id(item_id, f"ids[{i}]")
        self._require_ready()
        with self._redis_errors():
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
        if page_token and not _PAGE_TOKEN.fullmatch(page_token):
            raise InvalidArgument("page_token is not one this service issued: pass next_page_token unchanged")
        query, params = self._filter(filter or Filter()).build()
        args: list[str | bytes] = ["FT.AGGREGATE", self.schema.name, query]
        if page_token:
            # Only hex digits are spliced into the expression (checked above).
            args += ["FILTER", f"@{S.F_ID} > '{page_token}'"]
        args += [
            "SORTBY",
            "2",
            f"@{S.F_ID}",
            "ASC",
            "MAX",
            str(page_size + 1),
            "LIMIT",
            "0",
            str(page_size + 1),
            *_params_args(params),
            "DIALECT",
            "2",
            "TIMEOUT",
            self._timeout,
        ]
        self._require_ready()
        with self._redis_errors():
            reply = self._client.execute_command(*args)
            self._raise_on_timeout(reply)
            hex_ids = [
                r[b"extra_attributes"][S.F_ID.encode()].decode()
                for r in reply[b"results"]
                if S.F_ID.encode() in r.get(b"extra_attributes", {})
            ]
            page_ids = hex_ids[:page_size]
            found = self._fetch([self.schema.prefix.encode() + bytes.fromhex(h) for h in page_ids], with_vectors)
            total = int(self._search(query, params, "LIMIT", "0", "0")[b"total_results"])
        next_token = page_ids[-1] if len(hex_ids) > page_size else ""
        return Page(items=[item for item in found if item is not None], next_page_token=next_token, total=total)

    def list_collections(self) -> list[tuple[str, int]]:
        """(name, items) of every collection, sorted by name."""
        self._require_ready()
        with self._redis_errors():
            return self._collections()

    def stats(self) -> Stats:
        self._require_ready()
        with self._redis_errors():
            info = _parse_info(self._client.execute_command("FT.INFO", self.schema.name))
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
        )

    def _collections(self) -> list[tuple[str, int]]:
        reply = self._client.execute_command(
            "FT.AGGREGATE",
            self.schema.name,
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

    def _vector_bytes(self, vector: np.ndarray | Sequence[float] | None, where: str) -> bytes:
        if vector is None:
            raise InvalidArgument(f"{where} is missing")
        array = np.asarray(vector, dtype=np.float32)
        if array.ndim != 1 or array.shape[0] != self.dimension:
            size = array.shape[0] if array.ndim == 1 else array.size
            raise InvalidArgument(f"{where} has {size} values; the index expects {self.dimension}")
        finite = np.isfinite(array)
        if not finite.all():
            position = int(np.flatnonzero(~finite)[0])
            raise InvalidArgument(f"{where}[{position}] is {array[position]}; every value must be finite")
        if not array.any():
            raise InvalidArgument(f"{where} is all zeros; a cosine index cannot compare it")
        return array.astype("<f4", copy=False).tobytes()

    def _filter(self, f: Filter) -> _QueryBuilder:
        builder = _QueryBuilder()
        collections = [_check_collection(c, f"filter.collections[{i}]") for i, c in enumerate(f.collections)]
        builder.tags(S.F_COLLECTION, [encode_tag(c) for c in _unique(collections)])
        for i, source in enumerate(f.sources):
            _check_source(source, f"filter.sources[{i}]")
        builder.tags(S.F_SOURCES, _unique(f.sources))
        if f.source_dir:
            _check_source(f.source_dir, "filter.source_dir")
            directory = f.source_dir if f.source_dir.endswith("/") else f.source_dir + "/"
            builder.tags(S.F_SOURCE_DIRS, [source_dir_digest(directory)])
        for i, tag in enumerate(f.tags):
            _check_tag(tag, f"filter.tags[{i}]")
        for tag in _unique(f.tags):  # all of them: one clause each
            builder.tags(S.F_TAGS, [encode_tag(tag)])
        if f.media_type is not MediaType.UNSPECIFIED:
            builder.tags(S.F_MEDIA_TYPE, [f.media_type.value])
        lo, hi = f.min_timestamp_seconds, f.max_timestamp_seconds
        if lo is not None or hi is not None:
            for name, bound in (("min", lo), ("max", hi)):
                if bound is not None and math.isnan(bound):
                    raise InvalidArgument(f"filter.{name}_timestamp_seconds is NaN")
            if lo is not None and hi is not None and lo > hi:
                raise InvalidArgument(
                    f"filter.min_timestamp_seconds ({lo}) is greater than filter.max_timestamp_seconds ({hi})"
                )
            builder.numeric(S.F_TIMESTAMP, lo, hi)
        for i, content_hash in enumerate(f.content_hashes):
            _check_content_hash(content_hash, f"filter.content_hashes[{i}]")
            if not content_hash:
                raise InvalidArgument(f"filter.content_hashes[{i}] is empty")
        builder.tags(S.F_CONTENT_HASH, _unique(f.content_hashes))
        return builder

    def _search(self, query: str, params: Mapping[str, str | bytes], *options: str) -> dict[bytes, Any]:
        reply = self._client.execute_command(
            "FT.SEARCH",
            self.schema.name,
            query,
            *options,
            *_params_args(params),
            "DIALECT",
            "2",
            "TIMEOUT",
            self._timeout,
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

    def _fetch(self, keys: Sequence[bytes], with_vectors: bool) -> list[Item | None]:
        fields = [S.F_ID, *_ITEM_FIELDS, *([S.F_VECTOR] if with_vectors else [])]
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
            items.append(self._item(key, attrs, with_vectors))
        return items

    def _item(self, key: bytes, attrs: Mapping[bytes, bytes], with_vectors: bool) -> Item:
        def text(name: str) -> str:
            value = attrs.get(name.encode())
            return value.decode() if value is not None else ""

        def split(name: str) -> tuple[str, ...]:
            value = text(name)
            return tuple(value.split(S.TAG_SEPARATOR)) if value else ()

        vector = None
        if with_vectors and attrs.get(S.F_VECTOR.encode()) is not None:
            vector = np.frombuffer(attrs[S.F_VECTOR.encode()], dtype="<f4").copy()
        try:
            media_type = MediaType(text(S.F_MEDIA_TYPE))
        except ValueError:
            media_type = MediaType.UNSPECIFIED
        metadata = Metadata(
            sources=split(S.F_SOURCES),
            media_type=media_type,
            collection=decode_tag(text(S.F_COLLECTION)) or DEFAULT_COLLECTION,
            timestamp_seconds=float(text(S.F_TIMESTAMP) or 0.0),
            frame_index=int(text(S.F_FRAME_INDEX) or 0),
            content_hash=text(S.F_CONTENT_HASH),
            width=int(text(S.F_WIDTH) or 0),
            height=int(text(S.F_HEIGHT) or 0),
            tags=tuple(decode_tag(t) for t in split(S.F_TAGS)),
        )
        return Item(id=key[len(self.schema.prefix.encode()) :].decode("ascii"), vector=vector, metadata=metadata)


class _QueryBuilder:
    """A RediSearch query from clauses whose values all travel as PARAMS, never inside the query text."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.params: dict[str, str | bytes] = {}

    def _param(self, value: str) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return "$" + name

    def tags(self, field: str, values: Sequence[str]) -> _QueryBuilder:
        """Items whose `field` holds any of `values` (no clause when empty)."""
        if values:
            # RediSearch still unescapes backslashes in TAG parameters ("\%" means "%"): double them.
            escaped = [v.replace("\\", "\\\\") for v in values]
            self.clauses.append(f"@{field}:{{{' | '.join(self._param(v) for v in escaped)}}}")
        return self

    def numeric(self, field: str, low: float | None, high: float | None) -> _QueryBuilder:
        lo = "-inf" if low is None else repr(float(low))
        hi = "+inf" if high is None else repr(float(high))
        self.clauses.append(f"@{field}:[{self._param(lo)} {self._param(hi)}]")
        return self

    def build(self) -> tuple[str, dict[str, str | bytes]]:
        return (" ".join(self.clauses) or "*"), dict(self.params)


def _params_args(params: Mapping[str, str | bytes]) -> list[str | bytes]:
    if not params:
        return []
    return ["PARAMS", str(2 * len(params)), *(part for pair in params.items() for part in pair)]


def _parse_info(raw: Mapping[bytes, Any]) -> dict[str, Any]:
    """FT.INFO (RESP3) with str keys; attributes by name with lower-case keys; prefixes as a list."""
    info: dict[str, Any] = {}
    for key, value in raw.items():
        info[key.decode() if isinstance(key, bytes) else str(key)] = value
    definition = info.get("index_definition", {})
    info["prefixes"] = [p.decode() for p in definition.get(b"prefixes", [])]
    attributes: dict[str, dict[str, Any]] = {}
    for attr in info.get("attributes", []):
        parsed = {
            (k.decode() if isinstance(k, bytes) else str(k)).lower(): (v.decode() if isinstance(v, bytes) else v)
            for k, v in attr.items()
        }
        attributes[str(parsed.get("attribute"))] = parsed
    info["attributes"] = attributes
    return info


def _is_missing_index(error: redis.ResponseError) -> bool:
    text = str(error).lower()
    return "unknown index name" in text or "no such index" in text


def _is_unknown_command(error: redis.ResponseError) -> bool:
    return "unknown command" in str(error).lower()


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _check_id(value: str, where: str) -> None:
    if not _ID.fullmatch(value):
        raise InvalidArgument(
            f"{where} {_shorten(value)!r} is not 1 to {MAX_ID_BYTES} printable ASCII characters without spaces"
        )


def _check_source(value: str, where: str) -> None:
    if not value or len(value) > MAX_SOURCE_BYTES:
        raise InvalidArgument(f"{where} has {len(value)} bytes; a source URI has 1 to {MAX_SOURCE_BYTES}")
    if not _SOURCE.fullmatch(value):
        raise InvalidArgument(
            f"{where} {_shorten(value)!r} is not an absolute URI of printable ASCII without "
            "spaces (percent-encode other bytes, e.g. file:///photos/my%20cat.jpg)"
        )


def _check_tag(value: str, where: str) -> None:
    size = len(value.encode())
    if not 1 <= size <= MAX_TAG_BYTES:
        raise InvalidArgument(f"{where} has {size} bytes; a tag has 1 to {MAX_TAG_BYTES}")
    if _CONTROL.search(value):
        raise InvalidArgument(f"{where} {_shorten(value)!r} contains a control character")


def _check_collection(value: str, where: str) -> str:
    """The collection name, "default" when empty."""
    size = len(value.encode())
    if size > MAX_COLLECTION_BYTES:
        raise InvalidArgument(f"{where} has {size} bytes; at most {MAX_COLLECTION_BYTES}")
    return value or DEFAULT_COLLECTION


def _check_content_hash(value: str, where: str) -> None:
    if len(value) > MAX_CONTENT_HASH_CHARS or not _HEX.fullmatch(value):
        raise InvalidArgument(
            f"{where} {_shorten(value)!r} is not lower-case hex of at most {MAX_CONTENT_HASH_CHARS} digits"
        )


def _shorten(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "…"

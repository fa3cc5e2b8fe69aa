"""Reading stored items (get, list, count, collections, stats) and the Redis calls every index operation shares."""

from __future__ import annotations

import builtins  # IndexReads.list shadows list in the class's signatures
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from clipsearch.limits import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from search_service import schema as S
from search_service.companion import percent_indexed
from search_service.errors import InvalidArgument, QueryTimeout
from search_service.items import Filter, Item, Page, Stats
from search_service.query import filter_query, params_args
from search_service.redis_calls import execute
from search_service.resolve import IndexBase
from search_service.storage import ITEM_FIELDS, decode_tag, item_from_fields
from search_service.validation import check_ids, check_page_token

log = logging.getLogger(__name__)


def _quoted(text: bytes) -> bytes:
    """A string literal of a RediSearch expression."""
    return b"'" + text.replace(b"\\", b"\\\\").replace(b"'", b"\\'") + b"'"


class IndexReads(IndexBase):
    """The items of the live index read by id, by page, by count, and its statistics (no vector search)."""

    # --- shared by reads and writes -----------------------------------------------------------------

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

    def _fetch(
        self, keys: Sequence[bytes], with_vectors: bool, also: Sequence[Sequence[str]] = ()
    ) -> builtins.list[Item | None]:
        """The items at `keys` (None where absent), read in one round trip that also sends the commands
        `also`, whose replies are not read (a grouped query's cursor let go: one round trip less)."""
        # media_type is written with every item: a key without it is absent (or not an item).
        fields = [S.F_MEDIA_TYPE, *ITEM_FIELDS, *([S.F_VECTOR] if with_vectors else [])]
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, fields)
        for command in also:
            execute(pipe, *command)
        replies = pipe.execute(raise_on_error=False)[: len(keys)]
        items: list[Item | None] = []
        for key, values in zip(keys, replies, strict=False):
            if isinstance(values, Exception) or values[0] is None:
                items.append(None)  # absent, or a key of another type that is not an item
                continue
            attrs = {name.encode(): value for name, value in zip(fields, values, strict=False) if value is not None}
            items.append(item_from_fields(self._id_of(key), attrs, with_vectors, self.schema.vector.numpy_type))
        return items

    # --- reads by id, page and count ----------------------------------------------------------------

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
            percent_indexed=percent_indexed(info),
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

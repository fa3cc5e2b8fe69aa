"""Libraries (folders kept indexed into a collection) and their indexer's reports, stored beside the index."""

from __future__ import annotations

import enum
import json
import posixpath
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import redis

from clipsearch.limits import MAX_IDS, MAX_PAGE_SIZE
from search_service import catalog as C
from search_service.errors import InvalidArgument, LibraryChanged, LibraryExists, LibraryNotFound, LibraryOverlaps
from search_service.items import Filter
from search_service.validation import check_collection

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 128
MAX_FAILURES = 100  # failures kept per report; failed_files counts them all
MAX_MESSAGE_CHARS = 1000
# A report older than this means no indexer watches the library now (indexers report at least twice as often).
STALE_AFTER_SECONDS = 60.0


class LibraryState(enum.IntEnum):
    """search.proto LibraryState, same numbers."""

    UNSPECIFIED = 0
    IDLE = 1
    SCANNING = 2
    INDEXING = 3
    WATCHING = 4
    ERROR = 5


@dataclass(frozen=True)
class LibraryStatus:
    state: LibraryState = LibraryState.UNSPECIFIED
    files_done: int = 0
    files_total: int = 0
    eta_seconds: float | None = None
    message: str = ""
    failures: tuple[tuple[str, str], ...] = ()  # (path, reason)
    failed_files: int = 0
    updated_at: float = 0.0
    indexer: str = ""
    caught_up_at: float = 0.0


@dataclass(frozen=True)
class Library:
    name: str
    path: str
    uri: str
    collection: str
    created_at: float
    rescan_requests: int = 0
    items: int = 0
    status: LibraryStatus = field(default_factory=LibraryStatus)


@dataclass(frozen=True)
class RemoveResult:
    library: Library
    deleted_items: int
    updated_items: int


def libraries_key(index_name: str) -> str:
    """The HASH name -> JSON of the libraries (outside the item key prefixes, like the catalog)."""
    return C.catalog_key(index_name) + ":libraries"


def status_key(index_name: str) -> str:
    """The HASH name -> JSON of the latest report of each library's indexer."""
    return C.catalog_key(index_name) + ":library-status"


def normalize_path(path: str) -> str:
    """An absolute, normalized folder path, or InvalidArgument saying why not."""
    if not path:
        raise InvalidArgument("path is empty: give the folder's absolute path")
    size = len(path.encode("utf-8", "surrogatepass"))
    if size > MAX_PATH_BYTES:
        raise InvalidArgument(f"path has {size} bytes; at most {MAX_PATH_BYTES}")
    if "\0" in path:
        raise InvalidArgument("path contains a NUL character")
    if not path.startswith("/"):
        raise InvalidArgument(f"path {path!r} is not absolute: give the folder's full path, from /")
    normal = posixpath.normpath(path)
    return "/" + normal.lstrip("/")  # normpath keeps a leading "//"


def dir_uri(path: str) -> str:
    """The directory URI of a normalized path, percent-encoded as the client encodes sources."""
    uri = "file://" + quote(path.encode("utf-8", "surrogateescape"), safe="/")
    return uri if uri.endswith("/") else uri + "/"


def check_name(name: str) -> str:
    size = len(name.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= MAX_NAME_BYTES:
        raise InvalidArgument(f"library name has {size} bytes; give 1 to {MAX_NAME_BYTES}")
    if "/" in name or any(unicodedata.category(c) in ("Cc", "Cs") for c in name) or name != name.strip():
        raise InvalidArgument(f"bad library name {name!r}: no '/', control characters, or spaces at either end")
    return name


def _contains(outer: str, inner: str) -> bool:
    return outer == inner or inner.startswith(outer.rstrip("/") + "/")


def _to_json(library: Library) -> str:
    return json.dumps(
        {
            "path": library.path,
            "collection": library.collection,
            "created_at": library.created_at,
            "rescan_requests": library.rescan_requests,
        }
    )


def _from_json(name: str, raw: bytes | str) -> Library:
    data = json.loads(raw)
    path = str(data["path"])
    return Library(
        name=name,
        path=path,
        uri=dir_uri(path),
        collection=str(data["collection"]),
        created_at=float(data.get("created_at", 0.0)),
        rescan_requests=int(data.get("rescan_requests", 0)),
    )


def _status_to_json(status: LibraryStatus) -> str:
    data: dict[str, Any] = {
        "state": int(status.state),
        "files_done": status.files_done,
        "files_total": status.files_total,
        "eta_seconds": status.eta_seconds,
        "message": status.message,
        "failures": [list(f) for f in status.failures],
        "failed_files": status.failed_files,
        "updated_at": status.updated_at,
        "indexer": status.indexer,
        "caught_up_at": status.caught_up_at,
    }
    return json.dumps(data)


def _status_from_json(raw: bytes, now: float) -> LibraryStatus:
    data = json.loads(raw)
    state = LibraryState(int(data.get("state", 0)))
    updated_at = float(data.get("updated_at", 0.0))
    if state != LibraryState.UNSPECIFIED and now - updated_at > STALE_AFTER_SECONDS:
        state = LibraryState.IDLE
    eta = data.get("eta_seconds")
    return LibraryStatus(
        state=state,
        files_done=int(data.get("files_done", 0)),
        files_total=int(data.get("files_total", 0)),
        eta_seconds=None if eta is None or state != LibraryState.INDEXING else float(eta),
        message=str(data.get("message", "")),
        failures=tuple((str(p), str(r)) for p, r in data.get("failures", [])),
        failed_files=int(data.get("failed_files", 0)),
        updated_at=updated_at,
        indexer=str(data.get("indexer", "")),
        caught_up_at=float(data.get("caught_up_at", 0.0)),
    )


class Libraries:
    """The libraries of one configured index, in two Redis HASHes beside its catalog."""

    def __init__(self, index: Any) -> None:
        self._index = index
        self._key = libraries_key(index.configured.name)
        self._status_key = status_key(index.configured.name)

    @property
    def _client(self) -> redis.Redis:
        return self._index.client  # type: ignore[no-any-return]

    def _transaction(self) -> Any:  # redis-py's Pipeline is unannotated; WATCH/MULTI/EXEC through it
        return self._client.pipeline(transaction=True)

    def _all(self) -> dict[str, Library]:
        raw: Mapping[bytes, bytes] = self._client.hgetall(self._key)  # type: ignore[assignment]
        return {k.decode(): _from_json(k.decode(), v) for k, v in raw.items()}

    def _complete(self, library: Library, statuses: Mapping[bytes, bytes], now: float) -> Library:
        raw = statuses.get(library.name.encode())
        status = _status_from_json(raw, now) if raw is not None else LibraryStatus()
        return replace(library, items=self._count(library), status=status)

    def _count(self, library: Library) -> int:
        return int(self._index.count(Filter(collections=(library.collection,), source_dir=library.uri)))

    def list(self) -> list[Library]:
        with self._index.redis_errors():
            libraries = self._all()
            statuses: Mapping[bytes, bytes] = self._client.hgetall(self._status_key)  # type: ignore[assignment]
        now = time.time()
        return [self._complete(libraries[name], statuses, now) for name in sorted(libraries)]

    def get(self, name: str) -> Library:
        with self._index.redis_errors():
            raw: bytes | None = self._client.hget(self._key, name)  # type: ignore[assignment]
            if raw is None:
                raise LibraryNotFound(self._unknown(name), name)
            statuses: Mapping[bytes, bytes] = self._client.hgetall(self._status_key)  # type: ignore[assignment]
        return self._complete(_from_json(name, raw), statuses, time.time())

    def _unknown(self, name: str) -> str:
        names = sorted(self._all())
        known = ", ".join(repr(n) for n in names) if names else "none"
        return f"no library named {name!r} (libraries: {known})"

    def add(self, path: str, collection: str = "", name: str = "") -> Library:
        path = normalize_path(path)
        collection = check_collection(collection, "collection")
        if name:
            check_name(name)
        with self._index.redis_errors(), self._transaction() as tx:
            for _ in range(10):  # again when another caller added one meanwhile
                try:
                    tx.watch(self._key)
                    existing = {k.decode(): _from_json(k.decode(), v) for k, v in tx.hgetall(self._key).items()}
                    chosen = self._check_new(existing, path, name)
                    library = Library(chosen, path, dir_uri(path), collection, time.time())
                    tx.multi()
                    tx.hset(self._key, chosen, _to_json(library))
                    tx.hdel(self._status_key, chosen)
                    tx.execute()
                    return self._complete(library, {}, time.time())
                except redis.WatchError:
                    continue
        raise LibraryChanged("libraries kept changing while adding this one; retry")

    @staticmethod
    def _check_new(existing: Mapping[str, Library], path: str, name: str) -> str:
        for other in existing.values():
            them = (other.name, other.path, other.collection)
            if other.path == path:
                raise LibraryExists(
                    f"{path} is already the library {other.name!r} (collection {other.collection!r})", *them
                )
            if _contains(other.path, path):
                raise LibraryOverlaps(
                    f"{path} is inside the library {other.name!r} ({other.path}), whose files are indexed "
                    f"into {other.collection!r} already: one file is one item",
                    *them,
                    overlap="inside",
                )
            if _contains(path, other.path):
                raise LibraryOverlaps(
                    f"{path} contains the library {other.name!r} ({other.path}): remove that library first, "
                    "or add another folder (one file is one item)",
                    *them,
                    overlap="contains",
                )
        if name:
            if name in existing:
                other = existing[name]
                raise LibraryExists(
                    f"a library named {name!r} exists already ({other.path})", other.name, other.path, other.collection
                )
            return name
        base = posixpath.basename(path) or "root"
        base = "".join(c if unicodedata.category(c) not in ("Cc", "Cs") else "_" for c in base)
        base = base.encode()[: MAX_NAME_BYTES - 8].decode(errors="ignore").strip() or "library"
        chosen, n = base, 1
        while chosen in existing:
            n += 1
            chosen = f"{base}-{n}"
        return chosen

    def remove(self, name: str) -> RemoveResult:
        """Forgets the library first (so its indexer stops), then removes its sources from its items."""
        library = self.get(name)
        with self._index.redis_errors():
            self._client.hdel(self._key, name)
            self._client.hdel(self._status_key, name)
        deleted, updated = self.remove_items(library.collection, library.uri)
        return RemoveResult(replace(library, items=0), deleted, updated)

    def remove_items(self, collection: str, uri: str) -> tuple[int, int]:
        """Removes every source under `uri` from the items of `collection`: (deleted, updated)."""
        deleted = updated = 0
        for _ in range(100):  # each pass removes what it listed; a writer racing the removal adds more
            sources: list[str] = []
            token = ""
            while True:
                page = self._index.list(
                    Filter(collections=(collection,), source_dir=uri),
                    page_size=MAX_PAGE_SIZE,
                    page_token=token,
                    with_vectors=False,
                )
                for item in page.items:
                    sources.extend(s for s in item.metadata.sources if s.startswith(uri))
                token = page.next_page_token
                if not token:
                    break
            sources = list(dict.fromkeys(sources))
            if not sources:
                break
            for start in range(0, len(sources), MAX_IDS):
                result = self._index.delete_sources(sources[start : start + MAX_IDS], collection=collection)
                deleted += result.deleted
                updated += result.updated
        return deleted, updated

    def request_rescan(self, name: str) -> Library:
        with self._index.redis_errors(), self._transaction() as tx:
            for _ in range(10):
                try:
                    tx.watch(self._key)
                    raw = tx.hget(self._key, name)
                    if raw is None:
                        raise LibraryNotFound(self._unknown(name), name)
                    library = _from_json(name, raw)
                    library = replace(library, rescan_requests=library.rescan_requests + 1)
                    tx.multi()
                    tx.hset(self._key, name, _to_json(library))
                    tx.execute()
                    return self.get(name)
                except redis.WatchError:
                    continue
        raise LibraryChanged("the library kept changing; retry")

    def report(self, name: str, status: LibraryStatus) -> bool:
        """Stores the indexer's report; False when no library has that name."""
        try:
            LibraryState(status.state)
        except ValueError:
            raise InvalidArgument(f"status.state={int(status.state)} is not a known LibraryState") from None
        for label, value in (("files_done", status.files_done), ("files_total", status.files_total)):
            if value < 0:
                raise InvalidArgument(f"status.{label}={value} is negative")
        if not 0 <= status.caught_up_at < 1e11:
            raise InvalidArgument(f"status.caught_up_at={status.caught_up_at} is not a time in seconds since the epoch")
        if status.eta_seconds is not None and not 0 <= status.eta_seconds < 1e9:
            raise InvalidArgument(f"status.eta_seconds={status.eta_seconds} is not a number of seconds")
        status = replace(
            status,
            message=status.message[:MAX_MESSAGE_CHARS],
            failures=tuple((p[:MAX_MESSAGE_CHARS], r[:MAX_MESSAGE_CHARS]) for p, r in status.failures[:MAX_FAILURES]),
            failed_files=max(status.failed_files, len(status.failures)),
            updated_at=time.time(),
            indexer=status.indexer[:256],
        )
        with self._index.redis_errors():
            if not self._client.hexists(self._key, name):
                return False
            self._client.hset(self._status_key, name, _status_to_json(status))
            # Removed between the check and the write: drop the orphan report.
            if not self._client.hexists(self._key, name):
                self._client.hdel(self._status_key, name)
                return False
        return True

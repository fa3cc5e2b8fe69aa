"""Libraries as the client sees them: folders kept indexed into a collection, with their indexer's state."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from clipsearch import rpc_status
from clipsearch.limits import DEFAULT_COLLECTION
from clipsearch.v1 import search_pb2

from . import ids as idmod
from .errors import ClientError, Conflict, InvalidInput, LibraryChanged, LibraryTaken, NotFound, ServiceError
from .targets import SEARCH
from .transport import Method, Transport
from .uris import PathLike, dir_uri

_LIST = Method(SEARCH, "ListLibraries", search_pb2.ListLibrariesRequest, search_pb2.ListLibrariesResponse)
_ADD = Method(SEARCH, "AddLibrary", search_pb2.AddLibraryRequest, search_pb2.Library)
_REMOVE = Method(SEARCH, "RemoveLibrary", search_pb2.RemoveLibraryRequest, search_pb2.RemoveLibraryResponse)
_RESCAN = Method(SEARCH, "RequestLibraryRescan", search_pb2.RequestLibraryRescanRequest, search_pb2.Library)
_REPORT = Method(
    SEARCH, "ReportLibraryStatus", search_pb2.ReportLibraryStatusRequest, search_pb2.ReportLibraryStatusResponse
)

# A call refused with LIBRARY_CHANGED wrote nothing: it is sent this many times in all, CHANGED_FIRST_DELAY
# seconds apart at first, doubling, before LibraryChanged.
CHANGED_ATTEMPTS = 4
CHANGED_FIRST_DELAY = 0.05

# LibraryState -> the word clients show (and `library list --json` prints).
STATES = {
    search_pb2.LIBRARY_STATE_UNSPECIFIED: "pending",  # no indexer has reported yet
    search_pb2.LIBRARY_STATE_IDLE: "idle",  # no indexer watches it now
    search_pb2.LIBRARY_STATE_SCANNING: "scanning",
    search_pb2.LIBRARY_STATE_INDEXING: "indexing",
    search_pb2.LIBRARY_STATE_WATCHING: "watching",
    search_pb2.LIBRARY_STATE_ERROR: "error",
}
STATE_NUMBERS = {word: number for number, word in STATES.items()}


@dataclass(frozen=True)
class LibraryFailure:
    """A file the indexer could not index, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class LibraryStatus:
    """What the indexer is doing with a library (search.proto LibraryStatus), as it reports it."""

    state: str = "pending"  # pending, idle, scanning, indexing, watching or error
    files_done: int = 0
    files_total: int = 0
    eta_seconds: float | None = None
    message: str = ""
    failures: tuple[LibraryFailure, ...] = ()
    failed_files: int = 0
    updated_at: float = 0.0  # seconds since the epoch; 0: never reported
    indexer: str = ""  # "host:pid"
    caught_up_at: float = 0.0  # files changed before it are indexed (see search.proto); 0: never

    @classmethod
    def from_proto(cls, s: search_pb2.LibraryStatus) -> LibraryStatus:
        return cls(
            state=STATES.get(s.state, "pending"),
            files_done=s.files_done,
            files_total=s.files_total,
            eta_seconds=s.eta_seconds if s.HasField("eta_seconds") else None,
            message=s.message,
            failures=tuple(LibraryFailure(f.path, f.reason) for f in s.failures),
            failed_files=s.failed_files,
            updated_at=s.updated_at,
            indexer=s.indexer,
            caught_up_at=s.caught_up_at,
        )

    def to_proto(self) -> search_pb2.LibraryStatus:
        if self.state not in STATE_NUMBERS:
            raise InvalidInput(f"unknown library state {self.state!r}: one of {', '.join(STATE_NUMBERS)}")
        message = search_pb2.LibraryStatus(
            state=STATE_NUMBERS[self.state],
            files_done=self.files_done,
            files_total=self.files_total,
            message=self.message,
            failures=[search_pb2.LibraryFailure(path=f.path, reason=f.reason) for f in self.failures],
            failed_files=self.failed_files,
            indexer=self.indexer,
            caught_up_at=self.caught_up_at,
        )
        if self.eta_seconds is not None:
            message.eta_seconds = self.eta_seconds
        return message

    def describe(self) -> str:
        """One line: "watching", "indexing 12 of 40 files, about 2 min left", "error: folder is missing"..."""
        if self.state == "indexing":
            text = f"indexing {self.files_done} of {self.files_total} files"
            if self.eta_seconds is not None:
                text += f", about {format_duration(self.eta_seconds)} left"
        elif self.state == "scanning":
            text = f"scanning ({self.files_total} files found)" if self.files_total else "scanning"
        elif self.state == "error":
            text = f"error: {self.message}" if self.message else "error"
        elif self.state == "pending":
            text = "waiting for an indexer"
        elif self.state == "idle":
            text = "idle (no indexer is watching)"
        else:
            text = self.state
        if self.failed_files:
            text += f"; {self.failed_files} file{'s' if self.failed_files != 1 else ''} failed"
        return text


@dataclass(frozen=True)
class Library:
    """A folder kept indexed into one collection (search.proto Library)."""

    name: str
    path: str  # absolute folder path on the machine where the indexer runs
    uri: str  # the folder as a directory URI ("file:///.../"), as item sources spell it
    collection: str
    items: int = 0  # items of the collection with a source under the folder
    status: LibraryStatus = field(default_factory=LibraryStatus)
    rescan_requests: int = 0
    created_at: float = 0.0

    @property
    def state(self) -> str:
        return self.status.state

    @classmethod
    def from_proto(cls, lib: search_pb2.Library) -> Library:
        return cls(
            name=lib.name,
            path=lib.path,
            uri=lib.uri,
            collection=lib.collection,
            items=lib.items,
            status=LibraryStatus.from_proto(lib.status),
            rescan_requests=lib.rescan_requests,
            created_at=lib.created_at,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what `clipsearch library list --json` prints for each library)."""
        s = self.status
        return {
            "name": self.name,
            "path": self.path,
            "collection": self.collection,
            "items": self.items,
            "state": s.state,
            "files_done": s.files_done,
            "files_total": s.files_total,
            "eta_seconds": s.eta_seconds,
            "message": s.message,
            "failed_files": s.failed_files,
            "failures": [{"path": f.path, "reason": f.reason} for f in s.failures],
            "updated_at": s.updated_at or None,
            "indexer": s.indexer,
            "caught_up_at": s.caught_up_at or None,
            "rescan_requests": self.rescan_requests,
            "created_at": self.created_at,
        }


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _call(transport: Transport, method: Any, request: Any, what: str) -> Any:
    """The call's response; a LIBRARY_CHANGED refusal (nothing written) is sent again a few times."""
    attempt, delay = 1, CHANGED_FIRST_DELAY
    while True:
        try:
            return transport.call(method, request)
        except ServiceError as exc:
            if exc.reason != rpc_status.LIBRARY_CHANGED:
                raise _library_error(exc, what) from None
            if attempt >= CHANGED_ATTEMPTS:
                raise LibraryChanged(f"{what}: {exc.details}") from None
        time.sleep(delay)
        attempt, delay = attempt + 1, delay * 2


def _library_error(exc: ServiceError, what: str) -> ClientError:
    """The client's error for a library call's refusal, by its ErrorInfo reason (by its code from a service
    older than the reasons)."""
    if exc.reason in (rpc_status.LIBRARY_EXISTS, rpc_status.LIBRARY_OVERLAPS):
        m = exc.metadata
        return LibraryTaken(
            f"{what}: {exc.details}",
            library=m.get("name", ""),
            path=m.get("path", ""),
            collection=m.get("collection", ""),
            overlap=m.get("overlap", ""),
        )
    if exc.reason == rpc_status.LIBRARY_NOT_FOUND or (exc.reason is None and exc.code == grpc.StatusCode.NOT_FOUND):
        return NotFound(exc.details)
    if exc.reason is None and exc.code == grpc.StatusCode.ALREADY_EXISTS:
        return Conflict(f"{what}: {exc.details}")
    if exc.code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidInput(f"{what}: {exc.details}")
    if exc.code == grpc.StatusCode.UNIMPLEMENTED:
        return ServiceError(exc.service, exc.address, exc.code, "this search service has no libraries: upgrade it")
    return exc


def list_libraries(transport: Transport) -> list[Library]:
    response = _call(transport, _LIST, search_pb2.ListLibrariesRequest(), "cannot list the libraries")
    return [Library.from_proto(lib) for lib in response.libraries]


def folder_path(path: str | os.PathLike[str], *, must_exist: bool = True) -> str:
    """The folder's absolute path with symlinks resolved, as libraries store it; InvalidInput when it is not
    an existing folder here (must_exist) or its name is not UTF-8."""
    resolved = Path(os.fsdecode(path)).expanduser().resolve()
    text = str(resolved)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{os.fsdecode(path)!r}: a library's folder path must be valid UTF-8") from None
    if must_exist:
        if not resolved.exists():
            raise InvalidInput(f"{text}: no such folder")
        if not resolved.is_dir():
            raise InvalidInput(f"{text}: not a folder")
        if not os.access(resolved, os.R_OK | os.X_OK):
            raise InvalidInput(f"{text}: the folder cannot be read (permission denied)")
    return text


def collections_under(transport: Transport, uri: str) -> dict[str, int]:
    """Collection -> items with a source under the directory URI (only collections holding some)."""
    found: dict[str, int] = {}
    stats = transport.list_collections()
    for c in stats.collections:
        response = transport.list(
            search_pb2.ListRequest(filter=search_pb2.Filter(collections=[c.name], source_dir=uri), page_size=1)
        )
        if response.total:
            found[c.name] = response.total
    return found


def add_library(
    transport: Transport,
    path: str | os.PathLike[str],
    collection: str | None = None,
    name: str | None = None,
    *,
    must_exist: bool = True,
) -> Library:
    folder = folder_path(path, must_exist=must_exist)
    if collection is None:
        # One file, one item: a folder already indexed into one collection keeps it.
        present = collections_under(transport, dir_uri(folder))
        collection = next(iter(present)) if len(present) == 1 else DEFAULT_COLLECTION
    request = search_pb2.AddLibraryRequest(
        path=folder, collection=idmod.normalize_collection(collection), name=name or ""
    )
    return Library.from_proto(_call(transport, _ADD, request, f"cannot add {folder}"))


def remove_library(transport: Transport, name: str) -> tuple[Library, int, int]:
    response = _call(
        transport, _REMOVE, search_pb2.RemoveLibraryRequest(name=name), f"cannot remove the library {name!r}"
    )
    return Library.from_proto(response.library), response.deleted_items, response.updated_items


def request_rescan(transport: Transport, name: str) -> Library:
    request = search_pb2.RequestLibraryRescanRequest(name=name)
    return Library.from_proto(_call(transport, _RESCAN, request, f"cannot rescan the library {name!r}"))


def report_status(transport: Transport, name: str, status: LibraryStatus) -> bool:
    request = search_pb2.ReportLibraryStatusRequest(name=name, status=status.to_proto())
    response = _call(transport, _REPORT, request, f"cannot report on the library {name!r}")
    return bool(response.known)


def library_of(libraries: Sequence[Library], path: str | os.PathLike[str]) -> Library | None:
    """The library whose folder holds `path` (resolved), if any."""
    text = str(Path(os.fsdecode(path)).expanduser().resolve())
    for lib in libraries:
        if text == lib.path or text.startswith(lib.path.rstrip("/") + "/"):
            return lib
    return None


class LibraryCalls:
    """The Client's library methods (folders kept indexed into a collection by the indexer, docs/library.md)."""

    _transport: Transport

    def list_libraries(self) -> list[Library]:
        """Every library with its item count and its indexer's state, sorted by name."""
        return list_libraries(self._transport)

    def library(self, name: str) -> Library:
        """The library of that name, or NotFound."""
        for library in self.list_libraries():
            if library.name == name:
                return library
        raise NotFound(f"no library named {name!r}")

    def add_library(
        self, path: PathLike, collection: str | None = None, *, name: str | None = None, must_exist: bool = True
    ) -> Library:
        """Adds a folder (resolved; with must_exist, an existing folder on this machine) as a library.

        Without `collection`, a folder whose items are all in one collection keeps it, else "default".
        Raises Conflict for a folder that is, is inside or contains a library's folder, or a name taken.
        """
        return add_library(self._transport, os.fsdecode(path), collection, name, must_exist=must_exist)

    def remove_library(self, name: str) -> int:
        """Removes the library and its items from the index (never a file): the count of items that lost
        their source under the folder (deleted, or kept for a source elsewhere)."""
        _, deleted, updated = remove_library(self._transport, name)
        return deleted + updated

    def request_rescan(self, name: str) -> Library:
        """Asks the indexer to walk the library's folder again (index what is new or changed, drop what is gone)."""
        return request_rescan(self._transport, name)

    def report_library_status(self, name: str, status: LibraryStatus) -> bool:
        """The indexer's report on a library; False when the library no longer exists."""
        return report_status(self._transport, name, status)

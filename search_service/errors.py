"""The errors the search service reports to callers; the servicer maps each to a gRPC status."""

from __future__ import annotations

from typing import ClassVar

from clipsearch import rpc_status


class SearchError(Exception):
    """Base of the errors the service reports to callers; `reason`, where set, goes in the status's ErrorInfo."""

    reason: ClassVar[str | None] = None


class InvalidArgument(SearchError):
    """A malformed request; nothing of it was written."""


class IndexMismatch(SearchError):
    """Redis is not as the configuration expects: the index has other settings, RediSearch is missing, or
    a key under the prefix is not an item."""


class Unavailable(SearchError):
    """Redis cannot be reached (or is loading, or the index is being re-created); retry later."""


class QueryTimeout(SearchError):
    """RediSearch stopped the query at its time limit; its results would have been partial."""


class ModelMismatch(IndexMismatch):
    """A request names an embedding model other than the one whose vectors the index holds."""

    reason = rpc_status.MODEL_MISMATCH


class ReindexModelMismatch(ModelMismatch):
    """A request names an embedding model other than the one of the reindex in progress."""

    reason = rpc_status.REINDEX_MODEL_MISMATCH


class ReindexInProgress(IndexMismatch):
    """Another reindex began at the same time as this one."""

    reason = rpc_status.REINDEX_IN_PROGRESS


class NoReindexInProgress(ModelMismatch):
    """A call about a reindex found none in progress (it finished, or was aborted)."""

    reason = rpc_status.NO_REINDEX_IN_PROGRESS


class Loading(Unavailable):
    """Redis is loading the library after a restart; says how far it is ("Loading the library: 43%, ...")."""

    reason = rpc_status.INDEX_LOADING

    def __init__(self, message: str, percent: float, eta_seconds: float | None) -> None:
        super().__init__(message)
        self.percent = percent
        self.eta_seconds = eta_seconds

    @property
    def error_metadata(self) -> dict[str, str]:
        """What INDEX_LOADING's ErrorInfo carries besides the message: how far, and how long to go."""
        metadata = {"percent": f"{self.percent:.1f}"}
        if self.eta_seconds is not None:
            metadata["eta_seconds"] = f"{self.eta_seconds:.0f}"
        return metadata


class LibraryNotFound(SearchError):
    """No library has the name given."""

    reason = rpc_status.LIBRARY_NOT_FOUND

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.error_metadata = {"name": name}


class LibraryConflict(SearchError):
    """The folder or name clashes with another library's; `error_metadata` names that library."""

    def __init__(self, message: str, name: str, path: str, collection: str, **more: str) -> None:
        super().__init__(message)
        self.error_metadata = {"name": name, "path": path, "collection": collection, **more}


class LibraryExists(LibraryConflict):
    """Another library has this folder, or this name."""

    reason = rpc_status.LIBRARY_EXISTS


class LibraryOverlaps(LibraryConflict):
    """The folder is inside another library's folder, or contains it: one file would be two items."""

    reason = rpc_status.LIBRARY_OVERLAPS


class LibraryChanged(SearchError):
    """The libraries kept changing while a call read and wrote them; it wrote nothing, and may be sent again."""

    reason = rpc_status.LIBRARY_CHANGED

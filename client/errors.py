"""Errors the client raises: one readable line each, naming the service or file involved."""

from __future__ import annotations

import grpc

from clipsearch.rpc_status import MODEL_MISMATCH, REINDEX_MODEL_MISMATCH

# The ErrorInfo reasons (clipsearch/rpc_status.py) that the client raises as ModelMismatch.
MODEL_MISMATCHES = frozenset({MODEL_MISMATCH, REINDEX_MODEL_MISMATCH})


class ClientError(Exception):
    """Something the user can act on; str() is a one-line explanation."""


class ServiceUnavailable(ClientError):
    """A service cannot be reached (not running, wrong address, or stopped responding)."""

    def __init__(self, service: str, address: str, detail: str = "", *, hint: str | None = None) -> None:
        self.service = service
        self.address = address
        reason = f" ({detail})" if detail else ""
        if hint is None:
            env = "EMBEDDER_ADDR" if service == "embedder" else "SEARCH_ADDR"
            hint = f"start the services with `clipsearch serve`, or point {env} (or --{service}) at a running one"
        super().__init__(f"cannot reach the {service} service at {address}{reason}; {hint}")


class ServiceError(ClientError):
    """A service answered a call with an error status; `reason` is its ErrorInfo reason, if it has one."""

    def __init__(
        self,
        service: str,
        address: str,
        code: grpc.StatusCode,
        details: str,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.service = service
        self.address = address
        self.code = code
        self.details = details
        self.reason = reason
        self.metadata = metadata or {}  # the ErrorInfo's metadata (what the reason's documentation lists)
        super().__init__(f"{service} service at {address}: {code.name}: {details}")


class ModelMismatch(ServiceError):
    """The search index (or the reindex in progress) holds another embedding model's vectors; str() is the
    service's explanation alone (it names both models and `clipsearch reindex`)."""

    def __init__(self, address: str, details: str, *, reason: str = MODEL_MISMATCH) -> None:
        super().__init__("search", address, grpc.StatusCode.FAILED_PRECONDITION, details, reason=reason)
        self.args = (details,)

    def __str__(self) -> str:
        return self.details


class NotFound(ClientError):
    """An item id that the search service does not hold."""


class Conflict(ClientError):
    """The request clashes with what exists: a library's folder or name already taken."""


class LibraryTaken(Conflict):
    """A library has the folder or the name (overlap ""), or the folder is inside its folder or contains it
    (overlap "inside" or "contains"); `library`, `path` and `collection` are that library's."""

    def __init__(self, message: str, *, library: str, path: str, collection: str, overlap: str = "") -> None:
        super().__init__(message)
        self.library = library
        self.path = path
        self.collection = collection
        self.overlap = overlap


class LibraryChanged(Conflict):
    """The libraries kept changing while the service added or updated one, past the client's retries; nothing
    was written, and the call may be made again."""


class InvalidInput(ClientError):
    """An argument the client rejects before calling a service (bad file, bad label list…)."""


class LibraryLoading(ServiceUnavailable):
    """The search service answers, but its Redis is still loading the library after a restart."""

    def __init__(self, address: str, detail: str) -> None:
        self.service = "search"
        self.address = address
        ClientError.__init__(self, f"{detail} (the search service at {address}); try again once it is loaded")

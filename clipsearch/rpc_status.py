"""Exceptions to gRPC statuses (a table per service, one decorator) and the ErrorInfo reasons they carry."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

log = logging.getLogger(__name__)

# A status a caller must act on in its own way carries a google.rpc.ErrorInfo in its details (the
# grpc-status-details-bin trailer) with this domain and one of the reasons below; callers read the
# reason, never the message, which is for people. protos/clipsearch/v1/*.proto document each.
DOMAIN = "clipsearch.v1"
# FAILED_PRECONDITION: the index holds vectors of another embedding model (or dimension) than the request's.
MODEL_MISMATCH = "MODEL_MISMATCH"
# FAILED_PRECONDITION: a reindex to another model than the request's is in progress.
REINDEX_MODEL_MISMATCH = "REINDEX_MODEL_MISMATCH"
# FAILED_PRECONDITION: another reindex began at the same time; begin again to resume it.
REINDEX_IN_PROGRESS = "REINDEX_IN_PROGRESS"
# FAILED_PRECONDITION: a call that works on a reindex found none in progress (finished or aborted).
NO_REINDEX_IN_PROGRESS = "NO_REINDEX_IN_PROGRESS"
# UNAVAILABLE: Redis is loading the library after a restart; metadata "percent" and "eta_seconds" say how far.
INDEX_LOADING = "INDEX_LOADING"
# NOT_FOUND: no library has the name given; metadata "name" is that name.
LIBRARY_NOT_FOUND = "LIBRARY_NOT_FOUND"
# ALREADY_EXISTS: a library has this folder, or this name; metadata "name", "path" and "collection" are that
# library's. Choose another folder or name.
LIBRARY_EXISTS = "LIBRARY_EXISTS"
# ALREADY_EXISTS: the folder is inside a library's folder, or contains one (one file is one item); metadata
# "name", "path" and "collection" are that library's, "overlap" is "inside" or "contains".
LIBRARY_OVERLAPS = "LIBRARY_OVERLAPS"
# ABORTED: the libraries kept changing while this call read and wrote them; it wrote nothing, call it again.
LIBRARY_CHANGED = "LIBRARY_CHANGED"
REASONS = frozenset(
    {
        MODEL_MISMATCH,
        REINDEX_MODEL_MISMATCH,
        REINDEX_IN_PROGRESS,
        NO_REINDEX_IN_PROGRESS,
        INDEX_LOADING,
        LIBRARY_NOT_FOUND,
        LIBRARY_EXISTS,
        LIBRARY_OVERLAPS,
        LIBRARY_CHANGED,
    }
)

# The status details for an error raised by an RPC method: (method name, error) -> details.
Details = Callable[[str, Exception], str]

ServicerT = TypeVar("ServicerT")
RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


def error_message(method: str, error: Exception) -> str:
    """The error's own message, as it is."""
    return str(error)


def internal_error(method: str, error: Exception) -> str:
    """Names the method and the exception, so a report of the status leads to the log."""
    return f"{method} failed: {type(error).__name__}: {error}"


@dataclass(frozen=True)
class StatusRule:
    """An error of type `error` (or a subclass) ends the call with `code`."""

    error: type[Exception]
    code: grpc.StatusCode
    details: Details = error_message


def reason_of_error(error: Exception) -> str | None:
    """The ErrorInfo reason an exception carries (its `reason` attribute, set by its class), if any."""
    reason = getattr(error, "reason", None)
    return reason if isinstance(reason, str) and reason else None


def metadata_of_error(error: Exception) -> dict[str, str]:
    """The ErrorInfo metadata an exception carries (its `error_metadata` attribute), if any."""
    metadata = getattr(error, "error_metadata", None)
    return {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}


def status_with_reason(
    code: grpc.StatusCode, message: str, reason: str, metadata: dict[str, str] | None = None
) -> grpc.Status:
    """A status whose details hold an ErrorInfo of DOMAIN with `reason` (and `metadata`, if any)."""
    if reason not in REASONS:
        raise ValueError(f"unknown ErrorInfo reason {reason!r}")
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata or {}))
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return rpc_status.to_status(status)


def error_info(call: object) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo of DOMAIN in a failed call's status details, or None (a caller's side)."""
    if not isinstance(call, grpc.Call):
        return None
    try:
        status = rpc_status.from_call(call)
    except ValueError:  # details that contradict the status: none to trust
        return None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == DOMAIN:
                return info
    return None


def reason_of(call: object) -> str | None:
    """The reason of the ErrorInfo of DOMAIN in a failed call's status details, or None (a caller's side)."""
    info = error_info(call)
    return None if info is None else str(info.reason)


@dataclass(frozen=True)
class ErrorStatuses:
    """How one service's RPCs end when they raise: the first rule whose type matches gives the status.

    Any other exception is a bug: it is logged with its traceback and answered INTERNAL, and the server
    lives on.
    """

    rules: Sequence[StatusRule]
    internal: Details = internal_error

    def code(self, error: Exception) -> grpc.StatusCode:
        """The status an RPC raising `error` ends with."""
        rule = self._rule(error)
        return grpc.StatusCode.INTERNAL if rule is None else rule.code

    def rpc(
        self, method: Callable[[ServicerT, RequestT, grpc.ServicerContext], ResponseT]
    ) -> Callable[[ServicerT, RequestT, grpc.ServicerContext], ResponseT]:
        """Decorates a servicer method: what it raises ends the call with the status the table gives."""
        name = method.__name__

        @functools.wraps(method)
        def wrapper(servicer: ServicerT, request: RequestT, context: grpc.ServicerContext) -> ResponseT:
            try:
                return method(servicer, request, context)
            except Exception as error:  # the RPC's boundary: every error becomes a status
                rule = self._rule(error)
                if rule is None:
                    log.exception("%s failed", name)
                    context.abort(grpc.StatusCode.INTERNAL, self.internal(name, error))
                details = rule.details(name, error)
                log.debug("%s rejected: %s", name, details)
                reason = reason_of_error(error)
                if reason is not None:
                    context.abort_with_status(status_with_reason(rule.code, details, reason, metadata_of_error(error)))
                context.abort(rule.code, details)

        return wrapper

    def _rule(self, error: Exception) -> StatusRule | None:
        return next((rule for rule in self.rules if isinstance(error, rule.error)), None)

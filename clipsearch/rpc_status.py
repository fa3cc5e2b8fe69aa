"""Exceptions to gRPC statuses: a table for each service, applied to its RPC methods by one decorator."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc

log = logging.getLogger(__name__)

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
                context.abort(rule.code, details)

        return wrapper

    def _rule(self, error: Exception) -> StatusRule | None:
        return next((rule for rule in self.rules if isinstance(error, rule.error)), None)

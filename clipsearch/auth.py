"""Shared-token authentication: `authorization: Bearer <token>` metadata, checked by a server interceptor.

Both services read the token from CLIPSEARCH_AUTH_TOKEN, or from the file CLIPSEARCH_AUTH_TOKEN_FILE
(a mounted secret; surrounding whitespace and the trailing newline are ignored). With neither set,
authentication is off.

With a token set, every call must carry it, except:
  - health checks (grpc.health.v1.Health), which orchestrators and load balancers probe without
    credentials;
  - server reflection, which only describes the services (the schema in protos/, public anyway), so that
    `grpcurl list` and `grpcurl describe` work without a token; calls still need one.

A missing, malformed or wrong token gets UNAUTHENTICATED before the request is even parsed. A token sent
over plaintext can be read by anyone on the path: off loopback, enable TLS as well (clipsearch.tls).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc

from clipsearch import grpctypes
from clipsearch.envconfig import ConfigError

TOKEN_VARIABLE = "CLIPSEARCH_AUTH_TOKEN"
TOKEN_FILE_VARIABLE = "CLIPSEARCH_AUTH_TOKEN_FILE"
METADATA_KEY = "authorization"
SCHEME = "Bearer"
# Health and reflection, under every name grpcio registers them.
EXEMPT_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

log = logging.getLogger(__name__)


def token_from_env(env: Mapping[str, str]) -> str | None:
    """The shared token from CLIPSEARCH_AUTH_TOKEN or CLIPSEARCH_AUTH_TOKEN_FILE; None when neither is set."""
    value = env.get(TOKEN_VARIABLE, "").strip()
    path = env.get(TOKEN_FILE_VARIABLE, "").strip()
    if value and path:
        raise ConfigError(f"set only one of {TOKEN_VARIABLE} and {TOKEN_FILE_VARIABLE}")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{TOKEN_FILE_VARIABLE}={path!r} cannot be read: {error}") from None
        if not value:
            raise ConfigError(f"{TOKEN_FILE_VARIABLE}={path!r} is empty")
    if not value:
        return None
    check_token(value, TOKEN_FILE_VARIABLE if path else TOKEN_VARIABLE)
    return value


def check_token(token: str, name: str = "token") -> None:
    """Refuses tokens that cannot travel in gRPC metadata (printable ASCII, no spaces)."""
    if not token or not all(0x21 <= ord(c) <= 0x7E for c in token):
        raise ConfigError(f"{name} must be printable ASCII without spaces (it travels in gRPC metadata)")


def _digest(value: str | bytes) -> bytes:
    # Comparing fixed-length digests keeps even the token's length out of the comparison's timing.
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).digest()


def _refusal(handler: grpctypes.RpcMethodHandler | None, message: str) -> grpctypes.RpcMethodHandler:
    """A handler of the same kind as `handler` that ends the call with UNAUTHENTICATED, unparsed."""

    def deny(_request: Any, context: grpc.ServicerContext) -> Any:
        log.info("refused %s: %s", context.peer(), message)
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    def deny_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        deny(request, context)
        yield from ()

    # An unknown method gets UNAUTHENTICATED too, so a caller without the token learns nothing.
    request_streaming = bool(handler and handler.request_streaming)
    response_streaming = bool(handler and handler.response_streaming)
    # No request deserializer: the bytes of an unauthenticated caller are never parsed.
    if request_streaming and response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny_stream)
    if request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny_stream)
    return grpc.unary_unary_rpc_method_handler(deny)


class TokenAuthInterceptor(grpctypes.ServerInterceptor):
    """Lets a call through only with `authorization: Bearer <token>` metadata carrying the shared token."""

    def __init__(self, token: str, *, exempt_services: Iterable[str] = EXEMPT_SERVICES) -> None:
        check_token(token)
        self._expected = _digest(token)
        self._exempt = frozenset(exempt_services)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpctypes.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpctypes.RpcMethodHandler | None:
        service = handler_call_details.method.lstrip("/").partition("/")[0]
        if service in self._exempt:
            return continuation(handler_call_details)
        problem = self._problem(handler_call_details.invocation_metadata or ())
        if problem is None:
            return continuation(handler_call_details)
        return _refusal(continuation(handler_call_details), f"{handler_call_details.method}: {problem}")

    def _problem(self, metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
        """Why the metadata does not authenticate the call, or None when it does."""
        values = [value for key, value in metadata if key == METADATA_KEY]
        if not values:
            return (
                f"missing credentials: this server requires the metadata '{METADATA_KEY}: {SCHEME} <token>' "
                f"(the token set in {TOKEN_VARIABLE} on the server)"
            )
        if len(values) > 1:
            return f"send '{METADATA_KEY}' metadata once, not {len(values)} times"
        value = values[0]
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() != SCHEME.lower() or not token.strip():
            return f"'{METADATA_KEY}' metadata must be '{SCHEME} <token>'"
        if not hmac.compare_digest(_digest(token.strip()), self._expected):
            return "invalid bearer token"
        return None


def auth_interceptors(token: str | None) -> tuple[grpctypes.ServerInterceptor, ...]:
    """The interceptors that enforce `token`; none when it is None (authentication off)."""
    return () if token is None else (TokenAuthInterceptor(token),)


# --- the client side ------------------------------------------------------------------------------


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying `token`, for one call: stub.Method(request, metadata=bearer_metadata(t))."""
    return ((METADATA_KEY, f"{SCHEME} {token}"),)


def token_call_credentials(token: str) -> grpc.CallCredentials:
    """Call credentials sending `token` on every call of a TLS channel (gRPC sends call credentials only
    over secure channels); see clipsearch.tls.channel_credentials, and BearerTokenInterceptor for plaintext."""
    check_token(token)
    return grpc.access_token_call_credentials(token)


class _ClientCallDetails(
    collections.namedtuple(
        "_ClientCallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    """A call's details with other metadata: grpc.ClientCallDetails has no constructor of its own."""


class BearerTokenInterceptor(
    grpctypes.UnaryUnaryClientInterceptor,
    grpctypes.UnaryStreamClientInterceptor,
    grpctypes.StreamUnaryClientInterceptor,
    grpctypes.StreamStreamClientInterceptor,
):
    """Adds the token to every call of a channel, plaintext ones included:
    grpc.intercept_channel(channel, BearerTokenInterceptor(token))."""

    def __init__(self, token: str) -> None:
        check_token(token)
        self._metadata = bearer_metadata(token)

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [item for item in (details.metadata or ()) if item[0] != METADATA_KEY]
        return _ClientCallDetails(
            details.method,
            details.timeout,
            [*metadata, *self._metadata],
            details.credentials,
            details.wait_for_ready,
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(
        self, continuation: Any, client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: grpc.ClientCallDetails, request_iterator: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: grpc.ClientCallDetails, request_iterator: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)

"""Errors as JSON `{"error": "..."}` with the HTTP status that fits: client and gRPC errors mapped."""

from __future__ import annotations

import logging

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from client.errors import (
    ClientError,
    Conflict,
    InvalidInput,
    ModelMismatch,
    NotFound,
    ServiceError,
    ServiceUnavailable,
)
from clipsearch.envconfig import ConfigError

from .files import MediaProblem

log = logging.getLogger("clipsearch.web")

_GRPC_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 503,
    grpc.StatusCode.FAILED_PRECONDITION: 503,
    grpc.StatusCode.ABORTED: 503,
}
_PHRASES = {404: "no such page", 405: "method not allowed here"}


# The `reason` of an error (ErrorDoc.reason): a stable code the page maps to a message in its own language.
MODEL_MISMATCH = "model_mismatch"
SERVICE_UNAVAILABLE = "service_unavailable"
SERVICE_TIMEOUT = "service_timeout"
SERVICE_REFUSED = "service_refused"
INVALID_REQUEST = "invalid_request"
NOT_FOUND = "not_found"
UPLOAD_TOO_LARGE = "upload_too_large"
FILE_UNAVAILABLE = "file_unavailable"
UNDECODABLE = "undecodable"
_STATUS_REASONS = {
    400: INVALID_REQUEST,
    404: NOT_FOUND,
    410: FILE_UNAVAILABLE,
    413: UPLOAD_TOO_LARGE,
    415: UNDECODABLE,
}


def error_response(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    reason: str | None = None,
    params: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, object] = {"error": message}
    if reason is not None:
        body["reason"] = reason
    if params:
        body["params"] = params
    return JSONResponse(body, status_code=status, headers=headers)


def reason_of(exc: ClientError, status: int) -> tuple[str | None, dict[str, str]]:
    """The error's stable reason and the values its message names (the service and its address)."""
    if isinstance(exc, ModelMismatch):
        return MODEL_MISMATCH, {}
    reason = getattr(exc, "reason", None)  # a MediaProblem that names its own (the library's, the uploads')
    if isinstance(reason, str):
        return reason, {}
    if isinstance(exc, ServiceUnavailable | ServiceError) and status >= 500:
        params = {"service": exc.service, "address": exc.address}
        if isinstance(exc, ServiceUnavailable) or exc.code == grpc.StatusCode.UNAVAILABLE:
            return SERVICE_UNAVAILABLE, params
        if exc.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return SERVICE_TIMEOUT, params
        return SERVICE_REFUSED, params
    return _STATUS_REASONS.get(status), {}


def status_of(exc: ClientError) -> int:
    """The HTTP status for a client error: 4xx for the caller's mistakes, 5xx when a service fails."""
    if isinstance(exc, MediaProblem):
        return exc.status
    if isinstance(exc, InvalidInput):
        return 400
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, ServiceUnavailable):
        return 503
    if isinstance(exc, ModelMismatch):
        # Both services answer, but the index holds another model's vectors: nothing a retry fixes.
        return 409
    if isinstance(exc, ServiceError):
        # UNAUTHENTICATED and the rest: this server is misconfigured or a service failed, a gateway error.
        return _GRPC_STATUS.get(exc.code, 502)
    return 502


def message_of(exc: ClientError) -> str:
    if isinstance(exc, ServiceError) and exc.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        env = "EMBEDDER_ADDR" if exc.service == "embedder" else "SEARCH_ADDR"
        return (
            f"the {exc.service} service at {exc.address} did not answer in time; check that it is running "
            f"(`clipsearch serve`) and that {env} (or --{exc.service}) points at it"
        )
    return str(exc)


def install(app: FastAPI) -> None:
    """Registers the handlers that turn every error into `{"error": ...}`."""

    @app.exception_handler(ClientError)
    async def client_error(request: Request, exc: ClientError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        reason, params = reason_of(exc, status)
        return error_response(status, message_of(exc), reason=reason, params=params)

    @app.exception_handler(ConfigError)
    async def config_error(request: Request, exc: ConfigError) -> JSONResponse:
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return error_response(500, f"the web server's settings are wrong: {exc}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code in _PHRASES and detail in ("Not Found", "Method Not Allowed"):
            detail = f"{_PHRASES[exc.status_code]}: {request.url.path}"
        reason = _STATUS_REASONS.get(exc.status_code)
        return error_response(exc.status_code, detail, dict(exc.headers or {}), reason=reason)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, validation_message(exc), reason=INVALID_REQUEST)


def validation_message(exc: RequestValidationError) -> str:
    """One sentence for the first problem, naming the parameter: "top: Input should be less than or equal to 200"."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body")]
    message = str(first.get("msg", "invalid value"))
    return f"{'.'.join(location)}: {message}" if location else message

"""Who may use the web server: loopback by default, a password beyond it; request size and Host checks."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clipsearch.auth import token_from_env
from clipsearch.envconfig import ConfigError

from .errors import UPLOAD_TOO_LARGE

PASSWORD_VARIABLE = "CLIPSEARCH_WEB_PASSWORD"
PASSWORD_FILE_VARIABLE = "CLIPSEARCH_WEB_PASSWORD_FILE"
REALM = "clipsearch"
# Paths answered without a password: a load balancer's or supervisor's liveness check.
OPEN_PATHS = frozenset({"/healthz"})
# The request that adds a file to a library: its body is the file.
UPLOAD_PATH = re.compile(r"/api/libraries/[^/]+/upload")
# The reason of a refusal from another site (ErrorDoc.reason).
CROSS_SITE = "cross_site"
FILE_TOO_LARGE = "file_too_large"
# Methods that change nothing; every other one is refused when a browser says it comes from another site.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Room for the multipart framing around an uploaded file of the largest allowed size.
MULTIPART_OVERHEAD = 64 << 10
# Headers of every response; the page's assets come from this server only (no CDN, no inline script).
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
PAGE_POLICY = (
    b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
    b"script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    b"form-action 'self'"
)


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or address to listen on) is only reachable from this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def read_password(path: Path, setting: str) -> str:
    """The password in a file (surrounding whitespace ignored); ConfigError naming `setting` if unusable."""
    try:
        text = path.expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{setting}: cannot read {path}: {reason}") from None
    if not text:
        raise ConfigError(f"{setting}: {path} is empty")
    return text


def resolve_password(env: Mapping[str, str], password_file: Path | None, token: str | None) -> str | None:
    """The web password: --password-file, else $CLIPSEARCH_WEB_PASSWORD, else the file
    $CLIPSEARCH_WEB_PASSWORD_FILE; None when none is set. `token` (the services' token) is not used here."""
    if password_file is not None:
        return read_password(password_file, "--password-file")
    value = env.get(PASSWORD_VARIABLE, "").strip()
    if value:
        return value
    file_name = env.get(PASSWORD_FILE_VARIABLE, "").strip()
    if file_name:
        return read_password(Path(file_name), PASSWORD_FILE_VARIABLE)
    return None


def services_token(env: Mapping[str, str]) -> str | None:
    return token_from_env(env)


def binding_password(host: str, password: str | None, token: str | None, insecure: bool) -> str | None:
    """The password the server will ask for when listening on `host`; ConfigError if it may not listen there.

    On loopback only a password set explicitly is asked. Beyond it, a password, else the services' token,
    is required, unless `insecure`.
    """
    if password is not None or is_loopback(host):
        return password
    if token:
        return token
    if insecure:
        return None
    raise ConfigError(
        f"listening on {host} lets other machines see your library: set a password with "
        f"{PASSWORD_VARIABLE} or {PASSWORD_FILE_VARIABLE} (or --password-file), or the services' token "
        f"(CLIPSEARCH_AUTH_TOKEN), or pass --insecure to allow it without one"
    )


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def _host_name(host_header: bytes) -> str:
    text = host_header.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def check_basic(header: bytes | None, password: str) -> bool:
    """Whether an Authorization header carries HTTP Basic credentials with this password (any user)."""
    if header is None or header[:6].lower() != b"basic ":
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    _, sep, given = decoded.partition(b":")
    return bool(sep) and hmac.compare_digest(given, password.encode("utf-8"))


def size_text(n: int) -> str:
    return f"{n / (1 << 30):g} GiB" if n >= 1 << 30 else f"{n // (1 << 20)} MiB"


def cross_site(scope: Scope) -> str:
    """Why a request that changes something is refused as coming from another site ("" when it is not).

    Browsers send Sec-Fetch-Site (same-origin for the page's own requests) and Origin on every POST; a
    request with neither comes from a program (curl, a script), which the password, or loopback, governs.
    """
    site = (_header(scope, b"sec-fetch-site") or b"").decode("latin-1").strip().lower()
    if site and site not in ("same-origin", "none"):
        return f"refused: this request came from another site (Sec-Fetch-Site: {site}); changes are accepted only from this server's own page"
    origin = _header(scope, b"origin")
    if origin is None:
        return ""
    text = origin.decode("latin-1").strip()
    host = (_header(scope, b"host") or b"").decode("latin-1").strip().lower()
    parts = urlsplit(text)
    if text == "null" or parts.scheme not in ("http", "https") or parts.netloc.lower() != host:
        return f"refused: this request came from another origin ({text}); changes are accepted only from this server's own page"
    return ""


class Guard:
    """ASGI middleware, in order: the Host check (loopback without password), HTTP Basic auth (with a
    password), the request body limit, and security headers on every response."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        password: str | None,
        loopback_only: bool,
        max_body_bytes: int,
        large_bodies: tuple[tuple[re.Pattern[str], int], ...] = (),
    ) -> None:
        self.app = app
        self.password = password
        self.loopback_only = loopback_only
        self.max_body_bytes = max_body_bytes
        self.large_bodies = large_bodies

    def body_limit(self, path: str) -> int:
        for pattern, limit in self.large_bodies:
            if pattern.fullmatch(path):
                return limit
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.loopback_only and self.password is None:
            # Without a password, only names of this machine are answered: a web page elsewhere cannot
            # point a name of its own at 127.0.0.1 (DNS rebinding) and read the library.
            host = _header(scope, b"host")
            if host is not None and not is_loopback(_host_name(host)):
                await _reply(send, 421, "this server answers only to localhost and loopback addresses")
                return
        if (
            self.password is not None
            and scope["path"] not in OPEN_PATHS
            and not check_basic(_header(scope, b"authorization"), self.password)
        ):
            challenge = f'Basic realm="{REALM}", charset="UTF-8"'.encode()
            await _reply(send, 401, "a password is required", [(b"www-authenticate", challenge)])
            return
        if scope.get("method", "GET") not in SAFE_METHODS:
            refusal = cross_site(scope)
            if refusal:
                await _reply(send, 403, refusal, reason=CROSS_SITE)
                return
        limit = self.body_limit(scope["path"])
        # A file added to a library is not "an image to search by": its refusal says so.
        too_large = FILE_TOO_LARGE if limit != self.max_body_bytes else None
        length = _header(scope, b"content-length")
        if length is not None and not length.strip().isdigit():
            await _reply(send, 400, "the Content-Length header is not a number")
            return
        if length is not None and int(length) > limit:
            await _reply(send, 413, f"the request is larger than the limit of {size_text(limit)}", reason=too_large)
            return
        body = _BodyLimit(receive, send, limit)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if not body.over:
                raise
        if body.over and not body.started:
            await _reply(send, 413, f"the request is larger than the limit of {size_text(limit)}", reason=too_large)


class _BodyLimit:
    """Counts the body of a request sent without Content-Length; past the limit, the app sees the client
    leave, its response is dropped, and the guard answers 413. Adds the security headers to responses."""

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive = receive
        self._send = send
        self._limit = limit
        self._seen = 0
        self.over = False
        self.started = False

    async def receive(self) -> Message:
        if self.over:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                self.over = True
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.over and not self.started:
            return
        if message["type"] == "http.response.start":
            self.started = True
            headers = list(message.get("headers", []))
            present = {key.lower() for key, _ in headers}
            headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
            if b"content-security-policy" not in present:
                headers.append((b"content-security-policy", PAGE_POLICY))
            message = {**message, "headers": headers}
        await self._send(message)


async def _reply(
    send: Send, status: int, error: str, headers: list[tuple[bytes, bytes]] | None = None, reason: str | None = None
) -> None:
    if reason is None and status == 413:
        reason = UPLOAD_TOO_LARGE
    doc = {"error": error} if reason is None else {"error": error, "reason": reason}
    body = json.dumps(doc).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

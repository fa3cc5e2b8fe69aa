"""`clipsearch web`: the page and JSON API on uvicorn, against running services; also in a background thread."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from client import weboptions
from client.cli import add_service_options, client_config
from client.config import split_addresses
from clipsearch.envconfig import ConfigError

from . import create_app
from .security import binding_password, resolve_password
from .settings import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_HOST,
    DEFAULT_PORT,
    WebSettings,
    default_cache_dir,
)

DESCRIPTION = (
    "Serve the clipsearch web page and its JSON API (/api/, described at /openapi.json) against running "
    "services. Listens on loopback unless told otherwise; listening beyond it needs a password "
    "($CLIPSEARCH_WEB_PASSWORD, $CLIPSEARCH_WEB_PASSWORD_FILE or --password-file), the services' token, "
    "or --insecure."
)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, got {text}")
    return value


def _mib(text: str) -> int:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return int(value * (1 << 20))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    web = parser.add_argument_group("web server")
    web.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    web.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port, 0 for any free one (default: %(default)s)")
    web.add_argument("--cache-dir", type=Path, metavar="DIR", help=f"thumbnail cache (default: {default_cache_dir()})")
    web.add_argument(
        "--cache-size", type=_mib, default=256 << 20, metavar="MIB", help="most disk the cache uses (default: 256)"
    )
    web.add_argument(
        "--max-upload", type=_mib, default=20 << 20, metavar="MIB", help="largest image to search by (default: 20)"
    )
    web.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="file holding the password the page asks for (HTTP Basic, any user name); default: "
        "$CLIPSEARCH_WEB_PASSWORD or the file $CLIPSEARCH_WEB_PASSWORD_FILE; beyond loopback, the services' token",
    )
    web.add_argument(
        "--insecure", action="store_true", help="allow listening beyond loopback without a password (anyone can look)"
    )
    weboptions.add_library_arguments(parser)
    add_service_options(parser, json=False, default_timeout=f"{DEFAULT_CALL_TIMEOUT:g}")


def settings_from_args(args: argparse.Namespace) -> WebSettings:
    """WebSettings from the command line and the environment; ConfigError for a setting that cannot work."""
    config = client_config(args)
    embedder = tuple(a for value in (args.embedder or []) for a in split_addresses(value))
    env_timeout = os.environ.get("CLIPSEARCH_TIMEOUT", "").strip()
    overrides: dict[str, object] = {}
    if embedder:
        overrides["embedder_addresses"] = embedder
    if args.search:
        overrides["search_address"] = args.search
    if args.connect_timeout is not None:
        overrides["connect_timeout"] = args.connect_timeout
    config = dataclasses.replace(config, **overrides)  # type: ignore[arg-type]
    password = resolve_password(os.environ, args.password_file, config.token)
    password = binding_password(args.host, password, config.token, args.insecure)
    try:
        return WebSettings(
            host=args.host,
            port=args.port,
            services=config,
            cache_dir=args.cache_dir or default_cache_dir(),
            cache_max_bytes=args.cache_size,
            max_upload_bytes=args.max_upload,
            call_timeout=args.timeout or (config.timeout if env_timeout else DEFAULT_CALL_TIMEOUT),
            password=password,
            insecure=args.insecure,
            library_roots=tuple(args.library_root or [Path.home()]),
            max_upload_photo_bytes=args.max_upload_photo,
            max_upload_video_bytes=args.max_upload_video,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; ConfigError with the reason when the address cannot be used."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {url_of(host, port)}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, exiting with status 0 after a graceful stop on SIGINT or SIGTERM (uvicorn itself
    raises the signal again once stopped, so the process would die of it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # a server in a thread is stopped by its owner
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self.handle_exit) for s in signals}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def _uvicorn(app: FastAPI, *, log: bool) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        log_config=uvicorn.config.LOGGING_CONFIG if log else None,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=5,
    )
    return _Server(config)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    sock = bind(settings.host, settings.port)
    app = create_app(settings)
    port = sock.getsockname()[1]
    print(f"clipsearch web: {url_of(settings.host, port)}", flush=True)
    try:
        _uvicorn(app, log=True).run(sockets=[sock])
    finally:
        sock.close()
    return 0


class WebThread:
    """An app served by uvicorn in a daemon thread on a socket of its own; start() returns its URL."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sock = bind(host, port)
        self.url = url_of(host, self._sock.getsockname()[1])
        self._server = _uvicorn(app, log=False)
        self._thread = threading.Thread(target=self._run, name="clipsearch-web", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # noqa: BLE001 - reported by start() or stop() in the caller's thread
            self._error = exc

    def start(self, timeout: float = 30.0) -> str:
        self._thread.start()
        started = threading.Event()

        def wait() -> bool:
            return bool(self._server.started) or not self._thread.is_alive()

        while not wait():
            started.wait(0.01)
            timeout -= 0.01
            if timeout <= 0:
                raise RuntimeError("the web server did not start within its timeout")
        if not self._server.started:
            raise RuntimeError(f"the web server failed to start: {self._error}")
        return self.url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()


def main(argv: list[str] | None = None) -> int:
    from client.cli import main as cli_main

    return cli_main(["web", *(sys.argv[1:] if argv is None else argv)])

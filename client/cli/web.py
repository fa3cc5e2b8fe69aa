"""`clipsearch web`: the page and JSON API on uvicorn, against running services."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from client import weboptions
from client.config import split_addresses
from client.web import create_app
from client.web.security import binding_password, resolve_password
from client.web.server import bind, make_server, url_of
from client.web.settings import DEFAULT_CALL_TIMEOUT, DEFAULT_HOST, DEFAULT_PORT, WebSettings, default_cache_dir
from clipsearch.envconfig import ConfigError

from .options import WEB_HELP, add_service_options, client_config

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


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("web", help=WEB_HELP, description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    sock = bind(settings.host, settings.port)
    app = create_app(settings)
    port = sock.getsockname()[1]
    print(f"clipsearch web: {url_of(settings.host, port)}", flush=True)
    try:
        make_server(app, log=True).run(sockets=[sock])
    finally:
        sock.close()
    return 0

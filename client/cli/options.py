"""The options and argparse types the `clipsearch` commands share, and the Client they build from them."""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

from client.api import Client
from client.config import ClientConfig, split_addresses
from client.ingest.shard import MAX_SHARDS, Shard, ShardError, parse_shard
from client.security import token_from_file

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3  # index finished, but some files could not be indexed
PROG = "clipsearch"
WEB_HELP = "serve the web page and JSON API on this machine"

Handler = Callable[[argparse.Namespace], int]


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value

    return parse


def shard_type(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ShardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def shard_count(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text.strip()) or not 1 <= int(text) <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"expected a number of shards from 1 to {MAX_SHARDS}, got {text!r}")
    return int(text)


def add_service_options(
    parser: argparse.ArgumentParser, embedder: bool = True, json: bool = True, default_timeout: str = "60"
) -> None:
    group = parser.add_argument_group("services")
    if embedder:
        group.add_argument(
            "--embedder",
            action="append",
            metavar="HOST:PORT[,HOST:PORT…]",
            help="embedder address(es), repeatable or comma-separated, or one gRPC target "
            "(dns:///HOST:PORT, ipv4:IP:PORT,IP:PORT…, unix:PATH); calls are spread "
            "over all of them (default: $EMBEDDER_ADDR or 127.0.0.1:50051)",
        )
    group.add_argument(
        "--search",
        metavar="HOST:PORT",
        help="search service address or gRPC target (default: $SEARCH_ADDR or 127.0.0.1:50052)",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help=f"deadline of each call (default: $CLIPSEARCH_TIMEOUT or {default_timeout})",
    )
    group.add_argument(
        "--connect-timeout",
        type=positive_float,
        metavar="SECONDS",
        help="how long to wait for a service to accept a connection (default: $CLIPSEARCH_CONNECT_TIMEOUT or 10)",
    )
    security = parser.add_argument_group(
        "security",
        "TLS and the shared token; the token itself is read only from $CLIPSEARCH_AUTH_TOKEN or a "
        "file, never from the command line, where other users could see it",
    )
    security.add_argument(
        "--tls-ca",
        type=Path,
        metavar="FILE",
        help="PEM CA that signed the services' certificates; turns TLS on "
        "(default: $CLIPSEARCH_TLS_CA; plaintext when unset)",
    )
    security.add_argument(
        "--tls-cert",
        type=Path,
        metavar="FILE",
        help="PEM client certificate, for services that require one (mutual TLS) (default: $CLIPSEARCH_TLS_CERT)",
    )
    security.add_argument(
        "--tls-key",
        type=Path,
        metavar="FILE",
        help="the client certificate's unencrypted PEM key (default: $CLIPSEARCH_TLS_KEY)",
    )
    security.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="file holding the services' shared token (default: $CLIPSEARCH_AUTH_TOKEN, "
        "or the file $CLIPSEARCH_AUTH_TOKEN_FILE)",
    )
    if json:
        parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--collection", action="append", default=[], metavar="NAME", help="only items of this collection (repeatable)"
    )
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="only items carrying this tag (repeatable: all must match)",
    )
    parser.add_argument("--media", choices=["image", "video"], help="only images, or only video frames")


def client_config(args: argparse.Namespace) -> ClientConfig:
    """The environment's client settings with the TLS and token options of add_service_options applied."""
    config = ClientConfig.from_env()
    # The options override their variables one by one.
    overrides = {
        name: value
        for name, value in (("tls_ca", args.tls_ca), ("tls_cert", args.tls_cert), ("tls_key", args.tls_key))
        if value is not None
    }
    if args.token_file is not None:
        overrides["token"] = token_from_file(args.token_file)
    return dataclasses.replace(config, **overrides)


def make_client(args: argparse.Namespace) -> Client:
    config = client_config(args)
    embedder = [a for value in (getattr(args, "embedder", None) or []) for a in split_addresses(value)]
    return Client(
        embedder or None, args.search, timeout=args.timeout, connect_timeout=args.connect_timeout, config=config
    )


def with_client(args: argparse.Namespace, command: Callable[[argparse.Namespace, Client], int]) -> int:
    with make_client(args) as client:
        return command(args, client)

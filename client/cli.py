"""The `clipsearch` command: index, search, classify, stats, delete, collections, reindex (and serve, web)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clipsearch.envconfig import ConfigError

from . import library_cli, output, reindex
from .api import Client, SearchFilter
from .config import ClientConfig, split_addresses
from .errors import ClientError
from .index_progress import IndexBar
from .ingest import IngestOptions
from .progress import plan
from .security import token_from_file
from .shard import JOB_INDEX_VARIABLE, MAX_SHARDS, Shard, ShardError, parse_shard, shard_from_job
from .stills import DEFAULT_STILL_THRESHOLD
from .uris import display_path

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3  # index finished, but some files could not be indexed
PROG = "clipsearch"

Handler = Callable[[argparse.Namespace], int]


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value

    return parse


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ShardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shard_count(text: str) -> int:
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
        type=_positive_float,
        metavar="SECONDS",
        help=f"deadline of each call (default: $CLIPSEARCH_TIMEOUT or {default_timeout})",
    )
    group.add_argument(
        "--connect-timeout",
        type=_positive_float,
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


def _filters(parser: argparse.ArgumentParser) -> None:
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


def build_parser(serve_module: Any = None, web_module: Any = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Search images and video frames by text, by image or by example."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "index",
        help="index image and video files and folders",
        description="Index images and videos. Folders are walked recursively; what is already indexed is skipped.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files and folders")
    p.add_argument(
        "--collection",
        metavar="NAME",
        help="collection to add to (default: the library's for a path inside one, else the collection the files "
        "are indexed in already, else default)",
    )
    p.add_argument("--fps", type=_positive_float, default=1.0, help="video frames sampled per second (default: 1)")
    still = p.add_mutually_exclusive_group()
    still.add_argument(
        "--every-frame",
        action="store_true",
        help="embed every sampled video frame (default: a frame nearly identical to the last one embedded from "
        "its video is skipped, and the kept frame stands for it in searches)",
    )
    still.add_argument(
        "--still-threshold",
        type=_non_negative_float,
        default=DEFAULT_STILL_THRESHOLD,
        metavar="LEVELS",
        help="how alike a frame must be to the last one embedded to be skipped: the mean difference of "
        f"32x32 copies, in levels 0-255 (default: {DEFAULT_STILL_THRESHOLD:g}; 0 skips none)",
    )
    p.add_argument("--tag", action="append", default=[], metavar="TAG", help="tag new items (repeatable)")
    p.add_argument(
        "--prune",
        action="store_true",
        help="also remove, within PATHs, files that are gone or changed, in whatever collection they are "
        "(with --shard or --shards: only those of this shard)",
    )
    shards = p.add_argument_group(
        "sharding",
        "N workers, each with its own shard, index one library in parallel: a file belongs to the shard "
        "its absolute path hashes to (SHA-256), so every file is indexed by exactly one of them. The "
        "workers must see the library at the same paths",
    )
    shard = shards.add_mutually_exclusive_group()
    shard.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="index only shard I of N (I from 0 to N-1), e.g. 0/3, 1/3 and 2/3 for three workers",
    )
    shard.add_argument(
        "--shards",
        type=_shard_count,
        metavar="N",
        help=f"N shards, this worker's index from ${JOB_INDEX_VARIABLE} (set by a Kubernetes Indexed Job)",
    )
    p.add_argument(
        "--recursive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="walk folders recursively (default: on)",
    )
    p.add_argument(
        "--batch-images",
        type=_count(1),
        default=IngestOptions.batch_images,
        help="most images per embedding call (default: %(default)s)",
    )
    p.add_argument(
        "--inflight", type=_count(0), default=0, help="embedding calls in flight (default: two per embedder address)"
    )
    add_service_options(p)
    p.set_defaults(handler=_index)

    p = sub.add_parser(
        "search",
        help="search by text, by image or by an indexed item",
        description="Print the best matches, best first.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help='a description, e.g. "a cat on a sofa"')
    what.add_argument("--image", metavar="FILE", help="an image file to find similar ones to")
    what.add_argument("--like", metavar="ID", help="an indexed item's id: more like it (itself excluded)")
    p.add_argument("--top", type=_count(1), default=10, help="how many results (default: 10)")
    p.add_argument("--offset", type=_count(0), default=0, help="skip this many best results first")
    p.add_argument("--min-score", type=float, metavar="SCORE", help="only results with cosine >= SCORE")
    p.add_argument(
        "--frames",
        action="store_true",
        help="every matching video frame as its own result (default: frames of one video that follow each "
        "other are one result, a moment, with the span it covers)",
    )
    p.add_argument(
        "--collapse-duplicates",
        action="store_true",
        help="near-duplicate photos (the same picture resized or re-encoded) as one result listing its copies",
    )
    _filters(p)
    add_service_options(p)
    p.set_defaults(handler=_search)

    p = sub.add_parser(
        "classify",
        help="zero-shot labels for an image or an indexed item",
        description="Probabilities of each label, best first.",
    )
    p.add_argument("file", nargs="?", metavar="FILE", help="an image file")
    p.add_argument("--id", help="an indexed item instead of a file")
    p.add_argument("--labels", nargs="+", required=True, metavar="LABEL", help="candidate labels")
    p.add_argument(
        "--template",
        default="",
        metavar="TEXT",
        help='prompt around each label, "{}" marks the label, e.g. "a photo of {}"',
    )
    add_service_options(p)
    p.set_defaults(handler=_classify)

    p = sub.add_parser("stats", help="item counts, memory and index settings")
    add_service_options(p, embedder=False)
    p.set_defaults(handler=_stats)

    p = sub.add_parser("reindex", help="embed every item again with the current model", description=reindex.DESCRIPTION)
    reindex.add_arguments(p)
    add_service_options(p)
    p.set_defaults(handler=lambda args: _with_client(args, reindex.run))

    p = sub.add_parser("collections", help="collections and their item counts")
    add_service_options(p, embedder=False)
    p.set_defaults(handler=_collections)

    p = sub.add_parser(
        "delete",
        help="delete items, files' entries or a collection",
        description="Delete items by id, remove files (or every file under a folder), or "
        "drop a collection. An item left without files is deleted.",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--id", nargs="+", dest="ids", metavar="ID", help="item ids")
    which.add_argument("--source", nargs="+", dest="sources", metavar="PATH", help="files or folders")
    p.add_argument(
        "--collection",
        metavar="NAME",
        help="alone: a whole collection; with --source: remove the files from this collection only",
    )
    add_service_options(p, embedder=False)
    p.set_defaults(handler=_delete)

    library_cli.add_parsers(sub, add_service_options, _with_client)

    help_text = "start Redis, the embedder and the search service on this machine"
    if serve_module is None:
        sub.add_parser("serve", help=help_text, add_help=False)
    else:
        p = sub.add_parser("serve", help=help_text)
        serve_module.add_arguments(p)
        p.set_defaults(handler=lambda args: int(serve_module.run(args) or 0))

    help_text = "serve the web page and JSON API on this machine"
    if web_module is None:
        sub.add_parser("web", help=help_text, add_help=False)
    else:
        p = sub.add_parser("web", help=help_text, description=web_module.DESCRIPTION)
        web_module.add_arguments(p)
        p.set_defaults(handler=web_module.run)
    return parser


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


def _client(args: argparse.Namespace) -> Client:
    config = client_config(args)
    embedder = [a for value in (getattr(args, "embedder", None) or []) for a in split_addresses(value)]
    return Client(
        embedder or None, args.search, timeout=args.timeout, connect_timeout=args.connect_timeout, config=config
    )


def _with_client(args: argparse.Namespace, command: Callable[[argparse.Namespace, Client], int]) -> int:
    with _client(args) as client:
        return command(args, client)


def _index(args: argparse.Namespace) -> int:
    try:
        shard = args.shard if args.shards is None else shard_from_job(args.shards)
    except ShardError as exc:
        raise ConfigError(str(exc)) from None
    options = IngestOptions(
        batch_images=args.batch_images,
        inflight=args.inflight,
        shard=shard,
        still_threshold=0.0 if args.every_frame else args.still_threshold,
    )
    live = sys.stderr.isatty() and not args.json
    if live:
        print("counting the files…", end="\r", file=sys.stderr, flush=True)
    planned = plan(args.paths, recursive=args.recursive, fps=args.fps, shard=shard)
    if live:
        print(f"to look at: {planned.describe()}", file=sys.stderr, flush=True)
    with _client(args) as client, IndexBar(sys.stderr, live, planned) as progress:
        try:
            report = client.index(
                args.paths,
                collection=args.collection or None,
                fps=args.fps,
                tags=args.tag,
                recursive=args.recursive,
                prune=args.prune,
                on_event=progress,
                options=options,
            )
        except KeyboardInterrupt:
            print(f"{PROG}: {progress.interrupted()}", file=sys.stderr)
            return 130
    if args.json:
        output.print_json(report.to_json())
    else:
        print(output.report_summary(report))
    return EXIT_PARTIAL if report.failed else 0


def _search(args: argparse.Namespace) -> int:
    filter_ = SearchFilter(collections=tuple(args.collection), tags=tuple(args.tag), media=args.media)
    with _client(args) as client:
        if args.text is not None:
            query = {"text": args.text}
            hits = client.search_text(
                args.text,
                top=args.top,
                offset=args.offset,
                filter=filter_,
                min_score=args.min_score,
                moments=not args.frames,
                collapse_duplicates=args.collapse_duplicates,
            )
        elif args.image is not None:
            query = {"image": display_path(args.image)}
            hits = client.search_image(
                args.image,
                top=args.top,
                offset=args.offset,
                filter=filter_,
                min_score=args.min_score,
                moments=not args.frames,
                collapse_duplicates=args.collapse_duplicates,
            )
        else:
            query = {"like": args.like}
            hits = client.search_like(
                args.like,
                top=args.top,
                offset=args.offset,
                filter=filter_,
                min_score=args.min_score,
                moments=not args.frames,
                collapse_duplicates=args.collapse_duplicates,
            )
    if args.json:
        output.print_json({"query": query, "results": [h.to_json() for h in hits]})
    elif hits:
        output.console().print(output.hits_table(hits))
    else:
        print("no matches")
    return 0


def _classify(args: argparse.Namespace) -> int:
    if (args.file is None) == (args.id is None):
        raise ClientError("give either an image FILE or --id ID")
    with _client(args) as client:
        if args.file is not None:
            scores = client.classify(args.file, args.labels, args.template)
        else:
            scores = client.classify_item(args.id, args.labels, args.template)
    if args.json:
        output.print_json(
            {
                "input": {"file": display_path(args.file)} if args.file else {"id": args.id},
                "labels": [s.to_json() for s in scores],
            }
        )
    else:
        output.console().print(output.labels_table(scores))
    return 0


def _stats(args: argparse.Namespace) -> int:
    with _client(args) as client:
        stats = client.stats()
    if args.json:
        output.print_json(stats.to_json())
    else:
        output.console().print(output.stats_table(stats))
    return 0


def _collections(args: argparse.Namespace) -> int:
    with _client(args) as client:
        collections = client.collections()
    if args.json:
        output.print_json({"collections": [{"name": n, "items": c} for n, c in collections.items()]})
    elif collections:
        output.console().print(output.collections_table(collections))
    else:
        print("no collections")
    return 0


def _delete(args: argparse.Namespace) -> int:
    if not args.ids and not args.sources and args.collection is None:
        raise ClientError("give --id, --source or --collection")
    if args.ids and args.collection is not None:
        raise ClientError("--collection goes alone or with --source, not with --id")
    with _client(args) as client:
        if args.ids:
            result = client.delete(ids=args.ids)
        else:
            result = client.delete(sources=args.sources or (), collection=args.collection)
    if args.json:
        output.print_json(result.to_json())
    else:
        print(output.delete_summary(result))
    return 0


def _command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    serve_module = web_module = None
    command = _command(argv)
    # Imported only for `serve` and `web`, so every other command works with the client's dependencies alone.
    if command == "serve":
        try:
            serve_module = importlib.import_module("client.serve")
        except ImportError as exc:
            print(f"{PROG}: error: `serve` is not available here: {exc}", file=sys.stderr)
            return EXIT_ERROR
    elif command == "web":
        try:
            web_module = importlib.import_module("client.web.server")
        except ImportError as exc:
            print(f"{PROG}: error: `web` needs the web extra (pip install 'clipsearch[web]'): {exc}", file=sys.stderr)
            return EXIT_ERROR
    parser = build_parser(serve_module, web_module)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ClientError, ConfigError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`); nothing more to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())

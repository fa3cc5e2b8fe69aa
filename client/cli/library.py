"""`clipsearch library add|list|remove|rescan` and `clipsearch watch`: libraries from the command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time

from rich.table import Table

from client.api import Client
from client.libraries import Library, format_duration

from . import output
from .options import add_service_options, positive_float, with_client

LIBRARY_DESCRIPTION = (
    "A library is a folder kept indexed into one collection: the indexer that `clipsearch serve` runs "
    "(or `clipsearch watch`) indexes new and changed files and removes deleted ones. Libraries are stored "
    "by the search service, beside the index: every client of it sees the same ones."
)

WATCH_DESCRIPTION = (
    "Keep every library indexed: watch its folder, index new and changed files and remove deleted ones "
    "within seconds, catch up on what changed while nothing watched, and follow libraries added, removed "
    "or rescanned by other clients. `clipsearch serve` runs this too (unless --no-watch)."
)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `library` (with its subcommands) and `watch` to the `clipsearch` parser."""
    p = sub.add_parser(
        "library", help="folders kept indexed: add, list, remove, rescan", description=LIBRARY_DESCRIPTION
    )
    commands = p.add_subparsers(dest="library_command", metavar="SUBCOMMAND", required=True)

    q = commands.add_parser(
        "add",
        help="add a folder as a library",
        description="Add a folder (on the machine where the indexer runs) as a library. Without --collection, a "
        "folder already indexed into one collection keeps it; otherwise its files go to 'default'.",
    )
    q.add_argument("path", metavar="PATH", help="the folder")
    q.add_argument("--collection", metavar="NAME", help="the collection its files are indexed into")
    q.add_argument("--name", metavar="NAME", help="the library's name (default: the folder's name)")
    add_service_options(q, embedder=False)
    q.set_defaults(handler=lambda args: with_client(args, _add))

    q = commands.add_parser("list", help="the libraries, their items and their indexer's state")
    add_service_options(q, embedder=False)
    q.set_defaults(handler=lambda args: with_client(args, _list))

    q = commands.add_parser(
        "remove",
        help="remove a library and its items from the index (never a file)",
        description="Remove a library: its items leave the index; the folder and its files are not touched.",
    )
    q.add_argument("name", metavar="NAME", help="the library's name (see `clipsearch library list`)")
    add_service_options(q, embedder=False)
    q.set_defaults(handler=lambda args: with_client(args, _remove))

    q = commands.add_parser(
        "rescan",
        help="ask the indexer to walk a library's folder again",
        description="Ask the indexer to walk the library's folder again: index what is new or changed, remove "
        "what is gone.",
    )
    q.add_argument("name", metavar="NAME", help="the library's name")
    add_service_options(q, embedder=False)
    q.set_defaults(handler=lambda args: with_client(args, _rescan))

    p = sub.add_parser("watch", help="keep every library indexed (the indexer alone)", description=WATCH_DESCRIPTION)
    p.add_argument(
        "--poll",
        type=positive_float,
        default=2.0,
        metavar="SECONDS",
        help="how often to look for libraries added, removed or rescanned elsewhere (default: 2)",
    )
    add_service_options(p, json=False)
    p.set_defaults(handler=lambda args: with_client(args, _watch))


def _add(args: argparse.Namespace, client: Client) -> int:
    library = client.add_library(args.path, args.collection, name=args.name)
    if args.json:
        output.print_json(library.to_json())
    else:
        print(
            f"added the library {library.name!r}: {library.path} into the collection {library.collection!r} "
            f"({library.items} item{'s' if library.items != 1 else ''} there already); "
            + (
                "the indexer indexes it now"
                if library.status.state != "pending"
                else "`clipsearch serve` (or `clipsearch watch`) indexes it and keeps it indexed"
            )
        )
    return 0


def libraries_table(libraries: list[Library]) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for name, justify in (("name", "left"), ("folder", "left"), ("collection", "left"), ("items", "right")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    table.add_column("state", overflow="fold")
    now = time.time()
    for lib in libraries:
        state = lib.status.describe()
        if lib.status.updated_at and lib.status.state in ("watching", "idle"):
            state += f" (reported {format_duration(now - lib.status.updated_at)} ago)"
        table.add_row(lib.name, lib.path, lib.collection, str(lib.items), state)
    return table


def _list(args: argparse.Namespace, client: Client) -> int:
    libraries = client.list_libraries()
    if args.json:
        output.print_json({"libraries": [lib.to_json() for lib in libraries]})
        return 0
    if not libraries:
        print("no libraries: add one with `clipsearch library add PATH`")
        return 0
    output.console().print(libraries_table(libraries))
    for lib in libraries:
        for failure in lib.status.failures:
            print(f"{lib.name}: failed {failure.path}: {failure.reason}")
        if lib.status.failed_files > len(lib.status.failures):
            print(f"{lib.name}: ... and {lib.status.failed_files - len(lib.status.failures)} more failed files")
    return 0


def _remove(args: argparse.Namespace, client: Client) -> int:
    library = client.library(args.name)
    removed = client.remove_library(args.name)
    if args.json:
        output.print_json({"removed": library.to_json(), "items_removed": removed})
    else:
        print(
            f"removed the library {library.name!r} ({library.path}): {removed} item{'s' if removed != 1 else ''} "
            "left the index; no file was touched"
        )
    return 0


def _rescan(args: argparse.Namespace, client: Client) -> int:
    library = client.request_rescan(args.name)
    if args.json:
        output.print_json(library.to_json())
    elif library.status.state in ("pending", "idle"):
        print(
            f"rescan of {library.name!r} requested; no indexer is watching now: `clipsearch serve` "
            "(or `clipsearch watch`) rescans it when it starts"
        )
    else:
        print(f"rescan of {library.name!r} requested; the indexer walks {library.path} again now")
    return 0


def _watch(args: argparse.Namespace, client: Client) -> int:
    from client.indexer import Indexer, IndexerOptions  # the indexer needs watchfiles, only here

    log = logging.getLogger("clipsearch.indexer")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    with Indexer(client, IndexerOptions(poll_seconds=args.poll)) as indexer:

        def on_signal(signum: int, frame: object) -> None:
            indexer.stop()
            raise KeyboardInterrupt  # out of a pass in progress too: it resumes at the next start

        previous = signal.signal(signal.SIGTERM, on_signal)
        try:
            indexer.run_forever()
        except KeyboardInterrupt:
            log.info("indexer stopped")
        finally:
            signal.signal(signal.SIGTERM, previous)
    return 0

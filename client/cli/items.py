"""`clipsearch stats`, `collections` and `delete`: what the index holds, and removing from it."""

from __future__ import annotations

import argparse

from client.errors import ClientError

from . import output
from .options import add_service_options, make_client


def add_stats_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("stats", help="item counts, memory and index settings")
    add_service_options(p, embedder=False)
    p.set_defaults(handler=stats)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("collections", help="collections and their item counts")
    add_service_options(p, embedder=False)
    p.set_defaults(handler=collections)

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
    p.set_defaults(handler=delete)


def stats(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        stats = client.stats()
    if args.json:
        output.print_json(stats.to_json())
    elif stats.loading:
        print(stats.loading_message)
    else:
        output.console().print(output.stats_table(stats))
    return 0


def collections(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        collections = client.collections()
    if args.json:
        output.print_json({"collections": [{"name": n, "items": c} for n, c in collections.items()]})
    elif collections:
        output.console().print(output.collections_table(collections))
    else:
        print("no collections")
    return 0


def delete(args: argparse.Namespace) -> int:
    if not args.ids and not args.sources and args.collection is None:
        raise ClientError("give --id, --source or --collection")
    if args.ids and args.collection is not None:
        raise ClientError("--collection goes alone or with --source, not with --id")
    with make_client(args) as client:
        if args.ids:
            result = client.delete(ids=args.ids)
        else:
            result = client.delete(sources=args.sources or (), collection=args.collection)
    if args.json:
        output.print_json(result.to_json())
    else:
        print(output.delete_summary(result))
    return 0

"""`clipsearch reindex`: every stored item embedded again with the current model, or a reindex aborted."""

from __future__ import annotations

import argparse
import sys

from client.api import Client

from . import output
from .options import EXIT_PARTIAL, add_service_options, with_client

DESCRIPTION = (
    "Embed every stored item again, from its files, with the embedder now running (after changing the model), "
    "into a new index that replaces the current one when done. Searches keep using the current index until then. "
    "An interrupted reindex resumes where it stopped; --abort discards it."
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("reindex", help="embed every item again with the current model", description=DESCRIPTION)
    add_arguments(p)
    add_service_options(p)
    p.set_defaults(handler=lambda args: with_client(args, run))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--abort", action="store_true", help="discard a reindex in progress instead")


def run(args: argparse.Namespace, client: Client) -> int:
    if args.abort:
        aborted, discarded = client.abort_reindex()
        if args.json:
            output.print_json({"aborted": aborted, "discarded_items": discarded})
        else:
            print(f"aborted: {discarded} staged items discarded" if aborted else "no reindex in progress")
        return 0
    live = sys.stderr.isatty() and not args.json
    with output.IndexProgress(sys.stderr, live) as progress:
        report = client.reindex(on_event=progress)
    if args.json:
        output.print_json(report.to_json())
    else:
        print(report.summary())
    return EXIT_PARTIAL if report.progress.failed else 0

"""`clipsearch search` and `clipsearch classify`: the best matches of a query, zero-shot labels."""

from __future__ import annotations

import argparse
import sys

from client.api import SearchFilter, SearchOptions
from client.errors import ClientError
from client.uris import display_path

from . import output
from .options import add_filters, add_service_options, count, make_client, non_negative_float


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "search",
        help="search by text, by image or by an indexed item",
        description="Print the best matches, best first.",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--text", help='a description, e.g. "a cat on a sofa"')
    what.add_argument("--image", metavar="FILE", help="an image file to find similar ones to")
    what.add_argument("--like", metavar="ID", help="an indexed item's id: more like it (itself excluded)")
    said = p.add_argument_group("what is said (the videos' subtitles)")
    said.add_argument(
        "--said",
        metavar="WORDS",
        help='words said, "a phrase" in quotes, a prefix*, or Chinese (明天 finds 我们明天见); alone, or with '
        "--text or --image: moments where both match rank first (reciprocal rank fusion)",
    )
    said.add_argument(
        "--said-window",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="how close what is seen and what is said must be to be one moment (default: the sampling interval)",
    )
    said.add_argument(
        "--said-language",
        action="append",
        default=[],
        metavar="LANG",
        help="only subtitle tracks in this language, as their file name or track gives it (repeatable)",
    )
    p.add_argument("--top", type=count(1), default=10, help="how many results (default: 10)")
    p.add_argument("--offset", type=count(0), default=0, help="skip this many best results first")
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
    add_filters(p)
    add_service_options(p)
    p.set_defaults(handler=search)

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
    p.set_defaults(handler=classify)


def options_from_args(args: argparse.Namespace) -> SearchOptions:
    """The search options the command line gives."""
    return SearchOptions(
        top=args.top,
        offset=args.offset,
        filter=SearchFilter(collections=tuple(args.collection), tags=tuple(args.tag), media=args.media),
        min_score=args.min_score,
        moments=not args.frames,
        collapse_duplicates=args.collapse_duplicates,
        said=args.said or "",
        said_window_seconds=args.said_window,
        said_languages=tuple(args.said_language),
    )


def search(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    if args.text is None and args.image is None and args.like is None and not args.said:
        raise ClientError("give --text, --image, --like or --said")
    with make_client(args) as client:
        if args.text is None and args.image is None and args.like is None:
            query = {"said": args.said}
            hits = client.search_said(args.said, options)
        elif args.text is not None:
            query = {"text": args.text}
            hits = client.search_text(args.text, options)
        elif args.image is not None:
            query = {"image": display_path(args.image)}
            hits = client.search_image(args.image, options)
        else:
            query = {"like": args.like}
            hits = client.search_like(args.like, options)
    if args.said:
        query["said"] = args.said
    if args.json:
        partial = {"partial": True, "percent_indexed": hits.percent_indexed} if hits.partial else {}
        output.print_json({"query": query, "results": [h.to_json() for h in hits], **partial})
    elif hits:
        output.console().print(output.hits_table(hits))
    else:
        print("no matches")
    if hits.note:
        print(hits.note, file=sys.stderr)
    return 0


def classify(args: argparse.Namespace) -> int:
    if (args.file is None) == (args.id is None):
        raise ClientError("give either an image FILE or --id ID")
    with make_client(args) as client:
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

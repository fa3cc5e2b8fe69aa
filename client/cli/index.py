"""`clipsearch index`: index image and video files and folders."""

from __future__ import annotations

import argparse
import sys

from client.ingest.engine import IngestOptions
from client.ingest.progress import plan
from client.ingest.shard import JOB_INDEX_VARIABLE, ShardError, shard_from_job
from client.ingest.stills import DEFAULT_STILL_THRESHOLD
from clipsearch.envconfig import ConfigError

from . import output
from .index_progress import IndexBar
from .options import (
    EXIT_PARTIAL,
    PROG,
    add_service_options,
    count,
    make_client,
    non_negative_float,
    positive_float,
    shard_count,
    shard_type,
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p.add_argument("--fps", type=positive_float, default=1.0, help="video frames sampled per second (default: 1)")
    still = p.add_mutually_exclusive_group()
    still.add_argument(
        "--every-frame",
        action="store_true",
        help="embed every sampled video frame (default: a frame nearly identical to the last one embedded from "
        "its video is skipped, and the kept frame stands for it in searches)",
    )
    still.add_argument(
        "--still-threshold",
        type=non_negative_float,
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
        type=shard_type,
        metavar="I/N",
        help="index only shard I of N (I from 0 to N-1), e.g. 0/3, 1/3 and 2/3 for three workers",
    )
    shard.add_argument(
        "--shards",
        type=shard_count,
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
        type=count(1),
        default=IngestOptions.batch_images,
        help="most images per embedding call (default: %(default)s)",
    )
    p.add_argument(
        "--inflight", type=count(0), default=0, help="embedding calls in flight (default: two per embedder address)"
    )
    p.add_argument(
        "--subtitles",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read each video's subtitles (text tracks inside it, subtitle files beside it) for `search --said` "
        "(default: on)",
    )
    add_service_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        shard = args.shard if args.shards is None else shard_from_job(args.shards)
    except ShardError as exc:
        raise ConfigError(str(exc)) from None
    options = IngestOptions(
        batch_images=args.batch_images,
        inflight=args.inflight,
        shard=shard,
        still_threshold=0.0 if args.every_frame else args.still_threshold,
        subtitles=args.subtitles,
    )
    live = sys.stderr.isatty() and not args.json
    if live:
        print("counting the files…", end="\r", file=sys.stderr, flush=True)
    planned = plan(args.paths, recursive=args.recursive, fps=args.fps, shard=shard)
    if live:
        print(f"to look at: {planned.describe()}", file=sys.stderr, flush=True)
    with make_client(args) as client, IndexBar(sys.stderr, live, planned) as progress:
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

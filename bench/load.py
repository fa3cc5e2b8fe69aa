"""Load run: client threads mixing text queries, image queries and upserts against the three services as
real processes, with throughput, latency percentiles and the processes' resident memory.

    python -m bench.load --model checkpoints/vit-b-16 --duration 60 --clients 16 --json load.json

The load itself is clipsearch.testing.load, which the tests run too; see there for what each client does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from clipsearch.testing.load import LoadConfig, format_table, run_load
from clipsearch.testing.processes import DEPLOYED_SEARCH_SETTINGS, start_stack


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        required=True,
        metavar="DIR_OR_ID",
        help="CLIP checkpoint directory (make checkpoint ARCH=vit-b-16) or cached hub id",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured (default 60)")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before measuring (default 30)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads (default 16)")
    parser.add_argument("--deadline", type=float, default=30.0, help="deadline of every call in seconds")
    parser.add_argument(
        "--mix",
        default="0.4,0.4,0.2",
        metavar="TEXT,IMAGE,UPSERT",
        help="weights of text queries, image queries and upserts (default 0.4,0.4,0.2)",
    )
    parser.add_argument("--items", type=int, default=200, help="ids that upserts rewrite (default 200)")
    parser.add_argument(
        "--embedder-threads", type=int, default=0, help="torch threads of the embedder (default: all cores)"
    )
    parser.add_argument("--dtype", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--appendfsync", choices=("everysec", "always", "no"), default="everysec")
    parser.add_argument(
        "--max-rss-growth",
        type=float,
        default=0.10,
        help="exit 1 when a process grew more than this fraction (default 0.10)",
    )
    parser.add_argument("--workdir", type=Path, help="logs and Redis data (default: a temporary directory)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    mix = tuple(float(v) for v in args.mix.split(","))
    if len(mix) != 3 or min(mix) < 0 or sum(mix) <= 0:
        parser.error("--mix takes three non-negative weights, e.g. 0.4,0.4,0.2")
    if args.clients < 1 or args.items < 1 or min(args.duration, args.deadline) <= 0 or args.warmup < 0:
        parser.error("--clients and --items must be at least 1, --duration and --deadline positive")
    config = LoadConfig(
        clients=args.clients,
        duration=args.duration,
        warmup=args.warmup,
        deadline=args.deadline,
        mix=mix,
        items=args.items,
    )
    with tempfile.TemporaryDirectory(prefix="clipsearch-load-") as scratch:
        workdir = args.workdir or Path(scratch)
        print(f"starting redis, the embedder ({args.model}) and the search service in {workdir}", file=sys.stderr)
        threads = args.embedder_threads or len(os.sched_getaffinity(0))
        stack = start_stack(
            workdir,
            args.model,
            embedder_threads=threads,
            dtype=args.dtype,
            appendfsync=args.appendfsync,
            search_env=DEPLOYED_SEARCH_SETTINGS,
        )
        try:
            result = run_load(stack, config)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            stack.stop()
    result.model = args.model
    print(format_table(result))
    if args.json:
        args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    grown = {name: g for name, g in result.rss_growth().items() if g > args.max_rss_growth}
    return 1 if result.errors or grown else 0


if __name__ == "__main__":
    sys.exit(main())

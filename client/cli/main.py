"""The `clipsearch` command's parser, built from each command's module, and its entry point."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from client.errors import ClientError
from clipsearch.envconfig import ConfigError

from . import index, items, library, reindex, search
from . import serve as serve_command
from .options import EXIT_ERROR, EXIT_USAGE, PROG, WEB_HELP, Handler


def build_parser(*, serve: bool = False, web_module: ModuleType | None = None) -> argparse.ArgumentParser:
    """The whole command line; `serve`'s and `web`'s options only when they run (they need more packages)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Search images and video frames by text, by image or by example."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    index.add_parser(sub)
    search.add_parsers(sub)
    items.add_stats_parser(sub)
    reindex.add_parser(sub)
    items.add_parsers(sub)
    library.add_parsers(sub)
    serve_command.add_parser(sub, full=serve)
    if web_module is None:
        sub.add_parser("web", help=WEB_HELP, add_help=False)
    else:
        web_module.add_parser(sub)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    web_module = None
    command = _command(argv)
    # Imported only for `serve` and `web`, so every other command works with the client's dependencies alone.
    if command == "serve":
        try:
            importlib.import_module("client.serve")
        except ImportError as exc:
            print(f"{PROG}: error: `serve` is not available here: {exc}", file=sys.stderr)
            return EXIT_ERROR
    elif command == "web":
        try:
            web_module = importlib.import_module("client.cli.web")
        except ImportError as exc:
            print(f"{PROG}: error: `web` needs the web extra (pip install 'clipsearch[web]'): {exc}", file=sys.stderr)
            return EXIT_ERROR
    parser = build_parser(serve=command == "serve", web_module=web_module)
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

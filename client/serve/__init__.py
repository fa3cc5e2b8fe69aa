"""`clipsearch serve`: runs Redis, the embedder replicas and the search service as supervised processes."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence

import grpc

from .banner import banner
from .config import ServeConfig, build_config, missing_modules, serve_security
from .errors import EXIT_CHILD_FAILED, EXIT_OK, EXIT_USAGE, ServeError
from .ready_file import ready_document, remove_ready_file, write_ready_file
from .supervisor import Supervisor

__all__ = [
    "EXIT_CHILD_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ServeConfig",
    "ServeError",
    "build_config",
    "main",
    "run",
    "serve_security",
]

log = logging.getLogger("clipsearch.serve")


def _configure_logging() -> None:
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s serve     | %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _announce(config: ServeConfig, supervisor: Supervisor) -> None:
    """Prints the banner, then writes the ready file: a reader of the file finds the banner printed."""
    assert supervisor.info is not None
    print(banner(config, supervisor.info), flush=True)
    if config.ready_file is not None:
        try:
            write_ready_file(config.ready_file, ready_document(config, supervisor.info, os.getpid()))
        except OSError as error:
            raise ServeError(f"cannot write --ready-file {config.ready_file}: {error.strerror or error}") from None


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Runs the stack until SIGINT/SIGTERM/SIGHUP; returns the exit code."""
    env = os.environ if env is None else env
    _configure_logging()
    missing = missing_modules()
    if missing:
        names = ", ".join(module for module, _ in missing)
        print(
            f"clipsearch serve: cannot import {names} (the embedder and search extras); install them "
            f"with: pip install 'clipsearch[all]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        config = build_config(args, env)
    except ServeError as error:
        print(f"clipsearch serve: {error}", file=sys.stderr)
        return error.exit_code
    if config.ready_file is not None:
        remove_ready_file(config.ready_file)  # left behind by a serve that was killed

    stop, hurry = threading.Event(), threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            hurry.set()  # a second Ctrl-C: no more grace
            return
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, on_signal) for signum in handled}
    supervisor = Supervisor(config, stop, hurry)
    code = EXIT_OK
    try:
        if supervisor.start():
            _announce(config, supervisor)
            supervisor.supervise()
    except ServeError as error:
        print(f"clipsearch serve: {error}", file=sys.stderr)
        code = error.exit_code
    except grpc.RpcError as error:
        print(f"clipsearch serve: the embedder did not describe its model: {error.details()}", file=sys.stderr)
        code = EXIT_CHILD_FAILED
    finally:
        if config.ready_file is not None:
            remove_ready_file(config.ready_file)  # no longer serving, before the children stop
        supervisor.shutdown()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("stopped")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """`clipsearch serve` with these arguments (the command line's, when None)."""
    from client.cli import main as cli_main  # the command's entry, as `clipsearch serve`

    return cli_main(["serve", *(sys.argv[1:] if argv is None else argv)])

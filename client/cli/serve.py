"""`clipsearch serve`'s command-line options and their defaults; the command runs client.serve."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from client import weboptions

DEFAULT_EMBEDDER_PORT = 50051
DEFAULT_SEARCH_PORT = 50052
DEFAULT_START_TIMEOUT = 600.0
DEFAULT_WEB_PORT = 8080


HELP = "start Redis, the embedder and the search service on this machine"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], *, full: bool = True) -> None:
    """Adds `serve`; with full=False a placeholder without its options (help lists it, nothing parses)."""
    if not full:
        sub.add_parser("serve", help=HELP, add_help=False)
        return
    p = sub.add_parser("serve", help=HELP)
    add_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Loaded when the command runs: the supervisor needs the embedder's and search service's packages.
    serve = importlib.import_module("client.serve")
    return int(serve.run(args) or 0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds serve's options to its subcommand parser."""
    parser.description = (
        "Start the embedded default: a local Redis with RediSearch (unless REDIS_URL is set), the CLIP "
        "embedder and the search service, as supervised child processes. Ctrl-C stops them all. The "
        "services read their settings from the environment, TLS (EMBEDDER_TLS_*, SEARCH_TLS_*) and the shared "
        "token (CLIPSEARCH_AUTH_TOKEN[_FILE]) included; with TLS, serve checks them with CLIPSEARCH_TLS_CA "
        "(and CLIPSEARCH_TLS_CERT/_KEY where they require client certificates), as a client would. The web "
        "page (clipsearch web) runs beside them unless --no-web."
    )
    parser.add_argument(
        "--model",
        metavar="ID_OR_DIR",
        help="CLIP model: a Hugging Face id or a local checkpoint directory "
        "(sets CLIP_MODEL; default: $CLIP_MODEL or openai/clip-vit-base-patch16)",
    )
    parser.add_argument(
        "--dtype",
        choices=("auto", "fp32", "bf16", "int8"),
        help="embedder weights and compute precision (sets EMBEDDER_DTYPE; default: "
        "$EMBEDDER_DTYPE or auto, i.e. bf16 where the CPU supports it; int8 is quantized, on the CPU)",
    )
    parser.add_argument(
        "--runtime",
        choices=("auto", "torch", "openvino", "onnxruntime"),
        help="embedder inference runtime (sets EMBEDDER_RUNTIME; default: $EMBEDDER_RUNTIME or auto, i.e. torch "
        "on CUDA, else OpenVINO or ONNX Runtime as the CPU suits, torch where neither is installed)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="where Redis keeps its data (default: $XDG_DATA_HOME/clipsearch, i.e. ~/.local/share/clipsearch)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address the services bind (default 127.0.0.1; 0.0.0.0 for all interfaces)"
    )
    parser.add_argument(
        "--embedder-port",
        type=int,
        default=DEFAULT_EMBEDDER_PORT,
        metavar="PORT",
        help=f"first embedder port (default {DEFAULT_EMBEDDER_PORT}; 0 picks free ports); "
        "further replicas take the following ports, skipping the search and Redis ports",
    )
    parser.add_argument(
        "--search-port",
        type=int,
        default=DEFAULT_SEARCH_PORT,
        metavar="PORT",
        help=f"search service port (default {DEFAULT_SEARCH_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--redis-port",
        type=int,
        default=0,
        metavar="PORT",
        help="local Redis port (default 0: a free one); ignored when REDIS_URL is set",
    )
    parser.add_argument(
        "--embedders",
        type=int,
        default=1,
        metavar="N",
        help="embedder replicas, on consecutive ports from --embedder-port (default 1)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=DEFAULT_START_TIMEOUT,
        metavar="SECONDS",
        help="how long a service may take to become ready, model download included "
        f"(default {DEFAULT_START_TIMEOUT:.0f}); a library still loading after a restart is waited for as long "
        "as it progresses",
    )
    parser.add_argument(
        "--web-port",
        type=int,
        default=DEFAULT_WEB_PORT,
        metavar="PORT",
        help=f"port of the web page (default {DEFAULT_WEB_PORT}; 0 picks a free one); it binds --host like the "
        "services, and beyond loopback needs CLIPSEARCH_WEB_PASSWORD[_FILE] or the services' token",
    )
    parser.add_argument("--no-web", action="store_true", help="do not start the web page")
    weboptions.add_library_arguments(parser)
    parser.add_argument(
        "--no-watch",
        action="store_true",
        help="do not run the indexer that keeps the libraries indexed (clipsearch library add PATH); "
        "`clipsearch watch` runs it alone",
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        metavar="PATH",
        help="once every service is serving, write a JSON object to PATH (atomically; for scripts and tests) "
        "with the keys version (1), pid (serve's), embedder_addresses (list of host:port), search_address, "
        "redis_url (password hidden), model (id), dimension, dtype, device, data_dir, web_url (null without "
        "the page) and client_env (the variables the banner tells a client to export); serve removes the file "
        "when it stops",
    )

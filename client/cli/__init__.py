"""The `clipsearch` command: index, search, classify, stats, delete, collections, reindex, serve and web."""

import os

# gRPC documents ERROR as its default log level, yet with GRPC_VERBOSITY unset its core also prints INFO
# lines (each failed TLS handshake) on stderr, around the command's one-line messages. Set here, by the
# command's entry, before gRPC loads: `client` itself loads no gRPC until a name of it is used.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from .main import build_parser, main
from .options import EXIT_ERROR, EXIT_PARTIAL, EXIT_USAGE, PROG

__all__ = ["EXIT_ERROR", "EXIT_PARTIAL", "EXIT_USAGE", "PROG", "build_parser", "main"]

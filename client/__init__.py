"""The clipsearch client: index images and videos, search by text or image, classify, via the services."""

import os

# gRPC documents ERROR as its default log level, yet with GRPC_VERBOSITY unset its core also prints INFO
# lines (each failed TLS handshake) on stderr, around the CLI's one-line messages. Read when grpc loads.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from .api import Client, SearchFilter
from .config import ClientConfig
from .errors import ClientError, Conflict, InvalidInput, NotFound, ServiceError, ServiceUnavailable
from .ingest import ImageBytes, IngestOptions
from .libraries import Library, LibraryFailure, LibraryStatus
from .reports import Failure, IndexReport, ProgressEvent
from .results import DeleteResult, Hit, Item, LabelScore, Stats

__all__ = [
    "Client",
    "ClientConfig",
    "ClientError",
    "Conflict",
    "DeleteResult",
    "Failure",
    "Hit",
    "ImageBytes",
    "IndexReport",
    "IngestOptions",
    "InvalidInput",
    "Item",
    "LabelScore",
    "Library",
    "LibraryFailure",
    "LibraryStatus",
    "NotFound",
    "ProgressEvent",
    "SearchFilter",
    "ServiceError",
    "ServiceUnavailable",
    "Stats",
]

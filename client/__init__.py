"""The clipsearch client: index images and videos, search by text or image, classify, via the services."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Client, SearchFilter, SearchOptions
    from .config import ClientConfig
    from .errors import (
        ClientError,
        Conflict,
        InvalidInput,
        LibraryChanged,
        LibraryTaken,
        NotFound,
        ServiceError,
        ServiceUnavailable,
    )
    from .ingest.engine import ImageBytes, IngestOptions
    from .ingest.reports import Failure, IndexReport, ProgressEvent
    from .libraries import Library, LibraryFailure, LibraryStatus
    from .results import DeleteResult, Hit, Hits, Item, LabelScore, Stats

# Each public name and the module defining it. They load on first use, so that importing a part of the
# package (the `clipsearch` command's entry) does not load gRPC before the entry has set GRPC_VERBOSITY.
_MODULES = {
    "Client": "api",
    "SearchFilter": "api",
    "SearchOptions": "api",
    "ClientConfig": "config",
    "ClientError": "errors",
    "Conflict": "errors",
    "InvalidInput": "errors",
    "LibraryChanged": "errors",
    "LibraryTaken": "errors",
    "NotFound": "errors",
    "ServiceError": "errors",
    "ServiceUnavailable": "errors",
    "ImageBytes": "ingest.engine",
    "IngestOptions": "ingest.engine",
    "Failure": "ingest.reports",
    "IndexReport": "ingest.reports",
    "ProgressEvent": "ingest.reports",
    "Library": "libraries",
    "LibraryFailure": "libraries",
    "LibraryStatus": "libraries",
    "DeleteResult": "results",
    "Hit": "results",
    "Hits": "results",
    "Item": "results",
    "LabelScore": "results",
    "Stats": "results",
}

__all__ = [
    "Client",
    "ClientConfig",
    "ClientError",
    "Conflict",
    "DeleteResult",
    "Failure",
    "Hit",
    "Hits",
    "ImageBytes",
    "IndexReport",
    "IngestOptions",
    "InvalidInput",
    "Item",
    "LabelScore",
    "Library",
    "LibraryChanged",
    "LibraryFailure",
    "LibraryStatus",
    "LibraryTaken",
    "NotFound",
    "ProgressEvent",
    "SearchFilter",
    "SearchOptions",
    "ServiceError",
    "ServiceUnavailable",
    "Stats",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value

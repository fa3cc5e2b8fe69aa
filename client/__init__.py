"""The clipsearch client: index images and videos, search by text or image, classify, via the services."""
from .api import Client, SearchFilter
from .config import ClientConfig
from .errors import ClientError, InvalidInput, NotFound, ServiceError, ServiceUnavailable
from .ingest import Failure, ImageBytes, IndexReport, IngestOptions, ProgressEvent
from .results import DeleteResult, Hit, Item, LabelScore, Stats

__all__ = [
    "Client", "ClientConfig", "ClientError", "DeleteResult", "Failure", "Hit", "ImageBytes", "IndexReport",
    "IngestOptions", "InvalidInput", "Item", "LabelScore", "NotFound", "ProgressEvent", "SearchFilter",
    "ServiceError", "ServiceUnavailable", "Stats",
]

"""The errors the search service reports to callers; the servicer maps each to a gRPC status."""

from __future__ import annotations


class SearchError(Exception):
    """Base of the errors the service reports to callers."""


class InvalidArgument(SearchError):
    """A malformed request; nothing of it was written."""


class IndexMismatch(SearchError):
    """Redis is not as the configuration expects: the index has other settings, RediSearch is missing, or
    a key under the prefix is not an item."""


class Unavailable(SearchError):
    """Redis cannot be reached (or is loading, or the index is being re-created); retry later."""


class QueryTimeout(SearchError):
    """RediSearch stopped the query at its time limit; its results would have been partial."""


class ModelMismatch(IndexMismatch):
    """A request names an embedding model other than the one whose vectors the index holds."""

"""File paths <-> the percent-encoded `file://` source URIs the search service stores."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

FILE_SCHEME = "file://"

PathLike = str | bytes | os.PathLike[str] | os.PathLike[bytes]


def absolute(path: PathLike) -> Path:
    """The path made absolute with symlinks resolved (it need not exist)."""
    return Path(os.fsdecode(path)).resolve()


def path_to_uri(path: PathLike) -> str:
    """`file:///…` for the resolved path, every byte outside unreserved characters and "/" escaped.

    Works on the path's bytes (os.fsencode), so names that are not valid UTF-8 round-trip.
    """
    raw = os.fsencode(absolute(path))
    return FILE_SCHEME + quote(raw, safe="/")


def dir_uri(path: PathLike) -> str:
    """The URI of a directory with a trailing "/", as the search service's source_dir filter takes it."""
    uri = path_to_uri(path)
    return uri if uri.endswith("/") else uri + "/"


def uri_to_path(uri: str) -> Path:
    """The local path a `file://` URI names (the inverse of path_to_uri)."""
    if not uri.startswith(FILE_SCHEME):
        raise ValueError(f"not a file URI: {uri!r}")
    rest = uri[len(FILE_SCHEME) :]
    # "file://host/path" is not produced here; tolerate an explicit "localhost" authority.
    if rest.startswith("localhost/"):
        rest = rest[len("localhost") :]
    if not rest.startswith("/"):
        raise ValueError(f"not an absolute file URI: {uri!r}")
    return Path(os.fsdecode(unquote_to_bytes(rest)))


def display(uri: str) -> str:
    """A printable form of a source: the path for file URIs (undecodable bytes shown as \\xNN)."""
    try:
        raw = unquote_to_bytes(uri[len(FILE_SCHEME) :]) if uri.startswith(FILE_SCHEME) else None
    except ValueError:
        raw = None
    if raw is None or not raw.startswith(b"/"):
        return uri
    return raw.decode("utf-8", "backslashreplace")


def display_path(path: PathLike) -> str:
    """A printable form of a path as given (not resolved); undecodable bytes shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_within(uri: str, scope: str) -> bool:
    """Whether `uri` is `scope` itself or, for a directory URI ending in "/", anywhere under it."""
    return uri == scope or (scope.endswith("/") and uri.startswith(scope))

"""Checks of request values (ids, source URIs, tags, collections, content hashes, vectors) before any write."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from clipsearch.limits import (
    DEFAULT_COLLECTION,
    MAX_COLLECTION_BYTES,
    MAX_CONTENT_HASH_CHARS,
    MAX_ID_BYTES,
    MAX_IDS,
    MAX_SOURCE_BYTES,
    MAX_TAG_BYTES,
)
from search_service.errors import InvalidArgument

_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_ID_BYTES}}}")
_SOURCE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x7e]*")
_HEX = re.compile(r"[0-9a-f]*")
_PAGE_TOKEN = re.compile(rf"(?:[0-9a-f]{{2}}){{1,{MAX_ID_BYTES}}}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def unique(values: Sequence[str]) -> list[str]:
    """The values without repeats, in first-seen order."""
    return list(dict.fromkeys(values))


def check_id(value: str, where: str) -> None:
    if not _ID.fullmatch(value):
        raise InvalidArgument(
            f"{where} {shorten(value)!r} is not 1 to {MAX_ID_BYTES} printable ASCII characters without spaces"
        )


def check_ids(ids: Sequence[str]) -> None:
    """At most MAX_IDS ids, each valid."""
    if len(ids) > MAX_IDS:
        raise InvalidArgument(f"{len(ids)} ids; at most {MAX_IDS} per call")
    for i, item_id in enumerate(ids):
        check_id(item_id, f"ids[{i}]")


def check_source(value: str, where: str) -> None:
    if not value or len(value) > MAX_SOURCE_BYTES:
        raise InvalidArgument(f"{where} has {len(value)} bytes; a source URI has 1 to {MAX_SOURCE_BYTES}")
    if not _SOURCE.fullmatch(value):
        raise InvalidArgument(
            f"{where} {shorten(value)!r} is not an absolute URI of printable ASCII without "
            "spaces (percent-encode other bytes, e.g. file:///photos/my%20cat.jpg)"
        )


def check_tag(value: str, where: str) -> None:
    size = len(value.encode())
    if not 1 <= size <= MAX_TAG_BYTES:
        raise InvalidArgument(f"{where} has {size} bytes; a tag has 1 to {MAX_TAG_BYTES}")
    if _CONTROL.search(value):
        raise InvalidArgument(f"{where} {shorten(value)!r} contains a control character")


def check_collection(value: str, where: str) -> str:
    """The collection name, "default" when empty."""
    size = len(value.encode())
    if size > MAX_COLLECTION_BYTES:
        raise InvalidArgument(f"{where} has {size} bytes; at most {MAX_COLLECTION_BYTES}")
    return value or DEFAULT_COLLECTION


def check_content_hash(value: str, where: str) -> None:
    if len(value) > MAX_CONTENT_HASH_CHARS or not _HEX.fullmatch(value):
        raise InvalidArgument(
            f"{where} {shorten(value)!r} is not lower-case hex of at most {MAX_CONTENT_HASH_CHARS} digits"
        )


def check_page_token(value: str) -> None:
    """A next_page_token as List issues it: an id in hex, the only text List splices into a query."""
    if value and not _PAGE_TOKEN.fullmatch(value):
        raise InvalidArgument("page_token is not one this service issued: pass next_page_token unchanged")


def check_timestamp(value: float, where: str) -> None:
    if not math.isfinite(value):
        raise InvalidArgument(f"{where} is {value}; it must be finite")


def check_perceptual_hash(value: int, where: str) -> int:
    if not 0 <= value < 1 << 64:
        raise InvalidArgument(f"{where}.perceptual_hash={value}; it must be 64 bits (0 to 2**64 - 1)")
    return value


def vector_bytes(
    vector: np.ndarray | Sequence[float] | None, dimension: int, where: str, numpy_type: str = "<f4"
) -> bytes:
    """The vector as stored (little-endian `numpy_type`: FLOAT32 or FLOAT16), once it has `dimension` finite
    values, not all zero (also once rounded to FLOAT16, whose range ends at 65504)."""
    if vector is None:
        raise InvalidArgument(f"{where} is missing")
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim != 1 or array.shape[0] != dimension:
        size = array.shape[0] if array.ndim == 1 else array.size
        raise InvalidArgument(f"{where} has {size} values; the index expects {dimension}")
    finite = np.isfinite(array)
    if not finite.all():
        position = int(np.flatnonzero(~finite)[0])
        raise InvalidArgument(f"{where}[{position}] is {array[position]}; every value must be finite")
    if not array.any():
        raise InvalidArgument(f"{where} is all zeros; a cosine index cannot compare it")
    if numpy_type == "<f4":
        return array.astype("<f4", copy=False).tobytes()
    # A vector whose values would overflow FLOAT16 (65504) or lose their precision below it (subnormals start
    # at 6e-5) is scaled to a largest value of 1 first: cosine ignores length, so it compares the same.
    largest = float(np.abs(array).max())
    if not 1e-2 <= largest <= 6e4:
        array = array / largest
    return array.astype(numpy_type).tobytes()


def shorten(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "…"

"""How an item is laid out in its Redis HASH: field values, the encoding of tags, and reading it back."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from urllib.parse import quote, unquote

import numpy as np

from clipsearch.limits import DEFAULT_COLLECTION
from search_service import schema as S
from search_service.items import Item, MediaType, Metadata
from search_service.validation import (
    check_collection,
    check_content_hash,
    check_perceptual_hash,
    check_source,
    check_tag,
    check_timestamp,
    unique,
    vector_bytes,
)

# The fields read back for every item besides its id and vector.
ITEM_FIELDS = (
    S.F_COLLECTION,
    S.F_SOURCES,
    S.F_TAGS,
    S.F_CONTENT_HASH,
    S.F_MEDIA_TYPE,
    S.F_TIMESTAMP,
    S.F_FRAME_INDEX,
    S.F_WIDTH,
    S.F_HEIGHT,
    S.F_FRAME_INTERVAL,
    S.F_SPAN_END,
    S.F_PHASH,
)


def encode_tag(value: str) -> str:
    """How a free-text TAG value (a tag, a collection) is indexed: percent-encoded UTF-8.

    RediSearch trims spaces around TAG values and cannot index an empty one; the encoding keeps every
    value exact, and only [A-Za-z0-9_.~%-] reaches the index.
    """
    return quote(value, safe="")


def decode_tag(value: str) -> str:
    return unquote(value)


# A directory's digest in the source_dirs field: the first 16 hex digits (64 bits) of its SHA-1. Every frame
# of a film holds one per ancestor directory, so each digit counts a million times over; two directories of a
# library of a million share a digest with a chance of about 3e-8 (and would then share their filter).
DIR_DIGEST_DIGITS = 16


def source_dir_digests(directory: str) -> list[str]:
    """How a directory URI (ending in "/") is indexed in the source_dirs field, as the Lua scripts write it,
    and as items written before digests were shortened hold it (the whole SHA-1): a filter matches either."""
    full = hashlib.sha1(directory.encode("ascii")).hexdigest()
    return [full[:DIR_DIGEST_DIGITS], full]


def item_fields(item: Item, dimension: int, where: str, numpy_type: str = "<f4") -> tuple[list[str], list[str | bytes]]:
    """The item's sources, and its other fields as field/value pairs, once every value is checked.

    The sources are apart because the upsert script merges them with those already stored.
    """
    blob = vector_bytes(item.vector, dimension, where + ".vector", numpy_type)
    meta = item.metadata
    sources = unique(meta.sources)
    for j, source in enumerate(sources):
        check_source(source, f"{where}.metadata.sources[{j}]")
    tags = unique(meta.tags)
    for j, tag in enumerate(tags):
        check_tag(tag, f"{where}.metadata.tags[{j}]")
    collection = check_collection(meta.collection, f"{where}.metadata.collection")
    check_content_hash(meta.content_hash, f"{where}.metadata.content_hash")
    check_timestamp(meta.timestamp_seconds, f"{where}.metadata.timestamp_seconds")
    check_timestamp(meta.frame_interval_seconds, f"{where}.metadata.frame_interval_seconds")
    check_timestamp(meta.span_end_seconds, f"{where}.metadata.span_end_seconds")
    fields: list[str | bytes] = [
        S.F_VECTOR,
        blob,
        S.F_COLLECTION,
        encode_tag(collection),
        S.F_MEDIA_TYPE,
        meta.media_type.value,
        S.F_TIMESTAMP,
        repr(float(meta.timestamp_seconds)),
        S.F_FRAME_INDEX,
        str(int(meta.frame_index)),
        S.F_WIDTH,
        str(int(meta.width)),
        S.F_HEIGHT,
        str(int(meta.height)),
    ]
    if meta.frame_interval_seconds:
        fields += [S.F_FRAME_INTERVAL, repr(float(meta.frame_interval_seconds))]
    if meta.span_end_seconds:
        fields += [S.F_SPAN_END, repr(float(meta.span_end_seconds))]
    if meta.content_hash:
        fields += [S.F_CONTENT_HASH, meta.content_hash]
    if meta.perceptual_hash is not None:
        fields += [S.F_PHASH, format(check_perceptual_hash(meta.perceptual_hash, f"{where}.metadata"), "016x")]
    if tags:
        fields += [S.F_TAGS, S.TAG_SEPARATOR.join(encode_tag(t) for t in tags)]
    return sources, fields


def item_from_fields(item_id: str, attrs: Mapping[bytes, bytes], with_vectors: bool, numpy_type: str = "<f4") -> Item:
    """The item stored as `attrs` (field name to value; absent fields read as their defaults), its vector
    stored as `numpy_type` and read back as float32."""

    def text(name: str) -> str:
        value = attrs.get(name.encode())
        return value.decode() if value is not None else ""

    def split(name: str) -> tuple[str, ...]:
        value = text(name)
        return tuple(value.split(S.TAG_SEPARATOR)) if value else ()

    vector = None
    if with_vectors and attrs.get(S.F_VECTOR.encode()) is not None:
        vector = np.frombuffer(attrs[S.F_VECTOR.encode()], dtype=numpy_type).astype(np.float32)
    try:
        media_type = MediaType(text(S.F_MEDIA_TYPE))
    except ValueError:
        media_type = MediaType.UNSPECIFIED
    metadata = Metadata(
        sources=split(S.F_SOURCES),
        media_type=media_type,
        collection=decode_tag(text(S.F_COLLECTION)) or DEFAULT_COLLECTION,
        timestamp_seconds=float(text(S.F_TIMESTAMP) or 0.0),
        frame_index=int(text(S.F_FRAME_INDEX) or 0),
        content_hash=text(S.F_CONTENT_HASH),
        width=int(text(S.F_WIDTH) or 0),
        height=int(text(S.F_HEIGHT) or 0),
        tags=tuple(decode_tag(t) for t in split(S.F_TAGS)),
        frame_interval_seconds=float(text(S.F_FRAME_INTERVAL) or 0.0),
        span_end_seconds=float(text(S.F_SPAN_END) or 0.0),
        perceptual_hash=int(text(S.F_PHASH), 16) if text(S.F_PHASH) else None,
    )
    return Item(id=item_id, vector=vector, metadata=metadata)

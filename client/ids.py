"""Content hashes and the item ids derived from them."""

from __future__ import annotations

import hashlib
import io

from clipsearch.limits import DEFAULT_COLLECTION


def normalize_collection(collection: str | None) -> str:
    """The collection name as stored: the search service treats an empty name as "default"."""
    name = (collection or "").strip()
    return name or DEFAULT_COLLECTION


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_stream(stream: io.BufferedReader) -> str:
    return hashlib.file_digest(stream, "sha256").hexdigest()


def _digest(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        encoded = part.encode("utf-8")
        # Length-prefixed so that ("ab", "c") and ("a", "bc") differ.
        h.update(len(encoded).to_bytes(4, "big"))
        h.update(encoded)
    return h.hexdigest()


def image_id(collection: str | None, content_hash: str) -> str:
    """The id of a still image: the same bytes in the same collection are always the same item."""
    return "img-" + _digest(normalize_collection(collection), content_hash)


def frame_id(collection: str | None, video_hash: str, timestamp_seconds: float) -> str:
    """The id of a video frame: the video's content, the collection and the frame's time (in µs)."""
    micros = round(timestamp_seconds * 1_000_000)
    return f"vid-{_digest(normalize_collection(collection), video_hash)}-{micros}"


def video_key(collection: str | None, video_hash: str) -> str:
    """The id prefix every frame of one video shares."""
    return f"vid-{_digest(normalize_collection(collection), video_hash)}-"

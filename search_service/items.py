"""The search service's domain values: items and their metadata, filters, and what calls return."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from clipsearch.limits import DEFAULT_COLLECTION
from search_service.catalog import EmbeddingModel


class MediaType(enum.Enum):
    """What an item was taken from."""

    UNSPECIFIED = "unspecified"
    IMAGE = "image"
    VIDEO_FRAME = "video_frame"


@dataclass(frozen=True)
class Metadata:
    """Everything stored about an item besides its vector."""

    sources: tuple[str, ...] = ()
    media_type: MediaType = MediaType.UNSPECIFIED
    collection: str = DEFAULT_COLLECTION
    timestamp_seconds: float = 0.0
    frame_index: int = 0
    content_hash: str = ""
    width: int = 0
    height: int = 0
    tags: tuple[str, ...] = ()
    frame_interval_seconds: float = 0.0
    span_end_seconds: float = 0.0
    perceptual_hash: int | None = None  # 64 bits, for a still image (see duplicates.py)


@dataclass(frozen=True)
class Item:
    """An id, its vector (None when not requested) and metadata."""

    id: str
    vector: np.ndarray | None
    metadata: Metadata = field(default_factory=Metadata)


@dataclass(frozen=True)
class Filter:
    """Restricts a query, list or delete to items matching every field that is set."""

    collections: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    source_dir: str = ""
    tags: tuple[str, ...] = ()
    media_type: MediaType = MediaType.UNSPECIFIED
    min_timestamp_seconds: float | None = None
    max_timestamp_seconds: float | None = None
    content_hashes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MomentOptions:
    """Query groups matching frames of one video into moments (see moments.py); 0 is the default gap."""

    gap_seconds: float = 0.0


@dataclass(frozen=True)
class DuplicateOptions:
    """Query collapses near-duplicate photos into one match (see duplicates.py); None is the default distance."""

    max_distance: int | None = None


@dataclass(frozen=True)
class Match:
    """A query result: an item, or a moment whose best frame is `item`."""

    item: Item
    score: float  # cosine similarity, higher is closer
    start_seconds: float = 0.0  # for a video frame: the span covered
    end_seconds: float = 0.0
    frames: int = 1  # stored items grouped
    duplicates: tuple[Match, ...] = ()  # the other copies of a collapsed photo, best first
    said_lines: tuple[SaidLine, ...] = ()  # with a said query: the matching cues, in time order
    seen_rank: int = 0  # with a said query and a vector: the ranks in each list fused (0: not in it)
    said_rank: int = 0


@dataclass(frozen=True)
class SaidLine:
    """A cue that matched a said query."""

    start_seconds: float
    end_seconds: float
    text: str
    language: str = ""
    track: str = ""


@dataclass(frozen=True)
class SaidOptions:
    """How a said query matches: the window joining seen and said moments (0: the sampling interval), and
    the languages of the cues searched (empty: all)."""

    window_seconds: float = 0.0
    languages: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpsertResult:
    upserted: int
    created: int


@dataclass(frozen=True)
class DeleteResult:
    deleted: int
    updated: int = 0


@dataclass(frozen=True)
class Page:
    items: list[Item]
    next_page_token: str
    total: int


@dataclass(frozen=True)
class HnswParams:
    m: int
    ef_construction: int
    ef_runtime: int


@dataclass(frozen=True)
class Stats:
    items: int
    collections: list[tuple[str, int]]
    redis_memory_bytes: int
    vector_index_memory_bytes: int
    indexing: bool
    percent_indexed: float
    hnsw: HnswParams
    redis_version: str
    model: EmbeddingModel | None = None
    indexing_eta_seconds: float | None = None  # while the index fills after a restart, if it can tell

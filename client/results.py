"""Typed results of client calls, converted from the protobuf messages."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from clipsearch.v1 import embedder_pb2, search_pb2

from .ingest.media import format_timestamp
from .uris import display

_MEDIA_NAMES = {
    search_pb2.MEDIA_TYPE_IMAGE: "image",
    search_pb2.MEDIA_TYPE_VIDEO_FRAME: "video_frame",
    search_pb2.MEDIA_TYPE_UNSPECIFIED: "unspecified",
}
MEDIA_TYPES = {
    "image": search_pb2.MEDIA_TYPE_IMAGE,
    "video": search_pb2.MEDIA_TYPE_VIDEO_FRAME,
    "video_frame": search_pb2.MEDIA_TYPE_VIDEO_FRAME,
}


@dataclass(frozen=True)
class Item:
    """A stored item: id, where it came from, and what it is."""

    id: str
    sources: tuple[str, ...] = ()
    media: str = "unspecified"
    collection: str = ""
    timestamp_seconds: float | None = None
    frame_index: int | None = None
    content_hash: str = ""
    width: int = 0
    height: int = 0
    tags: tuple[str, ...] = ()

    @property
    def source_uri(self) -> str:
        """The first source URI ("" when none)."""
        return self.sources[0] if self.sources else ""

    @property
    def source(self) -> str:
        """The first source as a printable path."""
        return display(self.sources[0]) if self.sources else ""

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(display(s) for s in self.sources)

    @property
    def time(self) -> str:
        """hh:mm:ss for a video frame, "" for an image."""
        return format_timestamp(self.timestamp_seconds) if self.timestamp_seconds is not None else ""

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["sources"] = list(self.sources)
        data["paths"] = list(self.paths)
        data["tags"] = list(self.tags)
        return data

    @classmethod
    def from_proto(cls, item: search_pb2.Item) -> Item:
        md = item.metadata
        frame = md.media_type == search_pb2.MEDIA_TYPE_VIDEO_FRAME
        return cls(
            id=item.id,
            sources=tuple(md.sources),
            media=_MEDIA_NAMES.get(md.media_type, "unspecified"),
            collection=md.collection,
            timestamp_seconds=md.timestamp_seconds if frame else None,
            frame_index=md.frame_index if frame else None,
            content_hash=md.content_hash,
            width=md.width,
            height=md.height,
            tags=tuple(md.tags),
        )


@dataclass(frozen=True)
class SaidLine:
    """A subtitle line that matched a said search: its span in the video, text, language and track."""

    start_seconds: float
    end_seconds: float
    text: str
    language: str = ""
    track: str = ""

    @classmethod
    def from_proto(cls, line: search_pb2.SaidLine) -> SaidLine:
        return cls(line.start_seconds, line.end_seconds, line.text, line.language, line.track)


@dataclass(frozen=True)
class SubtitleTrack:
    """A video's stored subtitle track: its name, language, and cues (start, end, text) in time order."""

    name: str
    language: str
    cues: tuple[tuple[float, float, str], ...]

    @classmethod
    def from_proto(cls, track: search_pb2.CueTrack) -> SubtitleTrack:
        return cls(track.name, track.language, tuple((c.start_seconds, c.end_seconds, c.text) for c in track.cues))


@dataclass(frozen=True)
class Hit(Item):
    """A search result: the item, its cosine similarity to the query and its rank (1 = best).

    For a video frame, start_seconds to end_seconds is the span the hit covers and frames how many stored
    frames it groups (a moment); the item is the best of them, at timestamp_seconds. With duplicates
    collapsed, duplicates are the other copies of the photo (each with its own score), best first.
    """

    score: float = 0.0
    rank: int = 0
    start_seconds: float | None = None
    end_seconds: float | None = None
    frames: int = 1
    duplicates: tuple[Hit, ...] = ()
    # With a said search: the subtitle lines that matched, the query's words as they match (to highlight),
    # and the hit's rank among what is seen and what is said (0: not among them).
    said_lines: tuple[SaidLine, ...] = ()
    said_words: tuple[str, ...] = ()
    seen_rank: int = 0
    said_rank: int = 0

    @property
    def text(self) -> str:
        """The matched subtitle lines, one per line ("" when none matched)."""
        return "\n".join(line.text for line in self.said_lines)

    @property
    def span(self) -> str:
        """hh:mm:ss–hh:mm:ss for a video hit covering more than an instant, else its time ("" for an image)."""
        if self.start_seconds is None or self.end_seconds is None or self.end_seconds <= self.start_seconds:
            return self.time
        return f"{format_timestamp(self.start_seconds)}–{format_timestamp(self.end_seconds)}"

    @classmethod
    def from_match(cls, match: search_pb2.Match, rank: int, said_words: tuple[str, ...] = ()) -> Hit:
        base = Item.from_proto(match.item)
        start = end = base.timestamp_seconds
        if start is not None and (match.start_seconds <= start <= match.end_seconds or match.said_lines):
            # Otherwise a server that does not report spans: the frame covers its own instant.
            start, end = match.start_seconds, match.end_seconds
        return cls(
            **{**base.__dict__, "score": float(match.score), "rank": rank},
            start_seconds=start,
            end_seconds=end,
            frames=max(1, match.frames),
            duplicates=tuple(cls.from_match(d, rank) for d in match.duplicates),
            said_lines=tuple(SaidLine.from_proto(line) for line in match.said_lines),
            said_words=said_words if match.said_lines else (),
            seen_rank=match.seen_rank,
            said_rank=match.said_rank,
        )

    def to_json(self) -> dict[str, object]:
        data = {"rank": self.rank, "score": self.score, **super().to_json()}
        # A copy's own rank and copies say nothing: it shares the hit's rank and has none.
        data["duplicates"] = [
            {k: v for k, v in d.to_json().items() if k not in ("rank", "duplicates")} for d in self.duplicates
        ]
        data["text"] = self.text
        data["said_lines"] = [asdict(line) for line in self.said_lines]
        data["said_words"] = list(self.said_words)
        return data


class Hits(list[Hit]):
    """Search results, best first; partial while the service is still indexing the library after a restart
    (the hits come from the percent_indexed of it indexed so far, and better ones may be missing)."""

    def __init__(self, hits: list[Hit], *, partial: bool = False, percent_indexed: float = 100.0) -> None:
        super().__init__(hits)
        self.partial = partial
        self.percent_indexed = percent_indexed

    @property
    def note(self) -> str:
        """ "Partial results: the library is still loading (43%)" while partial, else ""."""
        if not self.partial:
            return ""
        return f"Partial results: the library is still loading ({min(99, int(self.percent_indexed))}%)"


@dataclass(frozen=True)
class LabelScore:
    """One label's zero-shot score."""

    label: str
    probability: float
    logit: float
    cosine: float

    @classmethod
    def from_proto(cls, score: embedder_pb2.LabelScore) -> LabelScore:
        return cls(score.label, float(score.probability), float(score.logit), float(score.cosine))

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class DeleteResult:
    """Items deleted, and items that lost a source but were kept for another."""

    deleted: int
    updated: int

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Stats:
    """The search service's counts and index settings."""

    items: int
    collections: dict[str, int] = field(default_factory=dict)
    redis_memory_bytes: int = 0
    vector_index_memory_bytes: int = 0
    indexing: bool = False
    percent_indexed: float = 100.0
    index_name: str = ""
    algorithm: str = ""
    dimension: int = 0
    distance_metric: str = ""
    redis_version: str = ""
    # While the library comes back after a restart: Redis loading it (nothing else is known yet), then the
    # index filling (indexing); loading_message says how far ("Loading the library: 43%, about 2 min left").
    loading: bool = False
    loading_percent: float = 0.0
    loading_message: str = ""

    @classmethod
    def from_proto(cls, stats: search_pb2.StatsResponse) -> Stats:
        settings = stats.settings
        return cls(
            items=stats.items,
            collections={c.name: c.items for c in stats.collections},
            redis_memory_bytes=stats.redis_memory_bytes,
            vector_index_memory_bytes=stats.vector_index_memory_bytes,
            indexing=stats.indexing,
            percent_indexed=float(stats.percent_indexed),
            index_name=settings.index_name,
            algorithm=search_pb2.Algorithm.Name(settings.algorithm).removeprefix("ALGORITHM_"),
            dimension=settings.dimension,
            distance_metric=settings.distance_metric,
            redis_version=stats.redis_version,
            loading=stats.loading,
            loading_percent=float(stats.loading_percent),
            loading_message=stats.loading_message,
        )

    def to_json(self) -> dict[str, object]:
        return asdict(self)

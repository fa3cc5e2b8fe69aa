"""The JSON documents of the web API, as pydantic models (they are also its OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ErrorDoc(BaseModel):
    """Every error: one clear sentence."""

    error: str
    reason: str | None = Field(
        default=None,
        description="a stable code for the error, for clients that explain it in their own words (the page "
        "does, in its language): model_mismatch (HTTP 409: the index holds another embedding model's vectors; "
        "`clipsearch reindex` embeds the library again with the embedder's model), service_unavailable, "
        "service_timeout, service_refused, invalid_request, not_found, file_unavailable, upload_too_large, "
        "undecodable",
    )
    params: dict[str, str] | None = Field(
        default=None, description="what the message names, for service errors: service (embedder or search), address"
    )


class DuplicateDoc(BaseModel):
    """A near-duplicate copy of a photo hit (with collapse_duplicates): the same picture resized or re-encoded."""

    id: str
    score: float
    name: str = Field(description="the file name, without directories")
    source: str = Field(description="the file's path, for display")
    thumbnail_url: str


class SaidLineDoc(BaseModel):
    """A subtitle line that matched a said search."""

    start_seconds: float
    end_seconds: float
    text: str
    language: str = ""
    track: str = Field(default="", description="the track it is from, e.g. film.zh.srt or embedded #2 (subrip)")


class SubtitleTrackDoc(BaseModel):
    """A subtitle track stored for a video."""

    index: int
    name: str
    language: str
    cues: int
    url: str = Field(description="the track as WebVTT")


class HitDoc(BaseModel):
    """One result: an indexed image or video frame, with its score and where to fetch its media."""

    id: str
    score: float
    media: Literal["image", "video"]
    name: str = Field(description="the file name, without directories")
    source: str = Field(description="the file's path, for display")
    collection: str
    timestamp_seconds: float | None = Field(description="a video frame's time in the video; null for an image")
    time: str | None = Field(description='a video frame\'s time as "hh:mm:ss"; null for an image')
    start_seconds: float | None = Field(
        default=None, description="a video hit's span in the video (a moment's first to last frame); null for an image"
    )
    end_seconds: float | None = Field(default=None)
    span: str | None = Field(default=None, description='the span as "hh:mm:ss–hh:mm:ss"; null for an instant')
    frames: int = Field(default=1, description="how many indexed frames the hit groups")
    thumbnail_url: str
    media_url: str
    playable: bool = Field(
        description="whether browsers play (a video) or show (a photo: not HEIC or TIFF, for instance) the file"
    )
    mime: str
    duplicates: list[DuplicateDoc] = Field(
        default_factory=list, description="with collapse_duplicates: the photo's other copies, best first"
    )
    said_lines: list[SaidLineDoc] = Field(
        default_factory=list, description="with said: the subtitle lines that matched, in time order"
    )
    said_words: list[str] = Field(default_factory=list, description="with said: the words to highlight in them")


class ItemDoc(HitDoc):
    """An item with every path it was indexed from."""

    sources: list[str]


class QueryDoc(BaseModel):
    text: str | None
    like: str | None
    image: bool
    said: str | None = None


class SearchDoc(BaseModel):
    """A page of results, best first; none scores below the query's min_score."""

    query: QueryDoc
    offset: int
    top: int
    hits: list[HitDoc]
    has_more: bool = Field(description="whether another page may follow")
    partial: bool = Field(
        default=False, description="the library is still loading after a restart: better matches may be missing"
    )
    percent_indexed: float = Field(default=100.0, description="how much of the library the search saw, 0 to 100")


class ClassifyRequestDoc(BaseModel):
    """Zero-shot labels for an indexed item, from its stored vector."""

    id: str
    labels: list[str] = Field(min_length=1, max_length=256)
    template: str = Field(default="", max_length=1000, description='a prompt around each label, "{}" marks it')


class LabelDoc(BaseModel):
    label: str
    probability: float


class ClassifyDoc(BaseModel):
    labels: list[LabelDoc] = Field(description="by probability, highest first")


class ServiceDoc(BaseModel):
    up: bool
    address: str
    message: str = Field(description="when down: what is wrong and what to do")
    reason: str | None = Field(default=None, description="when down: the error's stable code (see ErrorDoc)")
    model: str | None = None


class ServicesDoc(BaseModel):
    embedder: ServiceDoc
    search: ServiceDoc


class StatsDoc(BaseModel):
    """The library's size, and whether each service answers (reported, never an error)."""

    items: int
    collections: dict[str, int]
    services: ServicesDoc
    loading: str = Field(
        default="",
        description='while the library comes back after a restart, what to show: "Loading the library: 43%, '
        'about 2 min left. Searches start once it is loaded."',
    )

"""What is said in videos: subtitle cues as Redis HASHes in a full-text RediSearch index of their own."""

from __future__ import annotations

import builtins  # CueStore.list shadows list in the class's signatures
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from search_service import schema as S
from search_service.cuetext import index_form
from search_service.errors import InvalidArgument, QueryTimeout
from search_service.index import SearchIndex
from search_service.query import QueryBuilder, params_args
from search_service.redis_calls import execute, is_missing_index
from search_service.storage import encode_tag
from search_service.validation import check_collection, check_content_hash, unique

MAX_TRACKS = 64
MAX_TRACK_CUES = 20_000
MAX_VIDEO_CUES = 100_000
MAX_CUE_TEXT_BYTES = 2000
MAX_NAME_BYTES = 256
MAX_LANGUAGE_BYTES = 32

# Cue hash fields.
C_TEXT = "text"  # the line as indexed (index_form): TEXT
C_LINE = "line"  # the line as written: stored only
C_START = "start"
C_END = "end"
C_LANGUAGE = "lang"  # TAG, percent-encoded; "-" where unknown
C_TRACK = "track"  # the track's name: stored only
C_COLLECTION = "collection"  # TAG, percent-encoded as items' are
C_CONTENT_HASH = "content_hash"  # TAG
HIT_FIELDS = (C_COLLECTION, C_CONTENT_HASH, C_START, C_END, C_LINE, C_LANGUAGE, C_TRACK)
_UNKNOWN_LANGUAGE = "-"


@dataclass(frozen=True)
class Cue:
    start_seconds: float
    end_seconds: float
    text: str


@dataclass(frozen=True)
class CueTrack:
    name: str
    language: str
    cues: tuple[Cue, ...]


@dataclass(frozen=True)
class CueHit:
    """A cue that matched a said query, with its BM25 relevance."""

    collection: str  # percent-encoded, as stored
    content_hash: str
    start: float
    end: float
    line: str
    language: str
    track: str
    score: float


class CueStore:
    """The cues of the videos of one search index: the keys `clipsearch-cues:<index>:...` and their index."""

    def __init__(self, index: SearchIndex) -> None:
        self.items = index
        name = index.configured.name
        self.index_name = f"clipsearch-cues:{name}"
        self.cue_prefix = f"clipsearch-cues:{name}:c:"
        self.video_prefix = f"clipsearch-cues:{name}:v:"
        self._ready = False

    @property
    def _client(self) -> redis.Redis:
        return self.items.client

    def create_args(self) -> list[str]:
        return [
            *("FT.CREATE", self.index_name, "ON", "HASH", "PREFIX", "1", self.cue_prefix),
            # Every word counts: "to be or not to be" is all stopwords in RediSearch's default list.
            *("STOPWORDS", "0", "SCHEMA", C_TEXT, "TEXT"),
            *S.TagField(C_LANGUAGE).args(),
            *S.TagField(C_COLLECTION).args(),
            *S.TagField(C_CONTENT_HASH).args(),
        ]

    @contextmanager
    def _redis(self) -> Iterator[None]:
        """Redis errors as the item index reports them; the cue index is created when missing."""
        with self.items.redis_errors():
            if not self._ready:
                try:
                    execute(self._client, "FT.INFO", self.index_name)
                except redis.ResponseError as e:
                    if not is_missing_index(e):
                        raise
                    try:
                        execute(self._client, *self.create_args())
                    except redis.ResponseError as created:
                        if "already exists" not in str(created).lower():
                            raise
                self._ready = True
            try:
                yield
            except redis.ResponseError as e:
                if is_missing_index(e):
                    self._ready = False
                raise

    def _video_key(self, collection: str, content_hash: str) -> str:
        return f"{self.video_prefix}{collection}:{content_hash}"

    def _cue_key(self, collection: str, content_hash: str, n: int) -> str:
        return f"{self.cue_prefix}{collection}:{content_hash}:{n}"

    # --- writes -------------------------------------------------------------------------------------

    def write(self, collection: str, content_hash: str, signature: str, tracks: Sequence[CueTrack]) -> int:
        """Replaces every cue of the video; returns how many are stored."""
        coll, content_hash = _video(collection, content_hash)
        if len(signature.encode()) > MAX_NAME_BYTES:
            raise InvalidArgument(f"signature is {len(signature.encode())} bytes; at most {MAX_NAME_BYTES}")
        if len(tracks) > MAX_TRACKS:
            raise InvalidArgument(f"{len(tracks)} tracks; at most {MAX_TRACKS}")
        rows: list[dict[Any, Any]] = []
        for i, track in enumerate(tracks):
            where = f"tracks[{i}]"
            _check_text(track.name, f"{where}.name", MAX_NAME_BYTES, allow_empty=False)
            _check_text(track.language, f"{where}.language", MAX_LANGUAGE_BYTES, allow_empty=True)
            if len(track.cues) > MAX_TRACK_CUES:
                raise InvalidArgument(f"{where} has {len(track.cues)} cues; at most {MAX_TRACK_CUES}")
            language = encode_tag(track.language.lower()) if track.language else _UNKNOWN_LANGUAGE
            for j, cue in enumerate(track.cues):
                _check_cue(cue, f"{where}.cues[{j}]")
                rows.append(
                    {
                        C_TEXT: index_form(cue.text),
                        C_LINE: cue.text,
                        C_START: repr(float(cue.start_seconds)),
                        C_END: repr(float(cue.end_seconds)),
                        C_LANGUAGE: language,
                        C_TRACK: track.name,
                        C_COLLECTION: coll,
                        C_CONTENT_HASH: content_hash,
                    }
                )
        if len(rows) > MAX_VIDEO_CUES:
            raise InvalidArgument(f"{len(rows)} cues for one video; at most {MAX_VIDEO_CUES}")
        record: dict[Any, Any] = {
            "signature": signature,
            "count": str(len(rows)),
            "tracks": json.dumps([[t.name, t.language] for t in tracks], ensure_ascii=False),
        }
        video_key = self._video_key(coll, content_hash)
        with self._redis(), self._client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    execute(pipe, "WATCH", video_key)
                    old = int(pipe.hget(video_key, "count") or 0)
                    pipe.multi()
                    for start in range(0, old, 1000):
                        pipe.delete(
                            *(self._cue_key(coll, content_hash, n) for n in range(start, min(old, start + 1000)))
                        )
                    for n, row in enumerate(rows):
                        pipe.hset(self._cue_key(coll, content_hash, n), mapping=row)
                    pipe.delete(video_key)
                    pipe.hset(video_key, mapping=record)
                    pipe.execute()
                    return len(rows)
                except redis.WatchError:
                    continue

    def delete_videos(self, videos: Iterable[tuple[str, str]]) -> int:
        """Deletes the cues of the videos given as (percent-encoded collection, content hash)."""
        deleted = 0
        with self._redis():
            for coll, content_hash in videos:
                video_key = self._video_key(coll, content_hash)
                count = int(self._client.hget(video_key, "count") or 0)
                keys = [self._cue_key(coll, content_hash, n) for n in range(count)]
                for start in range(0, len(keys), 1000):
                    deleted += int(self._client.delete(*keys[start : start + 1000]))
                self._client.delete(video_key)
        return deleted

    def delete_collection(self, collection: str) -> int:
        coll = encode_tag(check_collection(collection, "collection"))
        with self._redis():
            videos = [
                key.decode()[len(self.video_prefix) :].rsplit(":", 1)
                for key in self._client.scan_iter(match=f"{self.video_prefix}{coll}:*", count=1000)
            ]
        return self.delete_videos((c, h) for c, h in videos)

    # --- which videos a delete may leave without frames ---------------------------------------------

    def videos_of_ids(self, ids: Sequence[str]) -> set[tuple[str, str]]:
        """(collection, content hash) of the stored items among `ids` that have a content hash."""
        prefix = self.items.schema.prefix
        with self._redis():
            pipe = self._client.pipeline(transaction=False)
            for item_id in ids:
                pipe.hmget(prefix + item_id, [S.F_COLLECTION, S.F_CONTENT_HASH])
            replies = pipe.execute(raise_on_error=False)
        return {
            (r[0].decode(), r[1].decode())
            for r in replies
            if not isinstance(r, Exception) and r[0] is not None and r[1] is not None
        }

    def videos_of_sources(self, sources: Sequence[str], collection: str | None) -> set[tuple[str, str]]:
        builder = QueryBuilder().tags(S.F_SOURCES, unique(sources))
        if collection:
            builder.tags(S.F_COLLECTION, [encode_tag(check_collection(collection, "collection"))])
        query, params = builder.build()
        with self._redis():
            reply = execute(
                self._client,
                *("FT.AGGREGATE", self.items.read_index, query, "LOAD", "2", f"@{S.F_COLLECTION}"),
                *(f"@{S.F_CONTENT_HASH}", "GROUPBY", "2", f"@{S.F_COLLECTION}", f"@{S.F_CONTENT_HASH}"),
                *params_args(params),
                *("DIALECT", "2"),
            )
        found = set()
        for result in reply[b"results"]:
            attrs = result.get(b"extra_attributes", {})
            coll, content_hash = attrs.get(S.F_COLLECTION.encode()), attrs.get(S.F_CONTENT_HASH.encode())
            if coll and content_hash:
                found.add((coll.decode(), content_hash.decode()))
        return found

    def drop_orphans(self, videos: Iterable[tuple[str, str]]) -> int:
        """Deletes the cues of those videos that no stored item holds any more."""
        videos = sorted(videos)
        if not videos:
            return 0
        with self._redis():
            pipe = self._client.pipeline(transaction=False)
            for coll, content_hash in videos:
                query, params = (
                    QueryBuilder().tags(S.F_COLLECTION, [coll]).tags(S.F_CONTENT_HASH, [content_hash]).build()
                )
                execute(
                    pipe,
                    "FT.SEARCH",
                    self.items.read_index,
                    query,
                    "LIMIT",
                    "0",
                    "0",
                    *params_args(params),
                    "DIALECT",
                    "2",
                )
            replies = pipe.execute()
        orphans = [v for v, reply in zip(videos, replies, strict=True) if int(reply[b"total_results"]) == 0]
        return self.delete_videos(orphans)

    # --- reads --------------------------------------------------------------------------------------

    def list(
        self, collection: str, content_hash: str, *, signature_only: bool = False
    ) -> tuple[bool, str, builtins.list[CueTrack]]:
        """Whether anything was written for the video, its signature, and (unless signature_only) its tracks."""
        coll, content_hash = _video(collection, content_hash)
        with self._redis():
            record: dict[bytes, bytes] = self._client.hgetall(  # type: ignore[assignment]
                self._video_key(coll, content_hash)
            )
            if not record:
                return False, "", []
            signature = record.get(b"signature", b"").decode()
            if signature_only:
                return True, signature, []
            count = int(record.get(b"count", b"0"))
            pipe = self._client.pipeline(transaction=False)
            for n in range(count):
                pipe.hmget(self._cue_key(coll, content_hash, n), [C_START, C_END, C_LINE, C_TRACK])
            rows = pipe.execute()
        names = json.loads(record.get(b"tracks", b"[]").decode())
        by_track: dict[str, list[Cue]] = {str(name): [] for name, _ in names}
        for row in rows:
            if row[0] is None:
                continue
            cue = Cue(float(row[0]), float(row[1]), row[2].decode())
            by_track.setdefault(row[3].decode(), []).append(cue)
        languages = {str(name): str(language) for name, language in names}
        return (
            True,
            signature,
            [
                CueTrack(name, languages.get(name, ""), tuple(sorted(cues, key=lambda c: c.start_seconds)))
                for name, cues in by_track.items()
            ],
        )

    def search(
        self, expression: str, filter_clauses: QueryBuilder, languages: Sequence[str], n: int
    ) -> tuple[builtins.list[CueHit], int]:
        """The n most relevant cues for the said expression (cuetext.parse_said) and how many match in all."""
        builder = filter_clauses
        if languages:
            builder.tags(C_LANGUAGE, [encode_tag(language.lower()) for language in unique(languages)])
        clauses, params = builder.build()
        query = f"@{C_TEXT}:({expression})" + ("" if clauses == "*" else f" {clauses}")
        with self._redis():
            reply: dict[bytes, Any] = execute(
                self._client,
                *("FT.SEARCH", self.index_name, query, "WITHSCORES", "SCORER", "BM25"),
                *("RETURN", str(len(HIT_FIELDS)), *HIT_FIELDS, "LIMIT", "0", str(n)),
                *params_args(params),
                *("DIALECT", "2", "TIMEOUT", self.items.query_timeout_ms),
            )
        if any(b"timeout" in bytes(w).lower() for w in reply.get(b"warning", [])):
            raise QueryTimeout(
                f"RediSearch stopped the said query at its time limit ({self.items.query_timeout_ms} ms); "
                "use more words or raise SEARCH_QUERY_TIMEOUT_MS"
            )
        hits = []
        for result in reply[b"results"]:
            attrs = result.get(b"extra_attributes", {})
            if attrs.get(C_START.encode()) is None:
                continue
            language = attrs.get(C_LANGUAGE.encode(), b"").decode()
            hits.append(
                CueHit(
                    collection=attrs.get(C_COLLECTION.encode(), b"").decode(),
                    content_hash=attrs.get(C_CONTENT_HASH.encode(), b"").decode(),
                    start=float(attrs[C_START.encode()]),
                    end=float(attrs.get(C_END.encode(), attrs[C_START.encode()])),
                    line=attrs.get(C_LINE.encode(), b"").decode(),
                    language="" if language == _UNKNOWN_LANGUAGE else language,
                    track=attrs.get(C_TRACK.encode(), b"").decode(),
                    score=float(result.get(b"score", 0.0)),
                )
            )
        return hits, int(reply[b"total_results"])


def _video(collection: str, content_hash: str) -> tuple[str, str]:
    coll = encode_tag(check_collection(collection, "collection"))
    check_content_hash(content_hash, "content_hash")
    if not content_hash:
        raise InvalidArgument("content_hash is empty: name the video by its frames' content_hash")
    return coll, content_hash


def _check_text(value: str, where: str, limit: int, *, allow_empty: bool) -> None:
    size = len(value.encode())
    if size > limit or (size == 0 and not allow_empty) or "\x00" in value:
        raise InvalidArgument(f"{where} is {size} bytes; it must be {0 if allow_empty else 1} to {limit}, without NUL")


def _check_cue(cue: Cue, where: str) -> None:
    start, end = cue.start_seconds, cue.end_seconds
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        raise InvalidArgument(f"{where}: start {start} and end {end} must be finite, 0 <= start < end")
    _check_text(cue.text, f"{where}.text", MAX_CUE_TEXT_BYTES, allow_empty=False)

"""Said queries: matching cues grouped into moments, each shown by a frame of its video, and fused with what
is seen by reciprocal rank fusion."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from clipsearch.limits import DEFAULT_K, MAX_K, MAX_WINDOW
from search_service import schema as S
from search_service.catalog import EmbeddingModel
from search_service.cues import CueHit, CueStore
from search_service.cuetext import SaidQuery, parse_said
from search_service.errors import InvalidArgument
from search_service.grouping import WINDOWS
from search_service.index import SearchIndex
from search_service.items import (
    DuplicateOptions,
    Filter,
    Item,
    Match,
    MediaType,
    MomentOptions,
    SaidLine,
    SaidOptions,
)
from search_service.moments import check_gap
from search_service.query import filter_query, params_args
from search_service.redis_calls import execute
from search_service.resolve import CATALOG_MAX_AGE_SECONDS
from search_service.storage import ITEM_FIELDS, encode_tag, item_from_fields
from search_service.validation import unique

# Reciprocal rank fusion's constant (Cormack, Clarke and Buettcher, 2009): a moment in a list at rank r
# adds 1 / (RRF_K + r). Ranks, not scores, are fused: cosine similarities and BM25 relevance have no
# common scale.
RRF_K = 60
DEFAULT_CUE_GAP_SECONDS = 2.0  # matching cues of a video this close form one moment, as frames do
DEFAULT_WINDOW_SECONDS = 1.0  # a seen and a said moment this close are one, for frames without an interval
MAX_WINDOW_SECONDS = 3600.0


@dataclass
class SaidMoment:
    """Matching cues of one video that follow each other: its span, best relevance and lines."""

    collection: str  # percent-encoded, as stored
    content_hash: str
    start: float
    end: float
    score: float
    lines: list[SaidLine] = field(default_factory=list)


def group_hits(hits: Sequence[CueHit], gap_seconds: float) -> list[SaidMoment]:
    """Moments of cue hits, most relevant first: cues of one video each starting within the gap after the
    moment so far are one. The same line in two tracks (an embedded track and a file beside it) is kept once."""
    videos: dict[tuple[str, str], list[CueHit]] = {}
    for hit in hits:
        videos.setdefault((hit.collection, hit.content_hash), []).append(hit)
    moments: list[SaidMoment] = []
    for (collection, content_hash), video in videos.items():
        video.sort(key=lambda h: (h.start, h.end))
        current: SaidMoment | None = None
        for hit in video:
            if current is None or hit.start - current.end > gap_seconds:
                current = SaidMoment(collection, content_hash, hit.start, hit.end, hit.score)
                moments.append(current)
            current.end = max(current.end, hit.end)
            current.score = max(current.score, hit.score)
            if not any(line.text == hit.line and abs(line.start_seconds - hit.start) < 1 for line in current.lines):
                current.lines.append(SaidLine(hit.start, hit.end, hit.line, hit.language, hit.track))
    moments.sort(key=lambda m: (-m.score, m.collection, m.content_hash, m.start))
    return moments


class SaidSearch:
    """Said queries over a CueStore, their moments shown by the frames of the item index."""

    def __init__(self, index: SearchIndex, cues: CueStore) -> None:
        self._index = index
        self._cues = cues

    def query(
        self,
        said: str,
        vector: np.ndarray | None,
        *,
        k: int = 0,
        offset: int = 0,
        filter: Filter | None = None,
        min_score: float | None = None,
        ef_runtime: int = 0,
        with_vectors: bool = False,
        moments: MomentOptions | None = None,
        duplicates: DuplicateOptions | None = None,
        model: EmbeddingModel | None = None,
        options: SaidOptions | None = None,
    ) -> tuple[list[Match], SaidQuery]:
        """Moments matching `said`; with `vector`, fused with the moments nearest to it (see search.proto)."""
        parsed = parse_said(said)
        options = options or SaidOptions()
        window = options.window_seconds
        if not math.isfinite(window) or not 0 <= window <= MAX_WINDOW_SECONDS:
            raise InvalidArgument(
                f"said_options.window_seconds={window}; it must be finite, 0 to {MAX_WINDOW_SECONDS:g}"
            )
        k = DEFAULT_K if k == 0 else k
        if not 1 <= k <= MAX_K:
            raise InvalidArgument(f"k={k}; it must be 1 to {MAX_K} (0 means {DEFAULT_K})")
        if offset < 0:
            raise InvalidArgument(f"offset={offset}; it must be >= 0")
        wanted = offset + k
        limit = MAX_WINDOW if vector is None else MAX_K
        if wanted > limit:
            raise InvalidArgument(f"offset + k = {wanted}; it must be at most {limit} for a said query")
        gap = check_gap(moments.gap_seconds) if moments is not None else 0.0
        filter = filter or Filter()
        languages = tuple(unique(options.languages))
        if vector is None:
            found = self._said_moments(parsed, filter, languages, gap, wanted, with_vectors)
            return [_said_match(m, item, m.score, 0) for m, item in found][offset:wanted], parsed
        pool = min(MAX_K, max(100, 2 * wanted))
        seen = self._index.query(
            vector,
            k=pool,
            filter=filter,
            min_score=min_score,
            ef_runtime=ef_runtime,
            with_vectors=with_vectors,
            moments=moments or MomentOptions(),
            duplicates=duplicates,
            model=model,
        )
        heard = self._said_moments(parsed, filter, languages, gap, pool, with_vectors)
        return fuse(seen, heard, window)[offset:wanted], parsed

    def _said_moments(
        self, parsed: SaidQuery, filter: Filter, languages: Sequence[str], gap: float, wanted: int, with_vectors: bool
    ) -> list[tuple[SaidMoment, Item]]:
        """The `wanted` best said moments whose video has a frame matching the filter, with that frame (the
        last at or before the moment's start, else the first after)."""
        shown: dict[tuple[str, str, float], Item | None] = {}
        found: list[tuple[SaidMoment, Item]] = []
        for window in WINDOWS:
            clauses = filter_query(Filter(collections=filter.collections, content_hashes=filter.content_hashes))
            hits, total = self._cues.search(parsed.expression, clauses, languages, window)
            grouped = group_hits(hits, gap or DEFAULT_CUE_GAP_SECONDS)
            found = []
            pending = [m for m in grouped if (m.collection, m.content_hash, m.start) not in shown]
            # Frames are looked up best first, no more than the moments still missing (and two to spare for
            # moments whose video has no frame matching the filter).
            while pending:
                need = wanted - sum(1 for m in grouped if shown.get((m.collection, m.content_hash, m.start)))
                if need <= 0:
                    break
                batch, pending = pending[: need + 2], pending[need + 2 :]
                for m, item in zip(batch, self._frames(batch, filter, with_vectors), strict=True):
                    shown[(m.collection, m.content_hash, m.start)] = item
            for m in grouped:
                item = shown.get((m.collection, m.content_hash, m.start))
                if item is not None:
                    found.append((m, item))
            if len(found) >= wanted or total <= window:
                break
        return found[:wanted]

    def _frames(self, moments: Sequence[SaidMoment], filter: Filter, with_vectors: bool) -> list[Item | None]:
        """For each moment, the frame of its video that shows it, among those matching the filter: the last at
        or before its start, else the first after it (one search per moment, a second only where needed)."""
        items: list[Item | None] = [None] * len(moments)
        todo = list(range(len(moments)))
        for before in (True, False):
            found = self._frame_searches([moments[i] for i in todo], filter, with_vectors, before=before)
            for i, item in zip(todo, found, strict=True):
                items[i] = item
            todo = [i for i in todo if items[i] is None]
            if not todo:
                break
        return items

    def _frame_searches(
        self, moments: Sequence[SaidMoment], filter: Filter, with_vectors: bool, *, before: bool
    ) -> list[Item | None]:
        index = self._index
        index.require_ready(CATALOG_MAX_AGE_SECONDS)
        fields = [S.F_ID, *ITEM_FIELDS, *([S.F_VECTOR] if with_vectors else [])]
        prefix = index.schema.prefix.encode()
        with index.redis_errors():
            pipe = index.client.pipeline(transaction=False)
            for m in moments:
                builder = filter_query(filter)
                builder.tags(S.F_COLLECTION, [m.collection]).tags(S.F_CONTENT_HASH, [m.content_hash])
                builder.tags(S.F_MEDIA_TYPE, [MediaType.VIDEO_FRAME.value])
                low, high = (None, m.start) if before else (m.start, None)
                builder.numeric(S.F_TIMESTAMP, low, high)
                query, params = builder.build()
                execute(
                    pipe,
                    *("FT.SEARCH", index.read_index, query, "SORTBY", S.F_TIMESTAMP, "DESC" if before else "ASC"),
                    *("LIMIT", "0", "1", "RETURN", str(len(fields)), *fields, *params_args(params), "DIALECT", "2"),
                )
            replies = pipe.execute()
        items: list[Item | None] = []
        for reply in replies:
            results = reply[b"results"]
            if not results:
                items.append(None)
                continue
            key = results[0][b"id"]
            attrs = results[0].get(b"extra_attributes", {})
            items.append(item_from_fields(key[len(prefix) :].decode("ascii"), attrs, with_vectors))
        return items


def _said_match(m: SaidMoment, item: Item, score: float, rank: int) -> Match:
    return Match(item, score, m.start, m.end, 1, said_lines=tuple(m.lines), said_rank=rank)


def fuse(seen: Sequence[Match], heard: Sequence[tuple[SaidMoment, Item]], window_seconds: float) -> list[Match]:
    """Reciprocal rank fusion of the seen and the said moments, best first.

    Taken in seen order, a seen moment of a video joins the best-ranked said moment of that video not yet
    joined whose span comes within the window of its own (0: the video's sampling interval); the joined
    moment scores 1/(RRF_K + seen rank) + 1/(RRF_K + said rank), anything alone its one term.
    """
    joined: set[int] = set()
    fused: list[tuple[float, int, Match]] = []
    for s_rank, s in enumerate(seen, 1):
        meta = s.item.metadata
        pair = None
        if meta.media_type is MediaType.VIDEO_FRAME and meta.content_hash:
            window = window_seconds or meta.frame_interval_seconds or DEFAULT_WINDOW_SECONDS
            collection = encode_tag(meta.collection)
            for t_index, (t, _) in enumerate(heard):
                if t_index in joined or (t.collection, t.content_hash) != (collection, meta.content_hash):
                    continue
                if t.start <= s.end_seconds + window and t.end >= s.start_seconds - window:
                    pair = t_index
                    break
        if pair is None:
            match = Match(s.item, 1 / (RRF_K + s_rank), s.start_seconds, s.end_seconds, s.frames, s.duplicates)
            fused.append((match.score, len(fused), _ranked(match, s_rank, 0)))
            continue
        joined.add(pair)
        t = heard[pair][0]
        score = 1 / (RRF_K + s_rank) + 1 / (RRF_K + pair + 1)
        match = Match(
            s.item,
            score,
            min(s.start_seconds, t.start),
            max(s.end_seconds, t.end),
            s.frames,
            s.duplicates,
            said_lines=tuple(t.lines),
        )
        fused.append((score, len(fused), _ranked(match, s_rank, pair + 1)))
    for t_index, (t, item) in enumerate(heard):
        if t_index not in joined:
            score = 1 / (RRF_K + t_index + 1)
            fused.append((score, len(fused), _said_match(t, item, score, t_index + 1)))
    fused.sort(key=lambda entry: (-entry[0], entry[1]))
    return [match for _, _, match in fused]


def _ranked(match: Match, seen_rank: int, said_rank: int) -> Match:
    return Match(
        match.item,
        match.score,
        match.start_seconds,
        match.end_seconds,
        match.frames,
        match.duplicates,
        said_lines=match.said_lines,
        seen_rank=seen_rank,
        said_rank=said_rank,
    )

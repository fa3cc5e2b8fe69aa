"""Grouped queries: candidates read light from the KNN reply, grouped into moments and collapsed duplicates."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from clipsearch.limits import MAX_WINDOW
from search_service import schema as S
from search_service.duplicates import collapse_photos
from search_service.items import Item, Match, MediaType

# Candidate windows tried in turn, the same for every page, so that pages drawn from one window agree.
WINDOWS = (100, 300, 1000, 3000, MAX_WINDOW)
# Windows grow up to the first that holds this many candidates per group asked for (offset + k), or
# MIN_BOUND candidates when that is more: one long shot can fill hundreds of candidates.
CANDIDATES_PER_GROUP = 10
MIN_BOUND = 1000
# Frames that do not record their sampling interval were written by clients sampling at 1 fps by default.
DEFAULT_FRAME_INTERVAL_SECONDS = 1.0
GAP_INTERVALS = 2  # the default gap, in sampling intervals

# The fields a candidate is read with: what grouping needs, no more (the groups' items are read in full).
GROUP_FIELDS = (
    S.F_MEDIA_TYPE,
    S.F_COLLECTION,
    S.F_CONTENT_HASH,
    S.F_TIMESTAMP,
    S.F_SPAN_END,
    S.F_FRAME_INTERVAL,
    S.F_PHASH,
)
_MEDIA = {m.value.encode(): m for m in MediaType}


class Candidate:
    """One item of a candidate window, with only what grouping reads (a plain class: thousands are made
    per query, and a frozen dataclass costs several times more to build)."""

    __slots__ = ("collection", "content_hash", "end", "id", "interval", "media", "phash", "score", "start")

    def __init__(
        self,
        item_id: str,
        score: float,
        media: MediaType,
        collection: object = "",
        content_hash: object = "",
        start: float = 0.0,
        end: float = 0.0,
        interval: float = 0.0,
        phash: int | None = None,
    ) -> None:
        self.id = item_id
        self.score = score
        self.media = media
        self.collection = collection  # compared for equality only: raw field bytes will do
        self.content_hash = content_hash
        self.start = start
        self.end = max(start, end)  # a frame covers [timestamp, span_end]
        self.interval = interval
        self.phash = phash


@dataclass(frozen=True)
class Group:
    """A query result before its items are read: the best candidate, the span, the count, other copies."""

    best: Candidate
    start: float = 0.0
    end: float = 0.0
    count: int = 1
    copies: tuple[Candidate, ...] = ()


def rank(c: Candidate) -> tuple[float, str]:
    return -c.score, c.id


def candidates_from_reply(
    results: Sequence[Mapping[bytes, Any]], prefix_bytes: int, distance_field: bytes, min_score: float | None
) -> list[Candidate]:
    """Candidates from FT.SEARCH results read with GROUP_FIELDS, best first, cut at min_score."""
    out: list[Candidate] = []
    f_media, f_collection, f_hash = S.F_MEDIA_TYPE.encode(), S.F_COLLECTION.encode(), S.F_CONTENT_HASH.encode()
    f_time, f_span, f_interval, f_phash = (
        f.encode() for f in (S.F_TIMESTAMP, S.F_SPAN_END, S.F_FRAME_INTERVAL, S.F_PHASH)
    )
    for result in results:
        get = result.get(b"extra_attributes", {}).get
        score = 1.0 - float(get(distance_field))
        if min_score is not None and np.float32(score) < min_score:  # as reported: a float32
            break  # best first: every later match scores lower
        media = _MEDIA.get(get(f_media, b""), MediaType.UNSPECIFIED)
        phash = get(f_phash)
        out.append(
            Candidate(
                result[b"id"][prefix_bytes:].decode("ascii"),
                score,
                media,
                get(f_collection, b""),
                get(f_hash, b""),
                float(get(f_time) or 0.0),
                float(get(f_span) or 0.0),
                float(get(f_interval) or 0.0),
                int(phash, 16) if phash else None,
            )
        )
    return out


def _frame_gap(c: Candidate, gap_seconds: float) -> float:
    if gap_seconds > 0:
        return gap_seconds
    return GAP_INTERVALS * (c.interval or DEFAULT_FRAME_INTERVAL_SECONDS)


def _moments(frames: list[Candidate], gap_seconds: float) -> list[Group]:
    """Frames of one video whose spans, in time order, each begin within the gap after the moment so far."""
    videos: dict[tuple[object, object, str], list[Candidate]] = {}
    for c in frames:
        # Frames without a content hash (other writers) cannot be told to be of one video: each stays alone.
        videos.setdefault((c.collection, c.content_hash, "" if c.content_hash else c.id), []).append(c)
    groups: list[Group] = []
    for video in videos.values():
        video.sort(key=lambda c: (c.start, c.end, c.id))
        best = video[0]
        start, end, count = best.start, best.end, 0
        for c in video:
            if count and c.start - end > _frame_gap(c, gap_seconds):
                groups.append(Group(best, start, end, count))
                best, start, end, count = c, c.start, c.end, 0
            elif rank(c) < rank(best):
                best = c
            end = max(end, c.end)
            count += 1
        groups.append(Group(best, start, end, count))
    return groups


def group_candidates(
    candidates: Sequence[Candidate], *, gap_seconds: float | None = None, max_distance: int | None = None
) -> list[Group]:
    """Groups of `candidates`, best first (score descending, then id): video frames into moments when
    gap_seconds is set, near-duplicate photos into one group when max_distance is set, anything else alone.
    A video frame alone covers its own span; anything else [0, 0]."""
    frames: list[Candidate] = []
    photos: list[Candidate] = []
    groups: list[Group] = []
    for c in candidates:
        if c.media is MediaType.VIDEO_FRAME:
            if gap_seconds is None:
                groups.append(Group(c, c.start, c.end))
            else:
                frames.append(c)
        elif max_distance is not None and c.media is MediaType.IMAGE and c.phash is not None:
            photos.append(c)
        else:
            groups.append(Group(c))
    if frames:
        groups += _moments(frames, gap_seconds or 0.0)
    if photos:
        photos.sort(key=rank)
        groups += [Group(best, copies=tuple(copies)) for best, copies in collapse_photos(photos, max_distance or 0)]
    groups.sort(key=lambda g: rank(g.best))
    return groups


def candidate_bound(wanted: int) -> int:
    """The largest window fetched to form `wanted` (offset + k) groups: the first of WINDOWS holding
    CANDIDATES_PER_GROUP candidates per group, and at least MIN_BOUND."""
    needed = max(MIN_BOUND, CANDIDATES_PER_GROUP * wanted)
    return next((w for w in WINDOWS if w >= needed), WINDOWS[-1])


C = TypeVar("C")
G = TypeVar("G")


def query_groups(
    fetch: Callable[[int], Sequence[C]], group: Callable[[Sequence[C]], list[G]], *, k: int, offset: int
) -> list[G]:
    """Groups offset to offset + k of the candidates `fetch(n)` returns (its n best, best first).

    Tries WINDOWS in turn until offset + k groups form, the candidates run out, or the bound is reached.
    """
    wanted = offset + k
    bound = candidate_bound(wanted)
    groups: list[G] = []
    for window in WINDOWS:
        candidates = fetch(window)
        groups = group(candidates)
        if len(groups) >= wanted or len(candidates) < window or window >= bound:
            break
    return groups[offset:wanted]


def grouped_query(
    fetch_candidates: Callable[[int], Sequence[Candidate]],
    fetch_items: Callable[[Sequence[str]], Sequence[Item | None]],
    *,
    k: int,
    offset: int,
    gap_seconds: float | None,
    max_distance: int | None,
) -> list[Match]:
    """Groups offset to offset + k, their items read in full (with one fetch) once grouped.

    Candidates carry only what grouping reads: reading every field of thousands of candidates cost more
    than the search. A group whose best item was deleted since the search is left out, as are copies."""
    groups = query_groups(
        fetch_candidates,
        lambda c: group_candidates(c, gap_seconds=gap_seconds, max_distance=max_distance),
        k=k,
        offset=offset,
    )
    ids = [g.best.id for g in groups] + [c.id for g in groups for c in g.copies]
    items = dict(zip(ids, fetch_items(ids), strict=True))
    matches: list[Match] = []
    for g in groups:
        item = items[g.best.id]
        if item is None:
            continue
        copies = tuple(Match(i, c.score) for c in g.copies if (i := items[c.id]) is not None)
        if g.best.media is MediaType.VIDEO_FRAME:
            matches.append(Match(item, g.best.score, g.start, g.end, g.count))
        else:
            matches.append(Match(item, g.best.score, frames=1, duplicates=copies))
    return matches

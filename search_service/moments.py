"""Moments: consecutive matching frames of one video grouped into one query result."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from clipsearch.limits import MAX_WINDOW
from search_service import schema as S
from search_service.errors import InvalidArgument
from search_service.items import Item, Match, MediaType

# Frames that do not record their sampling interval were written by clients sampling at 1 fps by default.
DEFAULT_FRAME_INTERVAL_SECONDS = 1.0
GAP_INTERVALS = 2  # the default gap, in sampling intervals
MAX_GAP_SECONDS = 86_400.0
# Candidate windows tried in turn, the same for every page, so that pages drawn from one window agree.
WINDOWS = (100, 300, 1000, 3000, MAX_WINDOW)
# Windows grow up to the first that holds this many candidates per moment asked for (offset + k), or
# MIN_BOUND candidates when that is more: one long shot can fill hundreds of candidates.
CANDIDATES_PER_MOMENT = 10
MIN_BOUND = 1000


# The fields a candidate is read with: what grouping needs, no more (the best frames are read in full).
MOMENT_FIELDS = (S.F_MEDIA_TYPE, S.F_COLLECTION, S.F_CONTENT_HASH, S.F_TIMESTAMP, S.F_SPAN_END, S.F_FRAME_INTERVAL)


def check_gap(gap_seconds: float) -> float:
    if not math.isfinite(gap_seconds) or not 0 <= gap_seconds <= MAX_GAP_SECONDS:
        raise InvalidArgument(
            f"moments.gap_seconds={gap_seconds}; it must be finite, 0 (two sampling intervals) to {MAX_GAP_SECONDS:g}"
        )
    return gap_seconds


def frame_span(item: Item) -> tuple[float, float]:
    """The seconds a stored frame stands for: its timestamp up to its span's end, if later."""
    start = item.metadata.timestamp_seconds
    return start, max(start, item.metadata.span_end_seconds)


def frame_gap(item: Item, gap_seconds: float) -> float:
    if gap_seconds > 0:
        return gap_seconds
    interval = item.metadata.frame_interval_seconds or DEFAULT_FRAME_INTERVAL_SECONDS
    return GAP_INTERVALS * interval


def single(match: Match) -> Match:
    """A raw match with its span filled in: a frame's own span, one item."""
    if match.item.metadata.media_type is not MediaType.VIDEO_FRAME:
        return Match(match.item, match.score, frames=1)
    start, end = frame_span(match.item)
    return Match(match.item, match.score, start, end, 1)


def _video_key(item: Item) -> tuple[str, str, str]:
    meta = item.metadata
    # Frames without a content hash (other writers) cannot be told to be of one video: each stays alone.
    return meta.collection, meta.content_hash, "" if meta.content_hash else item.id


def _rank(match: Match) -> tuple[float, str]:
    return -match.score, match.item.id


def group(candidates: Sequence[Match], gap_seconds: float = 0.0) -> list[Match]:
    """Moments of `candidates`, best first (score descending, then id).

    Frames of one video whose spans, in time order, each begin within the gap after the moment so far
    form one moment; its item and score are its best frame's. Anything but a video frame stays alone.
    """
    moments: list[Match] = []
    videos: dict[tuple[str, str, str], list[Match]] = {}
    for match in candidates:
        if match.item.metadata.media_type is MediaType.VIDEO_FRAME:
            videos.setdefault(_video_key(match.item), []).append(match)
        else:
            moments.append(Match(match.item, match.score, frames=1))
    for frames in videos.values():
        frames.sort(key=lambda m: (frame_span(m.item), m.item.id))
        best = frames[0]
        start, end = frame_span(best.item)
        count = 0
        for match in frames:
            f_start, f_end = frame_span(match.item)
            if count and f_start - end > frame_gap(match.item, gap_seconds):
                moments.append(Match(best.item, best.score, start, end, count))
                best, start, end, count = match, f_start, f_end, 0
            elif _rank(match) < _rank(best):
                best = match
            end = max(end, f_end)
            count += 1
        moments.append(Match(best.item, best.score, start, end, count))
    moments.sort(key=_rank)
    return moments


def candidate_bound(wanted: int) -> int:
    """The largest window fetched to form `wanted` (offset + k) moments: the first of WINDOWS holding
    CANDIDATES_PER_MOMENT candidates per moment, and at least MIN_BOUND."""
    needed = max(MIN_BOUND, CANDIDATES_PER_MOMENT * wanted)
    return next((w for w in WINDOWS if w >= needed), WINDOWS[-1])


def query_moments(fetch: Callable[[int], list[Match]], *, k: int, offset: int, gap_seconds: float = 0.0) -> list[Match]:
    """Moments offset to offset + k of the candidates `fetch(n)` returns (its n best, best first).

    Tries WINDOWS in turn until offset + k moments form, the candidates run out, or the bound is reached.
    """
    gap_seconds = check_gap(gap_seconds)
    wanted = offset + k
    bound = candidate_bound(wanted)
    moments: list[Match] = []
    for window in WINDOWS:
        candidates = fetch(window)
        moments = group(candidates, gap_seconds)
        if len(moments) >= wanted or len(candidates) < window or window >= bound:
            break
    return moments[offset:wanted]

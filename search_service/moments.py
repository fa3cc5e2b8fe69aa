"""Moments: consecutive matching frames of one video grouped into one query result."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from search_service.errors import InvalidArgument
from search_service.grouping import Candidate, Group, candidate_bound, group_candidates, query_groups
from search_service.items import Item, Match, MediaType

MAX_GAP_SECONDS = 86_400.0
__all__ = ["candidate_bound", "check_gap", "frame_span", "group", "query_moments", "single"]


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


def single(match: Match) -> Match:
    """A raw match with its span filled in: a frame's own span, one item."""
    if match.item.metadata.media_type is not MediaType.VIDEO_FRAME:
        return Match(match.item, match.score, frames=1)
    start, end = frame_span(match.item)
    return Match(match.item, match.score, start, end, 1)


def as_candidate(match: Match) -> Candidate:
    meta = match.item.metadata
    start, end = frame_span(match.item)
    return Candidate(
        match.item.id,
        match.score,
        meta.media_type,
        meta.collection,
        meta.content_hash,
        start,
        end,
        meta.frame_interval_seconds,
        meta.perceptual_hash,
    )


def group(candidates: Sequence[Match], gap_seconds: float = 0.0) -> list[Match]:
    """Moments of `candidates`, best first (score descending, then id).

    Frames of one video whose spans, in time order, each begin within the gap after the moment so far
    form one moment; its item and score are its best frame's. Anything but a video frame stays alone.
    """
    by_id = {m.item.id: m for m in candidates}
    return [
        as_match(g, by_id) for g in group_candidates([as_candidate(m) for m in candidates], gap_seconds=gap_seconds)
    ]


def as_match(g: Group, matches: dict[str, Match]) -> Match:
    best = matches[g.best.id]
    if best.item.metadata.media_type is not MediaType.VIDEO_FRAME:
        return Match(best.item, best.score, frames=1)
    return Match(best.item, best.score, g.start, g.end, g.count)


def query_moments(fetch: Callable[[int], list[Match]], *, k: int, offset: int, gap_seconds: float = 0.0) -> list[Match]:
    """Moments offset to offset + k of the candidates `fetch(n)` returns (its n best, best first).

    Tries the candidate windows (grouping.WINDOWS) in turn until offset + k moments form, the candidates
    run out, or the bound is reached.
    """
    gap_seconds = check_gap(gap_seconds)
    return query_groups(fetch, lambda candidates: group(candidates, gap_seconds), k=k, offset=offset)

"""Grouping matches into moments: spans, gaps, photos, ranking and prefix-stable paging."""

from __future__ import annotations

import random

import pytest

from search_service.errors import InvalidArgument
from search_service.items import Item, Match, MediaType, Metadata
from search_service.moments import candidate_bound, group, query_moments, single


def frame(
    item_id: str, t: float, score: float, *, video: str = "v1", interval: float = 1.0, span_end: float = 0.0
) -> Match:
    meta = Metadata(
        media_type=MediaType.VIDEO_FRAME,
        timestamp_seconds=t,
        content_hash=video,
        frame_interval_seconds=interval,
        span_end_seconds=span_end,
    )
    return Match(Item(item_id, None, meta), score)


def photo(item_id: str, score: float) -> Match:
    return Match(Item(item_id, None, Metadata(media_type=MediaType.IMAGE, content_hash=item_id)), score)


def spans(moments: list[Match]) -> list[tuple[str, float, float, int]]:
    return [(m.item.id, m.start_seconds, m.end_seconds, m.frames) for m in moments]


def test_consecutive_frames_of_one_video_form_one_moment_with_the_best_frame() -> None:
    matches = [frame(f"f{t}", t, 0.5 - abs(t - 12) * 0.01) for t in range(10, 16)]
    assert spans(group(matches)) == [("f12", 10.0, 15.0, 6)]
    assert group(matches)[0].score == pytest.approx(0.5)


def test_frames_further_apart_than_two_intervals_are_separate_moments() -> None:
    matches = [frame("a", 10, 0.9), frame("b", 12, 0.8), frame("c", 15, 0.7)]
    # 10 and 12 are 2 s apart (two 1 s intervals): one moment; 15 is 3 s after 12.
    assert spans(group(matches)) == [("a", 10.0, 12.0, 2), ("c", 15.0, 15.0, 1)]


def test_the_default_gap_follows_each_videos_sampling_interval() -> None:
    matches = [frame("a", 0, 0.9, interval=5.0), frame("b", 10, 0.8, interval=5.0)]
    assert spans(group(matches)) == [("a", 0.0, 10.0, 2)]
    # Items written before the interval was recorded (0) use 1 s, the client's default sampling.
    old = [frame("a", 0, 0.9, interval=0.0), frame("b", 3, 0.8, interval=0.0)]
    assert len(group(old)) == 2


def test_an_explicit_gap_overrides_the_default() -> None:
    matches = [frame("a", 0, 0.9), frame("b", 5, 0.8)]
    assert len(group(matches)) == 2
    assert spans(group(matches, gap_seconds=5.0)) == [("a", 0.0, 5.0, 2)]


def test_frames_of_other_videos_and_photos_stay_apart() -> None:
    matches = [frame("a", 10, 0.9, video="v1"), frame("b", 10, 0.85, video="v2"), photo("p", 0.8), photo("q", 0.7)]
    result = group(matches)
    assert [m.item.id for m in result] == ["a", "b", "p", "q"]
    assert [m.frames for m in result] == [1, 1, 1, 1]
    assert (result[2].start_seconds, result[2].end_seconds) == (0.0, 0.0)


def test_a_skipped_span_counts_toward_the_moment_and_the_gap() -> None:
    # The frame at 10 stands for 10..20; the frame at 22 is within two intervals of its end.
    matches = [frame("a", 10, 0.9, span_end=20.0), frame("b", 22, 0.8)]
    assert spans(group(matches)) == [("a", 10.0, 22.0, 2)]
    assert (single(matches[0]).start_seconds, single(matches[0]).end_seconds) == (10.0, 20.0)


def test_ties_rank_by_id_and_input_order_does_not_matter() -> None:
    matches = [photo("b", 0.5), photo("a", 0.5), frame("c", 1, 0.6)]
    expected = ["c", "a", "b"]
    for _ in range(5):
        random.shuffle(matches)
        assert [m.item.id for m in group(matches)] == expected


def test_a_moment_joins_frames_whatever_their_scores_and_keeps_the_best() -> None:
    rng = random.Random(7)
    matches = [frame(f"f{t:02d}", t, rng.random()) for t in range(20)]
    best = max(matches, key=lambda m: m.score)
    assert spans(group(matches)) == [(best.item.id, 0.0, 19.0, 20)]


def test_query_moments_pages_are_disjoint_and_fetch_within_the_bound() -> None:
    matches = [frame(f"f{i:04d}", i // 3 * 10 + i % 3, 1 - i / 2000, video=f"v{i % 7}") for i in range(2000)]
    ranked = sorted(matches, key=lambda m: (-m.score, m.item.id))
    asked: list[int] = []

    def fetch(n: int) -> list[Match]:
        asked.append(n)
        return ranked[:n]

    pages = [query_moments(fetch, k=10, offset=10 * p) for p in range(5)]
    assert max(asked) <= candidate_bound(50) == 1000
    seen = [m.item.id for page in pages for m in page]
    assert len(seen) == 50 == len(set(seen))
    assert seen == [m.item.id for m in query_moments(fetch, k=50, offset=0)]


def test_the_bound_grows_with_the_depth_asked_for() -> None:
    assert candidate_bound(10) == 1000
    assert candidate_bound(250) == 3000
    assert candidate_bound(10_000) == 10_000


def test_a_long_shot_makes_the_service_fetch_more_candidates() -> None:
    # 500 frames of one shot score best; the photos behind them are found in a larger window.
    ranked = [frame(f"f{t:03d}", t, 0.9 - t / 10_000) for t in range(500)]
    ranked += [photo(f"p{i}", 0.5 - i / 100) for i in range(20)]
    calls: list[int] = []

    def fetch(n: int) -> list[Match]:
        calls.append(n)
        return ranked[:n]

    moments = query_moments(fetch, k=5, offset=0)
    assert calls == [100, 300, 1000]
    assert spans(moments)[0] == ("f000", 0.0, 499.0, 500)
    assert [m.item.id for m in moments[1:]] == ["p0", "p1", "p2", "p3"]


def test_query_moments_stops_when_candidates_run_out() -> None:
    ranked = [frame(f"f{t}", t, 1 - t / 100) for t in range(30)]
    calls: list[int] = []

    def fetch(n: int) -> list[Match]:
        calls.append(n)
        return ranked[:n]

    moments = query_moments(fetch, k=5, offset=0)
    assert spans(moments) == [("f0", 0.0, 29.0, 30)]
    assert calls == [100]  # the window was not full: there was nothing more to fetch


@pytest.mark.parametrize("gap", [-1.0, float("nan"), float("inf"), 1e9])
def test_a_bad_gap_is_invalid(gap: float) -> None:
    with pytest.raises(InvalidArgument, match="gap_seconds"):
        query_moments(lambda n: [], k=1, offset=0, gap_seconds=gap)

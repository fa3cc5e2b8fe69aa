"""Candidate windows: the first two read through one cursor, later ones searched anew, every cursor let go."""

from __future__ import annotations

from collections.abc import Sequence

from search_service.grouping import Candidate, query_groups
from search_service.items import MediaType
from search_service.windows import CursorWindows, Page

RANKED = [Candidate(f"c{n:04d}", 1.0 - n / 10_000, MediaType.IMAGE) for n in range(2_000)]


class FakeKnn:
    """A KNN over RANKED, recording the calls: open(k, count), read(cursor, count), search(n), sent commands."""

    def __init__(self, total: int = len(RANKED), page_limit: int = 10_000) -> None:
        self.ranked = RANKED[:total]
        self.page_limit = page_limit  # a cursor read may return fewer rows than asked for
        self.calls: list[tuple[object, ...]] = []
        self.sent: list[tuple[str, ...]] = []
        self._rows: list[Candidate] = []

    def open(self, k: int, count: int) -> Page:
        self.calls.append(("open", k, count))
        self._rows = list(self.ranked[:k])
        return self._page(count)

    def read(self, cursor: int, count: int) -> Page:
        assert cursor == 7
        self.calls.append(("read", count))
        return self._page(count)

    def _page(self, count: int) -> Page:
        taken, self._rows = self._rows[: min(count, self.page_limit)], self._rows[min(count, self.page_limit) :]
        return Page(taken, 7 if self._rows else 0)

    def search(self, n: int) -> list[Candidate]:
        self.calls.append(("search", n))
        return list(self.ranked[:n])

    def windows(self, bound: int = 1000) -> CursorWindows:
        return CursorWindows(
            self.search, self.open, self.read, lambda c: ("DEL", str(c)), self.sent.append, bound=bound
        )


def test_the_second_window_is_read_from_the_first_ones_cursor_and_the_third_searched_anew() -> None:
    knn = FakeKnn()
    windows = knn.windows()
    assert windows.fetch(100) == RANKED[:100]
    assert windows.fetch(300) == RANKED[:300]
    assert knn.calls == [("open", 300, 100), ("read", 200)]
    assert knn.sent == []  # read to its end: nothing to let go
    assert windows.fetch(1000) == RANKED[:1000]
    assert knn.calls[-1] == ("search", 1000)
    assert windows.release() == []


def test_a_cursor_not_read_to_its_end_is_let_go_once() -> None:
    knn = FakeKnn()
    windows = knn.windows()
    windows.fetch(100)
    assert windows.release() == [("DEL", "7")]
    windows.close()
    assert knn.sent == []  # the caller took the command: close() does not send it again
    other = knn.windows()
    other.fetch(100)
    other.close()
    other.close()
    assert knn.sent == [("DEL", "7")]
    third = knn.windows()
    third.fetch(100)
    third.fetch(1000)  # past the cursor's KNN: it is let go before the new search
    assert knn.sent == [("DEL", "7"), ("DEL", "7")] and knn.calls[-1] == ("search", 1000)


def test_short_cursor_reads_are_read_again_and_a_small_library_stops_early() -> None:
    knn = FakeKnn(page_limit=50)
    windows = knn.windows()
    assert windows.fetch(100) == RANKED[:50]  # fewer than asked: query_groups stops here, as for FT.SEARCH
    assert windows.fetch(300) == RANKED[:300]
    assert knn.calls == [("open", 300, 100), ("read", 250), ("read", 200), ("read", 150), ("read", 100), ("read", 50)]
    few = FakeKnn(total=120)
    groups = query_groups(few.windows().fetch, lambda c: [[x] for x in c][:1], k=5, offset=0)
    assert len(groups) == 1 and few.calls == [("open", 300, 100), ("read", 200)]


def test_groups_come_out_as_they_did_from_windows_searched_one_by_one() -> None:
    def every_tenth(candidates: Sequence[Candidate]) -> list[str]:  # a group per ten candidates
        return [c.id for c in candidates[::10]]

    for k, offset in ((5, 0), (20, 0), (10, 15), (90, 0)):
        cursor = query_groups(FakeKnn().windows(bound=3000).fetch, every_tenth, k=k, offset=offset)
        fresh = query_groups(FakeKnn().search, every_tenth, k=k, offset=offset)
        assert cursor == fresh, (k, offset)


def test_a_cursor_gone_with_its_index_is_searched_anew() -> None:
    knn = FakeKnn()
    windows = CursorWindows(
        knn.search, knn.open, lambda cursor, count: None, lambda c: ("DEL", str(c)), knn.sent.append, bound=1000
    )
    windows.fetch(100)
    assert windows.fetch(300) == RANKED[:300]
    assert knn.calls == [("open", 300, 100), ("search", 300)] and windows.release() == []


def test_without_a_cursor_every_window_is_searched() -> None:
    knn = FakeKnn()
    windows = CursorWindows(
        knn.search, lambda k, count: None, knn.read, lambda c: ("DEL", str(c)), knn.sent.append, bound=1000
    )
    assert windows.fetch(100) == RANKED[:100] and windows.fetch(300) == RANKED[:300]
    assert knn.calls == [("search", 100), ("search", 300)] and knn.sent == []

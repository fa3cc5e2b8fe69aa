"""Candidate windows of a grouped query read from one KNN search: the first through a cursor, the next from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from search_service.grouping import WINDOWS, Candidate


@dataclass(frozen=True)
class Page:
    """Candidates read from a cursor, best first, and the cursor (0 once it has nothing more)."""

    candidates: list[Candidate]
    cursor: int


class CursorWindows:
    """fetch(n), for grouping.query_groups: the n best candidates, best first (fewer when there are no more,
    or min_score cut them).

    Grouped queries (moments, collapsed duplicates) read windows of 100, 300, 1,000… candidates until enough
    groups form, and each FT.SEARCH is a new graph search: at a large EF_RUNTIME the search is most of a
    query's cost. Measured on 200,000 film-like frames (EF 800), a window of 100 then one of 300 took 5.2 ms
    (p50) against 2.2 for 100 alone, and about one query in seven needs the second. So the first window comes
    from an FT.AGGREGATE over the second window's KNN, read through a cursor, and the second then costs one
    cursor read (3.5 ms in all); windows past it are searched anew (`search`).

    open(k, count) runs the KNN of k and reads its first `count` (None: Redis has no cursor to give);
    read(cursor, count) reads more (None: the cursor is gone);
    let_go(cursor) is the command that deletes a cursor not read to the end, and send(command) runs one. The
    caller either takes that command with release(), to send it with its next call, or calls close().
    """

    def __init__(
        self,
        search: Callable[[int], list[Candidate]],
        open: Callable[[int, int], Page | None],
        read: Callable[[int, int], Page | None],
        let_go: Callable[[int], tuple[str, ...]],
        send: Callable[[tuple[str, ...]], None],
        *,
        bound: int,
    ) -> None:
        self._search, self._open, self._read = search, open, read
        self._let_go, self._send = let_go, send
        first = WINDOWS[0]
        # The KNN the cursor reads: the second window, when the bound lets the query go that far.
        self._through = next((w for w in WINDOWS if w > first), first) if bound > first else first
        self._have: list[Candidate] | None = None
        self._cursor = 0

    def fetch(self, n: int) -> list[Candidate]:
        if self._have is None and n < self._through:
            first = self._open(self._through, n)
            if first is None:  # no cursor to be had: every window is searched
                self._through = 0
                return self._search(n)
            self._have, self._cursor = list(first.candidates), first.cursor
            return list(self._have)
        if self._have is not None and n <= self._through:
            while self._cursor and len(self._have) < n:
                more = self._read(self._cursor, n - len(self._have))
                if more is None:  # the cursor is gone with its index (a companion dropped meanwhile)
                    self._cursor = 0
                    return self._search(n)
                self._have += more.candidates
                self._cursor = more.cursor
            return self._have[:n]
        self.close()
        return self._search(n)

    def release(self) -> list[tuple[str, ...]]:
        """The command that lets the open cursor go (none when no cursor is open), for the caller to send."""
        cursor, self._cursor = self._cursor, 0
        return [self._let_go(cursor)] if cursor else []

    def close(self) -> None:
        for command in self.release():
            self._send(command)

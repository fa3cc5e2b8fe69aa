"""The indexer's reports on a library to the search service: on every change of state, throttled, and a heartbeat."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from ..errors import ClientError
from ..libraries import LibraryFailure, LibraryStatus

log = logging.getLogger("clipsearch.indexer")

MAX_FAILURES_SENT = 100


class Reporter:
    """Sends a library's LibraryStatus: at once when its state changes, else at most every `interval` seconds,
    and again every `heartbeat` seconds so that the service does not call the library idle."""

    def __init__(
        self,
        send: Callable[[str, LibraryStatus], bool],
        name: str,
        indexer: str,
        *,
        interval: float = 0.5,
        heartbeat: float = 20.0,
        caught_up_at: float = 0.0,
    ) -> None:
        self._send = send
        self.name = name
        self._indexer = indexer
        self._interval = interval
        self._heartbeat = heartbeat
        self._lock = threading.Lock()
        self._status = LibraryStatus(indexer=indexer, caught_up_at=caught_up_at)
        self._sent: LibraryStatus | None = None
        self._sent_at = -float("inf")
        self.known = True  # False once the service says the library is gone

    @property
    def status(self) -> LibraryStatus:
        return self._status

    def update(self, *, failures: Mapping[str, str] | None = None, **changes: object) -> None:
        """Changes the status (LibraryStatus fields; `failures` path -> reason) and sends it when due."""
        with self._lock:
            status = replace(self._status, **changes)  # type: ignore[arg-type]
            if failures is not None:
                listed = sorted(failures.items())[:MAX_FAILURES_SENT]
                status = replace(
                    status, failures=tuple(LibraryFailure(p, r) for p, r in listed), failed_files=len(failures)
                )
            if status.state != "indexing":
                status = replace(status, eta_seconds=None)
            self._status = status
            due = (
                self._sent is None
                or status.state != self._sent.state
                or status.failed_files != self._sent.failed_files
                or status.message != self._sent.message
                or time.monotonic() - self._sent_at >= self._interval
            )
        if due:
            self.flush()

    def beat(self) -> None:
        """Sends the status again when the last report is older than the heartbeat."""
        since = time.monotonic() - self._sent_at
        if since >= self._heartbeat or (self._sent != self._status and since >= self._interval):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            status = self._status
        try:
            self.known = self._send(self.name, status)
        except ClientError as exc:
            log.warning("%s: cannot report the state: %s", self.name, exc)
            return
        with self._lock:
            self._sent, self._sent_at = status, time.monotonic()

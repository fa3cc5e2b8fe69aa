"""The indexer: keeps every library indexed, catching up on start and on rescans, then following its folder."""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType

import watchfiles

from ..api import Client
from ..errors import ClientError
from ..ingest.progress import Meter, Plan, plan
from ..ingest.reports import IndexReport, ProgressCallback, ProgressEvent
from ..libraries import Library
from ..uris import uri_to_path
from .catchup import changes_since
from .status import Reporter
from .watching import DELETED, FolderWatch, Settling, is_folder, signature

log = logging.getLogger("clipsearch.indexer")

# Changes younger than this may not have reached the indexer yet (the watcher's delay, generously).
WATCH_DELAY_SECONDS = 5.0


@dataclass(frozen=True)
class IndexerOptions:
    """How the indexer behaves; the defaults index a photo a second or two after it is written."""

    poll_seconds: float = 2.0  # how often to look for libraries added, removed or rescanned elsewhere
    settle_seconds: float = 1.0  # a file's size and mtime unchanged this long: it is complete
    # A file that fails to decode within this long of its last change is taken again later rather than reported
    # (a copy that paused); past it, the failure is reported.
    incomplete_grace_seconds: float = 30.0
    tick_seconds: float = 0.2
    heartbeat_seconds: float = 20.0
    retry_seconds: float = 5.0  # after the services failed a pass, or for a folder that is missing
    fps: float = 1.0
    batch_files: int = 256  # changed files per index call
    # While it watches with nothing to do, the indexer records (at most this often) that every change older
    # than the watcher's delay is indexed, so that a restart looks only at the files changed since.
    caught_up_every_seconds: float = 30.0


class LibraryRemoved(Exception):
    """The library was removed while the indexer was indexing it."""


class LibraryWork:
    """One library as the indexer follows it: its folder's watch, the changes settling, its failures, its reports."""

    def __init__(self, indexer: Indexer, library: Library) -> None:
        self.library = library
        self._indexer = indexer
        self._options = indexer.options
        self.reporter = Reporter(
            indexer.client.report_library_status,
            library.name,
            indexer.identity,
            heartbeat=indexer.options.heartbeat_seconds,
            caught_up_at=library.status.caught_up_at,
        )
        self.settling = Settling(self._options.settle_seconds)
        self.failures: dict[str, str] = {f.path: f.reason for f in library.status.failures}
        self._tried: dict[str, tuple[int, int]] = {}  # a file that looked incomplete: the signature tried
        self._watch: FolderWatch | None = None
        self.catch_up = True  # on start: whatever changed while nothing watched
        self.full_pass = False  # a rescan: every file read again
        self.rescans_seen = library.rescan_requests
        self._retry_at = 0.0

    @property
    def name(self) -> str:
        return self.library.name

    @property
    def busy(self) -> bool:
        """Whether there is work to come back to soon: a pass to run, files settling, deletions, a retry."""
        return bool(self.catch_up or len(self.settling) or self.settling.deleted or self._retry_at)

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.stop()

    def join(self) -> None:
        if self._watch is not None:
            self._watch.join()

    def _error(self, message: str) -> None:
        if self.reporter.status.message != message:
            log.warning("%s: %s", self.name, message)
        self.reporter.update(state="error", message=message, files_done=0, files_total=0)
        self._retry_at = time.monotonic() + self._options.retry_seconds

    def on_change(self, change: watchfiles.Change | None, path: str) -> None:
        if change is None:  # the watch itself ended
            if self._watch is not None and self._watch.failed:
                log.warning("%s: %s", self.name, self._watch.failed)
            self._watch = None
        elif change == DELETED:
            self.settling.gone(path)
        else:
            self.settling.changed(path)

    def step(self) -> None:
        """Does what is due: (re)start the watch, catch up, index settled files, forget deleted ones, report."""
        if time.monotonic() < self._retry_at:
            return
        self._retry_at = 0.0
        problem = is_folder(self.library.path)
        if problem is not None:
            self.stop()
            self._watch = None
            self.catch_up = True  # when it is back: whatever is there
            self._error(problem)
            return
        if self._watch is None or not self._watch.alive:
            self._watch = FolderWatch(self.library.path, self.name, self._indexer.changes)
            self._watch.start()
        try:
            if self.catch_up:
                self._catch_up()
            deleted = self.settling.take_deleted()
            if deleted:
                self._forget(deleted)
            ready = self.settling.ready()
            for start in range(0, len(ready), self._options.batch_files):
                self._index(ready[start : start + self._options.batch_files])
        except ClientError as exc:
            self.catch_up = True  # what was taken for this step is looked at again by a pass
            self._error(f"indexing paused: {exc}")
            return
        state = "indexing" if len(self.settling) else "watching"
        if self.reporter.status.state != state or self.reporter.status.message:
            self.reporter.update(state=state, message="", files_done=0, files_total=0)
        now = time.time()
        if state == "watching" and now - self.reporter.status.caught_up_at > self._options.caught_up_every_seconds:
            # Nothing left to do: every change older than the watcher's delay is indexed.
            self.reporter.update(caught_up_at=now - WATCH_DELAY_SECONDS)
        self.reporter.beat()

    def _progress(self, meter: Meter, message: str) -> ProgressCallback:
        def on_event(event: ProgressEvent) -> None:
            if event.kind == "file" and not self.reporter.known:
                raise LibraryRemoved(self.name)  # a "file" event comes on the run's own thread: it stops there
            meter(event)
            self.reporter.update(
                state="indexing",
                files_done=min(meter.files_done, meter.plan.files),
                files_total=meter.plan.files,
                eta_seconds=meter.eta_seconds(),
                message=message,
            )

        return on_event

    def _run(self, paths: list[str], planned: Plan, message: str) -> IndexReport:
        meter = Meter(planned)
        report = self._indexer.client.index(
            paths,
            collection=self.library.collection,
            fps=self._options.fps,
            prune=True,
            on_event=self._progress(meter, message),
            one_item_per_file=False,  # the library's collection, as it says
        )
        return report

    def _catch_up(self) -> None:
        """A pass over the folder: a full one (every file read and looked up, as `clipsearch index --prune`) the
        first time and on a rescan request; otherwise only the files changed since the last complete pass."""
        path, since = self.library.path, self.reporter.status.caught_up_at
        full = self.full_pass or not since
        started, began = time.monotonic(), time.time()
        self.reporter.update(state="scanning", message="counting the files", files_done=0, files_total=0)
        if full:
            planned = plan([path], fps=self._options.fps)
            self.reporter.update(state="indexing", message="catching up", files_done=0, files_total=planned.files)
            report = self._run([path], planned, "catching up")
            self.failures = {}  # a full pass: its failures replace those known
            self._take_failures(report, [path])
            looked_at, gone, listed = planned.files, report.pruned_sources, 0
        else:
            changes = changes_since(self._indexer.client, self.library, since)
            if changes.gone:
                self._indexer.client.delete(sources=changes.gone)
                self._forget_failures([str(uri_to_path(uri)) for uri in changes.gone])
            report = IndexReport()
            planned = plan(changes.changed, fps=self._options.fps)
            if changes.changed:
                self.reporter.update(state="indexing", message="catching up", files_total=planned.files)
                report = self._run(changes.changed, planned, "catching up")
                for changed in changes.changed:
                    self.failures.pop(changed, None)
                self._take_failures(report, changes.changed)
            looked_at, gone, listed = changes.looked_at, len(changes.gone), changes.folders_listed
        self.catch_up = self.full_pass = False
        self.reporter.update(caught_up_at=began)
        log.info(
            "%s: caught up with %s (%s, %d files) in %.1f s: %d indexed, %d already indexed, %d removed, %d failed",
            self.name,
            path,
            "every file read"
            if full
            else f"{planned.files} changed since the last pass, {listed} folder{'s' if listed != 1 else ''} listed",
            looked_at,
            time.monotonic() - started,
            report.indexed,
            report.known,
            gone,
            len(report.failed),
        )

    def _index(self, paths: list[str]) -> None:
        planned = plan(paths, fps=self._options.fps)
        report = self._run(paths, planned, "")
        for path in paths:
            self.failures.pop(path, None)
        self._take_failures(report, paths)
        if report.indexed or report.pruned_sources or report.failed:
            log.info(
                "%s: %d file%s changed: %d items indexed, %d sources removed, %d failed",
                self.name,
                len(paths),
                "s" if len(paths) != 1 else "",
                report.indexed,
                report.pruned_sources,
                len(report.failed),
            )

    def _take_failures(self, report: IndexReport, paths: list[str]) -> None:
        """Records the run's failures, except of files that changed within the grace time: most likely still
        being written, they are taken again once the grace time has passed (or when they change)."""
        now = time.time()
        for failure in report.failed:
            path = failure.path.split(" at ", 1)[0] if not os.path.exists(failure.path) else failure.path
            sig = signature(path)
            recent = sig is not None and now - sig[1] / 1e9 < self._options.incomplete_grace_seconds
            if recent and self._tried.get(path) != sig:
                assert sig is not None
                self._tried[path] = sig
                wait = self._options.incomplete_grace_seconds - (now - sig[1] / 1e9)
                self.settling.changed(path, not_before=time.monotonic() + wait)
                continue
            self.failures[path] = failure.reason
        self.reporter.update(failures=self.failures)

    def _forget(self, paths: list[str]) -> None:
        sources, items = self._indexer.client.forget_missing(paths)
        self._forget_failures(paths)
        if sources:
            log.info("%s: %d file%s gone: %d items deleted", self.name, sources, "s" if sources != 1 else "", items)

    def _forget_failures(self, paths: list[str]) -> None:
        for path in paths:
            prefix = path.rstrip("/") + "/"
            for failed in [p for p in self.failures if p == path or p.startswith(prefix)]:
                del self.failures[failed]
        self.reporter.update(failures=self.failures)


class Indexer:
    """Follows the libraries of one search service: polls them (added, removed, rescans requested), watches
    their folders, and indexes with the same code as `clipsearch index`, so an interrupted pass resumes."""

    def __init__(self, client: Client, options: IndexerOptions | None = None) -> None:
        self.client = client
        self.options = options or IndexerOptions()
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self.changes: queue.Queue[tuple[str, watchfiles.Change | None, str]] = queue.Queue()
        self.work: dict[str, LibraryWork] = {}
        self._stop = threading.Event()
        self._polled_at = -float("inf")

    def __enter__(self) -> Indexer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def stop(self) -> None:
        """Asks run_forever to return (from a signal handler or another thread)."""
        self._stop.set()
        self.changes.put(("", None, ""))  # wakes an idle run_forever

    def close(self) -> None:
        for work in self.work.values():
            work.stop()
        for work in self.work.values():
            work.join()

    def run_forever(self) -> None:
        log.info(
            "indexer %s: following the libraries of the search service at %s", self.identity, self.client.search_address
        )
        while not self._stop.is_set():
            self.step()
            if any(work.busy for work in self.work.values()):
                self._stop.wait(self.options.tick_seconds)
                continue
            # Idle: sleep until a change arrives or the next poll is due (no ticking: < 1% of a core).
            timeout = max(0.0, self._polled_at + self.options.poll_seconds - time.monotonic())
            try:
                tag, change, path = self.changes.get(timeout=timeout)
            except queue.Empty:
                continue
            work = self.work.get(tag)
            if work is not None:
                work.on_change(change, path)

    def step(self) -> None:
        if time.monotonic() - self._polled_at >= self.options.poll_seconds:
            try:
                self._poll()
            except ClientError as exc:
                log.warning("cannot list the libraries: %s", exc)
            self._polled_at = time.monotonic()
        self._drain()
        for work in list(self.work.values()):
            if self._stop.is_set():
                return
            try:
                work.step()
            except LibraryRemoved:
                self._drop(work.name, removed=True, cleanup=True)
            if not work.reporter.known:
                self._drop(work.name, removed=True)
            self._drain()

    def _drain(self) -> None:
        while True:
            try:
                tag, change, path = self.changes.get_nowait()
            except queue.Empty:
                return
            work = self.work.get(tag)
            if work is not None:
                work.on_change(change, path)

    def _poll(self) -> None:
        libraries = {lib.name: lib for lib in self.client.list_libraries()}
        for name in [n for n in self.work if n not in libraries or libraries[n].path != self.work[n].library.path]:
            self._drop(name, removed=name not in libraries)
        for name, library in libraries.items():
            work = self.work.get(name)
            if work is None:
                log.info("%s: following %s (collection %r)", name, library.path, library.collection)
                self.work[name] = LibraryWork(self, library)
                continue
            work.library = library
            if library.rescan_requests > work.rescans_seen:
                log.info("%s: rescan requested", name)
                work.rescans_seen = library.rescan_requests
                work.catch_up = work.full_pass = True

    def _drop(self, name: str, *, removed: bool, cleanup: bool = False) -> None:
        work = self.work.pop(name, None)
        if work is None:
            return
        work.stop()
        if removed:
            log.info("%s: removed; no longer watching %s", name, work.library.path)
        if cleanup and all(w.library.path != work.library.path for w in self.work.values()):
            # Removed while a pass was writing: what it wrote after the removal goes too.
            try:
                self.client.delete(sources=[work.library.path], collection=work.library.collection)
            except ClientError as exc:
                log.warning("%s: cannot remove what was indexed after the library was removed: %s", name, exc)

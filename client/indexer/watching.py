"""A library's folder watched with watchfiles, and the files that changed, held until they stop changing."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import watchfiles

from ..ingest.media import media_kind

log = logging.getLogger("clipsearch.indexer")

ADDED, MODIFIED, DELETED = watchfiles.Change.added, watchfiles.Change.modified, watchfiles.Change.deleted


def interesting(change: watchfiles.Change, path: str) -> bool:
    """Changes worth acting on: images, videos and folders (a folder moved in), any deletion; never hidden
    entries (editors' and downloaders' temporary files)."""
    name = os.path.basename(path)
    if name.startswith("."):
        return False
    if change == DELETED:
        return True
    return media_kind(path) is not None or os.path.isdir(path)


class FolderWatch:
    """Watches one folder, recursively, on a thread of its own; the changes go to `changes` as (tag, path)."""

    def __init__(self, path: str, tag: str, changes: queue.Queue[tuple[str, watchfiles.Change | None, str]]) -> None:
        self.path = path
        self._tag = tag
        self._changes = changes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {tag}", daemon=True)
        self.failed: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 2.0) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            for batch in watchfiles.watch(
                self.path,
                watch_filter=interesting,
                debounce=200,
                step=100,  # how often the watch wakes while idle (10 times a second)
                stop_event=self._stop,
                rust_timeout=1000,
                raise_interrupt=False,
                ignore_permission_denied=True,
            ):
                for change, changed in batch:
                    self._changes.put((self._tag, change, changed))
        except (
            OSError,
            RuntimeError,
        ) as exc:  # the watch ends (folder gone, too many watches): the owner notices and retries
            self.failed = f"cannot watch {self.path}: {type(exc).__name__}: {exc}"
            self._changes.put((self._tag, None, self.path))


@dataclass
class _Pending:
    signature: tuple[int, int]  # size, mtime in ns
    stable_since: float  # monotonic time the signature was last seen to change
    not_before: float = 0.0  # monotonic: a retry of a file that looked incomplete waits until then


def signature(path: str) -> tuple[int, int] | None:
    """The file's (size, mtime ns), or None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class Settling:
    """Changed paths held until their size and mtime have not changed for `settle` seconds: a file still being
    written or copied is taken once complete. Deleted paths are collected apart."""

    def __init__(self, settle: float) -> None:
        self._settle = settle
        self._pending: dict[str, _Pending] = {}
        self.deleted: set[str] = set()

    def __len__(self) -> int:
        return len(self._pending)

    def changed(self, path: str, *, not_before: float = 0.0) -> None:
        sig = signature(path)
        if sig is None:
            self.gone(path)
            return
        self.deleted.discard(path)
        self._pending[path] = _Pending(sig, time.monotonic(), not_before)

    def gone(self, path: str) -> None:
        self._pending.pop(path, None)
        prefix = path.rstrip("/") + "/"
        for held in [p for p in self._pending if p.startswith(prefix)]:
            del self._pending[held]
        self.deleted.add(path)

    def ready(self) -> list[str]:
        """Paths unchanged for the settle time, taken out; vanished ones move to `deleted`."""
        now = time.monotonic()
        done: list[str] = []
        for path, held in list(self._pending.items()):
            sig = signature(path)
            if sig is None:
                self.gone(path)
            elif sig != held.signature:
                held.signature, held.stable_since = sig, now
            elif now - held.stable_since >= self._settle and now >= held.not_before:
                done.append(path)
                del self._pending[path]
        return sorted(done)

    def take_deleted(self) -> list[str]:
        """Deleted paths still absent, taken out (one recreated meanwhile is a change, not a deletion)."""
        gone = sorted(p for p in self.deleted if not os.path.lexists(p))
        for path in list(self.deleted):
            if os.path.lexists(path) and path not in self._pending:
                self.changed(path)
        self.deleted.clear()
        return gone


def is_folder(path: str) -> str | None:
    """Why `path` cannot be watched as a library's folder, or None when it can."""
    p = Path(path)
    if not p.exists():
        return f"the folder {path} does not exist (on the indexer's machine)"
    if not p.is_dir():
        return f"{path} is not a folder"
    if not os.access(p, os.R_OK | os.X_OK):
        return f"the folder {path} cannot be read (permission denied)"
    return None

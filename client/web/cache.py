"""A size-bounded disk cache of small files (thumbnails, checked hashes): least recently used go first."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import uuid
from pathlib import Path

# A hit refreshes the file's mtime (its place in the LRU order) at most this often, sparing a write per hit.
_TOUCH_AFTER_SECONDS = 60.0
# Eviction frees down to this fraction of the bound, so that it runs rarely.
_EVICT_TO = 0.9


def cache_key(*parts: object) -> str:
    """A file-name-safe key for the parts (their repr, length-prefixed), 32 hex digits."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        encoded = repr(part).encode("utf-8", "backslashreplace")
        h.update(len(encoded).to_bytes(4, "big"))
        h.update(encoded)
    return h.hexdigest()


class DiskCache:
    """Files under `directory`, named by key; the total size stays under `max_bytes` (LRU by mtime).

    Writes are atomic (a temporary file renamed into place), so readers never see a partial file, and
    several processes may share the directory: eviction looks at what is on disk.
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self._total = sum(size for _, size, _ in self._entries())

    def _path(self, key: str) -> Path:
        if len(key) < 3 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"bad cache key {key!r}")
        return self.directory / key[:2] / key

    def _entries(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of every cached file."""
        entries = []
        for sub in self.directory.iterdir():
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for path in sub.iterdir():
                if path.name.startswith("."):
                    continue
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue  # evicted by another process meanwhile
                entries.append((st.st_mtime, st.st_size, path))
        return entries

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._total

    def get(self, key: str) -> bytes | None:
        """The cached bytes for key, or None."""
        path = self._path(key)
        try:
            with path.open("rb") as f:
                data = f.read()
                mtime = os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            return None
        if time.time() - mtime > _TOUCH_AFTER_SECONDS:
            with contextlib.suppress(FileNotFoundError):  # evicted meanwhile; the bytes read are still right
                os.utime(path)
        return data

    def put(self, key: str, data: bytes) -> None:
        """Stores data under key (replacing what was there), then evicts the oldest files if over the bound."""
        if len(data) > self.max_bytes:
            return  # would evict everything and still not fit
        path = self._path(key)
        path.parent.mkdir(exist_ok=True)
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            tmp.write_bytes(data)
            try:
                old = path.stat().st_size
            except FileNotFoundError:
                old = 0
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        with self._lock:
            self._total += len(data) - old
            over = self._total > self.max_bytes
        if over:
            self._evict()

    def _evict(self) -> None:
        with self._lock:
            entries = sorted(self._entries(), key=lambda e: e[0])
            total = sum(size for _, size, _ in entries)
            target = int(self.max_bytes * _EVICT_TO)
            for _, size, path in entries:
                if total <= target:
                    break
                path.unlink(missing_ok=True)
                total -= size
            self._total = total

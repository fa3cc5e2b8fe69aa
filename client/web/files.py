"""The file behind an indexed item: ids checked first, only its stored file sources, unchanged since indexing."""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from client.api import Client
from client.errors import ClientError, NotFound
from client.ingest.media import MediaError, open_regular
from client.results import Item
from client.uris import FILE_SCHEME, display, uri_to_path

from .cache import DiskCache, cache_key

# Every id clipsearch writes ("img-<hex>", "vid-<hex>-<µs>") and any other made of these characters; no
# "/", "%", "\\" or leading ".", so an id can never spell a path. Checked before anything is looked up.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,255}")
_HASH_LOCKS = 64
_MEMO_ENTRIES = 4096
# How long items listed by a search are used for their media without asking the search service again.
# Their files are still checked on every request; only an item deleted from the index meanwhile is
# served for this long.
ITEM_MEMO_SECONDS = 30.0


class MediaProblem(ClientError):
    """A media request that cannot be served; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        # A stable code for the page to say it in its own words (ErrorDoc.reason).
        self.reason = reason


def check_id(item_id: str) -> str:
    """The id, if it has the form of an item id; else a 400 that reads nothing."""
    if not ID_PATTERN.fullmatch(item_id):
        raise MediaProblem(400, "malformed item id: ids are letters, digits and . _ : - (at most 256)")
    return item_id


def file_name(source: str) -> str:
    """The file name of a source (a file URI or a display path), without directories."""
    text = display(source) if source.startswith(FILE_SCHEME) else source
    return PurePosixPath(text).name or text


@dataclass(frozen=True)
class SourceFile:
    """An item's file, opened and checked: its content hashes to what the index stored."""

    path: Path
    uri: str
    size: int
    mtime_ns: int
    inode: tuple[int, int]

    @property
    def name(self) -> str:
        return file_name(self.uri)

    def signature(self) -> tuple[str, int, int, int, int]:
        """What changes when the file is replaced or rewritten: part of every cache key made from it."""
        return (os.fsdecode(self.path), *self.inode, self.size, self.mtime_ns)


class ItemFiles:
    """Looks items up through the Client and finds their files, checking each file's content hash once
    per version of the file (device, inode, size, mtime); the checks are remembered in memory and on disk."""

    def __init__(self, client: Client, cache: DiskCache) -> None:
        self._client = client
        self._cache = cache
        self._memo: OrderedDict[str, str] = OrderedDict()
        self._items: OrderedDict[str, tuple[float, Item]] = OrderedDict()
        self._memo_lock = threading.Lock()
        # Two requests for frames of one large video hash it once: the second waits for the first.
        self._hash_locks = [threading.Lock() for _ in range(_HASH_LOCKS)]

    def remember(self, items: Iterable[Item]) -> None:
        """Items a response just listed: the thumbnails a page asks for next need no lookup for a while."""
        now = time.monotonic()
        with self._memo_lock:
            for item in items:
                self._items[item.id] = (now, item)
                self._items.move_to_end(item.id)
            while len(self._items) > _MEMO_ENTRIES:
                self._items.popitem(last=False)

    def item(self, item_id: str) -> Item:
        """The stored item; 400 for a malformed id (no call made), 404 for an unknown one."""
        check_id(item_id)
        with self._memo_lock:
            seen = self._items.get(item_id)
        if seen is not None and time.monotonic() - seen[0] < ITEM_MEMO_SECONDS:
            return seen[1]
        items = self._client.get([item_id])
        if not items:
            raise NotFound(f"no item with id {item_id!r}")
        return items[0]

    def open(self, item: Item) -> tuple[SourceFile, io.BufferedReader]:
        """The first of the item's file sources that is there and unchanged, opened; else 410 saying why."""
        uris = [u for u in item.sources if u.startswith(FILE_SCHEME)]
        if not uris:
            raise MediaProblem(404, f"item {item.id} has no file to show")
        problems: list[str] = []
        for uri in uris:
            path = local_path(uri)
            if path is None:
                problems.append(f"{display(uri)} is not a plain absolute path")
                continue
            try:
                stream = open_regular(path)
            except MediaError as exc:
                problems.append(f"{display(uri)}: {exc} (moved or deleted since it was indexed?)")
                continue
            try:
                st = os.fstat(stream.fileno())
                source = SourceFile(path, uri, st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino))
                if item.content_hash and self._hash(source, stream) != item.content_hash:
                    problems.append(f"{display(uri)} changed since it was indexed")
                    stream.close()
                    continue
                stream.seek(0)
            except BaseException:
                stream.close()
                raise
            return source, stream
        hint = "; index its folder again with `clipsearch index --prune` to update the library"
        raise MediaProblem(410, "; ".join(problems) + hint)

    def _hash(self, source: SourceFile, stream: io.BufferedReader) -> str:
        key = cache_key("sha256", source.signature())
        known = self._remembered(key)
        if known is not None:
            return known
        with self._hash_locks[int(key[:8], 16) % _HASH_LOCKS]:
            known = self._remembered(key)
            if known is not None:
                return known
            try:
                digest = hashlib.file_digest(stream, "sha256").hexdigest()
            except OSError as exc:
                raise MediaProblem(500, f"cannot read {display(source.uri)}: {exc.strerror or exc}") from None
            self._cache.put(key, digest.encode("ascii"))
            self._remember(key, digest)
            return digest

    def _remembered(self, key: str) -> str | None:
        with self._memo_lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        stored = self._cache.get(key)
        if stored is None:
            return None
        digest = stored.decode("ascii", "replace")
        self._remember(key, digest)
        return digest

    def _remember(self, key: str, digest: str) -> None:
        with self._memo_lock:
            self._memo[key] = digest
            self._memo.move_to_end(key)
            while len(self._memo) > _MEMO_ENTRIES:
                self._memo.popitem(last=False)


def local_path(uri: str) -> Path | None:
    """The absolute, normalized local path of a file URI, or None for anything else."""
    try:
        path = uri_to_path(uri)
    except ValueError:
        return None
    text = os.fsdecode(path)
    if not path.is_absolute() or os.path.normpath(text) != text or "\x00" in text:
        return None
    return path

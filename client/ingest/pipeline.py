"""The embedding pipeline: batches of images embedded on a pool while one thread upserts the results."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc

from clipsearch.limits import MAX_IDS
from clipsearch.v1 import embedder_pb2, search_pb2

from ..errors import ClientError, ServiceError
from ..transport import Transport
from .reports import Tally

# A batch refused with these codes is split in halves until the item at fault is found.
_SPLITTABLE = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
_FIRST_BATCH = 4  # images in a run's first EmbedImages call; later calls double up to batch_images

Entry = TypeVar("Entry")
Result = TypeVar("Result")


class Batcher(Generic[Entry]):
    """Groups entries into batches of at most max_count entries and max_bytes bytes, in order.

    With first_count, the first batch closes at that many entries and each later one may hold twice as
    many as the one before, up to max_count: the embedder starts on a small batch instead of idling until
    a whole one is decoded, and then gets batches large enough to run efficiently.
    """

    def __init__(self, max_count: int, max_bytes: int, first_count: int | None = None) -> None:
        if max_count < 1 or max_bytes < 1 or (first_count is not None and first_count < 1):
            raise ValueError("batch limits must be positive")
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._count_limit = max_count if first_count is None else min(first_count, max_count)
        self._entries: list[Entry] = []
        self._bytes = 0
        self._opened = 0.0  # time.monotonic() of the current batch's first entry

    def age(self) -> float:
        """Seconds since the current batch's first entry was added (0 when empty)."""
        return time.monotonic() - self._opened if self._entries else 0.0

    def add(self, entry: Entry, nbytes: int) -> list[Entry] | None:
        """Adds an entry; returns the batch it closed, if adding it would overflow the current one.

        An entry larger than max_bytes is refused with ValueError; the caller reports it.
        """
        if nbytes > self.max_bytes:
            raise ValueError(f"{nbytes} bytes is more than a batch holds ({self.max_bytes})")
        full = None
        if self._entries and (len(self._entries) >= self._count_limit or self._bytes + nbytes > self.max_bytes):
            full = self.flush()
        if not self._entries:
            self._opened = time.monotonic()
        self._entries.append(entry)
        self._bytes += nbytes
        return full

    def flush(self) -> list[Entry]:
        """The entries batched so far (possibly none), leaving the batcher empty."""
        entries, self._entries, self._bytes = self._entries, [], 0
        if entries:
            self._count_limit = min(self.max_count, 2 * self._count_limit)
        return entries


def send_in_halves(
    batch: Sequence[Entry],
    send: Callable[[Sequence[Entry]], list[Result]],
    refused: Callable[[Entry, ServiceError], None],
) -> list[Result]:
    """Sends a batch; when the service refuses it as a whole, sends each half on its own.

    Halving goes on until the entry at fault is alone, so one bad entry costs no other its place in
    the index; `refused` reports that entry. Other errors propagate.
    """
    try:
        return send(batch)
    except ServiceError as exc:
        if exc.code not in _SPLITTABLE:
            raise
        if len(batch) == 1:
            refused(batch[0], exc)
            return []
        middle = len(batch) // 2
        return send_in_halves(batch[:middle], send, refused) + send_in_halves(batch[middle:], send, refused)


@dataclass
class Pending:
    """An item waiting for its vector."""

    item_id: str
    metadata: search_pb2.Metadata
    image: embedder_pb2.Image
    nbytes: int
    label: str


@dataclass(frozen=True)
class Patch:
    """Adds sources and tags to stored items, re-upserting their stored vectors (no embedding)."""

    ids: tuple[str, ...]
    sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    label: str = ""
    report_missing: bool = False


@dataclass
class _Written:
    item: search_pb2.Item
    label: str


class _Done:
    """Tells the writer thread that nothing more comes."""


_DONE = _Done()


class Pipeline:
    """Embeds batches on a pool (several calls in flight) while one writer thread upserts the results.

    The producer calls add()/patch() and finally finish(). Queues and the in-flight semaphore bound the
    memory: at most `inflight` batches being embedded plus a few waiting to be written.
    """

    def __init__(
        self,
        transport: Transport,
        tally: Tally,
        *,
        max_images: int,
        max_bytes: int,
        inflight: int,
        upsert_batch: int,
        embed_timeout: float,
        staging: bool = False,
    ) -> None:
        self._transport = transport
        self._tally = tally
        self._upsert_batch = upsert_batch
        self._staging = staging  # write into the staging index of a reindex
        self._embed_timeout = embed_timeout
        self._batcher: Batcher[Pending] = Batcher(max_images, max_bytes, first_count=_FIRST_BATCH)
        self._slots = threading.BoundedSemaphore(inflight)
        self._pool = ThreadPoolExecutor(max_workers=inflight, thread_name_prefix="embed")
        self._writes: queue.Queue[list[_Written] | Patch | _Done] = queue.Queue(maxsize=2 * inflight + 2)
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._writer = threading.Thread(target=self._write_loop, name="upsert", daemon=True)
        self._writer.start()

    # Producer side.
    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def add(self, pending: Pending, *, wait: float | None = None) -> None:
        """Batches an item; with `wait`, a batch whose first item has waited that many seconds is sent
        at once, so that a slow producer (a video decoder) keeps the embedder busy instead of leaving it
        a whole batch to embed after the last frame."""
        self.check()
        try:
            full = self._batcher.add(pending, pending.nbytes)
        except ValueError:
            self._tally.failed(
                pending.label,
                f"too large to send ({pending.nbytes} bytes after shrinking, a call holds {self._batcher.max_bytes})",
            )
            return
        if full:
            self._submit(full)
        if wait is not None:
            self.send_waiting(wait)

    def send_waiting(self, wait: float) -> None:
        """Sends the batch being filled if its first item has waited `wait` seconds or more."""
        if self._batcher.age() >= wait:
            self._submit(self._batcher.flush())

    def patch(self, patch: Patch) -> None:
        self.check()
        self._put(patch)

    def finish(self) -> None:
        """Sends what is batched, waits until every item is written, and stops the threads."""
        last = self._batcher.flush()
        if last:
            self._submit(last)
        self._pool.shutdown(wait=True)
        self._put(_DONE)
        self._writer.join()
        self.check()

    def abort(self, error: BaseException) -> None:
        self._set_error(error)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._put(_DONE)

    def _submit(self, batch: list[Pending]) -> None:
        while not self._slots.acquire(timeout=0.5):
            self.check()
        try:
            self._pool.submit(self._embed_job, batch)
        except BaseException:
            self._slots.release()
            raise

    def _put(self, entry: list[_Written] | Patch | _Done) -> None:
        while True:
            try:
                self._writes.put(entry, timeout=0.5)
                return
            except queue.Full:
                if not self._writer.is_alive():
                    return
                if entry is not _DONE:
                    self.check()

    def _set_error(self, error: BaseException) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = error

    # Embedding workers.
    def _embed_job(self, batch: list[Pending]) -> None:
        try:
            if self._error is None:
                written = send_in_halves(batch, self._embed, self._embed_refused)
                if written:
                    self._put(written)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread and re-raised there
            self._set_error(exc)
        finally:
            self._slots.release()

    def _embed(self, batch: Sequence[Pending]) -> list[_Written]:
        request = embedder_pb2.EmbedImagesRequest(images=[p.image for p in batch], allow_partial=True)
        response = self._transport.embed_images(request, timeout=self._embed_timeout)
        if len(response.results) != len(batch):
            raise ClientError(f"the embedder returned {len(response.results)} results for {len(batch)} images")
        written: list[_Written] = []
        for pending, result in zip(batch, response.results, strict=True):
            if result.WhichOneof("result") != "embedding":
                self._tally.failed(pending.label, result.error.message or "the embedder refused it")
                continue
            metadata = pending.metadata
            if not metadata.width:
                metadata.width, metadata.height = result.width, result.height
            item = search_pb2.Item(id=pending.item_id, vector=result.embedding.values, metadata=metadata)
            written.append(_Written(item, pending.label))
        return written

    def _embed_refused(self, pending: Pending, exc: ServiceError) -> None:
        self._tally.failed(pending.label, exc.details)

    # The writer thread.
    def _write_loop(self) -> None:
        buffered: list[_Written] = []
        while True:
            entry = self._writes.get()
            if isinstance(entry, _Done):
                break
            if self._error is not None:
                continue  # keep draining so that producers never block
            try:
                if isinstance(entry, Patch):
                    self._flush(buffered)
                    buffered = []
                    self._apply_patch(entry)
                else:
                    buffered.extend(entry)
                    if len(buffered) >= self._upsert_batch or self._writes.empty():
                        self._flush(buffered)
                        buffered = []
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread and re-raised there
                self._set_error(exc)
        if self._error is None:
            try:
                self._flush(buffered)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread and re-raised there
                self._set_error(exc)

    def _flush(self, written: list[_Written]) -> None:
        for start in range(0, len(written), self._upsert_batch):
            send_in_halves(written[start : start + self._upsert_batch], self._upsert, self._upsert_refused)

    def _upsert(self, written: Sequence[_Written]) -> list[_Written]:
        if not written:
            return []
        self._transport.upsert(search_pb2.UpsertRequest(items=[w.item for w in written], staging=self._staging))
        frames = sum(1 for w in written if w.item.metadata.media_type == search_pb2.MEDIA_TYPE_VIDEO_FRAME)
        self._tally.indexed(len(written) - frames, frames)
        return list(written)

    def _upsert_refused(self, written: _Written, exc: ServiceError) -> None:
        self._tally.failed(written.label, f"the search service refused it: {exc.details}")

    def _apply_patch(self, patch: Patch) -> None:
        for start in range(0, len(patch.ids), MAX_IDS):
            chunk = list(patch.ids[start : start + MAX_IDS])
            response = self._transport.get(search_pb2.GetRequest(ids=chunk, with_vectors=True))
            if patch.report_missing and response.missing_ids:
                self._tally.failed(
                    patch.label, "not indexed: the same content could not be indexed from its other path"
                )
            items = []
            gained = 0
            for item in response.items:
                sources = list(item.metadata.sources)
                new_sources = [s for s in patch.sources if s not in sources]
                new_tags = [t for t in patch.tags if t not in item.metadata.tags]
                gained += bool(new_sources)
                if not new_sources and not new_tags:
                    continue
                item.metadata.sources.extend(new_sources)
                item.metadata.tags.extend(new_tags)
                items.append(item)
            for offset in range(0, len(items), self._upsert_batch):
                self._transport.upsert(search_pb2.UpsertRequest(items=items[offset : offset + self._upsert_batch]))
            self._tally.sources_added(gained)
            self._tally.known(len(response.items) - gained)

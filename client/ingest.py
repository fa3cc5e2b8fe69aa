"""Indexing files: read and hash, skip what is stored, embed in parallel batches, upsert, prune."""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar

import grpc

from clipsearch.v1 import embedder_pb2, search_pb2

from . import ids as idmod
from .errors import ClientError, ServiceError
from .media import (
    Found,
    ImageLimits,
    MediaError,
    MediaKind,
    PreparedImage,
    Problem,
    VideoFrame,
    discover,
    format_timestamp,
    iter_video_frames,
    open_regular,
    prepare_image,
    read_file,
)
from .shard import Shard, select
from .transport import Transport
from .uris import (
    MAX_SOURCE_BYTES,
    PathLike,
    absolute,
    dir_uri,
    display,
    display_path,
    is_within,
    path_to_uri,
    uri_to_path,
)

# A tag on one frame of each fully indexed video: how many frames a complete run at that fps wrote.
_MARKER = re.compile(r"^clipsearch:frames=(\d+)@(.+)fps$")
# A batch refused with these codes is split in halves until the item at fault is found.
_SPLITTABLE = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
_GET_LIMIT = 1000  # ids (or sources) per Get and Delete call: the search service's limit
_FIRST_BATCH = 4  # images in a run's first EmbedImages call; later calls double up to batch_images


def marker_tag(frames: int, fps: float) -> str:
    return f"clipsearch:frames={frames}@{fps:g}fps"


@dataclass(frozen=True)
class IngestOptions:
    """How an index run behaves; the defaults suit a local embedder."""

    collection: str = idmod.DEFAULT_COLLECTION
    fps: float = 1.0
    tags: tuple[str, ...] = ()
    recursive: bool = True
    prune: bool = False
    # Only this shard's files (client/shard.py); prune then removes only this shard's sources too.
    shard: Shard | None = None
    # Upper bounds for one EmbedImages call; the embedder's ModelInfo limits apply too.
    batch_images: int = 32
    batch_bytes: int = 8 << 20
    # EmbedImages calls in flight; 0 means two per embedder address, at least 2.
    inflight: int = 0
    # Image files up to this size are sent encoded; larger ones are decoded and shrunk here.
    encoded_max_bytes: int = 1 << 20
    # Threads decoding and shrinking large images; 0 means one per CPU but one, at least 1 and at most 4.
    prepare_workers: int = 0
    max_file_bytes: int = 512 << 20
    # Files hashed and looked up in the search service per Get call.
    lookup_batch: int = 64
    lookup_bytes: int = 64 << 20
    upsert_batch: int = 256
    embed_timeout: float = 300.0


@dataclass(frozen=True)
class Failure:
    """A file (or video frame) that could not be indexed, and why."""

    path: str
    reason: str


@dataclass
class IndexReport:
    """What an index run did."""

    images: int = 0
    frames: int = 0
    videos: int = 0
    known: int = 0
    sources_added: int = 0
    failed: list[Failure] = field(default_factory=list)
    pruned_sources: int = 0
    pruned_items: int = 0
    seconds: float = 0.0

    @property
    def indexed(self) -> int:
        return self.images + self.frames

    def to_json(self) -> dict[str, object]:
        return {
            "indexed": self.indexed,
            "images": self.images,
            "frames": self.frames,
            "videos": self.videos,
            "skipped_known": self.known,
            "sources_added": self.sources_added,
            "failed": [{"path": f.path, "error": f.reason} for f in self.failed],
            "pruned_sources": self.pruned_sources,
            "pruned_items": self.pruned_items,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class ProgressEvent:
    """kind: "file" (started a file), "indexed", "known", "source_added", "failed" or "pruned"."""

    kind: str
    count: int = 1
    path: str = ""
    message: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class ImageBytes:
    """An image given as bytes rather than a file; `source` is its URI, if it has one."""

    data: bytes
    source: str = ""
    label: str = "<bytes>"


class _Tally:
    """Thread-safe counters of the report, each change also sent to the progress callback."""

    def __init__(self, report: IndexReport, callback: ProgressCallback | None) -> None:
        self.report = report
        self._callback = callback
        self._lock = threading.Lock()

    def _emit(self, event: ProgressEvent) -> None:
        if self._callback is not None:
            self._callback(event)

    def file(self, label: str) -> None:
        self._emit(ProgressEvent("file", 0, label))

    def indexed(self, images: int, frames: int) -> None:
        with self._lock:
            self.report.images += images
            self.report.frames += frames
        self._emit(ProgressEvent("indexed", images + frames))

    def known(self, count: int = 1) -> None:
        if count:
            with self._lock:
                self.report.known += count
            self._emit(ProgressEvent("known", count))

    def sources_added(self, count: int) -> None:
        if count:
            with self._lock:
                self.report.sources_added += count
            self._emit(ProgressEvent("source_added", count))

    def failed(self, label: str, reason: str) -> None:
        with self._lock:
            self.report.failed.append(Failure(label, reason))
        self._emit(ProgressEvent("failed", 1, label, reason))

    def pruned(self, count: int) -> None:
        self._emit(ProgressEvent("pruned", count))

    def video(self) -> None:
        with self._lock:
            self.report.videos += 1


Entry = TypeVar("Entry")


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

    def add(self, entry: Entry, nbytes: int) -> list[Entry] | None:
        """Adds an entry; returns the batch it closed, if adding it would overflow the current one.

        An entry larger than max_bytes is refused with ValueError; the caller reports it.
        """
        if nbytes > self.max_bytes:
            raise ValueError(f"{nbytes} bytes is more than a batch holds ({self.max_bytes})")
        full = None
        if self._entries and (len(self._entries) >= self._count_limit or self._bytes + nbytes > self.max_bytes):
            full = self.flush()
        self._entries.append(entry)
        self._bytes += nbytes
        return full

    def flush(self) -> list[Entry]:
        """The entries batched so far (possibly none), leaving the batcher empty."""
        entries, self._entries, self._bytes = self._entries, [], 0
        if entries:
            self._count_limit = min(self.max_count, 2 * self._count_limit)
        return entries


@dataclass
class _Pending:
    """An item waiting for its vector."""

    item_id: str
    metadata: search_pb2.Metadata
    image: embedder_pb2.Image
    nbytes: int
    label: str


@dataclass(frozen=True)
class _Patch:
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


_DONE = object()


class _Pipeline:
    """Embeds batches on a pool (several calls in flight) while one writer thread upserts the results.

    The producer calls add()/patch() and finally finish(). Queues and the in-flight semaphore bound the
    memory: at most `inflight` batches being embedded plus a few waiting to be written.
    """

    def __init__(
        self,
        transport: Transport,
        tally: _Tally,
        options: IngestOptions,
        max_images: int,
        max_bytes: int,
        inflight: int,
    ) -> None:
        self._transport = transport
        self._tally = tally
        self._options = options
        self._batcher: Batcher[_Pending] = Batcher(max_images, max_bytes, first_count=_FIRST_BATCH)
        self._slots = threading.BoundedSemaphore(inflight)
        self._pool = ThreadPoolExecutor(max_workers=inflight, thread_name_prefix="embed")
        self._writes: queue.Queue[object] = queue.Queue(maxsize=2 * inflight + 2)
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._writer = threading.Thread(target=self._write_loop, name="upsert", daemon=True)
        self._writer.start()

    # Producer side.
    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def add(self, pending: _Pending) -> None:
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

    def patch(self, patch: _Patch) -> None:
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

    def _submit(self, batch: list[_Pending]) -> None:
        while not self._slots.acquire(timeout=0.5):
            self.check()
        try:
            self._pool.submit(self._embed_job, batch)
        except BaseException:
            self._slots.release()
            raise

    def _put(self, entry: object) -> None:
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
    def _embed_job(self, batch: list[_Pending]) -> None:
        try:
            if self._error is None:
                written = self._embed(batch)
                if written:
                    self._put(written)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread and re-raised there
            self._set_error(exc)
        finally:
            self._slots.release()

    def _embed(self, batch: list[_Pending]) -> list[_Written]:
        request = embedder_pb2.EmbedImagesRequest(images=[p.image for p in batch], allow_partial=True)
        try:
            response = self._transport.embed_images(request, timeout=self._options.embed_timeout)
        except ServiceError as exc:
            if exc.code not in _SPLITTABLE:
                raise
            if len(batch) == 1:
                self._tally.failed(batch[0].label, exc.details)
                return []
            # Find the culprit without losing the rest of the batch.
            middle = len(batch) // 2
            return self._embed(batch[:middle]) + self._embed(batch[middle:])
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

    # The writer thread.
    def _write_loop(self) -> None:
        buffered: list[_Written] = []
        while True:
            entry = self._writes.get()
            if entry is _DONE:
                break
            if self._error is not None:
                continue  # keep draining so that producers never block
            try:
                if isinstance(entry, _Patch):
                    self._flush(buffered)
                    buffered = []
                    self._apply_patch(entry)
                else:
                    buffered.extend(entry)  # type: ignore[arg-type]
                    if len(buffered) >= self._options.upsert_batch or self._writes.empty():
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
        for start in range(0, len(written), self._options.upsert_batch):
            self._upsert(written[start : start + self._options.upsert_batch])

    def _upsert(self, written: list[_Written]) -> None:
        if not written:
            return
        try:
            self._transport.upsert(search_pb2.UpsertRequest(items=[w.item for w in written]))
        except ServiceError as exc:
            if exc.code not in _SPLITTABLE:
                raise
            if len(written) == 1:
                self._tally.failed(written[0].label, f"the search service refused it: {exc.details}")
                return
            middle = len(written) // 2
            self._upsert(written[:middle])
            self._upsert(written[middle:])
            return
        frames = sum(1 for w in written if w.item.metadata.media_type == search_pb2.MEDIA_TYPE_VIDEO_FRAME)
        self._tally.indexed(len(written) - frames, frames)

    def _apply_patch(self, patch: _Patch) -> None:
        for start in range(0, len(patch.ids), _GET_LIMIT):
            chunk = list(patch.ids[start : start + _GET_LIMIT])
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
            for offset in range(0, len(items), self._options.upsert_batch):
                self._transport.upsert(
                    search_pb2.UpsertRequest(items=items[offset : offset + self._options.upsert_batch])
                )
            self._tally.sources_added(gained)
            self._tally.known(len(response.items) - gained)


@dataclass
class _VideoRun:
    """One video being indexed: its identity and the frames the search service already holds."""

    content_hash: str
    uri: str
    label: str
    stored: dict[str, bool] = field(default_factory=dict)  # frame id -> already lists this uri
    to_patch: list[str] = field(default_factory=list)  # stored frames to add this uri to


@dataclass
class _ImageEntry:
    label: str
    uri: str
    data: bytes
    item_id: str
    content_hash: str


class Ingest:
    """One index run over files, folders and image bytes."""

    def __init__(
        self,
        transport: Transport,
        model: embedder_pb2.ModelInfo,
        options: IngestOptions,
        on_event: ProgressCallback | None = None,
    ) -> None:
        self._transport = transport
        self._model = model
        self._options = options
        self._collection = idmod.normalize_collection(options.collection)
        self._tags = tuple(dict.fromkeys(options.tags))
        self.report = IndexReport()
        self._tally = _Tally(self.report, on_event)
        self._limits = ImageLimits(
            model.image_size or 224, model.max_image_pixels or 1 << 28, options.encoded_max_bytes
        )
        # What this run has written or decided on, so a second copy is not embedded twice.
        self._run_images: dict[str, str] = {}
        self._run_videos: set[str] = set()
        self._deferred: list[_Patch] = []
        self._deferred_videos: list[tuple[str, str, str]] = []
        # The content each source had in this run, for --prune to spot files whose content changed.
        self._hash_by_uri: dict[str, str] = {}
        self._pipeline: _Pipeline | None = None
        self._prepare_pool: ThreadPoolExecutor

    def _budget(self) -> tuple[int, int, int]:
        model = self._model
        max_images = min(self._options.batch_images, model.max_batch_images or self._options.batch_images)
        limit = model.max_message_bytes or (4 << 20)
        headroom = max(limit // 8, 64 << 10)
        max_bytes = max(1, min(self._options.batch_bytes, limit - headroom))
        inflight = self._options.inflight or max(2, 2 * len(self._transport.embedder_addresses))
        return max(1, max_images), max_bytes, inflight

    def run(self, inputs: Iterable[PathLike | ImageBytes]) -> IndexReport:
        started = time.monotonic()
        inputs = list(inputs)
        self._check_dimensions()
        max_images, max_bytes, inflight = self._budget()
        self._pipeline = _Pipeline(self._transport, self._tally, self._options, max_images, max_bytes, inflight)
        self._prepare_pool = ThreadPoolExecutor(
            max_workers=self._options.prepare_workers or decode_workers(), thread_name_prefix="prepare"
        )
        try:
            self._produce(inputs)
            self._pipeline.finish()
            if self._deferred or self._deferred_videos:
                self._pipeline = _Pipeline(self._transport, self._tally, self._options, max_images, max_bytes, inflight)
                for patch in self._deferred:
                    self._pipeline.patch(patch)
                for video_hash, uri, label in self._deferred_videos:
                    frames = [item.id for item in self._stored_frames(video_hash)]
                    if frames:
                        self._pipeline.patch(_Patch(tuple(frames), (uri,), label=label))
                    else:
                        self._tally.failed(
                            label, "not indexed: the same video could not be indexed from its other path"
                        )
                self._pipeline.finish()
        except BaseException as exc:
            self._pipeline.abort(exc)
            raise
        finally:
            self._prepare_pool.shutdown(wait=False, cancel_futures=True)
        if self._options.prune:
            self._prune([i for i in inputs if not isinstance(i, ImageBytes)])
        self.report.seconds = time.monotonic() - started
        return self.report

    def _check_dimensions(self) -> None:
        stats = self._transport.stats()
        stored = stats.settings.dimension
        if stored and self._model.dimension and stored != self._model.dimension:
            raise ClientError(
                f"the embedder's model ({self._model.model_id}) makes {self._model.dimension}-dimensional "
                f"vectors but the search index {stats.settings.index_name!r} holds {stored}-dimensional "
                f"ones; use the same model for both services"
            )

    def _produce(self, inputs: list[PathLike | ImageBytes]) -> None:
        assert self._pipeline is not None
        # Images are looked up in the search service a chunk at a time: one Get call per chunk.
        chunk: list[_ImageEntry] = []
        chunk_bytes = 0

        def flush() -> None:
            nonlocal chunk, chunk_bytes
            if chunk:
                self._process_images(chunk)
            chunk, chunk_bytes = [], 0

        def add(entry: _ImageEntry | None) -> None:
            nonlocal chunk_bytes
            if entry is None:
                return
            chunk.append(entry)
            chunk_bytes += len(entry.data)
            if len(chunk) >= self._options.lookup_batch or chunk_bytes >= self._options.lookup_bytes:
                flush()

        for given in inputs:
            if isinstance(given, ImageBytes):
                add(self._entry(given.label, given.source, given.data))
        paths = [i for i in inputs if not isinstance(i, ImageBytes)]
        for found in select(discover(paths, self._options.recursive), self._options.shard):
            self._pipeline.check()
            if isinstance(found, Problem):
                self._tally.failed(display_path(found.path), found.reason)
            elif found.kind is MediaKind.VIDEO:
                flush()
                self._process_video(found)
            else:
                add(self._read_image(found))
        flush()

    def _entry(self, label: str, uri: str, data: bytes) -> _ImageEntry:
        content_hash = idmod.sha256_bytes(data)
        return _ImageEntry(label, uri, data, idmod.image_id(self._collection, content_hash), content_hash)

    def _source_uri(self, path: Path) -> str | None:
        uri = path_to_uri(path)
        if len(uri) > MAX_SOURCE_BYTES:
            self._tally.failed(
                display(uri), f"path too long to store ({len(uri)} bytes as a URI, the limit is {MAX_SOURCE_BYTES})"
            )
            return None
        return uri

    def _read_image(self, found: Found) -> _ImageEntry | None:
        uri = self._source_uri(found.path)
        if uri is None:
            return None
        label = display(uri)
        try:
            data = read_file(found.path, self._options.max_file_bytes)
        except MediaError as exc:
            self._tally.failed(label, str(exc))
            return None
        return self._entry(label, uri, data)

    def _process_images(self, chunk: list[_ImageEntry]) -> None:
        assert self._pipeline is not None
        lookup = list(dict.fromkeys(e.item_id for e in chunk if e.item_id not in self._run_images))
        stored: dict[str, search_pb2.Item] = {}
        if lookup:
            response = self._transport.get(search_pb2.GetRequest(ids=lookup))
            stored = {item.id: item for item in response.items}
        new: list[_ImageEntry] = []
        for entry in chunk:
            self._tally.file(entry.label)
            if self._options.prune and entry.uri:
                self._hash_by_uri[entry.uri] = entry.content_hash
            first_uri = self._run_images.get(entry.item_id)
            if first_uri is not None:
                if first_uri == entry.uri or not entry.uri:
                    self._tally.known()
                else:
                    # The same content seen earlier in this run: it may not be written yet.
                    self._deferred.append(
                        _Patch((entry.item_id,), (entry.uri,), label=entry.label, report_missing=True)
                    )
                continue
            self._run_images[entry.item_id] = entry.uri
            item = stored.get(entry.item_id)
            if item is None:
                new.append(entry)
            elif not entry.uri or entry.uri in item.metadata.sources:
                self._tally.known()
            else:
                self._pipeline.patch(_Patch((entry.item_id,), (entry.uri,), self._tags, entry.label))
        # Decoding and shrinking large images runs on several threads (Pillow releases the GIL).
        for entry, prepared in zip(new, self._prepare_pool.map(self._prepare, new), strict=True):
            if isinstance(prepared, MediaError):
                self._tally.failed(entry.label, str(prepared))
                continue
            metadata = search_pb2.Metadata(
                sources=[entry.uri] if entry.uri else [],
                media_type=search_pb2.MEDIA_TYPE_IMAGE,
                collection=self._collection,
                content_hash=entry.content_hash,
                width=prepared.width,
                height=prepared.height,
                tags=self._tags,
            )
            self._pipeline.add(
                _Pending(entry.item_id, metadata, prepared.image, prepared.image.ByteSize() + 16, entry.label)
            )

    def _prepare(self, entry: _ImageEntry) -> PreparedImage | MediaError:
        try:
            return prepare_image(entry.data, self._limits)
        except MediaError as exc:
            return exc

    def _stored_frames(self, video_hash: str) -> Iterator[search_pb2.Item]:
        filter_ = search_pb2.Filter(
            collections=[self._collection], content_hashes=[video_hash], media_type=search_pb2.MEDIA_TYPE_VIDEO_FRAME
        )
        return list_all(self._transport, filter_)

    def _process_video(self, found: Found) -> None:
        assert self._pipeline is not None
        uri = self._source_uri(found.path)
        if uri is None:
            return
        label = display(uri)
        self._tally.file(label)
        try:
            stream = open_regular(found.path)
        except MediaError as exc:
            self._tally.failed(label, str(exc))
            return
        with stream:
            try:
                video_hash = idmod.sha256_stream(stream)
                stream.seek(0)
            except OSError as exc:
                self._tally.failed(label, exc.strerror or str(exc))
                return
            if self._options.prune:
                self._hash_by_uri[uri] = video_hash
            if video_hash in self._run_videos:
                self._deferred_videos.append((video_hash, uri, label))
                return
            self._run_videos.add(video_hash)
            video = _VideoRun(video_hash, uri, label)
            expected: int | None = None
            fps_text = f"{self._options.fps:g}"
            for item in self._stored_frames(video_hash):
                video.stored[item.id] = uri in item.metadata.sources
                for tag in item.metadata.tags:
                    match = _MARKER.match(tag)
                    if match and match.group(2) == fps_text:
                        expected = max(expected or 0, int(match.group(1)))
            if expected is not None and len(video.stored) >= expected:
                # Complete for this fps: no decoding; at most a new path to record.
                video.to_patch.extend(frame_id for frame_id, has in video.stored.items() if not has)
                self._tally.known(len(video.stored) - len(video.to_patch))
                self._patch_sources(video, flush=True)
                return
            self._tally.video()
            self._decode_video(stream, video)

    def _decode_video(self, stream: BinaryIO, video: _VideoRun) -> None:
        # The last sampled frame is held back until the end of the stream, so that it can carry the
        # marker saying how many frames a complete run writes.
        held: VideoFrame | None = None
        count = 0
        try:
            for frame in iter_video_frames(
                stream, self._options.fps, self._limits.image_size, self._limits.max_image_pixels
            ):
                if held is not None:
                    self._emit_frame(held, video, None)
                held = frame
                count += 1
        except MediaError as exc:
            # Frames decoded so far are kept; without the marker a later run resumes this video.
            if held is not None:
                self._emit_frame(held, video, None)
            self._tally.failed(video.label, str(exc))
        else:
            if held is not None:
                self._emit_frame(held, video, marker_tag(count, self._options.fps))
            else:
                self._tally.failed(video.label, "no frames could be decoded")
        self._patch_sources(video, flush=True)

    def _emit_frame(self, frame: VideoFrame, video: _VideoRun, marker: str | None) -> None:
        assert self._pipeline is not None
        frame_id = idmod.frame_id(self._collection, video.content_hash, frame.timestamp_seconds)
        frame_label = f"{video.label} at {format_timestamp(frame.timestamp_seconds)}"
        if frame_id in video.stored:
            if marker is not None:
                self._pipeline.patch(_Patch((frame_id,), (video.uri,), (marker,), frame_label))
            elif video.stored[frame_id]:
                self._tally.known()
            else:
                video.to_patch.append(frame_id)
                self._patch_sources(video, flush=False)
            return
        metadata = search_pb2.Metadata(
            sources=[video.uri],
            media_type=search_pb2.MEDIA_TYPE_VIDEO_FRAME,
            collection=self._collection,
            timestamp_seconds=frame.timestamp_seconds,
            frame_index=frame.frame_index,
            content_hash=video.content_hash,
            width=frame.source_width,
            height=frame.source_height,
            tags=self._tags + ((marker,) if marker else ()),
        )
        image = embedder_pb2.Image(raw=embedder_pb2.RawImage(rgb=frame.rgb, width=frame.width, height=frame.height))
        self._pipeline.add(_Pending(frame_id, metadata, image, len(frame.rgb) + 32, frame_label))

    def _patch_sources(self, video: _VideoRun, *, flush: bool) -> None:
        """Adds the video's path to stored frames that lack it, a batch at a time."""
        assert self._pipeline is not None
        if video.to_patch and (flush or len(video.to_patch) >= self._options.upsert_batch):
            self._pipeline.patch(_Patch(tuple(video.to_patch), (video.uri,), label=video.label))
            video.to_patch.clear()

    def _prune(self, paths: list[PathLike]) -> None:
        """Removes, within the given paths and collection, sources whose files are gone or changed.

        Each removal is a scoped Delete: a gone file leaves this collection's items only, a changed file
        only the items holding its old content. The search service changes each item atomically, so an
        interrupted prune cannot lose an item that keeps a source.
        """
        gone: set[str] = set()
        changed: dict[str, tuple[frozenset[str], set[str]]] = {}  # item id -> (its sources, those to remove)
        for scope, filter_ in self._prune_scopes(paths):
            for item in list_all(self._transport, filter_):
                for source in item.metadata.sources:
                    if self._options.shard is not None and not self._options.shard.holds_source(source):
                        continue
                    if not is_within(source, scope) or (
                        not self._options.recursive and scope.endswith("/") and "/" in source[len(scope) :]
                    ):
                        continue
                    if not _is_file(source):
                        gone.add(source)
                    elif self._content_changed(item, source):
                        changed.setdefault(item.id, (frozenset(item.metadata.sources), set()))[1].add(source)
        requests = [
            search_pb2.DeleteRequest(sources=chunk, collection=self._collection)
            for chunk in _chunks(sorted(gone), _GET_LIMIT)
        ]
        requests += [
            search_pb2.DeleteRequest(ids=ids, sources=sources, collection=self._collection)
            for ids, sources in _removal_batches(changed, _GET_LIMIT)
        ]
        counted: set[str] = set()
        for request in requests:
            response = self._transport.delete(request)
            new = set(request.sources) - counted
            counted |= new
            self._tally.pruned(len(new))
            self.report.pruned_items += response.deleted
        self.report.pruned_sources += len(counted)

    def _content_changed(self, item: search_pb2.Item, source: str) -> bool:
        """This run found other content at the source than the item holds."""
        current = self._hash_by_uri.get(source)
        return current is not None and current != item.metadata.content_hash

    def _prune_scopes(self, paths: list[PathLike]) -> Iterator[tuple[str, search_pb2.Filter]]:
        collections = [self._collection]
        for given in paths:
            path = absolute(given)
            if path.is_dir() or not path.exists():
                scope = dir_uri(path)
                yield scope, search_pb2.Filter(source_dir=scope, collections=collections)
            if not path.is_dir():
                scope = path_to_uri(path)
                yield scope, search_pb2.Filter(sources=[scope], collections=collections)


def _chunks(values: list[str], size: int) -> list[list[str]]:
    return [values[start : start + size] for start in range(0, len(values), size)]


def _removal_batches(
    changed: dict[str, tuple[frozenset[str], set[str]]], limit: int
) -> Iterator[tuple[list[str], list[str]]]:
    """Groups (item id -> its sources, those to remove) into Delete calls of ids and sources.

    A call removes every one of its sources from every one of its items, so an item joins a call only
    when it keeps none of the call's sources and no other item of the call keeps one it loses.
    """
    ids: list[str] = []
    sources: set[str] = set()
    kept: set[str] = set()
    for item_id, (listed, remove) in changed.items():
        keeps = listed - remove
        if ids and (remove & kept or keeps & sources or len(ids) == limit or len(sources | remove) > limit):
            yield ids, sorted(sources)
            ids, sources, kept = [], set(), set()
        if len(remove) > limit:  # one item losing more sources than a call takes: calls of its own
            for chunk in _chunks(sorted(remove), limit):
                yield [item_id], chunk
            continue
        ids.append(item_id)
        sources |= remove
        kept |= keeps
    if ids:
        yield ids, sorted(sources)


def decode_workers() -> int:
    """Default decode threads: a core is left to the gRPC threads and, when it runs on this machine, the
    model, whose threads stall whenever one of them loses its core; decoding a frame costs a small
    fraction of embedding it, so fewer threads still keep ahead of the model."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cpus - 1))


def _is_file(uri: str) -> bool:
    try:
        return os.path.isfile(uri_to_path(uri))
    except (ValueError, OSError):
        return False


def list_all(
    transport: Transport, filter_: search_pb2.Filter, *, with_vectors: bool = False, page_size: int = 1000
) -> Iterator[search_pb2.Item]:
    """Every item matching the filter, page by page."""
    token = ""
    while True:
        response = transport.list(
            search_pb2.ListRequest(filter=filter_, page_size=page_size, page_token=token, with_vectors=with_vectors)
        )
        yield from response.items
        token = response.next_page_token
        if not token:
            return

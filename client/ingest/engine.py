"""Indexing files: read and hash, skip what is stored, embed in parallel batches, upsert, prune."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from clipsearch.limits import DEFAULT_COLLECTION, MAX_SOURCE_BYTES
from clipsearch.v1 import embedder_pb2, search_pb2

from .. import ids as idmod
from ..errors import ClientError
from ..subtitles.sync import CueSync
from ..transport import Transport
from ..uris import PathLike, display, display_path, path_to_uri
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
from .phash import prepared_hash
from .pipeline import Patch, Pending, Pipeline
from .prune import list_all, prune
from .reports import IndexReport, ProgressCallback, Tally
from .shard import Shard, select
from .stills import DEFAULT_STILL_THRESHOLD, StillFilter

# A tag on one frame of each fully indexed video: how many frames a complete run at that fps (and, when
# frames like the one before were skipped, that still threshold) wrote.
_MARKER = re.compile(r"^clipsearch:frames=(\d+)@(.+)$")


# Seconds a decoded frame may wait for others to fill its EmbedImages batch. Decoding a film yields a sampled
# frame every tenth of a second or slower: without a bound the embedder idled while a batch filled, and
# embedded the last one after decoding had ended.
FRAME_BATCH_WAIT = 0.3


def marker_tag(frames: int, fps: float, still_threshold: float = 0.0) -> str:
    return f"clipsearch:frames={frames}@{_run_kind(fps, still_threshold)}"


def _run_kind(fps: float, still_threshold: float) -> str:
    return f"{fps:g}fps" + (f"~{still_threshold:g}" if still_threshold else "")


@dataclass(frozen=True)
class IngestOptions:
    """How an index run behaves; the defaults suit a local embedder."""

    collection: str = DEFAULT_COLLECTION
    fps: float = 1.0
    # A sampled frame this close to the last embedded frame of its video (stills.difference) is not
    # embedded; the kept frame's item records the span it stands for. 0 embeds every sampled frame.
    still_threshold: float = DEFAULT_STILL_THRESHOLD
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
    # Threads decoding and shrinking large images; 0 means one per CPU but one, at least 2 and at most 4.
    prepare_workers: int = 0
    max_file_bytes: int = 512 << 20
    # Files hashed and looked up in the search service per Get call.
    lookup_batch: int = 64
    lookup_bytes: int = 64 << 20
    upsert_batch: int = 256
    embed_timeout: float = 300.0
    # Read each video's subtitles (embedded text tracks, subtitle files beside it) into its cues.
    subtitles: bool = True


@dataclass(frozen=True)
class ImageBytes:
    """An image given as bytes rather than a file; `source` is its URI, if it has one."""

    data: bytes
    source: str = ""
    label: str = "<bytes>"


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
        self._tally = Tally(self.report, on_event)
        self._limits = ImageLimits(
            model.image_size or 224, model.max_image_pixels or 1 << 28, options.encoded_max_bytes
        )
        # What this run has written or decided on, so a second copy is not embedded twice.
        self._run_images: dict[str, str] = {}
        self._run_videos: set[str] = set()
        self._deferred: list[Patch] = []
        self._deferred_videos: list[tuple[str, str, str]] = []
        # The content each source had in this run, for --prune to spot files whose content changed.
        self._hash_by_uri: dict[str, str] = {}
        self._pipeline: Pipeline | None = None
        self._prepare_pool: ThreadPoolExecutor
        self._cues = CueSync(transport, self._collection) if options.subtitles else None

    def _new_pipeline(self) -> Pipeline:
        """A pipeline within the embedder's limits and this run's options."""
        model = self._model
        max_images = min(self._options.batch_images, model.max_batch_images or self._options.batch_images)
        limit = model.max_message_bytes or (4 << 20)
        headroom = max(limit // 8, 64 << 10)
        return Pipeline(
            self._transport,
            self._tally,
            max_images=max(1, max_images),
            max_bytes=max(1, min(self._options.batch_bytes, limit - headroom)),
            inflight=self._options.inflight or max(2, 2 * len(self._transport.embedder_addresses)),
            upsert_batch=self._options.upsert_batch,
            embed_timeout=self._options.embed_timeout,
        )

    def run(self, inputs: Iterable[PathLike | ImageBytes]) -> IndexReport:
        started, started_cpu = time.monotonic(), time.process_time()
        inputs = list(inputs)
        self._check_dimensions()
        self._pipeline = self._new_pipeline()
        self._prepare_pool = ThreadPoolExecutor(
            max_workers=self._options.prepare_workers or decode_workers(), thread_name_prefix="prepare"
        )
        try:
            self._produce(inputs)
            self._pipeline.finish()
            if self._deferred or self._deferred_videos:
                self._pipeline = self._new_pipeline()
                for patch in self._deferred:
                    self._pipeline.patch(patch)
                for video_hash, uri, label in self._deferred_videos:
                    frames = [item.id for item in self._stored_frames(video_hash)]
                    if frames:
                        self._pipeline.patch(Patch(tuple(frames), (uri,), label=label))
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
            prune(
                self._transport,
                [i for i in inputs if not isinstance(i, ImageBytes)],
                recursive=self._options.recursive,
                hash_by_uri=self._hash_by_uri,
                tally=self._tally,
                shard=self._options.shard,
            )
        self.report.seconds = time.monotonic() - started
        self.report.cpu_seconds = time.process_time() - started_cpu
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
        model = self._transport.embedding_model
        if stored and model is not None and stats.settings.HasField("model"):
            # Refused now (ModelMismatch, naming both models and `clipsearch reindex`) rather than at the first
            # upsert: a run that finds every file indexed would not say that new ones cannot be.
            probe = [1.0] + [0.0] * (stored - 1)
            self._transport.query(search_pb2.QueryRequest(vector=probe, k=1, model=model))

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
                    self._deferred.append(Patch((entry.item_id,), (entry.uri,), label=entry.label, report_missing=True))
                continue
            self._run_images[entry.item_id] = entry.uri
            item = stored.get(entry.item_id)
            if item is None:
                new.append(entry)
            elif not entry.uri or entry.uri in item.metadata.sources:
                self._tally.known()
            else:
                self._pipeline.patch(Patch((entry.item_id,), (entry.uri,), self._tags, entry.label))
        # Decoding and shrinking large images runs on several threads (Pillow releases the GIL).
        for entry, result in zip(new, self._prepare_pool.map(self._prepare, new), strict=True):
            if isinstance(result, MediaError):
                self._tally.failed(entry.label, str(result))
                continue
            prepared, perceptual_hash = result
            metadata = search_pb2.Metadata(
                sources=[entry.uri] if entry.uri else [],
                media_type=search_pb2.MEDIA_TYPE_IMAGE,
                collection=self._collection,
                content_hash=entry.content_hash,
                width=prepared.width,
                height=prepared.height,
                tags=self._tags,
                perceptual_hash=perceptual_hash,
            )
            self._pipeline.add(
                Pending(entry.item_id, metadata, prepared.image, prepared.image.ByteSize() + 16, entry.label)
            )

    def _prepare(self, entry: _ImageEntry) -> tuple[PreparedImage, int | None] | MediaError:
        """The image ready for the embedder, and its perceptual hash (for near-duplicates; None if none)."""
        try:
            prepared = prepare_image(entry.data, self._limits)
        except MediaError as exc:
            return exc
        return prepared, prepared_hash(prepared.image, entry.data)

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
            kind = _run_kind(self._options.fps, self._options.still_threshold)
            for item in self._stored_frames(video_hash):
                video.stored[item.id] = uri in item.metadata.sources
                for tag in item.metadata.tags:
                    match = _MARKER.match(tag)
                    if match and match.group(2) == kind:
                        expected = max(expected or 0, int(match.group(1)))
            if expected is not None and len(video.stored) >= expected:
                # Complete for this fps: no decoding; at most a new path to record.
                video.to_patch.extend(frame_id for frame_id, has in video.stored.items() if not has)
                self._tally.known(len(video.stored) - len(video.to_patch))
                self._patch_sources(video, flush=True)
                self._read_subtitles(found.path, video, known=True)
                return
            self._tally.video()
            self._read_subtitles(found.path, video, known=bool(video.stored))
            self._decode_video(stream, video)

    def _read_subtitles(self, path: Path, video: _VideoRun, *, known: bool) -> None:
        if self._cues is None:
            return
        started = time.monotonic()
        read = self._cues.video(path, video.content_hash, video.label, known=known)
        lines, tracks = (read.lines, len(read.tracks)) if read else (0, 0)
        problems = read.problems + read.notes if read else []
        self._tally.subtitles(lines, tracks, problems, time.monotonic() - started)

    def _decode_video(self, stream: BinaryIO, video: _VideoRun) -> None:
        # The last kept frame is held back until the next one (or the end of the stream), so that it can
        # carry the span of the frames like it that follow, and the marker saying how many frames a
        # complete run writes.
        assert self._pipeline is not None
        options = self._options
        stills = StillFilter(options.still_threshold)
        held: VideoFrame | None = None
        held_end = 0.0
        count = 0
        try:
            for frame in iter_video_frames(stream, options.fps, self._limits.image_size, self._limits.max_image_pixels):
                if not stills.keep(frame):
                    held_end = frame.timestamp_seconds
                    self._tally.still()
                    self._pipeline.send_waiting(FRAME_BATCH_WAIT)
                    continue
                if held is not None:
                    self._emit_frame(held, held_end, video, None)
                held, held_end = frame, 0.0
                count += 1
        except MediaError as exc:
            # Frames decoded so far are kept; without the marker a later run resumes this video.
            if held is not None:
                self._emit_frame(held, held_end, video, None)
            self._tally.failed(video.label, str(exc))
        else:
            if held is not None:
                self._emit_frame(held, held_end, video, marker_tag(count, options.fps, options.still_threshold))
            else:
                self._tally.failed(video.label, "no frames could be decoded")
        self._patch_sources(video, flush=True)

    def _emit_frame(self, frame: VideoFrame, span_end: float, video: _VideoRun, marker: str | None) -> None:
        assert self._pipeline is not None
        frame_id = idmod.frame_id(self._collection, video.content_hash, frame.timestamp_seconds)
        frame_label = f"{video.label} at {format_timestamp(frame.timestamp_seconds)}"
        if frame_id in video.stored:
            if marker is not None:
                self._pipeline.patch(Patch((frame_id,), (video.uri,), (marker,), frame_label))
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
            frame_interval_seconds=1.0 / self._options.fps,
            span_end_seconds=span_end if span_end > frame.timestamp_seconds else 0.0,
        )
        image = embedder_pb2.Image(raw=embedder_pb2.RawImage(rgb=frame.rgb, width=frame.width, height=frame.height))
        self._pipeline.add(Pending(frame_id, metadata, image, len(frame.rgb) + 32, frame_label), wait=FRAME_BATCH_WAIT)

    def _patch_sources(self, video: _VideoRun, *, flush: bool) -> None:
        """Adds the video's path to stored frames that lack it, a batch at a time."""
        assert self._pipeline is not None
        if video.to_patch and (flush or len(video.to_patch) >= self._options.upsert_batch):
            self._pipeline.patch(Patch(tuple(video.to_patch), (video.uri,), label=video.label))
            video.to_patch.clear()


def decode_workers() -> int:
    """Default decode threads: one per CPU but one, and at least 2, at most 4. Decoding runs outside the GIL.

    With a model as fast as OpenVINO's bf16 on an AVX-512 BF16/AMX CPU (about 20 ViT-B/16 images/s on 2
    cores), one thread decoding 1080p PNGs (35-40 ms of CPU each, most of the client's work) caps the
    ingest: on 2 shared cores, 2 threads indexed 6.44 against 5.11, 6.59 against 5.05 and 3.75 against 3.47
    img/s, and 10.18 against 10.34 in a fourth pair, despite sharing the cores with the model.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(2, min(4, cpus - 1))

"""The reindex engine: every stored item embedded again from its sources with the embedder now running."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from clipsearch.limits import MAX_IDS
from clipsearch.v1 import embedder_pb2, search_pb2

from .. import ids as idmod
from ..transport import Transport
from ..uris import display, uri_to_path
from .engine import IngestOptions
from .media import ImageLimits, MediaError, frames_at, prepare_image, read_file
from .phash import prepared_hash
from .pipeline import Pending, Pipeline
from .prune import list_all
from .reports import IndexReport, ProgressCallback, Tally

_MAX_FILE_BYTES = 512 << 20


@dataclass
class ReindexReport:
    """What a reindex did; `progress` holds the embedded and already-staged counts and the failures."""

    model: str = ""
    resumed: bool = False
    live_items: int = 0
    progress: IndexReport = field(default_factory=IndexReport)
    missing_sources: list[str] = field(default_factory=list)
    # Items none of whose sources still holds their content: not carried over.
    dropped: list[str] = field(default_factory=list)
    finished: bool = False
    items: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "resumed": self.resumed,
            "live_items": self.live_items,
            "embedded": self.progress.indexed,
            "already_staged": self.progress.known,
            "missing_sources": self.missing_sources,
            "dropped_items": self.dropped,
            "failed": [{"path": f.path, "error": f.reason} for f in self.progress.failed],
            "finished": self.finished,
            "items": self.items,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        lines = [
            f"reindexed with {self.model}: {self.progress.indexed} items embedded again"
            + (f", {self.progress.known} already staged" if self.progress.known else "")
            + f", {self.items} items in the index now ({self.seconds:.1f} s)"
        ]
        if self.missing_sources:
            lines.append(f"{len(self.missing_sources)} sources no longer exist (or changed) and were left out:")
            lines += [f"  {s}" for s in self.missing_sources]
        if self.dropped:
            lines.append(f"{len(self.dropped)} items have no source left and were not carried over")
        return "\n".join(lines)


class Reindex:
    """One reindex run: begin (or resume), embed the items not yet staged, finish."""

    def __init__(self, transport: Transport, model: embedder_pb2.ModelInfo, on_event: ProgressCallback | None) -> None:
        self._transport = transport
        self._info = model
        assert transport.embedding_model is not None  # set by the model_info() call that gave `model`
        self._model = transport.embedding_model
        self.report = ReindexReport(model=model.model_id)
        self._on_event = on_event
        self._limits = ImageLimits(model.image_size or 224, model.max_image_pixels or 1 << 28)

    def run(self) -> ReindexReport:
        started = time.monotonic()
        status = self._transport.begin_reindex(search_pb2.BeginReindexRequest(model=self._model))
        self.report.resumed, self.report.live_items = status.resumed, status.live_items
        # A second pass stages what was written to the live index during the first.
        for on_event in (self._on_event, None):
            tally = Tally(self.report.progress if on_event else IndexReport(), on_event)
            self._pass(tally)
            if on_event is None:
                self.report.progress.images += tally.report.images
                self.report.progress.frames += tally.report.frames
                self.report.progress.failed += tally.report.failed
        finished = self._transport.finish_reindex(search_pb2.FinishReindexRequest(model=self._model))
        self.report.finished, self.report.items = True, finished.items
        self.report.seconds = time.monotonic() - started
        return self.report

    def _pass(self, tally: Tally) -> None:
        defaults = IngestOptions()
        info = self._info
        pipeline = Pipeline(
            self._transport,
            tally,
            max_images=max(1, min(defaults.batch_images, info.max_batch_images or defaults.batch_images)),
            max_bytes=max(1, min(defaults.batch_bytes, (info.max_message_bytes or 4 << 20) * 7 // 8)),
            inflight=max(2, 2 * len(self._transport.embedder_addresses)),
            upsert_batch=defaults.upsert_batch,
            embed_timeout=defaults.embed_timeout,
            staging=True,
        )
        try:
            video: list[search_pb2.Item] = []
            for item in self._unstaged(tally):
                meta = item.metadata
                if meta.media_type != search_pb2.MEDIA_TYPE_VIDEO_FRAME:
                    self._image(item, pipeline, tally)
                    continue
                if video and _video_of(video[0]) != _video_of(item):
                    self._video(video, pipeline, tally)
                    video = []
                video.append(item)
            if video:
                self._video(video, pipeline, tally)
        except BaseException as exc:
            pipeline.abort(exc)
            raise
        pipeline.finish()

    def _unstaged(self, tally: Tally) -> Iterator[search_pb2.Item]:
        """The live items, in id order, that the staging index does not hold yet."""
        batch: list[search_pb2.Item] = []
        for item in list_all(self._transport, search_pb2.Filter()):
            batch.append(item)
            if len(batch) == MAX_IDS:
                yield from self._filter_staged(batch, tally)
                batch = []
        yield from self._filter_staged(batch, tally)

    def _filter_staged(self, batch: list[search_pb2.Item], tally: Tally) -> list[search_pb2.Item]:
        if not batch:
            return []
        staged = set(self._transport.staged_ids(search_pb2.StagedIdsRequest(ids=[i.id for i in batch])).ids)
        tally.known(len(staged))
        return [i for i in batch if i.id not in staged]

    def _present(self, sources: Iterable[str], content_hash: str) -> tuple[bytes | None, str | None, list[str]]:
        """The content of the first source still holding it, that source, and the sources that still exist."""
        data: bytes | None = None
        chosen: str | None = None
        kept: list[str] = []
        for uri in sources:
            try:
                path = uri_to_path(uri)
            except ValueError:
                self._missing(uri)
                continue
            if chosen is not None:
                if os.path.isfile(path):
                    kept.append(uri)
                else:
                    self._missing(uri)
                continue
            try:
                content = read_file(path, _MAX_FILE_BYTES)
            except MediaError:
                self._missing(uri)
                continue
            if content_hash and hashlib.sha256(content).hexdigest() != content_hash:
                self._missing(uri)
                continue
            data, chosen = content, uri
            kept.append(uri)
        return data, chosen, kept

    def _drop(self, ids: list[str]) -> None:
        self.report.dropped.extend(i for i in ids if i not in self.report.dropped)  # a second pass meets them again

    def _missing(self, uri: str) -> None:
        if display(uri) not in self.report.missing_sources:
            self.report.missing_sources.append(display(uri))

    def _image(self, item: search_pb2.Item, pipeline: Pipeline, tally: Tally) -> None:
        data, chosen, kept = self._present(item.metadata.sources, item.metadata.content_hash)
        if data is None or chosen is None:
            self._drop([item.id])
            return
        tally.file(display(chosen))
        try:
            image = prepare_image(data, self._limits).image
        except MediaError as exc:
            tally.failed(display(chosen), str(exc))
            return
        metadata = _with_sources(item.metadata, kept)
        if not metadata.HasField("perceptual_hash"):
            # Photos indexed before hashes were stored gain one, so near-duplicates collapse after a reindex.
            perceptual_hash = prepared_hash(image, data)
            if perceptual_hash is not None:
                metadata.perceptual_hash = perceptual_hash
        pipeline.add(Pending(item.id, metadata, image, len(data) + 32, display(chosen)))

    def _video(self, frames: list[search_pb2.Item], pipeline: Pipeline, tally: Tally) -> None:
        """Frames of one video: decoded again at their timestamps from a source still holding the video."""
        sources = list(dict.fromkeys(s for f in frames for s in f.metadata.sources))
        content_hash = frames[0].metadata.content_hash
        chosen: str | None = None
        kept: list[str] = []
        for uri in sources:
            try:
                path = uri_to_path(uri)
                with open(path, "rb") as stream:
                    same = not content_hash or idmod.sha256_stream(stream) == content_hash
            except (ValueError, OSError):
                same = False
            if not same:
                self._missing(uri)
                continue
            chosen = chosen or uri
            kept.append(uri)
        if chosen is None:
            self._drop([f.id for f in frames])
            return
        label = display(chosen)
        tally.file(label)
        by_time = {round(f.metadata.timestamp_seconds * 1_000_000): f for f in frames}
        try:
            for frame in frames_at(
                uri_to_path(chosen), [f.metadata.timestamp_seconds for f in frames], *self._frame_limits()
            ):
                item = by_time.pop(round(frame.timestamp_seconds * 1_000_000))
                metadata = _with_sources(item.metadata, [s for s in item.metadata.sources if s in kept] or [chosen])
                raw = embedder_pb2.RawImage(rgb=frame.rgb, width=frame.width, height=frame.height)
                pipeline.add(Pending(item.id, metadata, embedder_pb2.Image(raw=raw), len(frame.rgb) + 32, label))
        except MediaError as exc:
            tally.failed(label, str(exc))
        for item in by_time.values():
            tally.failed(f"{label} at {item.metadata.timestamp_seconds:.3f} s", "the frame could not be decoded again")

    def _frame_limits(self) -> tuple[int, int]:
        return self._limits.image_size, self._limits.max_image_pixels


def _video_of(item: search_pb2.Item) -> tuple[str, str]:
    return item.metadata.collection, item.metadata.content_hash


def _with_sources(metadata: search_pb2.Metadata, sources: list[str]) -> search_pb2.Metadata:
    copy = search_pb2.Metadata()
    copy.CopyFrom(metadata)
    del copy.sources[:]
    copy.sources.extend(sources)
    return copy

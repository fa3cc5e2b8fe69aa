"""Dynamic batching: concurrent embedding requests merged into shared model forward passes."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

import numpy as np

from embedder_service.model import Classification, ClipEmbedder, ModelInfo, zero_shot
from embedder_service.preprocess import PreprocessSpec

log = logging.getLogger(__name__)

IMAGE = "image"
TEXT = "text"
KINDS = (IMAGE, TEXT)

# What one more text forward pass costs on a CPU, in padded tokens (rows x length): reading the weights makes
# a pass cost as much as ~30 more tokens in a bigger one (ViT-B/16 text tower, fp32). A GPU pads for free at
# these sizes, so there texts are never split.
TEXT_PASS_OVERHEAD_TOKENS = 32


def length_groups(lengths: Sequence[int], pass_overhead: int = TEXT_PASS_OVERHEAD_TOKENS) -> list[list[int]]:
    """Indices of token sequences grouped into forward passes, shortest first.

    Every sequence of a pass is padded to the pass's longest, so mixing a 10-token and a 70-token text
    costs 60 padding tokens. Taking the sequences in order of length, each joins the current group unless
    the padding it adds to the group's sequences costs more than a pass of its own.
    """
    groups: list[list[int]] = []
    longest = 0
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        length = lengths[index]
        if groups and len(groups[-1]) * (length - longest) <= pass_overhead:
            groups[-1].append(index)
        else:
            groups.append([index])
        longest = length
    return groups


# After an idle spell, how much of the window may pass between arrivals before a pass starts anyway.
IDLE_GAP_SHARE = 0.2


class BatcherClosed(RuntimeError):
    """The batcher was stopped (the server is shutting down) before the request ran."""


class BatchObserver(Protocol):
    """Hears about every model forward pass and the queue in front of the model (e.g. to export metrics)."""

    def forward(self, kind: str, rows: int) -> None:
        """The model embedded a batch of `rows` images or texts (kind is "image" or "text"); it may have run
        the images in several passes (ClipEmbedder.image_pass_size)."""

    def queue_depth(self, kind: str, depth: int) -> None:
        """`depth` requests of `kind` are now waiting for a forward pass."""


@dataclass(frozen=True)
class BatchingOptions:
    """How requests are merged: on or off, most images and texts per merged pass, longest wait for more.

    The 5 ms wait held up on OpenVINO bf16 too (ViT-B/16, 8 callers, 2 shared cores): texts merged 1.85x,
    1.91x, 1.79x and 1.34x faster than unmerged with windows of 0, 2, 5 and 10 ms, single images 0.87x,
    0.82x, 1.23x and 1.14x (docs/benchmarks.md).
    """

    enabled: bool = True
    max_images: int = 32
    max_texts: int = 32
    max_wait_seconds: float = 0.005

    def __post_init__(self) -> None:
        if min(self.max_images, self.max_texts) < 1:
            raise ValueError(f"max_images and max_texts must be at least 1, got {self.max_images}, {self.max_texts}")
        if not 0.0 <= self.max_wait_seconds < float("inf"):
            raise ValueError(f"max_wait_seconds must be finite and not negative, got {self.max_wait_seconds}")


@dataclass(eq=False)
class _Request:
    kind: str
    payload: np.ndarray | list[list[int]]  # preprocessed pixels (N, 3, H, W) or token id lists
    rows: int
    enqueued: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class BatchingEmbedder:
    """Embeds images and texts with a ClipEmbedder, merging concurrent requests into shared forward passes.

    Callers decode, preprocess and tokenize in their own threads, then wait while one worker thread runs
    the model over what is queued of one kind (up to max_images or max_texts rows; for more to arrive it
    waits at most max_wait_seconds after the oldest request arrived or the previous pass ended, whichever
    is later; after an idle spell, only while requests keep arriving) and hands each caller its own rows. A request larger than the limit runs alone, whole. When
    a merged pass fails, its requests are rerun one by one, so a bad request fails alone. On a CPU, texts
    of very different lengths go through separate passes (see length_groups), in both modes.

    With batching disabled, each caller runs its own forward pass in its own thread, one at a time: the
    same work and the same lock, without merging.
    """

    def __init__(
        self,
        model: ClipEmbedder,
        options: BatchingOptions = BatchingOptions(),
        *,
        observer: BatchObserver | None = None,
    ) -> None:
        self._model = model
        self._options = options
        self._observer = observer
        self._cond = threading.Condition()
        self._queue: deque[_Request] = deque()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._unbatched_lock = threading.Lock()  # batching off: one forward pass at a time
        self._unbatched_waiting = dict.fromkeys(KINDS, 0)

    # --- what the servicer uses: the ClipEmbedder interface ------------------------------------------

    @property
    def info(self) -> ModelInfo:
        return self._model.info

    @property
    def preprocess_spec(self) -> PreprocessSpec:
        return self._model.preprocess_spec

    @property
    def options(self) -> BatchingOptions:
        return self._options

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) preprocessed pixels -> (N, dimension) L2-normalized float32 vectors."""
        if pixels.ndim != 4 or pixels.shape[0] == 0:
            raise ValueError(f"expected a non-empty (N, 3, H, W) batch, got shape {pixels.shape}")
        return self._submit(IMAGE, pixels, pixels.shape[0])

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dimension) L2-normalized float32 vectors, tokenized in the caller's thread."""
        if not texts:
            raise ValueError("no texts to embed")
        tokens = self._model.tokenize(texts)
        step = self._model.text_batch_size
        return np.concatenate(
            [self._submit(TEXT, tokens[i : i + step], len(tokens[i : i + step])) for i in range(0, len(tokens), step)]
        )

    def classify(self, image_vector: np.ndarray, labels: Sequence[str], template: str = "") -> Classification:
        """As ClipEmbedder.classify, with the prompts embedded through this batcher."""
        return zero_shot(image_vector, labels, template, embed_texts=self.embed_texts, info=self.info)

    # --- lifecycle -----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Reports empty queues and starts the worker thread (batching on); starting twice is a no-op."""
        with self._cond:
            if self._closed:
                raise BatcherClosed("the batcher was closed; build a new one")
            if self._thread is not None:
                return
            for kind in KINDS:
                self._report_depth(kind, 0)
            if self._options.enabled:
                self._thread = threading.Thread(target=self._work, name="embedder-batcher", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stops the worker after its current pass; requests still queued fail with BatcherClosed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    # --- internals -----------------------------------------------------------------------------------

    def _submit(self, kind: str, payload: np.ndarray | list[list[int]], rows: int) -> np.ndarray:
        if not self._options.enabled:
            return self._run_unbatched(kind, payload)
        request = _Request(kind, payload, rows)
        with self._cond:
            if self._closed:
                raise BatcherClosed("the embedder is shutting down")
            if self._thread is None:
                raise RuntimeError("the batcher is not started; call start() first")
            self._queue.append(request)
            self._report_depth(kind, self._depth(kind))
            self._cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _run_unbatched(self, kind: str, payload: np.ndarray | list[list[int]]) -> np.ndarray:
        with self._cond:
            if self._closed:
                raise BatcherClosed("the embedder is shutting down")
            self._unbatched_waiting[kind] += 1
            self._report_depth(kind, self._unbatched_waiting[kind])
        with self._unbatched_lock:
            with self._cond:
                self._unbatched_waiting[kind] -= 1
                self._report_depth(kind, self._unbatched_waiting[kind])
            return self._forward(kind, payload)

    def _forward(self, kind: str, payload: np.ndarray | list[list[int]]) -> np.ndarray:
        """Runs the model: images in one pass, texts in one pass per group of similar lengths."""
        if kind == IMAGE:
            return self._observed(IMAGE, self._model.embed_images(cast(np.ndarray, payload)))
        payload = cast(list[list[int]], payload)
        if self.info.device.startswith("cuda"):
            groups = [list(range(len(payload)))]
        else:
            groups = length_groups([len(ids) for ids in payload])
        if len(groups) == 1:
            return self._observed(TEXT, self._model.embed_tokens(payload))
        vectors = np.empty((len(payload), self.info.dimension), dtype=np.float32)
        for group in groups:
            vectors[group] = self._observed(TEXT, self._model.embed_tokens([payload[i] for i in group]))
        return vectors

    def _observed(self, kind: str, vectors: np.ndarray) -> np.ndarray:
        if self._observer is not None:
            self._observer.forward(kind, len(vectors))
        return vectors

    def _depth(self, kind: str) -> int:
        return sum(1 for request in self._queue if request.kind == kind)

    def _report_depth(self, kind: str, depth: int) -> None:
        if self._observer is not None:
            self._observer.queue_depth(kind, depth)

    def _work(self) -> None:
        free_since = time.monotonic()
        while (batch := self._next_batch(free_since)) is not None:
            try:
                self._run(batch)
            finally:
                for request in batch:  # never leave a caller waiting, whatever happened
                    if not request.done.is_set():
                        request.error = request.error or BatcherClosed("the batcher stopped unexpectedly")
                        request.done.set()
                free_since = time.monotonic()

    def _next_batch(self, free_since: float) -> list[_Request] | None:
        """Waits for requests, then takes the oldest one's kind: as many as fit, after at most max_wait.

        The wait counts from the later of the oldest request's arrival and the end of the previous pass
        (`free_since`): callers whose results that pass just returned can send their next request in time
        to join the next batch, instead of the batches splitting the callers in two halves that alternate.
        """
        options = self._options
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                self._fail_queued()
                return None
            kind = self._queue[0].kind
            max_rows = options.max_images if kind == IMAGE else options.max_texts
            first = self._queue[0].enqueued
            deadline = max(first, free_since) + options.max_wait_seconds
            # A request that found the model idle for longer than the window is most likely alone (a search
            # typed by a person): wait for company only while it keeps coming, each arrival within a fifth
            # of the window of the last. A burst still merges whole; a lone query saves most of the window.
            idle = first - free_since > options.max_wait_seconds
            while not self._closed:
                same = [request for request in self._queue if request.kind == kind]
                queued = sum(request.rows for request in same)
                until = (
                    min(deadline, same[-1].enqueued + options.max_wait_seconds * IDLE_GAP_SHARE) if idle else deadline
                )
                remaining = until - time.monotonic()
                if queued >= max_rows or remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._closed:
                self._fail_queued()
                return None
            batch: list[_Request] = []
            rows = 0
            for request in list(self._queue):
                if request.kind != kind:
                    continue
                if batch and rows + request.rows > max_rows:
                    break
                batch.append(request)
                rows += request.rows
                self._queue.remove(request)
            self._report_depth(kind, self._depth(kind))
        return batch

    def _fail_queued(self) -> None:
        for request in self._queue:
            request.error = BatcherClosed("the embedder is shutting down")
            request.done.set()
        self._queue.clear()

    def _run(self, batch: list[_Request]) -> None:
        kind = batch[0].kind
        if len(batch) > 1:
            try:
                if kind == IMAGE:
                    merged: np.ndarray | list[list[int]] = np.concatenate([request.payload for request in batch])
                else:
                    merged = [ids for request in batch for ids in request.payload]
                vectors = self._forward(kind, merged)
            except Exception:
                log.warning(
                    "a merged %s pass of %d requests failed; running them one by one", kind, len(batch), exc_info=True
                )
            else:
                start = 0
                for request in batch:
                    request.result = vectors[start : start + request.rows]
                    start += request.rows
                    request.done.set()
                return
        for request in batch:
            try:
                request.result = self._forward(kind, request.payload)
            except Exception as error:  # noqa: BLE001 - handed back to the caller that submitted the request
                request.error = error
            request.done.set()

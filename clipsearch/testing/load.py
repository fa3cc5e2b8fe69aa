"""A bounded load: client threads mixing text queries, image queries and upserts against the three services as
real processes, with throughput, latency percentiles and the processes' resident memory.

Each client thread has its own channels and runs one operation after another, every call with a deadline:
  text    EmbedTexts of a phrase, then Query (k=10) with its vector
  image   EmbedImages of an encoded picture, then Query (k=10) with its vector
  upsert  EmbedImages of a picture, then Upsert of it under one of a fixed set of ids
Upserts rewrite a fixed set of items (seeded before the warm-up), so Redis holds the same data throughout
and memory growth after the warm-up means a leak, not more data. Resident memory (VmRSS) of Redis, the
embedder and the search service is read after the warm-up and at the end.

`python -m bench.load` runs it from the command line.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np
from PIL import Image

from clipsearch.testing.processes import Stack, rss_bytes
from clipsearch.v1 import embedder_pb2, embedder_pb2_grpc, search_pb2, search_pb2_grpc

OPERATIONS = ("text", "image", "upsert")
COLLECTION = "load"
_SEED_BATCH = 16
_PHRASES = (
    "a cat on a sofa",
    "a red car in the rain",
    "mountains at sunset",
    "a bowl of fruit",
    "people waving on a beach",
    "a city street at night",
    "a dog catching a ball",
    "snow on pine trees",
    "a plate of pasta",
    "an old bicycle against a wall",
    "boats in a harbour",
    "a child with a kite",
)


@dataclass(frozen=True)
class LoadConfig:
    """How long, how many clients, which mix of operations."""

    clients: int = 16
    duration: float = 60.0
    warmup: float = 30.0  # a ViT-B/16 embedder's memory still grew 8% in a run after 10 s of warm-up
    deadline: float = 30.0  # seconds, on every call
    mix: tuple[float, float, float] = (0.4, 0.4, 0.2)  # weights of text, image, upsert
    items: int = 200  # ids that upserts rewrite
    pictures: int = 64  # distinct pictures the image queries and upserts send
    seed: int = 0


@dataclass
class OperationStats:
    count: int = 0
    errors: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    per_second: float = 0.0


@dataclass
class LoadResult:
    """What a load run measured; rss maps process -> (bytes after warm-up, bytes at the end)."""

    config: LoadConfig
    seconds: float
    operations: dict[str, OperationStats]
    total: OperationStats
    errors: dict[str, int]  # "operation: STATUS_CODE" -> count, warm-up included
    rss: dict[str, tuple[int, int]]
    items_after: int
    rss_samples: dict[str, list[int]] = field(default_factory=dict)  # every tenth of the measured time
    load_average: tuple[float, float] = (0.0, 0.0)  # the machine's 1-minute load at the start and the end
    model: str = ""
    dimension: int = 0

    def rss_growth(self) -> dict[str, float]:
        return {name: end / start - 1.0 for name, (start, end) in self.rss.items()}

    def to_json(self) -> dict[str, object]:
        return {
            "config": {**self.config.__dict__, "mix": dict(zip(OPERATIONS, self.config.mix, strict=False))},
            "model": self.model,
            "dimension": self.dimension,
            "seconds": round(self.seconds, 3),
            "operations": {name: stats.__dict__ for name, stats in self.operations.items()},
            "total": self.total.__dict__,
            "errors": self.errors,
            "rss_bytes": {
                name: {"start": start, "end": end, "growth": round(end / start - 1.0, 4)}
                for name, (start, end) in self.rss.items()
            },
            "rss_samples_bytes": self.rss_samples,
            "items_after": self.items_after,
            "load_average": {"start": self.load_average[0], "end": self.load_average[1]},
        }


def make_pictures(count: int, seed: int) -> list[tuple[bytes, int, int]]:
    """Distinct encoded pictures (PNG and JPEG, 96 to 320 pixels a side) with their sizes."""
    rng = np.random.default_rng(seed)
    pictures = []
    for n in range(count):
        width, height = (int(v) for v in rng.integers(96, 321, size=2))
        blocks = rng.integers(0, 256, (int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(blocks).resize((width, height), Image.Resampling.BICUBIC).save(
            buffer, "PNG" if n % 2 else "JPEG", quality=90
        )
        pictures.append((buffer.getvalue(), width, height))
    return pictures


class _Recorder:
    """Per operation: latencies while `recording` (after the warm-up), and errors throughout."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latencies: dict[str, list[float]] = {name: [] for name in OPERATIONS}
        self.errors: Counter[str] = Counter()
        self.recording = False

    def record(self, operation: str, seconds: float, error: str | None) -> None:
        with self._lock:
            if error is not None:
                self.errors[f"{operation}: {error}"] += 1
            elif self.recording:
                self.latencies[operation].append(seconds)


class _Client:
    """One client: its own channels to the embedder and the search service."""

    def __init__(
        self, embedder: str, search: str, config: LoadConfig, pictures: Sequence[tuple[bytes, int, int]]
    ) -> None:
        self._channels = [grpc.insecure_channel(embedder), grpc.insecure_channel(search)]
        self.embedder = embedder_pb2_grpc.EmbedderStub(self._channels[0])
        self.search = search_pb2_grpc.SearchStub(self._channels[1])
        self.config = config
        self.pictures = pictures

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def embed_picture(self, picture: int) -> list[float]:
        data = self.pictures[picture][0]
        response = self.embedder.EmbedImages(
            embedder_pb2.EmbedImagesRequest(images=[embedder_pb2.Image(encoded=data)]), timeout=self.config.deadline
        )
        return list(response.results[0].embedding.values)

    def query(self, vector: list[float]) -> None:
        self.search.Query(search_pb2.QueryRequest(vector=vector, k=10), timeout=self.config.deadline)

    def item(self, number: int, picture: int, vector: Sequence[float]) -> search_pb2.Item:
        data, width, height = self.pictures[picture]
        metadata = search_pb2.Metadata(
            sources=[f"file:///load/{number:05d}.img"],
            media_type=search_pb2.MEDIA_TYPE_IMAGE,
            collection=COLLECTION,
            content_hash=hashlib.sha256(data).hexdigest(),
            width=width,
            height=height,
        )
        return search_pb2.Item(id=f"load-{number:05d}", vector=vector, metadata=metadata)

    def upsert(self, number: int, picture: int) -> None:
        item = self.item(number, picture, self.embed_picture(picture))
        self.search.Upsert(search_pb2.UpsertRequest(items=[item]), timeout=self.config.deadline)

    def seed(self) -> None:
        """Writes every id once (batched), so that upserts during the run rewrite, never add."""
        vectors: list[list[float]] = []
        for start in range(0, len(self.pictures), _SEED_BATCH):
            images = [embedder_pb2.Image(encoded=data) for data, _, _ in self.pictures[start : start + _SEED_BATCH]]
            response = self.embedder.EmbedImages(
                embedder_pb2.EmbedImagesRequest(images=images), timeout=self.config.deadline
            )
            vectors.extend(list(result.embedding.values) for result in response.results)
        items = [self.item(n, n % len(vectors), vectors[n % len(vectors)]) for n in range(self.config.items)]
        for start in range(0, len(items), _SEED_BATCH):
            self.search.Upsert(
                search_pb2.UpsertRequest(items=items[start : start + _SEED_BATCH]), timeout=self.config.deadline
            )

    def operate(self, operation: str, rng: random.Random) -> None:
        picture = rng.randrange(len(self.pictures))
        if operation == "text":
            response = self.embedder.EmbedTexts(
                embedder_pb2.EmbedTextsRequest(texts=[rng.choice(_PHRASES)]), timeout=self.config.deadline
            )
            self.query(list(response.embeddings[0].values))
        elif operation == "image":
            self.query(self.embed_picture(picture))
        else:
            self.upsert(rng.randrange(self.config.items), picture)


def _client_loop(client: _Client, recorder: _Recorder, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        operation = rng.choices(OPERATIONS, weights=client.config.mix)[0]
        started = time.perf_counter()
        error = None
        try:
            client.operate(operation, rng)
        except grpc.RpcError as exc:
            error = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        except Exception as exc:  # noqa: BLE001 - a malformed answer counts as an error too, and the client goes on
            error = type(exc).__name__
        recorder.record(operation, time.perf_counter() - started, error)


def _summarize(latencies: list[float], errors: int, seconds: float) -> OperationStats:
    if not latencies:
        return OperationStats(errors=errors)
    ms = np.asarray(latencies) * 1000
    return OperationStats(
        count=len(latencies),
        errors=errors,
        p50_ms=round(float(np.percentile(ms, 50)), 2),
        p99_ms=round(float(np.percentile(ms, 99)), 2),
        max_ms=round(float(ms.max()), 2),
        per_second=round(len(latencies) / seconds, 2),
    )


def _count(stub: search_pb2_grpc.SearchStub, deadline: float) -> int:
    stats = stub.Stats(search_pb2.StatsRequest(), timeout=deadline)
    return next((c.items for c in stats.collections if c.name == COLLECTION), 0)


def run_load(stack: Stack, config: LoadConfig) -> LoadResult:
    """Seeds the items, warms up for config.warmup seconds, then measures for config.duration seconds."""
    pictures = make_pictures(config.pictures, config.seed)
    embedder = (
        stack.embedder_addresses[0] if len(stack.embedders) == 1 else "ipv4:" + ",".join(stack.embedder_addresses)
    )
    clients = [_Client(embedder, stack.search.address, config, pictures) for _ in range(config.clients)]
    recorder = _Recorder()
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=_client_loop, args=(client, recorder, stop, config.seed * 1000 + n), name=f"load-{n}", daemon=True
        )
        for n, client in enumerate(clients)
    ]
    load_start = os.getloadavg()[0]
    try:
        clients[0].seed()
        for thread in threads:
            thread.start()
        stop.wait(config.warmup)
        rss_start = {name: rss_bytes(pid) for name, pid in stack.pids().items()}
        recorder.recording = True
        started = time.perf_counter()
        samples: dict[str, list[int]] = {name: [rss] for name, rss in rss_start.items()}
        # Resident memory every tenth of the run: a plateau and a leak differ in shape, not in the end value.
        for tenth in range(1, 11):
            stop.wait(max(0.0, started + config.duration * tenth / 10 - time.perf_counter()))
            for name, pid in stack.pids().items():
                samples[name].append(rss_bytes(pid))
        recorder.recording = False
        seconds = time.perf_counter() - started
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(2 * config.deadline + 10)  # an operation is at most two calls
    try:
        rss_end = {name: rss_bytes(pid) for name, pid in stack.pids().items()}
        items_after = _count(clients[0].search, config.deadline)
    finally:
        for client in clients:
            client.close()
    errors_by_operation = Counter(key.split(":")[0] for key in recorder.errors.elements())
    operations = {name: _summarize(recorder.latencies[name], errors_by_operation[name], seconds) for name in OPERATIONS}
    total = _summarize(
        [v for values in recorder.latencies.values() for v in values], sum(recorder.errors.values()), seconds
    )
    return LoadResult(
        config,
        seconds,
        operations,
        total,
        dict(recorder.errors),
        {name: (rss_start[name], rss_end[name]) for name in rss_start},
        items_after,
        samples,
        (load_start, os.getloadavg()[0]),
        dimension=stack.dimension,
    )


def format_table(result: LoadResult) -> str:
    """Throughput and latencies per operation, then resident memory per process."""
    config = result.config
    lines = [
        f"{config.clients} clients, {result.seconds:.1f} s measured after {config.warmup:g} s warm-up, "
        f"deadline {config.deadline:g} s per call"
        + (f", model {result.model} ({result.dimension}-d)" if result.model else ""),
        f"{'operation':<10}{'ops':>8}{'ops/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}",
    ]
    for name, stats in [*result.operations.items(), ("all", result.total)]:
        lines.append(
            f"{name:<10}{stats.count:>8}{stats.per_second:>9.1f}{stats.p50_ms:>9.1f}"
            f"{stats.p99_ms:>9.1f}{stats.max_ms:>9.1f}{stats.errors:>8}"
        )
    lines.append(f"{'process':<12}{'RSS start':>12}{'RSS end':>12}{'growth':>9}")
    for name, (start, end) in result.rss.items():
        lines.append(f"{name:<12}{start / 2**20:>9.1f} MiB{end / 2**20:>8.1f} MiB{(end / start - 1) * 100:>8.1f}%")
    for key, count in sorted(result.errors.items()):
        lines.append(f"error {key}: {count}")
    lines.append("machine load average (1 min): {:.2f} at the start, {:.2f} at the end".format(*result.load_average))
    return "\n".join(lines)

"""The embedder's own Prometheus metrics: forward-pass batch sizes, queue depth, vectors computed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Rows per batch handed to the model: 1 (no merging) up to the largest text batch a call may send.
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)


class EmbedderMetrics:
    """Registers the embedder's metrics in `registry`; observes the batcher (a BatchObserver)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch_size = Histogram(
            "embedder_batch_size",
            "Images or texts per batch handed to the model (images "
            "then run in passes of at most EMBEDDER_IMAGE_PASS_SIZE).",
            ("kind",),
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.queue = Gauge(
            "embedder_queue_depth", "Requests waiting for a model forward pass.", ("kind",), registry=registry
        )
        self.embedded = Counter(
            "embedder_embedded",
            "Vectors the model computed (kind: image, or text for EmbedTexts and Classify's labels).",
            ("kind",),
            registry=registry,
        )

    def forward(self, kind: str, rows: int) -> None:
        self.batch_size.labels(kind).observe(rows)
        self.embedded.labels(kind).inc(rows)

    def queue_depth(self, kind: str, depth: int) -> None:
        self.queue.labels(kind).set(depth)

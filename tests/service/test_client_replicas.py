"""Several embedder replicas: one index run keeps all of them busy, and a dead one does not fail the run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from client import Client
from client.ingest.engine import IngestOptions
from tests.support.client import Replica, write_images, write_video

if TYPE_CHECKING:
    from embedder_service.model import ClipEmbedder


def test_both_replicas_embed_during_one_run(
    embedder_replicas: list[Replica], search_address: str, tmp_path: Path
) -> None:
    write_images(tmp_path / "photos", 24)
    write_video(tmp_path / "photos" / "clip.mp4", seconds=8, fps=5)
    addresses = [r.address for r in embedder_replicas]
    with Client(addresses, search_address, connect_timeout=30) as client:
        report = client.index([tmp_path / "photos"], options=IngestOptions(batch_images=4))
        assert (report.images, report.frames, report.failed) == (24, 8, [])
        calls = [r.counter.calls["EmbedImages"] for r in embedder_replicas]
        assert all(count > 0 for count in calls), calls
        assert sum(calls) == 8  # 32 items in batches of 4, none sent twice

        # Everything known: the second run embeds nothing at all.
        again = client.index([tmp_path / "photos"], options=IngestOptions(batch_images=4))
        assert (again.indexed, again.known) == (0, 32)
        assert [r.counter.calls["EmbedImages"] for r in embedder_replicas] == calls


def test_a_dead_replica_does_not_fail_the_run(
    embedder_replicas: list[Replica], search_address: str, tmp_path: Path
) -> None:
    dead, alive = embedder_replicas
    dead.server.stop(0)  # type: ignore[attr-defined]
    write_images(tmp_path / "photos", 12)
    with Client([dead.address, alive.address], search_address, connect_timeout=30) as client:
        report = client.index([tmp_path / "photos"], options=IngestOptions(batch_images=3))
        assert (report.images, report.failed) == (12, [])
        assert client.search_text("blocks", top=3)  # text embedding fails over too
    assert alive.counter.calls["EmbedImages"] == 4


def test_batches_stay_under_the_embedders_message_limit(
    tiny_clip_dir: Path, tiny_embedder: ClipEmbedder, search_address: str, tmp_path: Path
) -> None:
    from embedder_service.config import Limits
    from embedder_service.server import build_server
    from tests.support.client import CallCounter
    from tests.support.embedder import embedder_test_config

    limit = 400_000
    counter = CallCounter()
    server = build_server(
        embedder_test_config(tiny_clip_dir, limits=Limits(max_message_bytes=limit)),
        tiny_embedder,
        interceptors=[counter],
    )
    server.start()
    server.set_serving(True)
    try:
        folder = tmp_path / "noisy"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for n in range(12):  # ~80 kB PNGs of noise: sent encoded, about 1 MB in all
            Image.fromarray(rng.integers(0, 256, (170, 160, 3), np.uint8)).save(folder / f"{n}.png")
        total = sum(p.stat().st_size for p in folder.iterdir())
        with Client(f"127.0.0.1:{server.port}", search_address, connect_timeout=30) as client:
            report = client.index([folder])
        assert (report.images, report.failed) == (12, [])
        # Byte-sized batches: no call was refused and split, so there are only as many as the bytes need.
        budget = limit - limit // 8
        assert math.ceil(total / budget) <= counter.calls["EmbedImages"] <= math.ceil(total / budget) + 1
    finally:
        server.stop(0)

"""Pytest fixtures for the client tests: generated media, clients on in-process services, replicas."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, cast

import av
import grpc
import numpy as np
import pytest
from PIL import Image

from client import Client

if TYPE_CHECKING:
    from embedder_service.model import ClipEmbedder


def write_images(
    directory: Path, count: int, *, size: tuple[int, int] = (96, 72), seed: int = 0, prefix: str = "img"
) -> list[Path]:
    """`count` distinct images (random blocks of colour, PNG and JPEG alternating) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for n in range(count):
        blocks = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)
        path = directory / f"{prefix}{n:02d}.{'png' if n % 2 == 0 else 'jpg'}"
        image.save(path, quality=95)
        paths.append(path)
    return paths


def write_video(
    path: Path, *, seconds: int = 10, fps: int = 10, size: tuple[int, int] = (64, 48), codec: str = "mpeg4"
) -> Path:
    """A video whose frames are solid colours, different for every frame, at a constant frame rate."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with av.open(str(path), "w") as container:
        stream = cast(av.VideoStream, container.add_stream(codec, rate=fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for index in range(seconds * fps):
            hue = Image.new("HSV", (width, height), ((index * 37) % 256, 200, 60 + (index * 7) % 180))
            frame = av.VideoFrame.from_image(hue.convert("RGB"))
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def client(embedder_address: str, search_address: str) -> Iterator[Client]:
    """A Client on the in-process tiny embedder and a search service with an empty index of its own."""
    with Client(embedder_address, search_address, connect_timeout=30) as c:
        yield c


@pytest.fixture
def cli_env(embedder_address: str, search_address: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """EMBEDDER_ADDR and SEARCH_ADDR set for the in-process services, as `clipsearch` reads them."""
    env = {"EMBEDDER_ADDR": embedder_address, "SEARCH_ADDR": search_address, "CLIPSEARCH_CONNECT_TIMEOUT": "30"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@dataclass
class CallCounter(grpc.ServerInterceptor):
    """Counts the calls a server receives, by method name."""

    calls: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        with self.lock:
            self.calls[handler_call_details.method.rsplit("/", 1)[-1]] += 1
        return continuation(handler_call_details)


@dataclass
class Replica:
    address: str
    counter: CallCounter
    server: object


@pytest.fixture
def embedder_replicas(tiny_clip_dir: Path, tiny_embedder: ClipEmbedder) -> Iterator[list[Replica]]:
    """Two in-process embedder servers on the tiny checkpoint, each counting the calls it receives."""
    from embedder_service.server import build_server
    from tests.support.embedder import embedder_test_config

    replicas = []
    try:
        for _ in range(2):
            counter = CallCounter()
            server = build_server(embedder_test_config(tiny_clip_dir, workers=4), tiny_embedder, interceptors=[counter])
            server.start()
            server.set_serving(True)
            replicas.append(Replica(f"127.0.0.1:{server.port}", counter, server))
        yield replicas
    finally:
        for replica in replicas:
            replica.server.stop(0)  # type: ignore[attr-defined]

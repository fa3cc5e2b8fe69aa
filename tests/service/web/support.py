"""Helpers for the web tests: a tiny HTTP client on http.client, and the generated media library."""

from __future__ import annotations

import base64
import http.client
import json
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import numpy as np
from PIL import Image

HTTP_TIMEOUT = 60.0


@dataclass(frozen=True)
class Reply:
    """An HTTP response, read whole."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        return json.loads(self.body.decode("utf-8"))

    @property
    def error(self) -> str:
        message = self.json()["error"]
        assert isinstance(message, str) and message
        return message


def request(
    base_url: str,
    method: str,
    target: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    password: str | None = None,
) -> Reply:
    """One request; `target` is sent exactly as given (no normalisation, so path tricks reach the server)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=HTTP_TIMEOUT)
    sent = dict(headers or {})
    if password is not None:
        sent["Authorization"] = "Basic " + base64.b64encode(f"user:{password}".encode()).decode()
    try:
        connection.request(method, target, body=body, headers=sent)
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def multipart(
    field_name: str, file_name: str, data: bytes, mime: str = "application/octet-stream"
) -> tuple[bytes, str]:
    """A multipart/form-data body with one file, and its Content-Type."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{file_name}"\r\n'
        f"Content-Type: {mime}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# The photos of the library: file name (relative to the library folder) -> its colour.
PHOTOS: dict[str, tuple[int, int, int]] = {
    "red.png": (220, 30, 30),
    "green.jpg": (30, 200, 60),
    "blue.png": (30, 60, 220),
    "黄色的花.png": (240, 220, 40),
    "trips/海滩 sunset.jpg": (250, 140, 40),
}
# Which collection each file is indexed into (the rest go to "photos").
HOLIDAY = "假期"
HOLIDAY_FILES = ("trips/海滩 sunset.jpg", "clip.mp4", "legacy.avi")
VIDEO_SECONDS = 6


def write_photo(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (160, 120), seed: int = 0) -> Path:
    """A photo of one dominant colour with some texture, so each is its own item and decodes to that colour."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + sum(colour))
    noise = rng.integers(-20, 21, (size[1], size[0], 3))
    pixels = np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=92)
    return path


def second_colour(second: int) -> tuple[int, int, int]:
    """The colour of every frame of one second of the generated videos."""
    palette = [(200, 40, 40), (40, 180, 40), (40, 40, 200), (220, 200, 30), (160, 40, 200), (30, 190, 190)]
    return palette[second % len(palette)]


def write_video(path: Path, *, codec: str = "libx264", seconds: int = VIDEO_SECONDS, fps: int = 10) -> Path:
    """A video a browser can play (H.264, yuv420p, MP4 with the index first) whose colour changes each second."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = 160, 96
    options = {"movflags": "+faststart"} if path.suffix == ".mp4" else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "g": str(fps)}
        for index in range(seconds * fps):
            colour = second_colour(index // fps)
            image = Image.new("RGB", (width, height), colour)
            frame = av.VideoFrame.from_image(image)
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@dataclass(frozen=True)
class Library:
    """The generated files: `root` and the path of each by its name relative to root."""

    root: Path
    files: dict[str, Path] = field(default_factory=dict)


def write_library(root: Path) -> Library:
    files = {name: write_photo(root / name, colour) for name, colour in PHOTOS.items()}
    files["clip.mp4"] = write_video(root / "clip.mp4")
    files["legacy.avi"] = write_video(root / "legacy.avi", codec="mpeg4", seconds=3)
    return Library(root, files)


def mean_colour(jpeg: bytes) -> tuple[float, float, float]:
    """The average colour of an encoded image."""
    import io

    with Image.open(io.BytesIO(jpeg)) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.float64)
    r, g, b = array.reshape(-1, 3).mean(axis=0)
    return float(r), float(g), float(b)

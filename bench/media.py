"""Generated benchmark media (1080p PNG frames, phone-sized JPEG photos, an MP4), made once into the cache."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


@contextmanager
def building(final: Path) -> Iterator[Path]:
    """A temporary sibling of `final` to fill, renamed to `final` when the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.partial")
    if partial.is_dir():
        shutil.rmtree(partial)
    elif partial.exists():
        partial.unlink()
    yield partial
    if final.is_dir():
        shutil.rmtree(final)
    partial.rename(final)


def scene(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth gradients and waves under flat shapes, softened: compresses like a rendered or filmed frame."""
    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    channels = []
    for _ in range(3):
        a, b = rng.uniform(-120, 120, 2)
        base, fx, fy, phase = rng.uniform(60, 190), rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 6.3)
        channels.append(base + a * xx + b * yy + 25 * np.sin(fx * 6.283 * xx + phase) * np.cos(fy * 6.283 * yy))
    image = Image.fromarray(np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    scale = width / 1920
    for _ in range(int(rng.integers(8, 20))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1 = x0 + int(rng.integers(40, 600) * scale) + 1
        y1 = y0 + int(rng.integers(40, 400) * scale) + 1
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=color)
    return image.filter(ImageFilter.GaussianBlur(1.5 * scale))


def with_noise(image: Image.Image, rng: np.random.Generator, sigma: float) -> Image.Image:
    """Adds sensor-like Gaussian noise: what makes real frames cost 2-3 MB as PNG."""
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0.0, sigma, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _pool_folder(pool: Path, count: int, make: Callable[[int, Path], None], name: str) -> Path:
    """`count` files of a generated pool (made as needed, kept), as a folder of exactly those files."""
    pool.mkdir(parents=True, exist_ok=True)
    folder = pool.with_name(f"{pool.name}-{count}")
    if folder.is_dir():
        return folder
    with building(folder) as partial:
        partial.mkdir()
        for n in range(count):
            source = pool / name.format(n + 1)
            if not source.exists():
                staged = source.with_name(f".{source.name}.partial{source.suffix}")
                make(n, staged)
                staged.rename(source)
            try:
                os.link(source, partial / source.name)
            except OSError:
                shutil.copyfile(source, partial / source.name)
    return folder


def png_frames(cache: Path, count: int, size: tuple[int, int] = (1920, 1080)) -> Path:
    """A folder of `count` PNG frames of `size` (about 2.5 MB each at 1080p), generated once."""

    def make(n: int, path: Path) -> None:
        rng = np.random.default_rng(1000 + n)
        with_noise(scene(rng, *size), rng, 1.6).save(path, "PNG")

    return _pool_folder(cache / "media" / f"png-{size[0]}x{size[1]}", count, make, "frame_{:05d}.png")


def jpeg_photos(cache: Path, count: int, size: tuple[int, int] = (4032, 3024)) -> Path:
    """A folder of `count` phone-sized JPEG photos (quality 92, 2-4 MB each), generated once."""

    def make(n: int, path: Path) -> None:
        rng = np.random.default_rng(5000 + n)
        with_noise(scene(rng, *size), rng, 3.0).save(path, "JPEG", quality=92)

    return _pool_folder(cache / "media" / f"jpeg-{size[0]}x{size[1]}", count, make, "IMG_{:04d}.jpg")


def video_codec() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def video(cache: Path, seconds: int, fps: int, size: tuple[int, int] = (1920, 1080)) -> Path:
    """An MP4 of moving shapes over a drifting scene (H.264 when PyAV has libx264, else MPEG-4), made once."""
    import av

    codec = video_codec()
    path = cache / "media" / f"video-{size[0]}x{size[1]}-{seconds}s-{fps}fps-{codec}.mp4"
    if path.is_file():
        return path
    width, height = size
    rng = np.random.default_rng(7)
    scenes = [np.asarray(scene(rng, width + 256, height)) for _ in range(max(1, seconds // 10))]
    noise = [rng.normal(0, 2.0, (height, width, 3)).astype(np.int16) for _ in range(4)]
    sprites = [
        (int(rng.integers(80, 300)), tuple(int(v) for v in rng.integers(0, 256, 3)), rng.uniform(-12, 12, 2))
        for _ in range(6)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with av.open(str(partial), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "23"}
        else:
            stream.bit_rate = 8_000_000
        for index in range(seconds * fps):
            second = index // fps
            background = scenes[(second // 10) % len(scenes)]
            shift = (index * 2) % 256  # a slow pan
            frame = background[:, shift : shift + width].astype(np.int16)
            for number, (side, color, velocity) in enumerate(sprites):
                x = int(abs((200 * number + velocity[0] * index) % (2 * (width - side)) - (width - side)))
                y = int(abs((150 * number + velocity[1] * index) % (2 * (height - side)) - (height - side)))
                frame[y : y + side, x : x + side] = color
            frame += noise[index % len(noise)]
            pixels = np.clip(frame, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(path)
    return path


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())

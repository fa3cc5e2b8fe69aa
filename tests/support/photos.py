"""Generated photos for the near-duplicate tests: scenes with structure, their copies and look-alikes."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def scene(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """Gradients under a few flat shapes, softened: a picture with a layout of its own per seed."""
    rng = np.random.default_rng(seed)
    width, height = size
    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    channels = [rng.uniform(60, 190) + rng.uniform(-100, 100) * xx + rng.uniform(-100, 100) * yy for _ in range(3)]
    image = Image.fromarray(np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(20, width // 2)), y0 + int(rng.integers(20, height // 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    return image.filter(ImageFilter.GaussianBlur(1.0))


def encode(image: Image.Image, fmt: str = "JPEG", **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def copies(image: Image.Image) -> dict[str, bytes]:
    """The same picture as files of other sizes and encodings."""
    half = image.resize((image.width // 2, image.height // 2))
    return {
        "png": encode(image, "PNG"),
        "half.jpg": encode(half, "JPEG", quality=90),
        "q60.jpg": encode(image, "JPEG", quality=60),
        "q95.jpg": encode(image, "JPEG", quality=95),
    }


def reframed(image: Image.Image, share: float) -> Image.Image:
    """The same scene with the frame moved right by `share` of the width: another photo, not a copy."""
    dx = round(image.width * share)
    return image.resize((image.width + dx, image.height)).crop((dx, 0, image.width + dx, image.height))

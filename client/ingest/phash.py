"""Perceptual hashes of photos: 64-bit DCT hashes that survive resizing and re-encoding, for near-duplicates."""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image, ImageOps

from clipsearch import imageformats
from clipsearch.v1 import embedder_pb2

imageformats.register()  # HEIC/HEIF photos open like any other

HASH_SIDE = 32  # the grayscale copy the hash is taken from
LOW_SIDE = 8  # the lowest 8x8 frequencies make the 64 bits
# A 32x32 copy is enough for the hash; JPEG files decode at a reduced DCT scale no smaller than this.
_DRAFT_SIDE = 4 * HASH_SIDE
# A copy whose darkest and brightest pixels are closer than this (0-255 levels) is flat: it has no layout to
# hash, and every flat picture, whatever its colour, would get the same hash. It gets none.
FLAT_LEVELS = 2.0


@cache
def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix of size n (rows are frequencies)."""
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    matrix: np.ndarray = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return matrix


def hash_of_gray(gray: np.ndarray) -> int | None:
    """The 64-bit hash of a HASH_SIDE x HASH_SIDE grayscale copy: one bit per low frequency (DC left out),
    set when its DCT coefficient is above their median; None for a flat copy."""
    if gray.shape != (HASH_SIDE, HASH_SIDE):
        raise ValueError(f"expected a {HASH_SIDE}x{HASH_SIDE} grayscale copy, got shape {gray.shape}")
    if float(np.ptp(gray)) < FLAT_LEVELS:
        return None
    d = _dct_matrix(HASH_SIDE)
    low = (d @ gray.astype(np.float64) @ d.T)[:LOW_SIDE, :LOW_SIDE].ravel()
    median = np.median(low[1:])
    bits = low > median
    bits[0] = False  # the mean brightness says nothing about the picture's layout
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def gray_copy(image: Image.Image) -> np.ndarray:
    """The upright HASH_SIDE x HASH_SIDE grayscale copy of an image, box-filtered."""
    upright = ImageOps.exif_transpose(image) or image
    small = upright.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)


def image_hash(data: bytes) -> int | None:
    """The perceptual hash of an encoded image, or None when it cannot be decoded or is flat."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format == "JPEG":
                im.draft("L", (_DRAFT_SIDE, _DRAFT_SIDE))
            return hash_of_gray(gray_copy(im))
    except Exception:  # noqa: BLE001 - Pillow raises many types for hostile or corrupt files; no hash then
        return None


def prepared_hash(image: embedder_pb2.Image, data: bytes) -> int | None:
    """The hash of an image as prepared for the embedder: from its shrunk pixels when it was decoded here
    (the hash does not change with size), else from its file, small enough to decode again cheaply."""
    if image.HasField("raw"):
        raw = image.raw
        return hash_of_gray(gray_copy(Image.frombytes("RGB", (raw.width, raw.height), raw.rgb)))
    return image_hash(data)


def distance(a: int, b: int) -> int:
    """Hamming distance of two hashes: how many of the 64 bits differ."""
    return (a ^ b).bit_count()

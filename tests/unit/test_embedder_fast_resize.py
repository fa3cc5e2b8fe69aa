"""EMBEDDER_FAST_RESIZE: JPEGs decoded at a reduced scale embed within a cosine of 0.999 of the exact pixels."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from embedder_service.model import ClipEmbedder
from embedder_service.preprocess import Preprocessor, decode_image
from tests.support.embedder import cosine
from tests.support.jpegs import IMAGES, UPRIGHT, jpeg

LIMIT = 100_000_000


@pytest.mark.parametrize("family", ["clip", "chinese_clip", "siglip"])
def test_fast_resize_embeds_within_0_999_of_the_exact_pixels(
    family: str, tiny_family_embedders: dict[str, ClipEmbedder]
) -> None:
    embedder = tiny_family_embedders[family]
    exact, fast = Preprocessor(embedder.preprocess_spec), Preprocessor(embedder.preprocess_spec, fast=True)
    assert fast.draft_size == 128
    cosines = {}
    for name, data in IMAGES.items():
        whole = decode_image(data, LIMIT)
        drafted = decode_image(data, LIMIT, draft_size=fast.draft_size)
        assert (drafted.width, drafted.height) == (whole.width, whole.height) == whole.image.size, name
        assert drafted.image.width < whole.width, name  # decoded at a reduced scale
        pixels = np.stack([exact(whole.image, whole.box), fast(drafted.image, drafted.box)])
        cosines[name] = cosine(*embedder.embed_images(pixels))
    assert min(cosines.values()) >= 0.999, cosines


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_box_holds_the_image_once_turned_upright(orientation: int) -> None:
    data = jpeg("astronaut", (806, 537), orientation)
    decoded = decode_image(data, LIMIT, draft_size=128)
    assert (decoded.width, decoded.height) == (806, 537)
    assert decoded.box is not None
    # As stored, the image ends inside the last column and row of the 1/4 scale: 806/4 and 537/4 (or turned).
    with Image.open(io.BytesIO(data)) as stored:
        stored.draft("RGB", (193, 128) if stored.width > stored.height else (128, 193))  # as decode_image does
        stored.load()
        ends = (201.5, 134.25) if stored.width > stored.height else (134.25, 201.5)
        whole = np.zeros((stored.height, stored.width), dtype=np.uint8)
        whole[: math.floor(ends[1]), : math.floor(ends[0])] = 255  # the pixels wholly inside the image
        mask = Image.fromarray(whole)
    if orientation != 1:
        mask = mask.transpose(UPRIGHT[orientation])
    assert mask.size == decoded.image.size
    left, top, right, bottom = decoded.box
    assert (right - left, bottom - top) == (201.5, 134.25)
    assert (math.ceil(left), math.ceil(top), math.floor(right), math.floor(bottom)) == mask.getbbox()


def test_images_that_fill_their_pixels_have_no_box() -> None:
    decoded = decode_image(jpeg("astronaut", (1600, 1200)), LIMIT, draft_size=128)
    assert decoded.image.size == (200, 150) and decoded.box is None  # 1/8 scale, whole pixels
    assert decode_image(IMAGES["806x537"], LIMIT).box is None  # no reduced scale: no box

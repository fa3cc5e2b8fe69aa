"""Chinese-CLIP and SigLIP preprocessing equal their own transformers image processors, bit for bit."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import ChineseCLIPImageProcessorPil, SiglipImageProcessorPil

from embedder_service.families import FAMILIES, read_preprocess_spec, spec_of
from embedder_service.preprocess import Preprocessor, decode_image
from tests.support.embedder import encode_image, sample_photo

LIMIT = 100_000_000
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def released(family: str) -> object:
    """The image processor of OFA-Sys/chinese-clip-vit-base-patch16 or google/siglip-base-patch16-224,
    built from their preprocessor_config.json values."""
    if family == "chinese_clip":
        return ChineseCLIPImageProcessorPil(
            size={"height": 224, "width": 224},
            do_center_crop=False,
            crop_size={"height": 224, "width": 224},
            resample=3,
            image_mean=CLIP_MEAN,
            image_std=CLIP_STD,
        )
    return SiglipImageProcessorPil(
        size={"height": 224, "width": 224}, resample=3, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )


def reference_pixels(processor: object, image: Image.Image) -> np.ndarray:
    pixels: np.ndarray = processor(images=image, return_tensors="np")["pixel_values"][0]  # type: ignore[operator]
    return pixels


@pytest.mark.parametrize("family", ["chinese_clip", "siglip"])
def test_the_released_configs_resize_to_the_square_without_a_crop(family: str) -> None:
    spec = spec_of(released(family), 224)
    assert spec.resize_to == (224, 224)
    assert (spec.crop_height, spec.crop_width) == (224, 224)
    assert spec.mean == pytest.approx(CLIP_MEAN if family == "chinese_clip" else [0.5] * 3)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    family=st.sampled_from(["chinese_clip", "siglip"]),
    width=st.integers(1, 600),
    height=st.integers(1, 600),
    mode=st.sampled_from(["RGB", "L", "RGBA", "P", "CMYK"]),
    noise=st.booleans(),
)
def test_pixels_equal_the_family_image_processor(family: str, width: int, height: int, mode: str, noise: bool) -> None:
    processor = released(family)
    if noise:
        rng = np.random.default_rng(width * 1000 + height)
        rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    else:
        rgb = sample_photo("coffee").resize((width, height), Image.Resampling.BILINEAR)
    image = rgb.convert(mode) if mode != "RGBA" else rgb.convert("RGBA")
    data = encode_image(image, "TIFF" if mode == "CMYK" else "PNG")
    got = Preprocessor(spec_of(processor, 224))(decode_image(data, LIMIT).image)
    expected = reference_pixels(processor, Image.open(io.BytesIO(data)))
    assert got.dtype == np.float32 and got.shape == (3, 224, 224)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("family", ["chinese_clip", "siglip"])
def test_the_tiny_checkpoints_spec_equals_their_saved_processor(family: str, tiny_family_dirs: dict[str, Path]) -> None:
    import transformers

    directory = tiny_family_dirs[family]
    processor = getattr(transformers, FAMILIES[family].image_processor_class).from_pretrained(directory)
    spec = read_preprocess_spec(FAMILIES[family], str(directory), True, 64, str(directory))
    for photo in (sample_photo("astronaut"), sample_photo("motorcycle_left")):
        np.testing.assert_array_equal(Preprocessor(spec)(photo), reference_pixels(processor, photo))


def test_fast_resize_stays_close_on_an_exact_resize() -> None:
    spec = spec_of(released("siglip"), 224)
    photo = sample_photo("astronaut").resize((1600, 1200), Image.Resampling.BICUBIC)
    exact, fast = Preprocessor(spec)(photo), Preprocessor(spec, fast=True)(photo)
    assert fast.shape == exact.shape
    assert np.abs(fast - exact).mean() * 0.5 * 255 < 1.0  # under one level (of 255) on average

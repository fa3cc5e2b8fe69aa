"""Image decoding and preprocessing equal transformers' CLIPImageProcessor, for every mode and size."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import CLIPImageProcessorPil

from embedder_service.preprocess import (
    InvalidImage,
    Preprocessor,
    PreprocessSpec,
    decode_image,
    raw_image,
    resized_size,
)
from tests.support.embedder import encode_image, sample_photo

LIMIT = 100_000_000
SPEC = PreprocessSpec()  # openai/clip-vit-base-patch16: 224 px, bicubic, CLIP mean/std
# One uint8 level after normalization, the coarsest step the image processor itself produces.
ONE_LEVEL = 1 / 255 / min(SPEC.std)
SKIMAGE_DATA = Path(skimage.data.__file__).parent


@pytest.fixture(scope="module")
def reference() -> CLIPImageProcessorPil:
    """The image processor openai/clip-vit-base-patch16 ships, built from its config."""
    return CLIPImageProcessorPil(
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        resample=3,
        image_mean=list(SPEC.mean),
        image_std=list(SPEC.std),
    )


def reference_pixels(reference: CLIPImageProcessorPil, image: Image.Image) -> np.ndarray:
    return reference(images=image, return_tensors="np")["pixel_values"][0]


def ours(data: bytes, preprocessor: Preprocessor = Preprocessor(SPEC)) -> np.ndarray:
    return preprocessor(decode_image(data, LIMIT).image)


def _with_mode(rgb: Image.Image, mode: str) -> tuple[Image.Image, str]:
    """`rgb` converted to `mode`, and a format that stores that mode."""
    if mode == "RGBA" or mode == "LA":
        alpha = Image.linear_gradient("L").resize(rgb.size)
        image = rgb.convert(mode[:-1])
        image.putalpha(alpha)
        return image, "PNG"
    if mode == "P+transparency":
        image = rgb.convert("P")
        image.info["transparency"] = 0
        return image, "PNG"
    if mode == "CMYK":
        return rgb.convert("CMYK"), "TIFF"
    return rgb.convert(mode), "PNG" if mode != "YCbCr" else "JPEG"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    width=st.integers(1, 700),
    height=st.integers(1, 700),
    mode=st.sampled_from(["RGB", "L", "LA", "RGBA", "P", "P+transparency", "CMYK", "1"]),
    noise=st.booleans(),
)
def test_pixels_equal_clip_image_processor(
    reference: CLIPImageProcessorPil, width: int, height: int, mode: str, noise: bool
) -> None:
    if noise:
        rng = np.random.default_rng(width * 1000 + height)
        rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    else:
        rgb = sample_photo("coffee").resize((width, height), Image.Resampling.BILINEAR)
    image, fmt = _with_mode(rgb, mode)
    data = encode_image(image, fmt)
    expected = reference_pixels(reference, Image.open(io.BytesIO(data)))
    got = ours(data)
    assert got.dtype == np.float32 and got.shape == (3, 224, 224)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "name", ["retina.jpg", "rocket.jpg", "hubble_deep_field.jpg", "horse.png", "logo.png", "no_time_for_that_tiny.gif"]
)
def test_real_files_equal_clip_image_processor(reference: CLIPImageProcessorPil, name: str) -> None:
    data = (SKIMAGE_DATA / name).read_bytes()
    np.testing.assert_array_equal(ours(data), reference_pixels(reference, Image.open(io.BytesIO(data))))


def test_other_model_sizes_follow_the_spec() -> None:
    spec = PreprocessSpec(shortest_edge=336, crop_height=336, crop_width=336)
    reference = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, resample=3)
    photo = sample_photo("chelsea")
    got = Preprocessor(spec)(photo)
    np.testing.assert_array_equal(got, reference_pixels(reference, photo))


def test_sixteen_bit_images_are_scaled_not_clipped(reference: CLIPImageProcessorPil) -> None:
    gray8 = np.asarray(sample_photo("camera").convert("L"))
    gray16 = gray8.astype(np.uint16) * 257  # the same picture at 16 bits
    data = encode_image(Image.fromarray(gray16), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    expected = reference_pixels(reference, Image.fromarray(gray8))
    np.testing.assert_array_equal(ours(data), expected)
    # Pillow's own conversion would clip every value above 255 to white.
    clipped = reference_pixels(reference, Image.open(io.BytesIO(data)))
    assert np.abs(clipped - expected).mean() > 1.0


def test_float_images_are_read_as_zero_to_one(reference: CLIPImageProcessorPil) -> None:
    gray8 = np.asarray(sample_photo("camera").convert("L"))
    data = encode_image(Image.fromarray(gray8.astype(np.float32) / 255), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"
    np.testing.assert_array_equal(ours(data), reference_pixels(reference, Image.fromarray(gray8)))


# Stored pixels for each EXIF orientation, so that the orientation turns them back upright.
_STORED = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", sorted(_STORED))
def test_exif_orientation_is_applied(orientation: int) -> None:
    upright = sample_photo("chelsea")  # 451x300: not square, not symmetric
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode_image(upright.transpose(_STORED[orientation]), "PNG", exif=exif)
    decoded = decode_image(data, LIMIT)
    assert (decoded.width, decoded.height) == upright.size
    np.testing.assert_array_equal(np.asarray(decoded.image), np.asarray(upright))


def test_exif_rotated_jpeg_is_embedded_upright() -> None:
    upright = sample_photo("chelsea").resize((448, 304))  # multiples of 16: the rotation moves whole blocks
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone held upright stores the picture turned
    rotated = encode_image(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=100, subsampling=0, exif=exif)
    plain = encode_image(upright, "JPEG", quality=100, subsampling=0)
    decoded = decode_image(rotated, LIMIT)
    assert (decoded.width, decoded.height) == (448, 304)
    difference = np.abs(ours(rotated) - ours(plain)).mean()
    ignoring_exif = Preprocessor(SPEC)(Image.open(io.BytesIO(rotated)).convert("RGB"))
    assert difference < 0.5 * ONE_LEVEL
    assert np.abs(ignoring_exif - ours(plain)).mean() > 10 * ONE_LEVEL


def test_gif_is_read_from_its_first_frame() -> None:
    frames = [Image.new("RGB", (40, 30), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    decoded = decode_image(buffer.getvalue(), LIMIT)
    assert decoded.image.getpixel((20, 15)) == (255, 0, 0)


def test_raw_pixels_equal_the_png_of_the_same_pixels() -> None:
    photo = sample_photo("rocket")
    raw = raw_image(photo.tobytes(), photo.width, photo.height, LIMIT)
    assert (raw.width, raw.height) == photo.size
    np.testing.assert_array_equal(Preprocessor(SPEC)(raw.image), ours(encode_image(photo, "PNG")))


def test_shrinking_to_the_input_size_first_changes_nothing() -> None:
    """A client that shrinks a frame to resized_size() before sending gets the server's exact pixels."""
    frame = sample_photo("astronaut").resize((1920, 1080), Image.Resampling.BICUBIC)
    size = resized_size(*frame.size, SPEC.shortest_edge)
    assert size == (398, 224)
    shrunk = frame.resize(size, Image.Resampling.BICUBIC)
    preprocess = Preprocessor(SPEC)
    np.testing.assert_array_equal(preprocess(shrunk), preprocess(frame))


def test_fast_resize_stays_within_a_level_on_average() -> None:
    photo = encode_image(
        sample_photo("motorcycle_left").resize((1920, 1080), Image.Resampling.BICUBIC), "JPEG", quality=90
    )
    fast = Preprocessor(SPEC, fast=True)
    decoded = decode_image(photo, LIMIT, draft_size=fast.draft_size)
    assert (decoded.width, decoded.height) == (1920, 1080)
    assert decoded.image.size == (960, 540)  # decoded at half scale
    deviation = np.abs(fast(decoded.image) - ours(photo)) / ONE_LEVEL
    assert deviation.mean() < 0.5 and np.percentile(deviation, 99) <= 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty image"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj", "cannot identify image file"),
    ],
)
def test_unreadable_bytes_raise_invalid_image(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImage, match=message):
        decode_image(data, LIMIT)

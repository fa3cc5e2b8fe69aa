"""Image decoding and preprocessing with Pillow and NumPy, equal to transformers' CLIP, Chinese-CLIP and SigLIP processors."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from clipsearch import imageformats
from clipsearch.orientation import UPRIGHT

imageformats.register()  # HEIC/HEIF photos open like any other

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_INTEGER_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # read as 16-bit values

Box = tuple[float, float, float, float]


class InvalidImage(ValueError):
    """The bytes or pixels are not an image this service can read."""


class ImageTooLarge(InvalidImage):
    """The image declares more pixels than allowed (a possible decompression bomb)."""


@dataclass(frozen=True)
class PreprocessSpec:
    """What the model expects: the resize, crop and normalization of an image processor config.

    By default images are resized so their shortest side is shortest_edge, then center-cropped (CLIP).
    With resize_to = (height, width), they are resized to exactly that size, whatever their aspect
    ratio, and then cropped to the crop size (Chinese-CLIP and SigLIP, whose crop equals resize_to).
    """

    shortest_edge: int = 224
    crop_height: int = 224
    crop_width: int = 224
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    rescale_factor: float = 1 / 255
    resample: int = Image.Resampling.BICUBIC
    resize_to: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if min(self.shortest_edge, self.crop_height, self.crop_width, *(self.resize_to or (1,))) < 1:
            raise ValueError(f"image sizes must be positive: {self}")


@dataclass(frozen=True)
class DecodedImage:
    """An RGB image ready for preprocessing, with the size it has once upright.

    box (left, top, right, bottom) is the part of `image` that holds the picture, when a JPEG decoded at a
    reduced scale has partial pixels beyond it at its edges; None when all of `image` does. Pass it on to
    the Preprocessor.
    """

    image: Image.Image
    width: int
    height: int
    box: Box | None = None


def _pixel_limit_error(width: int, height: int, max_pixels: int) -> ImageTooLarge:
    return ImageTooLarge(f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} pixels")


def decode_image(data: bytes, max_pixels: int, *, draft_size: int | None = None) -> DecodedImage:
    """Decodes encoded image bytes (any format Pillow reads; first frame of animations) to upright RGB.

    The declared size is checked against `max_pixels` before any pixel is decoded. With `draft_size`,
    a JPEG may be decoded at a reduced scale (1/2, 1/4, 1/8) whose shortest side stays at least
    `draft_size`; the reported width and height are still the full ones, and the box says which of the
    decoded pixels hold the image (the reduced scale rounds each side up to whole pixels).
    """
    if not data:
        raise InvalidImage("empty image (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(f"exceeds the limit of {max_pixels} pixels: {error}") from None
    except UnidentifiedImageError:
        raise InvalidImage(
            f"cannot identify image file ({len(data)} bytes): not an image format this server reads, or corrupt"
        ) from None
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for bytes it cannot parse.
        raise InvalidImage(f"cannot decode image: {_describe(error)}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise _pixel_limit_error(width, height, max_pixels)
    box: Box | None = None
    try:
        if draft_size is not None and image.format == "JPEG":
            box = _draft(image, draft_size)
        image.load()
        stored_size = image.size
        upright, turn = _exif_transpose(image)
        rgb = to_rgb(upright)
    except Image.DecompressionBombError:
        raise _pixel_limit_error(width, height, max_pixels) from None
    except InvalidImage:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for bytes it cannot parse
        raise InvalidImage(f"cannot decode image: {_describe(error)}") from None
    if upright.size != stored_size:  # EXIF orientation turned the image by 90 degrees
        width, height = height, width
    if box is not None and turn is not None:
        box = _turn_box(box, stored_size, turn)
    return DecodedImage(rgb, width, height, box)


def raw_image(rgb: bytes, width: int, height: int, max_pixels: int) -> DecodedImage:
    """Wraps raw 8-bit RGB pixels (row-major, no padding) as an image, checking their length."""
    if width < 1 or height < 1:
        raise InvalidImage(f"raw image width and height must be at least 1, got {width}x{height}")
    if width * height > max_pixels:
        raise _pixel_limit_error(width, height, max_pixels)
    expected = width * height * 3
    if len(rgb) != expected:
        raise InvalidImage(f"raw image of {width}x{height} needs {expected} bytes (width*height*3), got {len(rgb)}")
    return DecodedImage(Image.frombytes("RGB", (width, height), rgb), width, height)


def _describe(error: Exception) -> str:
    text = str(error).strip()
    return text if text else type(error).__name__


def _draft(image: Image.Image, shortest: int) -> Box | None:
    """Sets a JPEG to decode at a reduced scale; returns where the image ends if that is inside the pixels."""
    width, height = image.size
    scale = shortest / min(width, height)
    drafted = image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
    # libjpeg rounds each reduced side up: the last column and row hold a fraction of a pixel of the image,
    # blended with the encoder's padding. A square resize that stretched them over its edge moved tiny
    # SigLIP's vectors to a cosine of 0.991 of the exact ones.
    if drafted is None or drafted[1][2:] == image.size:
        return None
    return drafted[1]


def _exif_transpose(image: Image.Image) -> tuple[Image.Image, Image.Transpose | None]:
    """The image turned upright by its EXIF orientation, as ImageOps.exif_transpose does, and the turn made.

    An upright image is returned as it is: exif_transpose would copy all its pixels.
    """
    try:
        turn = UPRIGHT.get(image.getexif().get(ExifTags.Base.Orientation, 1))
        if turn is None:
            return image, None
        return image.transpose(turn), turn
    except Exception:  # noqa: BLE001 - A malformed EXIF block should not cost a readable image; keep it as stored.
        return image, None


def _turn_box(box: Box, size: tuple[int, int], turn: Image.Transpose) -> Box:
    """Where `box`, inside an image of `size`, lies once the image is turned by `turn`."""
    width, height = size
    left, top, right, bottom = box
    if turn == Image.Transpose.FLIP_LEFT_RIGHT:
        return width - right, top, width - left, bottom
    if turn == Image.Transpose.FLIP_TOP_BOTTOM:
        return left, height - bottom, right, height - top
    if turn == Image.Transpose.ROTATE_180:
        return width - right, height - bottom, width - left, height - top
    if turn == Image.Transpose.TRANSPOSE:
        return top, left, bottom, right
    if turn == Image.Transpose.ROTATE_90:  # counterclockwise: (x, y) -> (y, width - x)
        return top, width - right, bottom, width - left
    if turn == Image.Transpose.ROTATE_270:  # clockwise: (x, y) -> (height - y, x)
        return height - bottom, left, height - top, right
    # TRANSVERSE: (x, y) -> (height - y, width - x)
    return height - bottom, width - right, height - top, width - left


def to_rgb(image: Image.Image) -> Image.Image:
    """Converts any Pillow mode to 8-bit RGB.

    Transparency is composited onto white, as transformers' CLIPImageProcessor does. 16- and 32-bit
    integer images are scaled from the 16-bit range (65535 -> 255) and float images from [0, 1]; Pillow's
    own conversion would clip them at 255, turning most 16-bit photos white.
    """
    if image.mode == "RGB":
        return image
    if image.mode in _INTEGER_MODES or image.mode == "F":
        values = np.asarray(image.convert("I") if image.mode != "F" else image, dtype=np.float64)
        if image.mode == "F":
            scaled = np.nan_to_num(values, nan=0.0) * 255.0
        else:
            scaled = values / 257.0
        gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if "A" in image.getbands() or "a" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def resized_size(width: float, height: float, shortest_edge: int) -> tuple[int, int]:
    """The (width, height) an image is resized to before cropping: shortest side = shortest_edge.

    The longer side is truncated, not rounded, as transformers does. A client shrinking an image before
    sending it can use this to get exactly the size the server would resize it to.
    """
    if width <= height:
        return shortest_edge, int(shortest_edge * height / width)
    return int(shortest_edge * width / height), shortest_edge


class Preprocessor:
    """Turns RGB images into the model's normalized float32 input, as the family's image processor does.

    Resize (shortest side, or exactly resize_to), center crop, rescale and normalize. By default the result is
    bit-for-bit the image processor's. `fast` trades exactness for speed on large images (about 2-3x on a
    1080p JPEG): only the region that survives the crop is resampled, Pillow first shrinks by an integer
    factor with a box filter down to twice the target size, and JPEGs are decoded at a reduced DCT scale
    (see decode_image's draft_size) to at least twice the target size, resizing only the decoded pixels
    that hold the image (DecodedImage.box). Measured on 1080p-4K JPEG photos: mean deviation 0.3-0.45 of a
    level (out of 255) from the exact pixels, 99th percentile 2-5 levels; the tiny CLIP, Chinese-CLIP and
    SigLIP checkpoints' vectors stay within a cosine of 0.999 of the exact ones, turned JPEGs included
    (tests/unit/test_embedder_fast_resize.py).
    """

    FAST_REDUCING_GAP = 2.0

    def __init__(self, spec: PreprocessSpec, fast: bool = False) -> None:
        self.spec = spec
        self.fast = fast
        # rescale then normalize, in the same dtypes and order as transformers, as a per-channel table.
        levels = (np.arange(256, dtype=np.float64) * spec.rescale_factor).astype(np.float32)
        mean = np.asarray(spec.mean, dtype=np.float32)[:, None]
        std = np.asarray(spec.std, dtype=np.float32)[:, None]
        self._table = ((levels[None, :] - mean) / std).astype(np.float32)

    @property
    def draft_size(self) -> int | None:
        """The shortest side a JPEG may be draft-decoded to (decode_image's draft_size); None if exact."""
        if not self.fast:
            return None
        return math.ceil(self.spec.shortest_edge * self.FAST_REDUCING_GAP)

    def __call__(self, image: Image.Image, box: Box | None = None) -> np.ndarray:
        """A (3, crop_height, crop_width) float32 array for an RGB image.

        With `box` (DecodedImage.box), only that part of the image is resized, as if it were the whole image.
        """
        if image.mode != "RGB":
            image = to_rgb(image)
        spec = self.spec
        left, top, width, height = 0.0, 0.0, float(image.width), float(image.height)
        if box is not None:
            left, top, width, height = box[0], box[1], box[2] - box[0], box[3] - box[1]
        if spec.resize_to is not None:
            new_height, new_width = spec.resize_to
        else:
            new_width, new_height = resized_size(width, height, spec.shortest_edge)
        if spec.resize_to is not None:
            if (new_width, new_height) != (width, height) or box is not None:
                gap = self.FAST_REDUCING_GAP if self.fast else None
                image = image.resize((new_width, new_height), spec.resample, box=box, reducing_gap=gap)
            pixels = _center_crop(np.asarray(image), spec.crop_height, spec.crop_width)
        elif self.fast and new_width >= spec.crop_width and new_height >= spec.crop_height:
            crop_left = (new_width - spec.crop_width) // 2
            crop_top = (new_height - spec.crop_height) // 2
            scale_x, scale_y = width / new_width, height / new_height
            crop = (
                left + crop_left * scale_x,
                top + crop_top * scale_y,
                left + (crop_left + spec.crop_width) * scale_x,
                top + (crop_top + spec.crop_height) * scale_y,
            )
            pixels = np.asarray(
                image.resize(
                    (spec.crop_width, spec.crop_height), spec.resample, box=crop, reducing_gap=self.FAST_REDUCING_GAP
                )
            )
        else:
            if (new_width, new_height) != (width, height) or box is not None:
                image = image.resize((new_width, new_height), spec.resample, box=box)
            pixels = _center_crop(np.asarray(image), spec.crop_height, spec.crop_width)
        planes: np.ndarray = self._table[np.arange(3)[:, None, None], pixels.transpose(2, 0, 1)]
        return planes


def _center_crop(pixels: np.ndarray, crop_height: int, crop_width: int) -> np.ndarray:
    """Center crop of an (H, W, 3) array; pads with zeros where the crop is larger, as transformers does."""
    height, width = pixels.shape[:2]
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    if top >= 0 and left >= 0:
        return pixels[top : top + crop_height, left : left + crop_width]
    out = np.zeros((crop_height, crop_width, 3), dtype=pixels.dtype)
    src_top, src_left = max(top, 0), max(left, 0)
    dst_top, dst_left = max(-top, 0), max(-left, 0)
    h = min(height - src_top, crop_height - dst_top)
    w = min(width - src_left, crop_width - dst_left)
    out[dst_top : dst_top + h, dst_left : dst_left + w] = pixels[src_top : src_top + h, src_left : src_left + w]
    return out

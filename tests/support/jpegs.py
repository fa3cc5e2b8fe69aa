"""JPEGs whose reduced-scale decode leaves partial pixels, some stored turned with an EXIF orientation."""

from __future__ import annotations

import io

from PIL import Image

from tests.support.embedder import sample_photo

T = Image.Transpose
# How EXIF orientation 2-8 turns a stored image upright (EXIF 2.3, section 4.6.4), and its inverse.
UPRIGHT = {2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE, 6: T.ROTATE_270}
UPRIGHT |= {7: T.TRANSVERSE, 8: T.ROTATE_90}
STORED = UPRIGHT | {6: T.ROTATE_90, 8: T.ROTATE_270}


def jpeg(photo: str, size: tuple[int, int], orientation: int = 1) -> bytes:
    """A JPEG of the photo stretched to size (as shown), stored turned so that EXIF `orientation` shows it upright."""
    image = sample_photo(photo).resize(size, Image.Resampling.BICUBIC)
    exif = Image.Exif()
    if orientation != 1:
        image = image.transpose(STORED[orientation])
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    return buffer.getvalue()


# For the tiny models' 64 pixels (drafted to at least 128): reduced scales that leave a partial pixel at
# the right and bottom edges (1694x1129 and 806x537 at 1/8 and 1/4), near-square, wide and tall ones, and
# turned ones, whose partial pixels end up at the left or top.
IMAGES = {
    "1694x1129": jpeg("astronaut", (1694, 1129)),
    "806x537": jpeg("astronaut", (806, 537)),
    "700x650": jpeg("chelsea", (700, 650)),
    "4000x1000": jpeg("coffee", (4000, 1000)),
    "1001x1999 turned (6)": jpeg("chelsea", (1001, 1999), orientation=6),
    "1694x1129 turned (8)": jpeg("astronaut", (1694, 1129), orientation=8),
    "1123x777 upside down (3)": jpeg("motorcycle_left", (1123, 777), orientation=3),
}

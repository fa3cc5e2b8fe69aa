"""The client's shrinking before sending keeps each family's vectors within a cosine of 0.999 of the whole image's."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from client.ingest.media import ImageLimits, prepare_image
from clipsearch.v1 import embedder_pb2 as pb
from clipsearch.v1 import embedder_pb2_grpc
from embedder_service.model import ClipEmbedder
from tests.support.embedder import cosine, embedder_test_config, encode_image, running_embedder, sample_photo


def jpeg(photo: str, size: tuple[int, int], orientation: int = 1) -> bytes:
    """A JPEG of the photo stretched to size, stored turned so that EXIF `orientation` shows it upright."""
    image = sample_photo(photo).resize(size, Image.Resampling.BICUBIC)
    exif = Image.Exif()
    if orientation == 6:  # stored turned a quarter counterclockwise; shown turned back clockwise
        image = image.transpose(Image.Transpose.ROTATE_90)
        exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    return buffer.getvalue()


# For the tiny models' 64 pixels: JPEGs whose reduced-scale decode would land just above the target size
# (806x537 and 700x650 at 1/8), near-square and wide ones, a turned one, and a PNG (no reduced decode).
IMAGES = {
    "806x537 jpeg": jpeg("astronaut", (806, 537)),
    "700x650 jpeg": jpeg("astronaut", (700, 650)),
    "1100x1000 jpeg": jpeg("chelsea", (1100, 1000)),
    "4000x1000 jpeg": jpeg("coffee", (4000, 1000)),
    "1694x1129 jpeg turned": jpeg("astronaut", (1694, 1129), orientation=6),
    "1920x1080 png": encode_image(sample_photo("coffee").resize((1920, 1080), Image.Resampling.BICUBIC)),
}


@pytest.fixture(scope="module")
def square_family_stubs(
    tiny_family_dirs: dict[str, Path], tiny_family_embedders: dict[str, ClipEmbedder]
) -> Iterator[dict[str, embedder_pb2_grpc.EmbedderStub]]:
    """An in-process embedder per family that resizes to the square (no crop), on its tiny checkpoint."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        stubs = {}
        for family in ("chinese_clip", "siglip"):
            config = embedder_test_config(tiny_family_dirs[family])
            server = stack.enter_context(running_embedder(config, tiny_family_embedders[family]))
            channel = stack.enter_context(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
            stubs[family] = embedder_pb2_grpc.EmbedderStub(channel)
        yield stubs


@pytest.mark.parametrize("family", ["chinese_clip", "siglip"])
def test_shrunk_images_embed_within_0_999_of_the_whole_ones(
    family: str, square_family_stubs: dict[str, embedder_pb2_grpc.EmbedderStub]
) -> None:
    stub = square_family_stubs[family]
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    limits = ImageLimits(info.image_size, info.max_image_pixels, encoded_max_bytes=0)
    prepared = {name: prepare_image(data, limits) for name, data in IMAGES.items()}
    for name, image in prepared.items():
        raw = image.image.raw
        assert min(raw.width, raw.height) == info.image_size, name
        # The aspect is kept, turned upright: the server's square resize sees the whole image's shape.
        assert raw.width / raw.height == pytest.approx(image.width / image.height, rel=0.02), name
    request = pb.EmbedImagesRequest(
        images=[pb.Image(encoded=data) for data in IMAGES.values()] + [image.image for image in prepared.values()]
    )
    vectors = [np.asarray(result.embedding.values) for result in stub.EmbedImages(request).results]
    whole, shrunk = vectors[: len(IMAGES)], vectors[len(IMAGES) :]
    cosines = {name: cosine(a, b) for name, a, b in zip(IMAGES, whole, shrunk, strict=True)}
    assert min(cosines.values()) >= 0.999, cosines

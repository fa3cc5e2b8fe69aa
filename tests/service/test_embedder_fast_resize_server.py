"""An embedder started with EMBEDDER_FAST_RESIZE embeds JPEGs within a cosine of 0.999 of the exact pixels."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np

from clipsearch.v1 import embedder_pb2 as pb
from clipsearch.v1 import embedder_pb2_grpc
from embedder_service.model import ClipEmbedder
from embedder_service.preprocess import Preprocessor, decode_image
from tests.support.embedder import cosine, embedder_test_config, running_embedder
from tests.support.jpegs import IMAGES


def test_a_fast_resizing_siglip_server_embeds_close_to_the_exact_pixels(
    tiny_family_dirs: dict[str, Path], tiny_family_embedders: dict[str, ClipEmbedder]
) -> None:
    embedder = tiny_family_embedders["siglip"]  # resizes to the square: every edge pixel counts
    config = embedder_test_config(tiny_family_dirs["siglip"], fast_resize=True)
    with running_embedder(config, embedder) as server, grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        request = pb.EmbedImagesRequest(images=[pb.Image(encoded=data) for data in IMAGES.values()])
        results = stub.EmbedImages(request).results
    exact = Preprocessor(embedder.preprocess_spec)
    pixels = np.stack([exact(decode_image(data, 10**8).image) for data in IMAGES.values()])
    cosines = {
        name: cosine(np.asarray(result.embedding.values), vector)
        for name, result, vector in zip(IMAGES, results, embedder.embed_images(pixels), strict=True)
    }
    assert [(r.width, r.height) for r in results] == [decode_image(d, 10**8).image.size for d in IMAGES.values()]
    assert min(cosines.values()) >= 0.999, cosines

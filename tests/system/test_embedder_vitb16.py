"""The exact ViT-B/16 architecture (random weights) served end to end: 512-d unit vectors for images and texts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from clipsearch.v1 import embedder_pb2 as pb
from clipsearch.v1 import embedder_pb2_grpc
from embedder_service.checkpoint import write_checkpoint
from tests.support.embedder import cosine, embedder_test_config, encode_image, running_embedder, sample_photo

VIT_B_16_PARAMETERS = 149_620_737  # openai/clip-vit-base-patch16


@pytest.fixture(scope="module")
def vit_b_16_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = write_checkpoint(tmp_path_factory.mktemp("vit-b-16"), arch="vit-b-16")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)  # 600 MB


@pytest.mark.slow
def test_vit_b_16_serves_512_d_unit_vectors(vit_b_16_dir: Path) -> None:
    import torch
    from transformers import CLIPModel, CLIPProcessor

    from embedder_service.server import create_embedder

    config = embedder_test_config(vit_b_16_dir)
    photos = [sample_photo("astronaut"), sample_photo("coffee")]
    texts = ["a photo of an astronaut", "a cup of coffee"]
    with (
        running_embedder(config, create_embedder(config)) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        info = stub.GetModelInfo(pb.GetModelInfoRequest())
        images = stub.EmbedImages(
            pb.EmbedImagesRequest(images=[pb.Image(encoded=encode_image(photo, "JPEG")) for photo in photos])
        ).results
        text_vectors = stub.EmbedTexts(pb.EmbedTextsRequest(texts=texts)).embeddings
    assert (info.dimension, info.image_size, info.max_text_tokens) == (512, 224, 77)
    assert info.logit_scale == pytest.approx(np.exp(2.6592), rel=1e-5)
    got_images = np.array([result.embedding.values for result in images], dtype=np.float32)
    got_texts = np.array([embedding.values for embedding in text_vectors], dtype=np.float32)
    assert got_images.shape == (2, 512) and got_texts.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(got_images, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got_texts, axis=1), 1.0, atol=1e-5)

    model = CLIPModel.from_pretrained(vit_b_16_dir).eval()
    assert sum(parameter.numel() for parameter in model.parameters()) == VIT_B_16_PARAMETERS
    processor = CLIPProcessor.from_pretrained(vit_b_16_dir)
    import io

    from PIL import Image

    decoded = [Image.open(io.BytesIO(encode_image(photo, "JPEG"))) for photo in photos]
    with torch.inference_mode():
        expected = model(**processor(images=decoded, text=texts, return_tensors="pt", padding=True))
    for got, reference in zip(got_images, expected.image_embeds.numpy(), strict=False):
        assert cosine(got, reference) >= 0.9999
    for got, reference in zip(got_texts, expected.text_embeds.numpy(), strict=False):
        assert cosine(got, reference) >= 0.9999

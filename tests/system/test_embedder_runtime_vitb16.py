"""The exact ViT-B/16 architecture (random weights) on OpenVINO and ONNX Runtime against torch fp32."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embedder_service.checkpoint import write_checkpoint
from embedder_service.inference import installed
from embedder_service.model import ClipEmbedder
from embedder_service.preprocess import Preprocessor
from tests.support.embedder import sample_photo

TEXTS = ["a photo of an astronaut", "a cup of coffee", "a cat lying on a sofa next to a sleeping dog", "x"]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (installed("openvino") and installed("onnxruntime")), reason="the fast extra is not installed"
    ),
]


@pytest.fixture(scope="module")
def vit_b_16_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = write_checkpoint(tmp_path_factory.mktemp("vit-b-16"), arch="vit-b-16")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)  # 600 MB


@pytest.fixture(scope="module")
def reference(vit_b_16_dir: Path) -> tuple[ClipEmbedder, np.ndarray, np.ndarray, np.ndarray]:
    """torch fp32, the pixels of four photos, and its image and text vectors."""
    embedder = ClipEmbedder(str(vit_b_16_dir), dtype="fp32", device="cpu", runtime="torch")
    embedder.load()
    preprocess = Preprocessor(embedder.preprocess_spec)
    pixels = np.stack([preprocess(sample_photo(name)) for name in ("astronaut", "coffee", "chelsea", "camera")])
    return embedder, pixels, embedder.embed_images(pixels), embedder.embed_texts(TEXTS)


@pytest.mark.parametrize(
    ("runtime", "dtype", "floor"),
    [("openvino", "fp32", 0.9999), ("onnxruntime", "fp32", 0.9999), ("onnxruntime", "int8", 0.99)],
)
def test_vit_b_16_on_each_runtime_matches_torch_fp32(
    runtime: str,
    dtype: str,
    floor: float,
    vit_b_16_dir: Path,
    reference: tuple[ClipEmbedder, np.ndarray, np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    _, pixels, want_images, want_texts = reference
    embedder = ClipEmbedder(str(vit_b_16_dir), dtype=dtype, device="cpu", runtime=runtime, cache_dir=tmp_path)
    info = embedder.load()
    assert (info.runtime, info.dimension, info.image_size) == (runtime, 512, 224)
    got_images, got_texts = embedder.embed_images(pixels), embedder.embed_texts(TEXTS)
    for got, want in ((got_images, want_images), (got_texts, want_texts)):
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
        assert float((got.astype(np.float64) * want).sum(axis=1).min()) >= floor

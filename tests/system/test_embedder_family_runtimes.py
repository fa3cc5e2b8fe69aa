"""Chinese-CLIP and SigLIP towers converted for OpenVINO and ONNX Runtime match torch; a cached start skips torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedder_service import families
from embedder_service.inference import installed
from embedder_service.model import ClipEmbedder
from embedder_service.preprocess import Preprocessor
from tests.support.embedder import sample_photo

RUNTIMES = ("openvino", "onnxruntime")
TEXTS = ["微笑的男人", "一只猫", "a photo of a smiling man in the city street", "x"]
pytestmark = pytest.mark.skipif(
    not all(installed(name) for name in RUNTIMES), reason="the fast extra (openvino, onnxruntime) is not installed"
)


def min_cosine(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape
    return float((got.astype(np.float64) * want.astype(np.float64)).sum(axis=1).min())


@pytest.fixture(scope="module")
def family_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("converted-families")


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("family", ["chinese_clip", "siglip"])
def test_family_towers_convert_and_match_torch(
    family: str,
    runtime: str,
    family_cache: Path,
    tiny_family_dirs: dict[str, Path],
    tiny_family_embedders: dict[str, ClipEmbedder],
) -> None:
    reference = tiny_family_embedders[family]
    embedder = ClipEmbedder(
        str(tiny_family_dirs[family]), dtype="fp32", device="cpu", runtime=runtime, cache_dir=family_cache
    )
    info = embedder.load()
    assert (info.runtime, info.family) == (runtime, family)
    assert (info.fingerprint, info.logit_scale, info.logit_bias, info.dimension) == (  # type: ignore[comparison-overlap]
        reference.info.fingerprint,
        pytest.approx(reference.info.logit_scale),
        pytest.approx(reference.info.logit_bias),
        reference.info.dimension,
    )
    preprocess = Preprocessor(embedder.preprocess_spec)
    noise = Image.fromarray(np.random.default_rng(2).integers(0, 256, (70, 110, 3), dtype=np.uint8))
    pixels = np.stack([preprocess(image) for image in (sample_photo("astronaut"), sample_photo("coffee"), noise)])
    assert min_cosine(embedder.embed_images(pixels), reference.embed_images(pixels)) >= 0.9999
    assert min_cosine(embedder.embed_texts(TEXTS), reference.embed_texts(TEXTS)) >= 0.9999
    # Batches of other sizes than the traced one (dynamic batch; SigLIP's texts stay at full length).
    assert min_cosine(embedder.embed_texts(TEXTS[:1]), reference.embed_texts(TEXTS[:1])) >= 0.9999
    assert min_cosine(embedder.embed_images(pixels[:1]), reference.embed_images(pixels[:1])) >= 0.9999


def test_a_cached_start_does_not_load_the_torch_weights(
    tiny_family_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = str(tiny_family_dirs["siglip"])
    first = ClipEmbedder(directory, dtype="fp32", device="cpu", runtime="onnxruntime", cache_dir=tmp_path)
    first.load()

    def no_weights(*args: object) -> None:
        raise AssertionError("the torch weights were loaded on a cached start")

    monkeypatch.setattr(families, "load_model", no_weights)
    second = ClipEmbedder(directory, dtype="fp32", device="cpu", runtime="onnxruntime", cache_dir=tmp_path)
    assert second.load() == first.info
    np.testing.assert_array_equal(second.embed_texts(TEXTS), first.embed_texts(TEXTS))

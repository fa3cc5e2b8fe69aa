"""int8 search keeps its neighbours: 1,000 generated images and a set of queries, int8 against fp32 per runtime.

The tiny random checkpoint puts every image in a narrow cone (neighbouring images at cosine 0.99, a text's
10th and 11th best images 0.0007 apart), so rankings there hinge on small differences: a harder test than
a trained model's spread. Image-to-image neighbours are not judged: even OpenVINO fp32 against ONNX Runtime
fp32 (1e-7 apart) keeps only 0.9 of them there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from embedder_service.inference import installed
from embedder_service.model import ClipEmbedder
from embedder_service.preprocess import Preprocessor

IMAGES = 1000
K = 10
MIN_COSINE = 0.99  # per vector, int8 against fp32
MIN_OVERLAP = 0.9  # mean share of each query's top 10 that int8 finds too
CAPTIONS = [
    f"{adjective} {noun}"
    for adjective in ("a red", "a small", "an old", "a bright", "a striped")
    for noun in ("cat", "bicycle", "lighthouse", "teapot", "mountain", "robot", "sailboat", "violin")
]


def generated(rng: np.random.Generator, size: int = 64) -> Image.Image:
    """A gradient under a few flat shapes and some noise: no two alike, some far apart."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    channels = [rng.uniform(0, 255) + rng.uniform(-150, 150) * xx + rng.uniform(-150, 150) * yy for _ in range(3)]
    image = Image.fromarray(np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 6))):
        x0, y0 = (int(v) for v in rng.integers(0, size, 2))
        x1, y1 = x0 + int(rng.integers(4, size)), y0 + int(rng.integers(4, size))
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=color)
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, rng.uniform(0, 30), (size, size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def pixels(tiny_embedder: ClipEmbedder) -> np.ndarray:
    rng = np.random.default_rng(11)
    preprocess = Preprocessor(tiny_embedder.preprocess_spec)
    return np.stack([preprocess(generated(rng)) for _ in range(IMAGES)])


def top_k(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :K]


def overlap(want: np.ndarray, got: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(want, got, strict=True)]))


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_int8_search_keeps_its_neighbours(
    runtime: str, tiny_clip_dir: Path, pixels: np.ndarray, tmp_path: Path
) -> None:
    if not installed(runtime):
        pytest.skip(f"{runtime} is not installed (pip install 'clipsearch[fast]')")
    found = {}
    for dtype in ("fp32", "int8"):
        embedder = ClipEmbedder(str(tiny_clip_dir), dtype=dtype, device="cpu", runtime=runtime, cache_dir=tmp_path)
        embedder.load()
        assert embedder.info.runtime == runtime
        found[dtype] = (embedder.embed_images(pixels), embedder.embed_texts(CAPTIONS))
    (images, texts), (images8, texts8) = found["fp32"], found["int8"]
    cosines = np.concatenate([(images * images8).sum(axis=1), (texts * texts8).sum(axis=1)])
    kept = overlap(top_k(texts, images), top_k(texts8, images8))
    numbers = f"{runtime} int8 against fp32: minimum cosine {cosines.min():.4f}, top-{K} overlap {kept:.3f}"
    assert cosines.min() >= MIN_COSINE, f"{numbers}; a vector fell below cosine {MIN_COSINE}"
    assert kept >= MIN_OVERLAP, f"{numbers}; the text queries keep under {MIN_OVERLAP} of their top {K}"

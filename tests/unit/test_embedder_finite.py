"""A tower that returns NaN or infinite values ends the call with an error rather than handing the vectors out."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from embedder_service.model import ClipEmbedder, NonFiniteVectors
from embedder_service.preprocess import Preprocessor
from tests.support.embedder import sample_photo


def test_nan_image_vectors_are_refused_and_texts_still_embed(tiny_clip_dir: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    directory = tmp_path / "nan-vision"
    shutil.copytree(tiny_clip_dir, directory)
    weights = load_file(directory / "model.safetensors")
    weights["vision_model.post_layernorm.weight"] = np.full_like(weights["vision_model.post_layernorm.weight"], np.nan)
    save_file(weights, directory / "model.safetensors", metadata={"format": "pt"})
    embedder = ClipEmbedder(str(directory), dtype="fp32", device="cpu", runtime="torch")
    embedder.load()
    pixels = Preprocessor(embedder.preprocess_spec)(sample_photo("coffee"))[None]
    with pytest.raises(NonFiniteVectors, match=r"the image tower returned NaN or infinite values \(torch, float32\)"):
        embedder.embed_images(pixels)
    assert np.isfinite(embedder.embed_texts(["a cup of coffee"])).all()

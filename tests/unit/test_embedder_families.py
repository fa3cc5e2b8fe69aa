"""Each family (CLIP, Chinese-CLIP, SigLIP) through ClipEmbedder equals transformers' own model and scoring."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from PIL import Image

from embedder_service.families import FAMILIES, UnsupportedCheckpoint
from embedder_service.model import ClipEmbedder
from embedder_service.preprocess import Preprocessor
from tests.support.embedder import cosine, family_reference_outputs, sample_photo

TEXTS = ["微笑的男人", "一只猫", "a photo of a cat", "a smiling man in the city street 的 照片"]
LABELS = ["猫", "狗", "微笑的男人", "a red car"]


def photos() -> list[Image.Image]:
    noise = Image.fromarray(np.random.default_rng(3).integers(0, 256, (90, 140, 3), dtype=np.uint8))
    return [sample_photo("astronaut"), sample_photo("chelsea"), noise]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_vectors_equal_the_family_model(
    family: str, tiny_family_dirs: dict[str, Path], tiny_family_embedders: dict[str, ClipEmbedder]
) -> None:
    embedder = tiny_family_embedders[family]
    assert embedder.info.family == family
    images = photos()
    reference = family_reference_outputs(family, tiny_family_dirs[family], images, TEXTS)
    preprocess = Preprocessor(embedder.preprocess_spec)
    image_vectors = embedder.embed_images(np.stack([preprocess(image) for image in images]))
    text_vectors = embedder.embed_texts(TEXTS)
    for got, want in zip(image_vectors, reference.image_embeds.numpy(), strict=True):
        assert cosine(got, want) >= 0.9999
    for got, want in zip(text_vectors, reference.text_embeds.numpy(), strict=True):
        assert cosine(got, want) >= 0.9999
    # A text alone embeds as in a batch: the padding rule does not leak between texts.
    np.testing.assert_allclose(embedder.embed_texts(TEXTS[:1])[0], text_vectors[0], atol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_zero_shot_scores_equal_logits_per_image(
    family: str, tiny_family_dirs: dict[str, Path], tiny_family_embedders: dict[str, ClipEmbedder]
) -> None:
    import torch

    embedder = tiny_family_embedders[family]
    image = sample_photo("coffee")
    reference = family_reference_outputs(family, tiny_family_dirs[family], [image], LABELS)
    vector = embedder.embed_images(Preprocessor(embedder.preprocess_spec)(image)[None])[0]
    result = embedder.classify(vector, LABELS)
    logits = reference.logits_per_image[0]
    want = logits.softmax(-1) if family != "siglip" else torch.sigmoid(logits)
    np.testing.assert_allclose(result.logits, logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(result.probabilities, want.numpy(), atol=1e-5)
    assert embedder.info.scoring == ("sigmoid" if family == "siglip" else "softmax")
    if family == "siglip":
        assert embedder.info.logit_bias == pytest.approx(-10.0)
        assert result.probabilities.sum() != pytest.approx(1.0)
    else:
        assert embedder.info.logit_bias == 0.0


@pytest.mark.parametrize(("family", "limit"), [("clip", 77), ("chinese_clip", 52), ("siglip", 64)])
def test_long_texts_are_truncated_as_the_tokenizer_does(
    family: str, limit: int, tiny_family_embedders: dict[str, ClipEmbedder]
) -> None:
    embedder = tiny_family_embedders[family]
    assert embedder.info.max_text_tokens == limit
    long_text = "微笑的男人 " * 200
    ids = embedder.tokenize([long_text])[0]
    assert len(ids) == limit
    tokenizer = embedder._tokenizer
    assert ids == tokenizer([long_text], truncation=True, max_length=limit)["input_ids"][0]
    # What lies past the limit does not change the vector.
    a, b = embedder.embed_texts([long_text, long_text + " 狗 " * 50])
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("family", ["chinese_clip", "siglip"])
def test_chinese_texts_are_known_tokens(family: str, tiny_family_embedders: dict[str, ClipEmbedder]) -> None:
    embedder = tiny_family_embedders[family]
    tokenizer = embedder._tokenizer
    for ids in embedder.tokenize(["微笑的男人", "一只猫"]):
        assert tokenizer.unk_token_id not in ids
    vectors = embedder.embed_texts(["微笑的男人", "一只猫"])
    assert vectors.shape == (2, embedder.info.dimension)
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-4  # the random tiny towers differ little, but they do


def test_an_unsupported_model_type_is_refused_naming_it(tiny_clip_dir: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "blip"
    shutil.copytree(tiny_clip_dir, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["model_type"] = "blip"
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedCheckpoint) as caught:
        ClipEmbedder(str(checkpoint), dtype="fp32", device="cpu", runtime="torch", cache_dir=tmp_path).load()
    message = str(caught.value)
    assert "\n" not in message
    assert "'blip'" in message and "clip, chinese_clip, siglip" in message


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_checkpoint_with_a_missing_tensor_is_refused(
    family: str, tiny_family_dirs: dict[str, Path], tmp_path: Path
) -> None:
    from safetensors.numpy import load_file, save_file

    checkpoint = tmp_path / family
    shutil.copytree(tiny_family_dirs[family], checkpoint)
    weights = load_file(checkpoint / "model.safetensors")
    removed = sorted(name for name in weights if "visual_projection" in name or "vision_model.head" in name)[0]
    extra = "text_model.some_new_layer.weight"
    del weights[removed]
    weights[extra] = np.zeros(3, dtype=np.float32)
    save_file(weights, checkpoint / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UnsupportedCheckpoint) as caught:
        ClipEmbedder(str(checkpoint), dtype="fp32", device="cpu", runtime="torch", cache_dir=tmp_path).load()
    message = str(caught.value)
    assert "\n" not in message
    assert f"1 missing ({removed})" in message and f"1 unexpected ({extra})" in message
    assert "random" in message


def test_the_fingerprint_is_the_weight_files_digest(
    tiny_family_dirs: dict[str, Path], tiny_family_embedders: dict[str, ClipEmbedder], tmp_path: Path
) -> None:
    import hashlib

    from embedder_service.fingerprint import fingerprint

    prints = {family: embedder.info.fingerprint for family, embedder in tiny_family_embedders.items()}
    assert len(set(prints.values())) == 3
    clip = tiny_family_dirs["clip"]
    data = (clip / "model.safetensors").read_bytes()
    line = f"model.safetensors\t{len(data)}\t{hashlib.sha256(data).hexdigest()}\n"
    assert prints["clip"] == "sha256:" + hashlib.sha256(line.encode()).hexdigest()
    # The same weights elsewhere have the same fingerprint; another config does not change it.
    copy = tmp_path / "copy"
    shutil.copytree(clip, copy)
    (copy / "config.json").write_text((copy / "config.json").read_text().replace("quick_gelu", "gelu"))
    assert fingerprint(copy) == prints["clip"]
    # Remembered by (path, size, mtime): a file changed in place is hashed again.
    cache = tmp_path / "fingerprints.json"
    assert fingerprint(copy, cache) == prints["clip"]
    assert not cache.exists()  # small files are hashed at each start
    assert fingerprint(copy, cache, remember_over=0) == prints["clip"]
    assert len(json.loads(cache.read_text())) == 1
    changed = bytearray(data)
    changed[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(changed))
    assert fingerprint(copy, cache, remember_over=0) != prints["clip"]


def test_a_weight_of_another_shape_is_refused(tiny_clip_dir: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    checkpoint = tmp_path / "reshaped"
    shutil.copytree(tiny_clip_dir, checkpoint)
    weights = load_file(checkpoint / "model.safetensors")
    weights["visual_projection.weight"] = np.zeros((16, 32), dtype=np.float32)
    save_file(weights, checkpoint / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UnsupportedCheckpoint, match=r"1 mismatched \(visual_projection\.weight\)"):
        ClipEmbedder(str(checkpoint), dtype="fp32", device="cpu", runtime="torch", cache_dir=tmp_path).load()


@pytest.mark.parametrize("family", ["chinese_clip", "siglip"])
def test_the_checkpoint_cli_writes_each_family(family: str, tmp_path: Path) -> None:
    from transformers import AutoProcessor, AutoTokenizer

    from embedder_service.checkpoint import main as checkpoint_cli

    checkpoint_cli([str(tmp_path), "--family", family, "--seed", "1"])
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == family
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(processor).__name__ == ("ChineseCLIPProcessor" if family == "chinese_clip" else "SiglipProcessor")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    ids = tokenizer("微笑的男人")["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert cast(str, tokenizer.decode(ids, skip_special_tokens=True)).replace(" ", "") == "微笑的男人"

"""ClipEmbedder equals transformers' CLIPModel: image and text vectors, and zero-shot probabilities."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from embedder_service.model import ClipEmbedder, ModelNotFound, default_image_pass_size, readable_prefix
from embedder_service.preprocess import Preprocessor
from tests.support.embedder import ClipReference, cosine, sample_photo

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "horse"]
TEXTS = ["a photo of an astronaut", "一只猫", "🚀🚀 launch", "قطة على الأريكة", "a cup of coffee"]
LONG_TEXT = " ".join(f"word{i}" for i in range(300))


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [sample_photo(name) for name in PHOTOS]


@pytest.fixture(scope="module")
def bf16_embedder(tiny_clip_dir: Path) -> ClipEmbedder:
    embedder = ClipEmbedder(str(tiny_clip_dir), dtype="bf16", device="cpu")
    embedder.load()
    return embedder


def embed_photos(embedder: ClipEmbedder, photos: list[Image.Image]) -> np.ndarray:
    preprocess = Preprocessor(embedder.preprocess_spec)
    return embedder.embed_images(np.stack([preprocess(photo) for photo in photos]))


def assert_close(got: np.ndarray, expected: np.ndarray, minimum_cosine: float) -> None:
    assert got.shape == expected.shape
    for a, b in zip(got, expected, strict=False):
        assert cosine(a, b) >= minimum_cosine


def test_info_describes_the_checkpoint(tiny_embedder: ClipEmbedder, tiny_reference: ClipReference) -> None:
    info = tiny_embedder.info
    config = tiny_reference.model.config
    assert info.dimension == config.projection_dim == 32
    assert info.image_size == config.vision_config.image_size == 64
    assert info.max_text_tokens == 77
    assert info.logit_scale == pytest.approx(float(tiny_reference.model.logit_scale.detach().exp()))
    assert (info.dtype, info.device) == ("float32", "cpu")
    assert tiny_embedder.load() is info  # loading again is a no-op


def test_feature_outputs_are_the_projected_embeds(tiny_reference: ClipReference, photos: list[Image.Image]) -> None:
    """In transformers 5, get_*_features returns an output whose pooler_output is CLIP's projected embedding."""
    model, processor = tiny_reference.model, tiny_reference.processor
    inputs = processor(images=photos[:2], text=TEXTS[:2], return_tensors="pt", padding=True)
    with torch.inference_mode():
        outputs = model(**inputs)
        image = model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        text = model.get_text_features(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        ).pooler_output
    torch.testing.assert_close(image / image.norm(dim=-1, keepdim=True), outputs.image_embeds)
    torch.testing.assert_close(text / text.norm(dim=-1, keepdim=True), outputs.text_embeds)


def test_fp32_vectors_equal_transformers(
    tiny_embedder: ClipEmbedder, tiny_reference: ClipReference, photos: list[Image.Image]
) -> None:
    expected = tiny_reference.outputs(photos, TEXTS)
    images = embed_photos(tiny_embedder, photos)
    texts = tiny_embedder.embed_texts(TEXTS)
    assert images.dtype == np.float32 and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert_close(images, expected.image_embeds.numpy(), 0.9999)
    assert_close(texts, expected.text_embeds.numpy(), 0.9999)


def test_bf16_vectors_are_close_to_fp32_transformers(
    bf16_embedder: ClipEmbedder, tiny_reference: ClipReference, photos: list[Image.Image]
) -> None:
    assert bf16_embedder.info.dtype == "bfloat16"
    expected = tiny_reference.outputs(photos, TEXTS)
    images = embed_photos(bf16_embedder, photos)
    texts = bf16_embedder.embed_texts(TEXTS)
    assert images.dtype == np.float32
    assert_close(images, expected.image_embeds.numpy(), 0.999)
    assert_close(texts, expected.text_embeds.numpy(), 0.999)


def test_a_batch_gives_each_image_its_own_vector(tiny_embedder: ClipEmbedder, photos: list[Image.Image]) -> None:
    batch = embed_photos(tiny_embedder, photos)
    for photo, vector in zip(photos, batch, strict=False):
        np.testing.assert_allclose(embed_photos(tiny_embedder, [photo])[0], vector, atol=1e-5)


@pytest.mark.parametrize(("pass_size", "passes"), [(0, 1), (2, 3), (5, 1), (1, 5)])
def test_a_batch_runs_in_passes_of_the_pass_size_with_the_same_vectors(
    tiny_clip_dir: Path, tiny_embedder: ClipEmbedder, photos: list[Image.Image], pass_size: int, passes: int
) -> None:
    embedder = ClipEmbedder(str(tiny_clip_dir), dtype="fp32", device="cpu", image_pass_size=pass_size)
    embedder.load()
    assert embedder.image_pass_size == pass_size
    model = embedder._model
    forward = model.get_image_features
    sizes: list[int] = []

    def counted(pixel_values: torch.Tensor) -> object:
        sizes.append(len(pixel_values))
        return forward(pixel_values=pixel_values)

    model.get_image_features = counted
    got = embed_photos(embedder, photos)
    assert len(sizes) == passes and sum(sizes) == len(photos) and max(sizes) <= (pass_size or len(photos))
    np.testing.assert_allclose(got, embed_photos(tiny_embedder, photos), atol=1e-5)


def test_image_passes_default_to_cache_sized_on_a_cpu_and_whole_on_a_gpu(tiny_embedder: ClipEmbedder) -> None:
    assert default_image_pass_size("cpu", "fp32") == 4 and default_image_pass_size("cpu", "bf16") == 8
    assert default_image_pass_size("cuda", "bf16") == 0 and default_image_pass_size("cuda", "fp32") == 0
    assert tiny_embedder.image_pass_size == 4  # auto, on the CPU in float32
    with pytest.raises(ValueError, match="image_pass_size"):
        ClipEmbedder("x", image_pass_size=-1)


def test_long_text_is_truncated_to_77_tokens(tiny_embedder: ClipEmbedder, tiny_reference: ClipReference) -> None:
    tokenizer = tiny_reference.processor.tokenizer
    assert len(tokenizer(LONG_TEXT)["input_ids"]) > 77
    inputs = tokenizer([LONG_TEXT], truncation=True, max_length=77, return_tensors="pt")
    with torch.inference_mode():
        expected = tiny_reference.model.get_text_features(**inputs).pooler_output[0].numpy()
    assert cosine(tiny_embedder.embed_texts([LONG_TEXT])[0], expected) >= 0.9999
    # Words past the limit change nothing.
    assert cosine(tiny_embedder.embed_texts([LONG_TEXT + " and more"])[0], expected) >= 0.9999


@pytest.mark.parametrize(
    "text",
    [
        " ".join(f"w{i}" for i in range(20_000)),  # 120 KB of short words
        "\u3000".join(["猫🐱", "word,with;punct", "x\x1cy"] * 3000),  # ideographic spaces, \x1c inside words
        "\n\t ".join(["a" * 40] * 2000),  # long words, mixed whitespace
        "z" * 60_000,  # one giant word
    ],
)
def test_long_texts_are_cut_before_tokenizing_without_changing_tokens(
    tiny_embedder: ClipEmbedder, tiny_reference: ClipReference, text: str
) -> None:
    tokenizer = tiny_reference.processor.tokenizer
    expected = tokenizer([text], truncation=True, max_length=77)["input_ids"]
    assert len(expected[0]) == 77
    assert tiny_embedder.tokenize([text]) == expected
    assert len(readable_prefix(text, 77)) < len(text)


@pytest.mark.parametrize("template", ["", "a photo of {}"])
def test_classification_equals_logits_per_image_softmax(
    tiny_embedder: ClipEmbedder, tiny_reference: ClipReference, photos: list[Image.Image], template: str
) -> None:
    labels = ["astronaut", "cat", "coffee", "rocket", "horse", "猫"]
    prompts = [template.format(label) if template else label for label in labels]
    expected = tiny_reference.outputs(photos[:1], prompts)
    vector = embed_photos(tiny_embedder, photos[:1])[0]
    result = tiny_embedder.classify(vector, labels, template)
    np.testing.assert_allclose(result.logits, expected.logits_per_image[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(result.probabilities, expected.logits_per_image.softmax(-1)[0].numpy(), atol=1e-5)
    assert result.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(result.logits, result.cosines * tiny_embedder.info.logit_scale, rtol=1e-5)
    # An unnormalized vector is normalized first.
    np.testing.assert_allclose(
        tiny_embedder.classify(vector * 7.5, labels, template).probabilities, result.probabilities, atol=1e-6
    )


def test_concurrent_calls_get_the_same_vectors(tiny_embedder: ClipEmbedder, photos: list[Image.Image]) -> None:
    expected_images = embed_photos(tiny_embedder, photos)
    expected_texts = tiny_embedder.embed_texts(TEXTS)
    failures: list[str] = []

    def work(seed: int) -> None:
        for round_ in range(5):
            if (seed + round_) % 2:
                got = tiny_embedder.embed_texts(TEXTS)
                ok = np.allclose(got, expected_texts, atol=1e-5)
            else:
                got = embed_photos(tiny_embedder, photos)
                ok = np.allclose(got, expected_images, atol=1e-5)
            if not ok:
                failures.append(f"thread {seed} round {round_}")

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_missing_checkpoints_raise_model_not_found(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.bin").write_bytes(b"x")
    cases = {
        str(tmp_path / "nowhere"): "no such directory",
        str(tmp_path / "empty"): "no config.json",
        str(tmp_path / "file.bin"): "is a file",
    }
    for model_id, reason in cases.items():
        with pytest.raises(ModelNotFound, match=reason) as error:
            ClipEmbedder(model_id, dtype="fp32", device="cpu").load()
        assert f"CLIP_MODEL={model_id}" in str(error.value)
        assert "python -m embedder_service.checkpoint" in str(error.value)

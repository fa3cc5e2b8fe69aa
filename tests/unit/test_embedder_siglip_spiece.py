"""A SigLIP checkpoint with the released models' tokenizer (spiece.model, SiglipTokenizer) embeds as SiglipModel does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedder_service.family_checkpoints import write_siglip
from embedder_service.model import ClipEmbedder
from tests.support.embedder import cosine

TEXTS = [
    "微笑的男人",
    "A photo of a smiling man, with a dog!",
    "一张狗的照片 in the city",
    " ".join(["a red car on the street"] * 20),  # beyond the 64 tokens: truncated as the processor does
]


@pytest.fixture(scope="module")
def spiece_siglip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-siglip-spiece")
    write_siglip(directory, "tiny", seed=0, tokenizer="sentencepiece")
    return directory


def test_the_checkpoint_ships_the_tokenizer_as_the_released_models_do(spiece_siglip_dir: Path) -> None:
    import transformers

    assert {path.name for path in spiece_siglip_dir.iterdir()} >= {"spiece.model", "tokenizer_config.json"}
    assert not (spiece_siglip_dir / "tokenizer.json").exists()
    tokenizer = transformers.AutoProcessor.from_pretrained(spiece_siglip_dir).tokenizer
    assert type(tokenizer).__name__ == "SiglipTokenizer"
    assert (tokenizer.pad_token, tokenizer.eos_token, tokenizer.unk_token) == ("</s>", "</s>", "<unk>")
    ids = tokenizer("微笑的男人")["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.unk_token_id not in ids


def test_text_vectors_equal_siglip_models_text_embeds(spiece_siglip_dir: Path) -> None:
    import torch
    import transformers

    embedder = ClipEmbedder(str(spiece_siglip_dir), dtype="fp32", device="cpu", runtime="torch")
    embedder.load()
    got = embedder.embed_texts(TEXTS)

    model = transformers.SiglipModel.from_pretrained(spiece_siglip_dir).eval()
    processor = transformers.SiglipProcessor.from_pretrained(spiece_siglip_dir)
    inputs = processor(text=TEXTS, padding="max_length", truncation=True, return_tensors="pt")
    inputs.pop("attention_mask", None)
    with torch.inference_mode():
        want = model(**inputs, pixel_values=torch.zeros((1, 3, 64, 64))).text_embeds.numpy()
    assert inputs["input_ids"].shape == (len(TEXTS), 64)
    for got_vector, want_vector in zip(got, want, strict=True):
        assert cosine(got_vector, want_vector) >= 0.9999
    # Each text alone embeds as in the batch.
    np.testing.assert_allclose(np.concatenate([embedder.embed_texts([text]) for text in TEXTS]), got, atol=1e-5)

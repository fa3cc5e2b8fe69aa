"""The random-weight checkpoint writer: what it writes loads through transformers' own from_pretrained."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import cast

import pytest
from transformers import CLIPModel, CLIPProcessor, CLIPTextConfig, CLIPTokenizer, CLIPVisionConfig

from embedder_service.checkpoint import write_checkpoint

TEXTS = ["a photo of a cat", "一只猫的照片", "🐈‍⬛ 🙂", "صورة قطة", "A  PHOTO\tof a Cat!"]


def test_tiny_checkpoint_loads_with_clip_model_and_processor(tiny_clip_dir: Path) -> None:
    model = CLIPModel.from_pretrained(tiny_clip_dir)
    processor = CLIPProcessor.from_pretrained(tiny_clip_dir)
    config = model.config
    image_size = cast(CLIPVisionConfig, config.vision_config).image_size
    image_processor = processor.image_processor
    assert image_processor.size.shortest_edge == image_size
    assert (image_processor.crop_size.height, image_processor.crop_size.width) == (image_size, image_size)
    assert image_processor.resample == 3  # bicubic
    assert list(image_processor.image_mean) == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert list(image_processor.image_std) == pytest.approx([0.26862954, 0.26130258, 0.27577711])
    tokenizer = processor.tokenizer
    assert tokenizer.model_max_length == cast(CLIPTextConfig, config.text_config).max_position_embeddings == 77
    assert tokenizer.convert_tokens_to_ids("<|startoftext|>") == cast(CLIPTextConfig, config.text_config).bos_token_id
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") == cast(CLIPTextConfig, config.text_config).eos_token_id
    assert len(tokenizer) <= cast(CLIPTextConfig, config.text_config).vocab_size
    assert (tiny_clip_dir / "model.safetensors").is_file()
    assert float(model.logit_scale.detach()) == pytest.approx(2.6592, abs=1e-6)


def test_vocab_and_empty_merges_alone_make_the_same_tokenizer(tiny_clip_dir: Path, tmp_path: Path) -> None:
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tiny_clip_dir / name, tmp_path / name)
    classic = CLIPTokenizer.from_pretrained(tmp_path)
    saved = CLIPTokenizer.from_pretrained(tiny_clip_dir)
    vocab = json.loads((tiny_clip_dir / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 514  # 256 bytes, 256 bytes ending a word, start and end
    for text in TEXTS:
        ids = classic(text)["input_ids"]
        assert ids == saved(text)["input_ids"]
        assert ids[0] == vocab["<|startoftext|>"] and ids[-1] == vocab["<|endoftext|>"]
        assert vocab["<|endoftext|>"] not in ids[1:-1], f"{text!r} has unknown tokens"


def test_unknown_architecture_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vit-b-16"):
        write_checkpoint(tmp_path, arch="vit-l-14")

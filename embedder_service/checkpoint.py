"""Writes a random-weight CLIP, Chinese-CLIP or SigLIP checkpoint, with tokenizer and image processor, for offline use."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

ARCHS = ("tiny", "vit-b-16")
FAMILIES = ("clip", "chinese_clip", "siglip")

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
MAX_TEXT_TOKENS = 77

# Architectures: "vit-b-16" is exactly openai/clip-vit-base-patch16; "tiny" runs in milliseconds on a CPU.
_VISION = {
    "tiny": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 64,
        "patch_size": 16,
    },
    "vit-b-16": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 224,
        "patch_size": 16,
    },
}
_TEXT = {
    "tiny": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
    "vit-b-16": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8},
}
_PROJECTION_DIM = {"tiny": 32, "vit-b-16": 512}
# The released vocabulary's size; the tiny model only needs the byte-level base tokens and the two specials.
_VOCAB_SIZE = {"tiny": 514, "vit-b-16": 49408}


def byte_level_vocab(vocab_size: int) -> dict[str, int]:
    """CLIP's byte-level base vocabulary without merges: each byte alone and as a word end ("</w>").

    The start and end tokens take the last two ids, as in the released vocabulary, so that the end token
    has the highest id (which CLIP's text pooling relies on for legacy configs).
    """
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {symbol: i for i, symbol in enumerate(symbols)}
    vocab.update({symbol + "</w>": len(symbols) + i for i, symbol in enumerate(symbols)})
    if vocab_size < len(vocab) + 2:
        raise ValueError(f"vocab_size {vocab_size} cannot hold the {len(vocab) + 2} byte-level tokens")
    vocab[START_TOKEN] = vocab_size - 2
    vocab[END_TOKEN] = vocab_size - 1
    return vocab


def write_checkpoint(directory: str | Path, arch: str = "tiny", seed: int = 0, family: str = "clip") -> Path:
    """Saves a random-weight model of `family` and `arch`, its tokenizer and image processor into `directory`.

    The result loads with the family's model and processor classes, e.g. CLIPModel.from_pretrained(directory)
    and CLIPProcessor.from_pretrained(directory).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}")
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of: {', '.join(FAMILIES)}")
    if family != "clip":
        from embedder_service import family_checkpoints

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        writer = family_checkpoints.write_chinese_clip if family == "chinese_clip" else family_checkpoints.write_siglip
        writer(directory, arch, seed)
        _share(directory)
        return directory
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_size = _VOCAB_SIZE[arch]
    vocab = byte_level_vocab(vocab_size)
    image_size = _VISION[arch]["image_size"]
    projection_dim = _PROJECTION_DIM[arch]

    config = CLIPConfig(
        text_config=dict(
            **_TEXT[arch],
            vocab_size=vocab_size,
            max_position_embeddings=MAX_TEXT_TOKENS,
            projection_dim=projection_dim,
            hidden_act="quick_gelu",
            bos_token_id=vocab[START_TOKEN],
            eos_token_id=vocab[END_TOKEN],
            pad_token_id=vocab[END_TOKEN],
        ),
        vision_config=dict(**_VISION[arch], projection_dim=projection_dim, hidden_act="quick_gelu"),
        projection_dim=projection_dim,
        logit_scale_init_value=2.6592,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(directory, safe_serialization=True)

    # The tokenizer files in the classic layout (vocab.json + merges.txt) that CLIPTokenizer loads.
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TEXT_TOKENS)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        resample=3,  # PIL bicubic
        do_resize=True,
        do_center_crop=True,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
        do_convert_rgb=True,
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    image_processor.save_pretrained(directory)  # preprocessor_config.json, as the released checkpoints have
    _share(directory)
    return directory


def _share(directory: Path) -> None:
    for path in directory.iterdir():
        path.chmod(0o644)  # safetensors writes 0600; a checkpoint is meant to be shared (e.g. mounted read-only)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m embedder_service.checkpoint",
        description="Write a random-weight CLIP, Chinese-CLIP or SigLIP checkpoint (model, tokenizer, image processor) to DIR. "
        "Its vectors are meaningless, but it serves exactly like a real one: point CLIP_MODEL at DIR.",
    )
    parser.add_argument("directory", type=Path, help="where to write the checkpoint (created if missing)")
    parser.add_argument(
        "--arch",
        choices=ARCHS,
        default="tiny",
        help="tiny (fast, for tests) or vit-b-16 (the exact openai/clip-vit-base-patch16 "
        "architecture, about 600 MB); default tiny",
    )
    parser.add_argument(
        "--family",
        choices=FAMILIES,
        default="clip",
        help="clip (OpenAI CLIP), chinese_clip (Chinese-CLIP, BERT tokenizer) or siglip (SigLIP); default clip",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed for the weights (default 0)")
    args = parser.parse_args(argv)
    path = write_checkpoint(args.directory, args.arch, args.seed, args.family)
    print(
        f"wrote a random-weight {args.arch} {args.family} checkpoint to {path}; run it with CLIP_MODEL={path}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()

"""Random-weight Chinese-CLIP and SigLIP checkpoints, with hand-made tokenizers, for offline use and tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Chinese-CLIP's text length in its own code (cn_clip's context_length); the BERT tower has 512 positions.
CHINESE_CLIP_TEXT_TOKENS = 52
SIGLIP_TEXT_TOKENS = 64
# A tokenizer.json (TokenizersBackend), or spiece.model with SiglipTokenizer as the released checkpoints ship.
SIGLIP_TOKENIZERS = ("tokenizers", "sentencepiece")

ASCII_WORDS = [
    "a",
    "an",
    "the",
    "of",
    "and",
    "in",
    "on",
    "with",
    "photo",
    "picture",
    "image",
    "drawing",
    "cat",
    "dog",
    "man",
    "woman",
    "child",
    "person",
    "smiling",
    "red",
    "green",
    "blue",
    "black",
    "white",
    "car",
    "tree",
    "house",
    "sky",
    "sea",
    "mountain",
    "city",
    "street",
    "food",
    "flower",
    "bird",
]
# Common characters: enough for captions and labels such as 微笑的男人, 一只猫, 一张狗的照片.
COMMON_CJK = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后"
    "小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长"
    "知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最"
    "间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市"
    "眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系"
    "微男猫狗照片张只红绿蓝黑花树房子天空大海城市街道食物鸟孩人们风景画图像照相机桌椅草山河湖雪雨晴夜晚"
)

# Architectures: "vit-b-16" has the released base models' tower sizes; "tiny" runs in milliseconds.
_TOWERS: dict[str, dict[str, dict[str, int]]] = {
    "tiny": {
        "vision": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
        },
        "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
    },
    "vit-b-16": {
        "vision": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "image_size": 224,
            "patch_size": 16,
        },
        "text": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12},
    },
}


def bert_vocab() -> list[str]:
    """A BERT WordPiece vocabulary: the specials, ASCII letters, digits, punctuation, words and CJK characters."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    tokens += ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens += ASCII_WORDS
    tokens += list(dict.fromkeys(COMMON_CJK))
    return list(dict.fromkeys(tokens))


def write_chinese_clip(directory: Path, arch: str, seed: int) -> None:
    import torch
    from transformers import (
        BertTokenizer,
        ChineseCLIPConfig,
        ChineseCLIPImageProcessorPil,
        ChineseCLIPModel,
        ChineseCLIPProcessor,
    )

    vocab = bert_vocab()
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    towers = _TOWERS[arch]
    projection_dim = 32 if arch == "tiny" else 512
    config = ChineseCLIPConfig(
        text_config=dict(
            **towers["text"],
            vocab_size=len(vocab),
            max_position_embeddings=512,
            pad_token_id=0,
        ),
        vision_config=dict(**towers["vision"], projection_dim=projection_dim),
        projection_dim=projection_dim,
        logit_scale_init_value=2.6592,
    )
    torch.manual_seed(seed)
    ChineseCLIPModel(config).eval().save_pretrained(directory, safe_serialization=True)
    tokenizer = BertTokenizer(
        vocab=str(directory / "vocab.txt"),
        do_lower_case=True,
        tokenize_chinese_chars=True,
        model_max_length=CHINESE_CLIP_TEXT_TOKENS,
    )
    size = towers["vision"]["image_size"]
    # As OFA-Sys/chinese-clip-vit-base-patch16's preprocessor_config.json: a plain resize to the square.
    image_processor = ChineseCLIPImageProcessorPil(
        size={"height": size, "width": size},
        do_center_crop=False,
        crop_size={"height": size, "width": size},
        resample=3,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
        do_convert_rgb=True,
    )
    ChineseCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    image_processor.save_pretrained(directory)


def unigram_tokenizer() -> Any:
    """A SentencePiece-style Unigram tokenizer (as SigLIP's): words, then single characters, "</s>" appended."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    specials = ["<pad>", "</s>", "<unk>"]
    pieces = ["▁" + word for word in ASCII_WORDS] + ["▁"]
    pieces += [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    pieces += list(dict.fromkeys(COMMON_CJK))
    vocab = [(token, 0.0) for token in specials] + [(piece, -1.0 - 0.01 * len(piece)) for piece in pieces]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return tokenizer


def train_spiece(path: Path) -> int:
    """Trains a small SentencePiece Unigram model on captions and common CJK characters, saved to path as
    SigLIP's spiece.model (pieces 0, 1, 2: <pad>, </s>, <unk>); returns its number of pieces."""
    import io

    import sentencepiece

    characters = list(dict.fromkeys(COMMON_CJK))
    lines = [" ".join(ASCII_WORDS[i : i + 6]) for i in range(0, len(ASCII_WORDS), 3)]
    lines += ["".join(characters[i : i + 12]) for i in range(0, len(characters), 6)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="unigram",
        vocab_size=800,
        hard_vocab_limit=False,  # as many pieces as the small text yields
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,  # the same model on every run
        minloglevel=2,
    )
    path.write_bytes(model.getvalue())
    return int(sentencepiece.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size())


def write_spiece_tokenizer(directory: Path) -> int:
    """SiglipTokenizer's files as google/siglip-base-patch16-224 ships them (spiece.model, tokenizer_config.json,
    special_tokens_map.json; no tokenizer.json); returns the vocabulary size."""
    vocab_size = train_spiece(directory / "spiece.model")

    def special(content: str) -> dict[str, Any]:
        return {"content": content, "lstrip": True, "normalized": False, "rstrip": True, "single_word": False}

    config = {
        "added_tokens_decoder": {
            "1": {**special("</s>"), "special": True},
            "2": {**special("<unk>"), "special": True},
        },
        "additional_special_tokens": [],
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "eos_token": "</s>",
        "model_input_names": ["input_ids"],
        "model_max_length": SIGLIP_TEXT_TOKENS,
        "pad_token": "</s>",
        "processor_class": "SiglipProcessor",
        "sp_model_kwargs": {},
        "tokenizer_class": "SiglipTokenizer",
        "unk_token": "<unk>",
    }
    specials = {"eos_token": special("</s>"), "pad_token": special("</s>"), "unk_token": special("<unk>")}
    for name, content in (("tokenizer_config.json", config), ("special_tokens_map.json", specials)):
        (directory / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return vocab_size


def write_siglip(directory: Path, arch: str, seed: int, tokenizer: str = "tokenizers") -> None:
    """A SigLIP checkpoint; `tokenizer` "sentencepiece" writes the released models' spiece.model layout
    (SiglipTokenizer, which needs the sentencepiece package) instead of a tokenizer.json."""
    import torch
    from transformers import (
        PreTrainedTokenizerFast,
        SiglipConfig,
        SiglipImageProcessorPil,
        SiglipModel,
        SiglipProcessor,
    )

    if tokenizer not in SIGLIP_TOKENIZERS:
        raise ValueError(f"unknown SigLIP tokenizer {tokenizer!r}; choose one of: {', '.join(SIGLIP_TOKENIZERS)}")
    backend = unigram_tokenizer()
    vocab_size = write_spiece_tokenizer(directory) if tokenizer == "sentencepiece" else backend.get_vocab_size()
    towers = _TOWERS[arch]
    config = SiglipConfig(
        text_config=dict(
            **towers["text"],
            vocab_size=vocab_size if arch == "tiny" else 32000,
            max_position_embeddings=SIGLIP_TEXT_TOKENS,
            pad_token_id=1,
            bos_token_id=None,
            eos_token_id=1,
        ),
        vision_config=dict(**towers["vision"]),
    )
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    with torch.no_grad():  # the released models' values, rather than the random init
        model.logit_scale.fill_(float(torch.log(torch.tensor(10.0))))
        model.logit_bias.fill_(-10.0)
    model.save_pretrained(directory, safe_serialization=True)
    size = towers["vision"]["image_size"]
    # As google/siglip-base-patch16-224's preprocessor_config.json: resize to the square, mean and std 0.5.
    image_processor = SiglipImageProcessorPil(
        size={"height": size, "width": size},
        resample=3,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    if tokenizer == "sentencepiece":
        image_processor.save_pretrained(directory)  # preprocessor_config.json; the tokenizer files are written
        return
    fast = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="</s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=SIGLIP_TEXT_TOKENS,
    )
    SiglipProcessor(image_processor=image_processor, tokenizer=fast).save_pretrained(directory)
    image_processor.save_pretrained(directory)

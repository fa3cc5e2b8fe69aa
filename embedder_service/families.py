"""The model families the embedder serves (CLIP, Chinese-CLIP, SigLIP): classes, text rules and scoring."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedder_service.preprocess import PreprocessSpec

log = logging.getLogger(__name__)

SOFTMAX = "softmax"
SIGMOID = "sigmoid"
# Mismatched shapes are reported with the rest rather than raised, so the refusal names them the same way.
_REPORTED = {"output_loading_info": True, "ignore_mismatched_sizes": True}
# How many weight names a refusal lists before "...".
_NAMES_SHOWN = 3


class UnsupportedCheckpoint(Exception):
    """The checkpoint is not one the embedder can serve exactly (unknown family, or weights that do not fit)."""


@dataclass(frozen=True)
class Family:
    """What differs between families: classes to load, text padding, truncation and zero-shot scoring."""

    name: str  # config.json's model_type
    model_class: str  # transformers' model class
    tokenizer_class: str  # "AutoTokenizer" loads whatever the checkpoint's tokenizer_config names
    image_processor_class: str  # the PIL image processor (torchvision is not installed)
    scoring: str  # SOFTMAX over labels, or SIGMOID of each label
    # SigLIP was trained on texts padded to the full length with every position attended; its text tower
    # pools the last position, so a text's vector depends on that padding.
    pad_to_max_length: bool
    # CLIP's byte-pair tokenizer splits on whitespace and yields at least one token per word, so a long
    # text can be cut to its first max_tokens words before tokenizing (model.readable_prefix).
    whitespace_words: bool


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("clip", "CLIPModel", "CLIPTokenizer", "CLIPImageProcessorPil", SOFTMAX, False, True),
        Family(
            "chinese_clip", "ChineseCLIPModel", "AutoTokenizer", "ChineseCLIPImageProcessorPil", SOFTMAX, False, False
        ),
        Family("siglip", "SiglipModel", "AutoTokenizer", "SiglipImageProcessorPil", SIGMOID, True, False),
    )
}
_REFUSED = {
    "siglip2": "SigLIP 2's NaFlex checkpoints need variable-resolution patch inputs this embedder does not build "
    "(the fixed-resolution SigLIP 2 checkpoints, e.g. google/siglip2-base-patch16-224, are model_type siglip)",
}


def supported() -> str:
    return ", ".join(FAMILIES)


def read_config(source: str, local_only: bool) -> dict[str, Any]:
    """The checkpoint's config.json as a dict, read without resolving its model class."""
    if local_only:
        loaded: dict[str, Any] = json.loads((Path(source) / "config.json").read_text(encoding="utf-8"))
        return loaded
    from transformers import PretrainedConfig

    try:
        config, _ = PretrainedConfig.get_config_dict(source, local_files_only=True)
    except OSError:
        config, _ = PretrainedConfig.get_config_dict(source)
    return dict(config)


def family_of(config: Mapping[str, Any], model_id: str) -> Family:
    """The family config.json's model_type names; anything else is refused with the reason."""
    model_type = str(config.get("model_type", ""))
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    why = _REFUSED.get(model_type, "not a family this embedder serves")
    raise UnsupportedCheckpoint(
        f"CLIP_MODEL={model_id}: model_type {model_type or '(none)'!r} is {why}; supported families: {supported()}"
    )


def load_model(family: Family, source: str, local_only: bool, model_id: str) -> Any:
    """The family's transformers model, refused when any weight is missing, unexpected or of another shape.

    transformers would otherwise initialize missing weights at random and serve meaningless vectors.
    """
    import transformers
    from transformers.utils import logging as transformers_logging

    cls = getattr(transformers, family.model_class)
    # transformers logs its own multi-line load report of what is missing; the refusal below says it in one.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        try:
            model, info = cls.from_pretrained(source, local_files_only=True, **_REPORTED)
        except OSError:
            if local_only:
                raise
            model, info = cls.from_pretrained(source, **_REPORTED)
    finally:
        transformers_logging.set_verbosity(verbosity)
    problems = []
    for kind in ("missing", "unexpected", "mismatched"):
        names = [_weight_name(entry) for entry in info.get(f"{kind}_keys", ())]
        if names:
            shown = ", ".join(names[:_NAMES_SHOWN]) + (", ..." if len(names) > _NAMES_SHOWN else "")
            problems.append(f"{len(names)} {kind} ({shown})")
    if problems:
        raise UnsupportedCheckpoint(
            f"CLIP_MODEL={model_id}: the {family.model_class} weights do not match the checkpoint: "
            f"{'; '.join(problems)}; refusing to serve weights initialized at random"
        )
    return model


def _weight_name(entry: Any) -> str:
    # mismatched_keys holds (name, shape in checkpoint, shape in model) tuples.
    return str(entry[0] if isinstance(entry, tuple) else entry)


def load_tokenizer(family: Family, source: str, local_only: bool) -> Any:
    import transformers

    cls = getattr(transformers, family.tokenizer_class)
    try:
        return cls.from_pretrained(source, local_files_only=True)
    except OSError:
        if local_only:
            raise
    return cls.from_pretrained(source)


def max_text_tokens(config: Mapping[str, Any], tokenizer: Any) -> int:
    """The text tower's positions, or fewer where the tokenizer's own limit is lower (e.g. Chinese-CLIP's 52)."""
    positions = int(config.get("text_config", {}).get("max_position_embeddings") or 0)
    limit = getattr(tokenizer, "model_max_length", None)
    if not positions:
        positions = {"clip": 77, "chinese_clip": 512, "siglip": 64}[str(config["model_type"])]
    if isinstance(limit, int) and 0 < limit < positions:
        return limit
    return positions


def pad_token_id(tokenizer: Any) -> int:
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)


def text_inputs(family: Family, token_ids: list[list[int]], max_tokens: int, pad_id: int) -> tuple[np.ndarray, ...]:
    """input_ids and attention_mask (int64) for token id lists, padded as the family was trained.

    CLIP and Chinese-CLIP: right-padded to the longest, the mask hiding the padding. SigLIP: padded to
    max_tokens, every position attended (its tokenizer's processor pads to max_length, and big_vision
    trained without a mask).
    """
    longest = max_tokens if family.pad_to_max_length else max(len(ids) for ids in token_ids)
    input_ids = np.full((len(token_ids), longest), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(token_ids), longest), dtype=np.int64)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    if family.pad_to_max_length:
        attention_mask[:] = 1
    return input_ids, attention_mask


def logit_scale_and_bias(model: Any) -> tuple[float, float]:
    """exp(logit_scale) and logit_bias (0 where the family has none), in float32 before any bf16 cast."""
    scale = float(model.logit_scale.detach().float().exp())
    bias = getattr(model, "logit_bias", None)
    return scale, float(bias.detach().float().reshape(-1)[0]) if bias is not None else 0.0


def dimension(model: Any) -> int:
    """The length of the model's vectors."""
    if hasattr(model, "text_projection"):
        return int(model.text_projection.out_features)
    return int(model.text_model.head.out_features)  # SigLIP: the text head projects to the shared space


def probabilities(scoring: str, logits: np.ndarray) -> np.ndarray:
    """Softmax over the labels, or each label's sigmoid, computed as torch does."""
    import torch

    values = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
    result: np.ndarray = (values.softmax(dim=-1) if scoring == SOFTMAX else torch.sigmoid(values)).numpy()
    return result


def read_preprocess_spec(
    family: Family, source: str, local_only: bool, image_size: int, model_id: str
) -> PreprocessSpec:
    """The preprocessing the checkpoint's image processor config asks for, under the family's processor class."""
    import transformers

    cls = getattr(transformers, family.image_processor_class)
    try:
        try:
            processor = cls.from_pretrained(source, local_files_only=True)
        except OSError:
            if local_only:
                raise
            processor = cls.from_pretrained(source)
    except (OSError, ValueError) as error:
        text = str(error).strip().splitlines()
        log.warning(
            "%s has no image processor config (%s); using %s's defaults at %dpx",
            model_id,
            text[0] if text else type(error).__name__,
            family.image_processor_class,
            image_size,
        )
        processor = cls()
        if processor.size.shortest_edge:
            processor.size.shortest_edge = image_size
        if processor.size.height:
            processor.size.height = processor.size.width = image_size
        if getattr(processor, "crop_size", None) is not None:
            processor.crop_size.height = processor.crop_size.width = image_size
    return spec_of(processor, image_size)


def spec_of(processor: Any, image_size: int) -> PreprocessSpec:
    """A PreprocessSpec equal to an image processor: shortest-edge resize and crop, or an exact resize."""
    size = processor.size
    exact = None
    if size.shortest_edge:
        shortest = int(size.shortest_edge)
    else:
        exact = (int(size.height or image_size), int(size.width or image_size))
        shortest = max(exact)
    crop = processor.crop_size if getattr(processor, "do_center_crop", False) else None
    if crop is not None:
        crop_height, crop_width = int(crop.height), int(crop.width)
    elif exact is not None:
        crop_height, crop_width = exact
    else:
        crop_height = crop_width = shortest
    return PreprocessSpec(
        shortest_edge=shortest,
        crop_height=crop_height,
        crop_width=crop_width,
        mean=_triple(processor.image_mean) if processor.do_normalize else (0.0, 0.0, 0.0),
        std=_triple(processor.image_std) if processor.do_normalize else (1.0, 1.0, 1.0),
        rescale_factor=float(processor.rescale_factor) if processor.do_rescale else 1.0,
        resample=int(processor.resample),
        resize_to=exact,
    )


def _triple(values: Any) -> tuple[float, float, float]:
    items = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values] * 3)]
    return items[0], items[1], items[2]

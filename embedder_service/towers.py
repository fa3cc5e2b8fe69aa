"""The model's two towers as torch modules returning normalized projections, exported to ONNX and cached on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IMAGE = "image"
TEXT = "text"
TOWERS = (IMAGE, TEXT)
# Input names of each tower's exported graph, in argument order.
TOWER_INPUTS = {IMAGE: ("pixel_values",), TEXT: ("input_ids", "attention_mask")}
ONNX_OPSET = 18


def default_cache_dir() -> Path:
    """~/.cache/clipsearch/models (or $XDG_CACHE_HOME/clipsearch/models)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clipsearch" / "models"


def tower_modules(model: Any) -> dict[str, Any]:
    """The image and text towers of a CLIP, Chinese-CLIP or SigLIP model, each returning L2-normalized float32.

    Each tower is the model's own get_*_features, whose pooler_output is the projected vector in every
    family (Chinese-CLIP projects its text's first token, SigLIP pools the last position through its head).
    """
    import torch

    class ImageTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            pooled = self.model.get_image_features(pixel_values=pixel_values).pooler_output
            return torch.nn.functional.normalize(pooled.float(), dim=-1)

    class TextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            pooled = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
            return torch.nn.functional.normalize(pooled.float(), dim=-1)

    return {IMAGE: ImageTower().eval(), TEXT: TextTower().eval()}


def fixed_text_length(model: Any) -> int | None:
    """The text length a family always runs at (SigLIP: its positions, padded as trained), else None."""
    if model.config.model_type == "siglip":
        return int(model.config.text_config.max_position_embeddings)
    return None


def example_inputs(model: Any) -> dict[str, tuple[Any, ...]]:
    """Inputs of batch 2 for tracing each tower (a batch of 1 would let the tracer fold the batch size)."""
    import torch

    size = int(model.config.vision_config.image_size)
    pixels = torch.zeros((2, 3, size, size), dtype=torch.float32)
    fixed = fixed_text_length(model)
    if fixed is not None:
        ids = torch.full((2, fixed), int(model.config.text_config.pad_token_id), dtype=torch.long)
        ids[:, :3] = torch.tensor([[5, 6, 7], [8, 9, 10]])
        return {IMAGE: (pixels,), TEXT: (ids, torch.ones_like(ids))}
    if model.config.model_type == "clip":
        eos = int(model.config.text_config.eos_token_id)
        ids = torch.tensor([[eos - 1, 5, 6, eos], [eos - 1, 7, eos, eos]], dtype=torch.long)
    else:  # BERT: [CLS] ... [SEP] [PAD]
        ids = torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]], dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.long)
    return {IMAGE: (pixels,), TEXT: (ids, mask)}


def model_facts(model: Any) -> dict[str, float]:
    """What ModelInfo needs from the weights, saved beside the converted towers so a cached start skips torch."""
    from embedder_service.families import dimension, logit_scale_and_bias

    scale, bias = logit_scale_and_bias(model)
    return {"logit_scale": scale, "logit_bias": bias, "dimension": dimension(model)}


def export_onnx(model: Any, directory: Path) -> dict[str, Path]:
    """Writes each tower as ONNX (dynamic batch, and dynamic length for texts) into directory."""
    import torch

    # The eager attention traces into plain operations every runtime has; the fused kernels may not.
    model.config._attn_implementation = "eager"
    for sub in (model.config.vision_config, model.config.text_config):
        sub._attn_implementation = "eager"
    modules = tower_modules(model.float().eval())
    examples = example_inputs(model)
    paths = {}
    for tower, module in modules.items():
        names = list(TOWER_INPUTS[tower])
        axes: dict[str, dict[int, str]] = {name: {0: "batch"} for name in names}
        if tower == TEXT and fixed_text_length(model) is None:
            axes = {name: {0: "batch", 1: "length"} for name in names}
        axes["embedding"] = {0: "batch"}
        path = directory / f"{tower}.onnx"
        # The tracer warns about every Python-level branch on shapes; these are fixed for the families' graphs.
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                examples[tower],
                str(path),
                input_names=names,
                output_names=["embedding"],
                dynamic_axes=axes,
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        paths[tower] = path
    return paths


def cached(key_parts: dict[str, str], cache_dir: Path, build: Callable[[Path], None]) -> Path:
    """The cache directory for key_parts, built by build(tmp) on a miss and moved into place atomically."""
    key = hashlib.blake2b(json.dumps(key_parts, sort_keys=True).encode(), digest_size=12).hexdigest()
    target = cache_dir / key
    if (target / "key.json").is_file():
        log.info("converted model found in %s", target)
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
    try:
        build(work)
        (work / "key.json").write_text(json.dumps(key_parts, indent=1, sort_keys=True) + "\n")
        try:
            work.rename(target)
        except OSError:  # another process finished the same conversion first
            if not (target / "key.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("converted model cached in %s", target)
    return target

"""CLIP's two towers as torch modules returning normalized projections, exported to ONNX and cached on disk."""

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
    """The image and text towers of a transformers CLIPModel, each returning L2-normalized float32 vectors."""
    import torch

    class ImageTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vision, self.projection = model.vision_model, model.visual_projection

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            pooled = self.vision(pixel_values=pixel_values).pooler_output
            return torch.nn.functional.normalize(self.projection(pooled).float(), dim=-1)

    class TextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.text, self.projection = model.text_model, model.text_projection

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            pooled = self.text(input_ids=input_ids, attention_mask=attention_mask).pooler_output
            return torch.nn.functional.normalize(self.projection(pooled).float(), dim=-1)

    return {IMAGE: ImageTower().eval(), TEXT: TextTower().eval()}


def example_inputs(model: Any) -> dict[str, tuple[Any, ...]]:
    """Inputs of batch 2 for tracing each tower (a batch of 1 would let the tracer fold the batch size)."""
    import torch

    size = int(model.config.vision_config.image_size)
    pixels = torch.zeros((2, 3, size, size), dtype=torch.float32)
    eos = int(model.config.text_config.eos_token_id)
    ids = torch.tensor([[eos - 1, 5, 6, eos], [eos - 1, 7, eos, eos]], dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.long)
    return {IMAGE: (pixels,), TEXT: (ids, mask)}


def checkpoint_digest(model: Any) -> str:
    """A hash of the model's configuration and every weight: the key of what is converted from it."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(model.config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().contiguous().cpu().view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    return digest.hexdigest()


def _byte_dtype() -> Any:
    import torch

    return torch.uint8


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
        if tower == TEXT:
            axes = {name: {0: "batch", 1: "length"} for name in names}
        axes["embedding"] = {0: "batch"}
        path = directory / f"{tower}.onnx"
        # The tracer warns about every Python-level branch on shapes; these are fixed for CLIP's graphs.
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

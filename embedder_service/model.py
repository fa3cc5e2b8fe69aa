"""The CLIP model: loading, batched image and text embedding, zero-shot classification."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedder_service.inference import DTYPES, InferenceModel, TorchSession, resolve_runtime
from embedder_service.preprocess import PreprocessSpec

log = logging.getLogger(__name__)

DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "int8": "int8"}
# A run of what the tokenizer's regex does not count as whitespace (Unicode White_Space; unlike Python's
# str.split, the separators \x1c-\x1f are not whitespace to it).
_TOKENIZER_WORD = re.compile(r"[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")


class ModelNotFound(Exception):
    """CLIP_MODEL names no loadable checkpoint; the message says what to set."""


@dataclass(frozen=True)
class ModelInfo:
    """What the loaded model is and takes."""

    model_id: str
    dimension: int
    image_size: int
    max_text_tokens: int
    logit_scale: float  # exp(logit_scale): logits = logit_scale * cosine
    dtype: str  # "float32", "bfloat16" or "int8"
    device: str  # "cpu", "cuda:0", ...
    runtime: str = "torch"  # "torch", "openvino" or "onnxruntime"


@dataclass(frozen=True)
class Classification:
    """Per-label scores of one image, in label order."""

    probabilities: np.ndarray
    logits: np.ndarray
    cosines: np.ndarray


def prefer_sleeping_openmp_threads() -> bool:
    """Sets OMP_WAIT_POLICY=PASSIVE unless the environment sets it; must run before torch is imported.

    By default OpenMP threads spin between operations. On a busy CPU the spinning threads take the cores
    that request threads (decoding images, merging batches) and the model's other OpenMP threads need:
    with dynamic batching on two busy cores, forward passes ran many times slower. Sleeping costs
    microseconds per operation. Returns False when torch was already imported (the setting is then too late).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return "torch" not in sys.modules


def cpu_supports_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def resolve_device(device: str) -> str:
    """ "auto" becomes "cuda" when a GPU is usable, else "cpu"; anything else is kept."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """ "auto" becomes bf16 where the device computes it natively, else fp32 (never int8: it is opt-in)."""
    if dtype != "auto":
        return dtype
    import torch

    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_supports_bf16() else "fp32"


def _not_found(model_id: str, reason: str) -> ModelNotFound:
    return ModelNotFound(
        f"CLIP_MODEL={model_id}: {reason}. Set CLIP_MODEL to a local checkpoint directory or to a Hugging Face "
        f"model id that is in the local cache (e.g. write a random-weight one with "
        f"`python -m embedder_service.checkpoint DIR` and set CLIP_MODEL=DIR)"
    )


def default_image_pass_size(device: str, dtype: str) -> int:
    """Most images per forward pass when EMBEDDER_IMAGE_PASS_SIZE is auto (0: a batch runs whole).

    On a CPU, large passes lose to cache misses: ViT-B/16 in float32 on a 2-core AVX2 EPYC ran 3.1-3.35 img/s
    in passes of 4 against 2.5-2.8 in passes of 32 (OpenMP threads spinning; 2.7 against 2.4-2.5 sleeping).
    CPUs with native bf16 gained up to batches of 8-16. On a 2-core AVX-512 BF16/VNNI/AMX Xeon
    (python -m bench.passes, shared and loaded, so ±30% between runs) OpenVINO bf16 and int8 and ONNX Runtime
    int8 ran within noise of each other in passes of 2 to 16 (OpenVINO int8 fell by a third at 16), and
    torch bf16 lost at 8-16 against 2-4, ONNX Runtime fp32 ran flat from 1 to 16; no runtime gained enough
    to set it apart, so bf16 and int8 keep 8 and fp32 4 on every runtime. A GPU runs a whole batch best.
    """
    if device.startswith("cuda"):
        return 0
    return 8 if dtype in ("bf16", "int8") else 4


class ClipEmbedder:
    """A CLIP model behind a lock: one forward pass at a time, each over at most image_pass_size images.

    Callers decode and preprocess images in their own threads; only the forward pass is serialized,
    because parallel passes would compete for the same cores (torch already uses all of them). A larger
    batch of images runs as several passes, the lock taken for each, so a text can run between them.
    """

    def __init__(
        self,
        model_id: str,
        *,
        dtype: str = "auto",
        device: str = "auto",
        threads: int | None = None,
        text_batch_size: int = 256,
        image_pass_size: int | None = None,
        runtime: str = "torch",
        cache_dir: Path | None = None,
        calibration_dir: Path | None = None,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if image_pass_size is not None and image_pass_size < 0:
            raise ValueError(f"image_pass_size must be 0 (no limit), positive or None (auto), got {image_pass_size}")
        self.model_id = model_id
        self._image_pass_request = image_pass_size
        self._image_pass_size = 0
        self._dtype_request = dtype
        self._device_request = device
        self._threads = threads
        self._text_batch_size = text_batch_size
        self._runtime_request = runtime
        self._cache_dir = cache_dir
        self._calibration_dir = calibration_dir
        self._sessions: dict[str, InferenceModel] = {}
        self._load_lock = threading.Lock()
        self._forward_lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()
        # transformers' model (on the torch runtime) and tokenizer; torch is imported only when they load.
        self._model: Any = None
        self._tokenizer: Any = None
        self._info: ModelInfo | None = None
        self._spec: PreprocessSpec | None = None

    @property
    def loaded(self) -> bool:
        return self._info is not None

    @property
    def text_batch_size(self) -> int:
        """Most texts per forward pass; embed_texts splits longer lists."""
        return self._text_batch_size

    @property
    def image_pass_size(self) -> int:
        """Most images per forward pass (0: a batch runs whole); set once the model is loaded."""
        self._require_loaded()
        return self._image_pass_size

    @property
    def info(self) -> ModelInfo:
        return self._require_loaded()

    @property
    def preprocess_spec(self) -> PreprocessSpec:
        """The image preprocessing the checkpoint's image processor config asks for."""
        self._require_loaded()
        assert self._spec is not None  # set together with _info
        return self._spec

    def _require_loaded(self) -> ModelInfo:
        if self._info is None:
            raise RuntimeError("the model is not loaded yet; call load() first")
        return self._info

    def load(self) -> ModelInfo:
        """Loads model, tokenizer and image processor config; later calls return the same info."""
        with self._load_lock:
            if self._info is None:
                self._load()
            return self._require_loaded()

    def _load(self) -> None:
        # Before the slow torch import, so a mistyped CLIP_MODEL path is reported at once.
        source, local_only = self._locate()
        import torch
        from transformers import CLIPModel, CLIPTokenizer

        if self._threads is not None:
            torch.set_num_threads(self._threads)
        device = resolve_device(self._device_request)
        dtype = resolve_dtype(self._dtype_request, device)
        runtime = resolve_runtime(self._runtime_request, device.split(":")[0], dtype)
        try:
            model = _from_pretrained(CLIPModel, source, local_only)
            tokenizer = _from_pretrained(CLIPTokenizer, source, local_only)
        except Exception as error:  # noqa: BLE001 - transformers reports a bad or missing checkpoint in many ways
            where = "it" if local_only else "the local Hugging Face cache or the hub"
            raise _not_found(self.model_id, f"cannot load a CLIP model from {where} ({_first_line(error)})") from None
        spec = self._read_preprocess_spec(source, local_only, model.config.vision_config.image_size)
        # exp() in float32 before any bf16 cast, so logits match the fp32 reference in both dtypes.
        logit_scale = float(model.logit_scale.detach().float().exp())
        torch_device = torch.device(device)
        if torch_device.type == "cuda" and torch_device.index is None:
            torch_device = torch.device("cuda", torch.cuda.current_device())
        max_tokens = int(model.config.text_config.max_position_embeddings)
        dimension = int(model.config.projection_dim)
        self._tokenizer = tokenizer
        self._max_tokens = max_tokens
        self._pad_token_id = int(
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        if runtime != "torch":
            try:
                self._sessions = self._converted_sessions(runtime, model.eval(), dtype, spec)
            except Exception as error:
                if self._runtime_request != "auto" or dtype not in ("fp32", "bf16"):
                    raise
                # auto must always start: a checkpoint the runtime cannot convert runs on torch instead.
                log.warning("cannot run %s on %s (%s); using torch", self.model_id, runtime, _first_line(error))
                runtime = "torch"
        if runtime == "torch":
            torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
            model = model.to(device=device, dtype=torch_dtype).eval()
            self._model = model
            self._sessions = {
                tower: TorchSession(model, tower, torch_device, torch_dtype) for tower in ("image", "text")
            }
        del model  # on OpenVINO or ONNX Runtime, the runtime holds its own copy of the weights
        if runtime != "torch":
            _release_freed_memory()
        self._image_pass_size = (
            default_image_pass_size(torch_device.type, dtype)
            if self._image_pass_request is None
            else self._image_pass_request
        )
        self._spec = spec
        self._info = ModelInfo(
            model_id=self.model_id,
            dimension=dimension,
            image_size=spec.crop_height,
            max_text_tokens=max_tokens,
            logit_scale=logit_scale,
            dtype=DTYPE_NAMES[dtype],
            device=str(torch_device),
            runtime=runtime,
        )

    def _converted_sessions(
        self, runtime: str, model: Any, dtype: str, spec: PreprocessSpec
    ) -> dict[str, InferenceModel]:
        from embedder_service.calibration import calibration_set
        from embedder_service.sessions import create_sessions
        from embedder_service.towers import default_cache_dir

        calibration = None
        if dtype == "int8":
            calibration = calibration_set(spec, self._tokenize_unlocked, self._calibration_dir)
        return create_sessions(
            runtime,
            model,
            dtype=dtype,
            threads=self._threads,
            cache_dir=self._cache_dir or default_cache_dir(),
            calibration=calibration,
        )

    def _tokenize_unlocked(self, texts: Sequence[str]) -> list[list[int]]:
        # The fast tokenizer mutates its truncation/padding state per call, so calls must not overlap.
        with self._tokenizer_lock:
            encoded = self._tokenizer(list(texts), padding=False, truncation=True, max_length=self._max_tokens)
        ids: list[list[int]] = encoded["input_ids"]
        return ids

    def _locate(self) -> tuple[str, bool]:
        """The path or hub id to load from, and whether the load must stay local."""
        path = Path(self.model_id).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise _not_found(self.model_id, f"the directory {path} has no config.json, so it is not a checkpoint")
            return str(path), True
        if path.exists():
            raise _not_found(self.model_id, f"{path} is a file, not a checkpoint directory")
        if self.model_id.startswith(("/", ".", "~")) or self.model_id.count("/") > 1:
            raise _not_found(self.model_id, "no such directory")
        return self.model_id, False

    def _read_preprocess_spec(self, source: str, local_only: bool, image_size: int) -> PreprocessSpec:
        from transformers import CLIPImageProcessorPil

        try:
            processor = _from_pretrained(CLIPImageProcessorPil, source, local_only)
        except (OSError, ValueError) as error:
            log.warning(
                "%s has no image processor config (%s); using CLIP's defaults at %dpx",
                self.model_id,
                _first_line(error),
                image_size,
            )
            return PreprocessSpec(shortest_edge=image_size, crop_height=image_size, crop_width=image_size)
        size = processor.size
        crop = processor.crop_size if processor.do_center_crop else None
        shortest = size.shortest_edge or min(size.height or image_size, size.width or image_size)
        return PreprocessSpec(
            shortest_edge=int(shortest),
            crop_height=int(crop.height if crop else shortest),
            crop_width=int(crop.width if crop else shortest),
            mean=tuple(processor.image_mean) if processor.do_normalize else (0.0, 0.0, 0.0),
            std=tuple(processor.image_std) if processor.do_normalize else (1.0, 1.0, 1.0),
            rescale_factor=float(processor.rescale_factor) if processor.do_rescale else 1.0,
            resample=int(processor.resample),
        )

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) preprocessed float32 pixels -> (N, dimension) L2-normalized float32 vectors."""
        self._require_loaded()
        if pixels.ndim != 4 or pixels.shape[0] == 0:
            raise ValueError(f"expected a non-empty (N, 3, H, W) batch, got shape {pixels.shape}")
        batch = np.ascontiguousarray(pixels, dtype=np.float32)
        session = self._sessions["image"]
        step = self._image_pass_size or len(batch)
        parts = []
        for start in range(0, len(batch), step):
            with self._forward_lock:
                parts.append(session.predict([batch[start : start + step]]))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dimension) L2-normalized float32 vectors; texts beyond the token limit are truncated."""
        self._require_loaded()
        if not texts:
            raise ValueError("no texts to embed")
        step = self._text_batch_size
        return np.concatenate(
            [self.embed_tokens(self.tokenize(texts[i : i + step])) for i in range(0, len(texts), step)]
        )

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids, start and end tokens included, truncated to the token limit; no padding."""
        self._require_loaded()
        return self._tokenize_unlocked([readable_prefix(text, self._max_tokens) for text in texts])

    def embed_tokens(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Token id lists (as tokenize returns) -> (N, dimension) vectors, in one forward pass.

        The lists are right-padded to the longest; the attention mask hides the padding, and CLIP's causal
        attention never lets a real token see a later one, so a text's vector does not depend on its batch.
        """
        self._require_loaded()
        if not token_ids or any(len(ids) == 0 for ids in token_ids):
            raise ValueError("expected a non-empty list of non-empty token id lists")
        longest = max(len(ids) for ids in token_ids)
        input_ids = np.full((len(token_ids), longest), self._pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(token_ids), longest), dtype=np.int64)
        for row, ids in enumerate(token_ids):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        with self._forward_lock:
            return self._sessions["text"].predict([input_ids, attention_mask])

    def classify(self, image_vector: np.ndarray, labels: Sequence[str], template: str = "") -> Classification:
        """Zero-shot scores of one image vector against labels, as CLIP's logits_per_image.softmax(-1).

        Each prompt is `template` with "{}" replaced by the label (the label alone if template is empty).
        The image vector is normalized first.
        """
        return zero_shot(image_vector, labels, template, embed_texts=self.embed_texts, info=self.info)


def zero_shot(
    image_vector: np.ndarray,
    labels: Sequence[str],
    template: str,
    *,
    embed_texts: Callable[[Sequence[str]], np.ndarray],
    info: ModelInfo,
) -> Classification:
    """CLIP's zero-shot scores of an image vector against labels, with prompts embedded by `embed_texts`."""
    import torch

    vector = np.asarray(image_vector, dtype=np.float64).reshape(-1)
    if vector.shape[0] != info.dimension:
        raise ValueError(f"expected a vector of {info.dimension} values, got {vector.shape[0]}")
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("the image vector must be finite and non-zero")
    unit = (vector / norm).astype(np.float32)
    if not labels:
        raise ValueError("no labels to classify against")
    prompts = [template.replace("{}", label) if template else label for label in labels]
    text_vectors = embed_texts(prompts)
    cosines = text_vectors @ unit
    logits = torch.from_numpy(cosines * np.float32(info.logit_scale))
    probabilities = logits.softmax(dim=-1).numpy()
    return Classification(probabilities=probabilities, logits=logits.numpy(), cosines=cosines)


def readable_prefix(text: str, max_tokens: int) -> str:
    """The start of `text` that CLIP reads: up to the end of its first max_tokens words.

    CLIP's tokenizer splits on whitespace before byte-pair encoding and every word yields at least one
    token, so this prefix tokenizes exactly like the whole text once both are truncated to max_tokens.
    Cutting first keeps a long text (the limit allows 64 KiB) from holding the shared tokenizer for long.
    """
    if len(text) <= 16 * max_tokens:
        return text
    end = 0
    for count, word in enumerate(_TOKENIZER_WORD.finditer(text), start=1):
        end = word.end()
        if count == max_tokens:
            break
    # One giant "word" with no whitespace is cut as well; no real caption comes near this length.
    return text[: min(end, 64 * max_tokens)]


def _release_freed_memory() -> None:
    """Frees the transformers model's reference cycles and hands freed heap back to the system.

    Measured on ViT-B/16 with ONNX Runtime: RSS 1650 MB after the first start, 1033 MB after this.
    """
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _from_pretrained(cls: Any, source: str, local_only: bool) -> Any:
    """cls.from_pretrained, from the local cache first so an offline server does not wait on the network."""
    try:
        return cls.from_pretrained(source, local_files_only=True)
    except OSError:
        if local_only:
            raise
    return cls.from_pretrained(source)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

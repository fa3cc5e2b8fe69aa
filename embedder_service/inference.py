"""One interface over the inference runtimes (torch, OpenVINO, ONNX Runtime) and the rule `auto` follows."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

RUNTIMES = ("auto", "torch", "openvino", "onnxruntime")
DTYPES = ("auto", "fp32", "bf16", "int8")
# The runtimes each precision can run on, CPU only except torch.
_RUNTIME_DTYPES = {"torch": ("fp32", "bf16"), "openvino": ("fp32", "bf16", "int8"), "onnxruntime": ("fp32", "int8")}
_PACKAGES = {"openvino": ("openvino",), "onnxruntime": ("onnxruntime", "onnx")}
# CPU flags that OpenVINO's kernels use and ONNX Runtime's CPU provider gains less from (docs/benchmarks.md).
_OPENVINO_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "amx_int8", "amx_tile", "avx512_vnni", "avx_vnni"})


class RuntimeUnavailable(ValueError):
    """The runtime asked for cannot run here (package missing, wrong device or precision)."""


class InferenceModel(ABC):
    """One tower of the model on one runtime: load() once, then predict() per forward pass.

    predict takes the tower's inputs in order (pixel_values for images; input_ids and attention_mask,
    int64, for texts) and returns (N, dimension) L2-normalized float32 vectors. Callers serialize calls.
    """

    runtime: str = ""

    @abstractmethod
    def load(self) -> None: ...

    @abstractmethod
    def predict(self, inputs: Sequence[np.ndarray]) -> np.ndarray: ...


class TorchSession(InferenceModel):
    """A tower of the transformers CLIPModel itself, in eager PyTorch: the reference, and the CUDA path."""

    runtime = "torch"

    def __init__(self, model: Any, tower: str, device: Any, dtype: Any) -> None:
        self._model = model
        self._tower = tower
        self._device = device
        self._dtype = dtype

    def load(self) -> None:
        """The model is already in memory; nothing to compile."""

    def predict(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            if self._tower == "image":
                batch = torch.from_numpy(np.ascontiguousarray(inputs[0], dtype=np.float32))
                batch = batch.to(device=self._device, dtype=self._dtype)
                features = self._model.get_image_features(pixel_values=batch).pooler_output
            else:
                input_ids, attention_mask = (torch.from_numpy(np.asarray(part, dtype=np.int64)) for part in inputs)
                features = self._model.get_text_features(
                    input_ids=input_ids.to(self._device), attention_mask=attention_mask.to(self._device)
                ).pooler_output
            values = features.float()
            values = values / torch.linalg.vector_norm(values, dim=-1, keepdim=True)
            vectors: np.ndarray = values.cpu().numpy()
            return vectors


def installed(runtime: str) -> bool:
    """Whether the runtime's packages are importable."""
    return all(importlib.util.find_spec(package) is not None for package in _PACKAGES.get(runtime, ()))


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def auto_runtime(device: str, dtype: str, flags: frozenset[str], available: Sequence[str]) -> str:
    """The runtime `auto` picks for a device, a resolved precision, the CPU's flags and the installed runtimes.

    On CUDA: torch. On a CPU with VNNI, AVX-512 BF16 or AMX: OpenVINO (its kernels use them). On an
    AVX2-only CPU: ONNX Runtime, measured fastest there in fp32 and int8 (docs/benchmarks.md). bf16 runs
    on OpenVINO or torch only. A runtime not installed gives way to the next; torch comes last.
    """
    if device.startswith("cuda"):
        return "torch"
    if flags & _OPENVINO_FLAGS or dtype == "bf16":
        order = ["openvino", "onnxruntime"]
    else:
        order = ["onnxruntime", "openvino"]
    for runtime in [*order, "torch"]:
        if (runtime == "torch" or runtime in available) and dtype in _RUNTIME_DTYPES[runtime]:
            return runtime
    raise RuntimeUnavailable(
        f"EMBEDDER_DTYPE={dtype} needs OpenVINO or ONNX Runtime; install them with pip install 'clipsearch[fast]'"
    )


def resolve_runtime(runtime: str, device: str, dtype: str) -> str:
    """The runtime to run on: `auto` resolved, and a runtime that cannot run the device or precision refused."""
    if runtime not in RUNTIMES:
        raise RuntimeUnavailable(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    available = [name for name in ("openvino", "onnxruntime") if installed(name)]
    if runtime == "auto":
        return auto_runtime(device, dtype, cpu_flags(), available)
    if runtime != "torch" and device != "cpu":
        raise RuntimeUnavailable(f"EMBEDDER_RUNTIME={runtime} runs on the CPU only; use torch for {device}")
    if runtime != "torch" and runtime not in available:
        raise RuntimeUnavailable(
            f"EMBEDDER_RUNTIME={runtime}: the package is not installed (pip install 'clipsearch[fast]')"
        )
    if dtype not in _RUNTIME_DTYPES[runtime]:
        choices = ", ".join(_RUNTIME_DTYPES[runtime])
        raise RuntimeUnavailable(f"EMBEDDER_RUNTIME={runtime} runs {choices}, not EMBEDDER_DTYPE={dtype}")
    return runtime

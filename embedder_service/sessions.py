"""OpenVINO and ONNX Runtime sessions for the towers, converted from the checkpoint and cached on disk."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedder_service.calibration import CalibrationSet
from embedder_service.inference import InferenceModel
from embedder_service.towers import TOWER_INPUTS, TOWERS, cached, export_onnx, model_facts

log = logging.getLogger(__name__)

# Part of the converted-model cache key for int8: bump it whenever the quantization recipe below changes, so a
# model quantized with an older recipe is converted again rather than read from the cache.
INT8_RECIPE = "2"


def runtime_version(runtime: str) -> str:
    if runtime == "openvino":
        import openvino

        return str(openvino.__version__)
    import onnxruntime

    return str(onnxruntime.__version__)


def compiled_cache_dir(model_path: Path, hint: str) -> Path:
    """Where OpenVINO caches the blobs it compiles from model_path with INFERENCE_PRECISION_HINT=hint."""
    return model_path.parent / f"compiled-{hint}"


class OpenVinoSession(InferenceModel):
    """A tower compiled by OpenVINO for the CPU; the precision hint is explicit, as OpenVINO would otherwise
    compute in bf16 wherever the CPU has it, even for an f32 model.

    One infer request, OpenVINO's default LATENCY hint (one stream over every thread), and the embedder's
    batching merging concurrent calls. The THROUGHPUT hint with 2 streams on 2 cores, a pass split over an
    AsyncInferQueue of 2 requests, ran ViT-B/16 bf16 at 27.9 against 19.6 img/s in passes of 8 in one run
    and 13.9 against 13.7 in the next (int8: 32.8 vs 24.1, then 33.7 vs 36.7), while a single image took
    183 ms on one stream against 60 ms on both threads (python -m bench.passes --streams, shared machine):
    no steady gain for batches, three times the latency for single queries.
    """

    runtime = "openvino"

    def __init__(self, path: Path, dtype: str, threads: int | None) -> None:
        self._path = path
        self._dtype = dtype
        self._threads = threads
        self._compiled: Any = None
        self._request: Any = None

    def load(self) -> None:
        import openvino

        core = openvino.Core()
        hint = "bf16" if self._dtype == "bf16" else "f32"
        # Compiled blobs are cached beside the model, so a second start skips compilation; one folder per
        # precision hint, as OpenVINO's blob key leaves the hint out and an f32 blob run as bf16 gives NaN.
        core.set_property({"CACHE_DIR": str(compiled_cache_dir(self._path, hint))})
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint}
        if self._threads is not None:
            config["INFERENCE_NUM_THREADS"] = self._threads
        self._compiled = core.compile_model(str(self._path), "CPU", config)
        self._request = self._compiled.create_infer_request()

    def predict(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        result = self._request.infer([np.ascontiguousarray(part) for part in inputs])
        vectors: np.ndarray = np.array(result[self._compiled.output(0)], dtype=np.float32)
        return vectors


class OnnxRuntimeSession(InferenceModel):
    """A tower on ONNX Runtime's CPU execution provider, its intra-op threads sleeping rather than spinning.

    As OMP_WAIT_POLICY=PASSIVE for torch: spinning threads take the cores that decoding, gRPC and the
    model's other threads need. On 2 shared cores (load about 3), in one process taking turns, ViT-B/16's
    image tower in passes of 8 ran int8 at 11.9 img/s with 2 sleeping threads against 7.9 spinning, fp32 at
    3.9 against 3.4. One thread ran 14.9 and 4.3 there, ahead of both: on a busy machine, EMBEDDER_THREADS=1
    may pay.
    """

    runtime = "onnxruntime"

    def __init__(self, path: Path, tower: str, threads: int | None) -> None:
        self._path = path
        self._names = TOWER_INPUTS[tower]
        self._threads = threads
        self._session: Any = None

    def load(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if self._threads is not None:
            options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(str(self._path), options, providers=["CPUExecutionProvider"])

    def predict(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        feeds = {name: np.ascontiguousarray(part) for name, part in zip(self._names, inputs, strict=True)}
        vectors: np.ndarray = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)
        return vectors


def create_sessions(
    runtime: str,
    load_model: Callable[[], Any],
    *,
    checkpoint: str,
    dtype: str,
    threads: int | None,
    cache_dir: Path,
    calibration: CalibrationSet | None = None,
) -> tuple[dict[str, InferenceModel], dict[str, float]]:
    """Both towers on OpenVINO or ONNX Runtime, converted on the first start and read from cache_dir after.

    `checkpoint` identifies the checkpoint (its weights' fingerprint and its config); load_model is called
    only on a cache miss. Also returns model_facts, saved with the towers.
    """
    key = {
        "checkpoint": checkpoint,
        "runtime": runtime,
        "runtime_version": runtime_version(runtime),
        # OpenVINO's bf16 is a compile hint on the f32 model; int8 is a different model.
        "precision": "int8" if dtype == "int8" else "fp32",
    }
    if dtype == "int8":
        if calibration is None:
            raise ValueError("int8 needs a calibration set")
        key["calibration"] = calibration.digest
        key["int8_recipe"] = INT8_RECIPE

    def build(directory: Path) -> None:
        model = load_model()
        (directory / "model.json").write_text(json.dumps(model_facts(model)) + "\n")
        with tempfile.TemporaryDirectory(prefix="clip-onnx-") as scratch:
            onnx_paths = export_onnx(model, Path(scratch))
            for tower in TOWERS:
                _convert(runtime, dtype, onnx_paths[tower], directory, tower, calibration)

    directory = cached(key, cache_dir, build)
    sessions: dict[str, InferenceModel] = {}
    for tower in TOWERS:
        if runtime == "openvino":
            sessions[tower] = OpenVinoSession(directory / f"{tower}.xml", dtype, threads)
        else:
            sessions[tower] = OnnxRuntimeSession(directory / f"{tower}.onnx", tower, threads)
        sessions[tower].load()
    facts: dict[str, float] = json.loads((directory / "model.json").read_text())
    return sessions, facts


def _convert(
    runtime: str, dtype: str, onnx_path: Path, directory: Path, tower: str, calibration: CalibrationSet | None
) -> None:
    if runtime == "onnxruntime":
        target = directory / f"{tower}.onnx"
        if dtype != "int8":
            onnx_path.replace(target)
            return
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Weights to int8, activations quantized per batch. Only MatMul and Gemm: a quantized Conv (the
        # patch embedding) has no kernel on the CPU provider. Weight scales per output channel and the final
        # projections left in float raised the int8 test's top-10 overlap from 0.900 to 0.932 (minimum cosine
        # 0.9987 to 0.9989) at the same ViT-B/16 speed (32.0 img/s both); names a family lacks match nothing.
        quantize_dynamic(
            str(onnx_path),
            str(target),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=True,
            nodes_to_exclude=["/visual_projection/MatMul", "/text_projection/MatMul"],
        )
        return
    import openvino

    converted = openvino.convert_model(str(onnx_path))
    if dtype == "int8":
        assert calibration is not None
        converted = _nncf_quantize(converted, tower, calibration)
    openvino.save_model(converted, str(directory / f"{tower}.xml"), compress_to_fp16=False)


def _nncf_quantize(converted: Any, tower: str, calibration: CalibrationSet) -> Any:
    import nncf

    if tower == "text":
        # Text passes are short; quantizing their activations cost the most accuracy (a minimum cosine of
        # 0.976 against fp32 on a small random model), so the text tower keeps float activations.
        return nncf.compress_weights(converted, mode=nncf.CompressWeightsMode.INT8_ASYM)
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    samples = calibration.samples(tower)
    log.info("quantizing the %s tower to int8 on %d calibration samples", tower, len(samples))
    # Activation ranges from the calibration set's min and max, not NNCF's default mean of quantiles: images
    # unlike the calibration set's (the int8 test's small noisy ones) otherwise clip. On the int8 test's tiny
    # model and 1,000 images, the default ranges kept a minimum cosine of 0.985 to fp32 and 0.64 of the text
    # queries' top 10; min-max ranges 0.999 and 0.92. Leaving the attention output projections in float did
    # better still (0.9999, 0.935) but ran ViT-B/16 no faster than bf16 (38 against 37 img/s; 51 quantized).
    return nncf.quantize(
        converted,
        nncf.Dataset([list(sample) for sample in samples]),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(samples),
        advanced_parameters=AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX
        ),
    )

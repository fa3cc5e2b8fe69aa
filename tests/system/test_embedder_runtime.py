"""OpenVINO and ONNX Runtime against the torch reference: the auto rule, the disk cache, accuracy in fp32 and int8."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from PIL import Image

from clipsearch.v1 import embedder_pb2 as pb
from clipsearch.v1 import embedder_pb2_grpc
from embedder_service import towers
from embedder_service.config import ConfigError, EmbedderConfig
from embedder_service.inference import RuntimeUnavailable, auto_runtime, installed, resolve_runtime
from embedder_service.model import ClipEmbedder
from tests.support.embedder import embedder_test_config, encode_image, running_embedder, sample_photo

RUNTIMES = ("openvino", "onnxruntime")
TEXTS = [
    "a photo of an astronaut",
    "x",
    "a much longer caption, so that the batch is padded: a cup of coffee on a wooden table beside a laptop",
    "Ünïcödé and emoji 🚀",
]
AVX2 = frozenset({"avx", "avx2", "fma"})
needs_runtimes = pytest.mark.skipif(
    not all(installed(name) for name in RUNTIMES), reason="the fast extra (openvino, onnxruntime) is not installed"
)


def min_cosines(got: np.ndarray, want: np.ndarray) -> float:
    """The smallest per-row cosine; rows of both are unit vectors."""
    assert got.shape == want.shape
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    return float((got.astype(np.float64) * want.astype(np.float64)).sum(axis=1).min())


@pytest.fixture(scope="session")
def runtime_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("converted")


@pytest.fixture(scope="session")
def pixels(tiny_embedder: ClipEmbedder) -> np.ndarray:
    from embedder_service.preprocess import Preprocessor

    preprocess = Preprocessor(tiny_embedder.preprocess_spec)
    photos = [sample_photo(name) for name in ("astronaut", "coffee", "chelsea", "motorcycle_left")]
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (80, 120, 3), dtype=np.uint8))
    return np.stack([preprocess(photo) for photo in [*photos, noise]])


def load(model_dir: Path, runtime: str, dtype: str, cache: Path, **options: Any) -> ClipEmbedder:
    embedder = ClipEmbedder(str(model_dir), dtype=dtype, device="cpu", runtime=runtime, cache_dir=cache, **options)
    embedder.load()
    return embedder


# The rule auto follows.


def test_auto_is_torch_on_cuda_whatever_is_installed() -> None:
    assert auto_runtime("cuda", "bf16", AVX2 | {"avx512_vnni"}, RUNTIMES) == "torch"


def test_auto_on_an_avx2_cpu_is_onnxruntime_then_openvino_then_torch() -> None:
    assert auto_runtime("cpu", "fp32", AVX2, RUNTIMES) == "onnxruntime"
    assert auto_runtime("cpu", "fp32", AVX2, ["openvino"]) == "openvino"
    assert auto_runtime("cpu", "fp32", AVX2, []) == "torch"
    assert auto_runtime("cpu", "int8", AVX2, RUNTIMES) == "onnxruntime"


@pytest.mark.parametrize("flag", ["avx512_vnni", "avx512_bf16", "amx_bf16", "avx_vnni"])
def test_auto_on_a_cpu_with_vnni_bf16_or_amx_is_openvino(flag: str) -> None:
    assert auto_runtime("cpu", "fp32", AVX2 | {flag}, RUNTIMES) == "openvino"
    assert auto_runtime("cpu", "int8", AVX2 | {flag}, ["onnxruntime"]) == "onnxruntime"


def test_auto_runs_bf16_where_bf16_runs_and_int8_only_on_a_quantizing_runtime() -> None:
    assert auto_runtime("cpu", "bf16", AVX2, RUNTIMES) == "openvino"
    assert auto_runtime("cpu", "bf16", AVX2, ["onnxruntime"]) == "torch"
    with pytest.raises(RuntimeUnavailable, match=r"clipsearch\[fast\]"):
        auto_runtime("cpu", "int8", AVX2, [])


@needs_runtimes
@pytest.mark.parametrize(
    ("runtime", "device", "dtype", "message"),
    [
        ("torch", "cpu", "int8", "runs fp32, bf16, not EMBEDDER_DTYPE=int8"),
        ("onnxruntime", "cpu", "bf16", "runs fp32, int8, not EMBEDDER_DTYPE=bf16"),
        ("openvino", "cuda", "fp32", "runs on the CPU only"),
        ("tensorrt", "cpu", "fp32", "runtime must be one of"),
    ],
)
def test_a_runtime_that_cannot_run_the_request_is_refused(runtime: str, device: str, dtype: str, message: str) -> None:
    with pytest.raises(RuntimeUnavailable, match=message):
        resolve_runtime(runtime, device, dtype)


def test_the_runtime_and_cache_come_from_the_environment(tmp_path: Path) -> None:
    config = EmbedderConfig.from_env(
        {
            "EMBEDDER_RUNTIME": "OpenVINO",
            "EMBEDDER_DTYPE": "int8",
            "EMBEDDER_CACHE_DIR": str(tmp_path / "cache"),
            "EMBEDDER_CALIBRATION_DIR": str(tmp_path),
        }
    )
    assert (config.runtime, config.dtype) == ("openvino", "int8")
    assert (config.cache_dir, config.calibration_dir) == (tmp_path / "cache", tmp_path)
    assert EmbedderConfig.from_env({}).runtime == "auto"
    with pytest.raises(ConfigError, match="EMBEDDER_RUNTIME='tensorrt' is not one of: auto, torch"):
        EmbedderConfig.from_env({"EMBEDDER_RUNTIME": "tensorrt"})
    with pytest.raises(ConfigError, match="EMBEDDER_CALIBRATION_DIR=.* is not a directory"):
        EmbedderConfig.from_env({"EMBEDDER_CALIBRATION_DIR": str(tmp_path / "missing")})


def test_serve_passes_the_runtime_to_the_embedders(tmp_path: Path) -> None:
    from client import serve
    from client.cli.serve import add_arguments
    from client.serve.children import embedder_specs

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--runtime",
            "onnxruntime",
            "--dtype",
            "int8",
            "--web-port",
            "0",
            "--embedder-port",
            "0",
            "--search-port",
            "0",
            "--data-dir",
            str(tmp_path),
        ]
    )
    (spec,) = embedder_specs(serve.build_config(args, {}))
    assert (spec.env["EMBEDDER_RUNTIME"], spec.env["EMBEDDER_DTYPE"]) == ("onnxruntime", "int8")


# Accuracy against torch fp32, on the tiny random-weight checkpoint.


@needs_runtimes
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_fp32_matches_torch_for_images_and_texts(
    runtime: str, tiny_clip_dir: Path, tiny_embedder: ClipEmbedder, pixels: np.ndarray, runtime_cache: Path
) -> None:
    embedder = load(tiny_clip_dir, runtime, "fp32", runtime_cache)
    assert (embedder.info.runtime, embedder.info.dtype) == (runtime, "float32")
    assert embedder.info.dimension == tiny_embedder.info.dimension
    assert embedder.info.logit_scale == tiny_embedder.info.logit_scale
    assert min_cosines(embedder.embed_images(pixels), tiny_embedder.embed_images(pixels)) >= 0.9999
    assert min_cosines(embedder.embed_texts(TEXTS), tiny_embedder.embed_texts(TEXTS)) >= 0.9999
    # A text's vector does not depend on its batch's padding, on any runtime.
    alone = np.concatenate([embedder.embed_texts([text]) for text in TEXTS])
    np.testing.assert_allclose(alone, embedder.embed_texts(TEXTS), atol=1e-5)


@needs_runtimes
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_int8_stays_within_a_cosine_of_0_99_of_fp32(
    runtime: str, tiny_clip_dir: Path, tiny_embedder: ClipEmbedder, pixels: np.ndarray, runtime_cache: Path
) -> None:
    embedder = load(tiny_clip_dir, runtime, "int8", runtime_cache)
    assert (embedder.info.runtime, embedder.info.dtype) == (runtime, "int8")
    assert min_cosines(embedder.embed_images(pixels), tiny_embedder.embed_images(pixels)) >= 0.99
    assert min_cosines(embedder.embed_texts(TEXTS), tiny_embedder.embed_texts(TEXTS)) >= 0.99


@needs_runtimes
def test_int8_calibrates_on_the_users_images(
    tiny_clip_dir: Path, tiny_embedder: ClipEmbedder, pixels: np.ndarray, tmp_path: Path
) -> None:
    for index, name in enumerate(("astronaut", "coffee", "chelsea")):
        sample_photo(name).save(tmp_path / f"{index}.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    embedder = load(tiny_clip_dir, "openvino", "int8", tmp_path / "cache", calibration_dir=tmp_path)
    assert min_cosines(embedder.embed_images(pixels), tiny_embedder.embed_images(pixels)) >= 0.99
    with pytest.raises(ValueError, match="no readable images"):
        load(tiny_clip_dir, "openvino", "int8", tmp_path / "cache", calibration_dir=tmp_path / "cache")


@needs_runtimes
def test_bf16_on_openvino_stays_within_0_999_of_fp32(
    tiny_clip_dir: Path, tiny_embedder: ClipEmbedder, pixels: np.ndarray, runtime_cache: Path
) -> None:
    embedder = load(tiny_clip_dir, "openvino", "bf16", runtime_cache)
    assert embedder.info.dtype == "bfloat16"
    assert min_cosines(embedder.embed_images(pixels), tiny_embedder.embed_images(pixels)) >= 0.999
    assert min_cosines(embedder.embed_texts(TEXTS), tiny_embedder.embed_texts(TEXTS)) >= 0.999


@needs_runtimes
def test_switching_between_fp32_and_bf16_on_one_cache_keeps_each_precisions_blobs(
    tiny_clip_dir: Path, tiny_embedder: ClipEmbedder, pixels: np.ndarray, tmp_path: Path
) -> None:
    # OpenVINO's compiled-blob key leaves out the precision hint: an f32 blob loaded for bf16 gave NaN vectors.
    want = tiny_embedder.embed_images(pixels)
    for dtype, floor in (("fp32", 0.9999), ("bf16", 0.999), ("fp32", 0.9999), ("bf16", 0.999)):
        embedder = load(tiny_clip_dir, "openvino", dtype, tmp_path)
        assert min_cosines(embedder.embed_images(pixels), want) >= floor
        assert min_cosines(embedder.embed_texts(TEXTS), tiny_embedder.embed_texts(TEXTS)) >= floor
    (converted,) = tmp_path.iterdir()
    assert sorted(path.name for path in converted.glob("compiled-*")) == ["compiled-bf16", "compiled-f32"]


# The disk cache.


@needs_runtimes
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_second_start_reads_the_cache_instead_of_converting(
    runtime: str, tiny_clip_dir: Path, pixels: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load(tiny_clip_dir, runtime, "fp32", tmp_path)
    entries = sorted(path.name for path in tmp_path.iterdir())
    assert len(entries) == 1 and (tmp_path / entries[0] / "key.json").is_file()

    def no_export(*_: object) -> dict[str, Path]:
        raise AssertionError("converted again although the cache holds the model")

    monkeypatch.setattr(towers, "export_onnx", no_export)
    monkeypatch.setattr("embedder_service.sessions.export_onnx", no_export)
    second = load(tiny_clip_dir, runtime, "fp32", tmp_path)
    np.testing.assert_array_equal(second.embed_images(pixels), first.embed_images(pixels))
    assert sorted(path.name for path in tmp_path.iterdir()) == entries


@needs_runtimes
def test_the_cache_is_keyed_by_the_checkpoints_content_and_the_precision(tmp_path: Path) -> None:
    from embedder_service.checkpoint import write_checkpoint

    cache = tmp_path / "cache"
    first, other = write_checkpoint(tmp_path / "a", seed=0), write_checkpoint(tmp_path / "b", seed=1)
    load(first, "onnxruntime", "fp32", cache)
    load(other, "onnxruntime", "fp32", cache)
    load(first, "onnxruntime", "int8", cache)
    keys = [(cache / entry.name / "key.json").read_text() for entry in cache.iterdir()]
    assert len(keys) == 3 and sum('"precision": "int8"' in key for key in keys) == 1


# Served end to end.


@pytest.fixture(scope="module")
def torch_stub(tiny_clip_dir: Path) -> Iterator[embedder_pb2_grpc.EmbedderStub]:
    config = embedder_test_config(tiny_clip_dir)
    from embedder_service.server import create_embedder

    with (
        running_embedder(config, create_embedder(config)) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield embedder_pb2_grpc.EmbedderStub(channel)


def served_vectors(stub: embedder_pb2_grpc.EmbedderStub) -> tuple[np.ndarray, np.ndarray]:
    photos = [sample_photo(name) for name in ("astronaut", "coffee", "chelsea")]
    images = stub.EmbedImages(pb.EmbedImagesRequest(images=[pb.Image(encoded=encode_image(p)) for p in photos]))
    texts = stub.EmbedTexts(pb.EmbedTextsRequest(texts=TEXTS))
    return (
        np.array([result.embedding.values for result in images.results], dtype=np.float32),
        np.array([embedding.values for embedding in texts.embeddings], dtype=np.float32),
    )


@needs_runtimes
@pytest.mark.parametrize(
    ("runtime", "dtype", "floor"), [*((name, "fp32", 0.9999) for name in RUNTIMES), ("onnxruntime", "int8", 0.99)]
)
def test_served_through_grpc_with_embedder_runtime_set(
    runtime: str,
    dtype: str,
    floor: float,
    tiny_clip_dir: Path,
    torch_stub: embedder_pb2_grpc.EmbedderStub,
    runtime_cache: Path,
) -> None:
    from embedder_service.server import create_embedder

    env = {
        "CLIP_MODEL": str(tiny_clip_dir),
        "EMBEDDER_PORT": "0",
        "EMBEDDER_DEVICE": "cpu",
        "EMBEDDER_DTYPE": dtype,
        "EMBEDDER_RUNTIME": runtime,
        "EMBEDDER_CACHE_DIR": str(runtime_cache),
    }
    config = EmbedderConfig.from_env(env)
    with (
        running_embedder(config, create_embedder(config)) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        info = stub.GetModelInfo(pb.GetModelInfoRequest())
        images, texts = served_vectors(stub)
    assert info.dtype == {"fp32": "float32", "int8": "int8"}[dtype] and info.device == "cpu"
    want_images, want_texts = served_vectors(torch_stub)
    assert min_cosines(images, want_images) >= floor
    assert min_cosines(texts, want_texts) >= floor


def test_the_server_refuses_a_runtime_that_cannot_run_the_precision_in_one_line(tiny_clip_dir: Path) -> None:
    import subprocess
    import sys

    from tests.system.test_embedder_process import run_env

    env = run_env(CLIP_MODEL=str(tiny_clip_dir), EMBEDDER_PORT="0", EMBEDDER_RUNTIME="torch", EMBEDDER_DTYPE="int8")
    done = subprocess.run(
        [sys.executable, "-m", "embedder_service"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "embedder: EMBEDDER_RUNTIME=torch runs fp32, bf16, not EMBEDDER_DTYPE=int8"

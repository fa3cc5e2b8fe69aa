"""Pytest fixtures for the embedder tests: tiny random-weight CLIP, Chinese-CLIP and SigLIP checkpoints, servers."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import pytest
from PIL import Image

from clipsearch.serving import GrpcServer
from clipsearch.v1 import embedder_pb2_grpc

if TYPE_CHECKING:
    from embedder_service.config import EmbedderConfig
    from embedder_service.model import ClipEmbedder
    from embedder_service.server import EmbedderServer


@dataclass(frozen=True)
class ClipReference:
    """transformers' own CLIPModel and CLIPProcessor for a checkpoint: what the service must match."""

    model: Any
    processor: Any

    def outputs(self, images: list[Image.Image], texts: list[str]) -> Any:
        import torch

        inputs = self.processor(
            images=images, text=texts, return_tensors="pt", padding=True, truncation=True, max_length=77
        )
        with torch.inference_mode():
            return self.model(**inputs)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight CLIP checkpoint written by embedder_service.checkpoint."""
    from embedder_service.checkpoint import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("tiny-clip"), arch="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_chinese_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Chinese-CLIP checkpoint (BERT tokenizer with common CJK characters)."""
    from embedder_service.checkpoint import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("tiny-chinese-clip"), arch="tiny", seed=0, family="chinese_clip")


@pytest.fixture(scope="session")
def tiny_siglip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight SigLIP checkpoint (a SentencePiece-style tokenizer.json with CJK characters)."""
    from embedder_service.checkpoint import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("tiny-siglip"), arch="tiny", seed=0, family="siglip")


@pytest.fixture(scope="session")
def tiny_family_dirs(tiny_clip_dir: Path, tiny_chinese_clip_dir: Path, tiny_siglip_dir: Path) -> dict[str, Path]:
    """The tiny checkpoint of each family, by config.json's model_type."""
    return {"clip": tiny_clip_dir, "chinese_clip": tiny_chinese_clip_dir, "siglip": tiny_siglip_dir}


@pytest.fixture(scope="session")
def tiny_family_embedders(tiny_family_dirs: dict[str, Path]) -> dict[str, ClipEmbedder]:
    """Each family's tiny checkpoint loaded as users load it (ClipEmbedder, float32, torch on the CPU)."""
    from embedder_service.model import ClipEmbedder

    embedders = {}
    for family, directory in tiny_family_dirs.items():
        embedder = ClipEmbedder(str(directory), dtype="fp32", device="cpu", runtime="torch")
        embedder.load()
        embedders[family] = embedder
    return embedders


@pytest.fixture(scope="session")
def tiny_embedder(tiny_clip_dir: Path) -> ClipEmbedder:
    """The tiny checkpoint loaded in float32 on the CPU."""
    from embedder_service.model import ClipEmbedder

    embedder = ClipEmbedder(str(tiny_clip_dir), dtype="fp32", device="cpu")
    embedder.load()
    return embedder


@pytest.fixture(scope="session")
def tiny_reference(tiny_clip_dir: Path) -> ClipReference:
    """The tiny checkpoint loaded by transformers directly, in float32."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    return ClipReference(model, CLIPProcessor.from_pretrained(tiny_clip_dir))


def family_reference_outputs(family: str, directory: Path, images: list[Image.Image], texts: list[str]) -> Any:
    """transformers' own model and processor, as their documentation runs them."""
    import torch
    import transformers

    from embedder_service.families import FAMILIES

    model = getattr(transformers, FAMILIES[family].model_class).from_pretrained(directory).eval()
    processor = transformers.AutoProcessor.from_pretrained(directory)
    if family == "siglip":
        # SigLIP's documented use: padding="max_length", input_ids alone (trained without a mask).
        inputs = processor(images=images, text=texts, padding="max_length", truncation=True, return_tensors="pt")
        inputs.pop("attention_mask", None)
    else:
        inputs = processor(images=images, text=texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**inputs)


@contextmanager
def running_embedder(config: EmbedderConfig, embedder: ClipEmbedder | None) -> Iterator[EmbedderServer]:
    """An embedder server for `config` on a free port, started and SERVING; stopped on exit."""
    from embedder_service.server import build_server

    server = build_server(config, embedder)
    server.start()
    server.set_serving(True)
    try:
        yield server
    finally:
        server.stop(0)


def embedder_test_config(model_dir: Path, **overrides: Any) -> EmbedderConfig:
    """An EmbedderConfig for tests: loopback, free port, float32 on the CPU in torch (the reference), few workers."""
    from embedder_service.config import EmbedderConfig

    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "model": str(model_dir),
        "dtype": "fp32",
        "device": "cpu",
        "runtime": "torch",
        "workers": 8,
    }
    values.update(overrides)
    return EmbedderConfig(**values)


@pytest.fixture(scope="session")
def embedder_server(tiny_clip_dir: Path, tiny_embedder: ClipEmbedder) -> Iterator[GrpcServer]:
    with running_embedder(embedder_test_config(tiny_clip_dir), tiny_embedder) as server:
        yield server


@pytest.fixture(scope="session")
def embedder_address(embedder_server: GrpcServer) -> str:
    """ "127.0.0.1:PORT" of an in-process embedder serving the tiny checkpoint (default limits, fp32)."""
    return f"127.0.0.1:{embedder_server.port}"


@pytest.fixture(scope="session")
def embedder_channel(embedder_address: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(embedder_address) as channel:
        yield channel


@pytest.fixture(scope="session")
def embedder_stub(embedder_channel: grpc.Channel) -> embedder_pb2_grpc.EmbedderStub:
    return embedder_pb2_grpc.EmbedderStub(embedder_channel)


def encode_image(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    """The bytes of `image` saved in `fmt`."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def sample_photo(name: str = "astronaut") -> Image.Image:
    """A photo bundled with scikit-image (no download; e.g. astronaut, chelsea, coffee, motorcycle_left), RGB."""
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    path = next(folder.glob(f"{name}.*"))
    with Image.open(path) as image:
        return image.convert("RGB")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

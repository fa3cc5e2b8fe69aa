"""Ingest: the seed's per-image loop vs `clipsearch index` end to end vs its model alone, per embedder setting."""

from __future__ import annotations

import io
import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis
from PIL import Image

from bench.common import (
    MODEL_BATCH,
    CpuMeter,
    Services,
    Timed,
    clipsearch_index,
    load_average,
    median,
    ratio,
)
from bench.media import folder_bytes
from client.api import Client
from client.ingest.media import ImageLimits, prepare_image
from embedder_service.model import ClipEmbedder

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def image_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)


class SeedLoop:
    """The seed's way: per image open -> CLIPProcessor -> CLIPModel.get_image_features (batch 1) -> one HSET."""

    def __init__(self, checkpoint: Path, dtype: str) -> None:
        import torch
        from transformers import CLIPModel, CLIPProcessor

        self._torch = torch
        self._dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        # transformers annotates `to` through a decorator that mypy reads as taking a model.
        self.model = CLIPModel.from_pretrained(str(checkpoint)).to(self._dtype).eval()  # type: ignore[arg-type]
        self.processor = CLIPProcessor.from_pretrained(str(checkpoint))
        self.dimension = int(self.model.config.projection_dim)

    def run(self, files: list[Path], client: redis.Redis, redis_pid: int) -> Timed:
        """Indexes the files into a RediSearch index of its own, one image at a time."""
        name = f"seed-{uuid.uuid4().hex[:8]}"
        client.execute_command(
            "FT.CREATE",
            name,
            "ON",
            "HASH",
            "PREFIX",
            "1",
            f"{name}:",
            "SCHEMA",
            "path",
            "TAG",
            "vector",
            "VECTOR",
            "HNSW",
            "6",
            "TYPE",
            "FLOAT32",
            "DIM",
            str(self.dimension),
            "DISTANCE_METRIC",
            "COSINE",
        )
        meter = CpuMeter([redis_pid])
        started = time.perf_counter()
        for number, path in enumerate(files):
            image = Image.open(path).convert("RGB")
            inputs = self.processor(images=image, return_tensors="pt")
            with self._torch.no_grad():
                features = self.model.get_image_features(pixel_values=inputs["pixel_values"].to(self._dtype))
            features = getattr(features, "pooler_output", features).float()
            vector = (features / features.norm(dim=-1, keepdim=True))[0].numpy()
            client.hset(f"{name}:{number}", mapping={"path": str(path), "vector": vector.tobytes()})
        timed = Timed(len(files), time.perf_counter() - started, meter.seconds())
        documents = _info_field(client.execute_command("FT.INFO", name), "num_docs")
        if int(documents) != len(files):
            raise RuntimeError(f"the seed loop stored {documents} of {len(files)} images")
        return timed


def _info_field(reply: Any, name: str) -> Any:
    if isinstance(reply, dict):
        return reply.get(name, reply.get(name.encode()))
    pairs = dict(zip(reply[::2], reply[1::2], strict=False))
    return pairs.get(name, pairs.get(name.encode()))


def model_only(embedder: ClipEmbedder, images: int, warm_up: bool = True, batch_size: int = MODEL_BATCH) -> Timed:
    """Throughput of the model alone: batches of `batch_size` random pixels (after a warm-up batch)."""
    size = embedder.info.image_size
    batch = np.random.default_rng(0).standard_normal((batch_size, 3, size, size), dtype=np.float32)
    if warm_up:
        embedder.embed_images(batch)
    batches = max(1, images // batch_size)
    meter = CpuMeter()
    started = time.perf_counter()
    for _ in range(batches):
        embedder.embed_images(batch)
    return Timed(batches * batch_size, time.perf_counter() - started, meter.seconds())


def client_prepare_ms(files: list[Path], image_size: int) -> float:
    """CPU milliseconds per file that `clipsearch index` spends decoding and shrinking it."""
    limits = ImageLimits(image_size, 100_000_000)
    data = [path.read_bytes() for path in files]
    started = time.thread_time()
    for blob in data:
        prepare_image(blob, limits)
    return round(1000 * (time.thread_time() - started) / len(files), 1)


def client_decode_ms(files: list[Path], image_size: int) -> float:
    """Of client_prepare_ms, the decoding alone (a JPEG at the draft scale the client asks for)."""
    data = [path.read_bytes() for path in files]
    started = time.thread_time()
    for blob in data:
        with Image.open(io.BytesIO(blob)) as image:
            if image.format == "JPEG":
                scale = image_size / min(image.size)
                image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
            image.load()
    return round(1000 * (time.thread_time() - started) / len(files), 1)


def seed_prepare_ms(files: list[Path], processor: Any) -> float:
    """CPU milliseconds per file that the seed spends on opening it and CLIPProcessor (no model)."""
    started = time.thread_time()
    for path in files:
        processor(images=Image.open(path).convert("RGB"), return_tensors="pt")
    return round(1000 * (time.thread_time() - started) / len(files), 1)


def marginal(half: Timed, full: Timed) -> Timed:
    """What the images beyond the first half cost: without the start, the pipeline's filling and draining.

    The whole run stands in where noise made the longer run no slower, or no costlier, than the shorter one."""
    if full.count <= half.count or full.seconds <= half.seconds or full.cpu_seconds <= half.cpu_seconds:
        return full
    return Timed(full.count - half.count, full.seconds - half.seconds, full.cpu_seconds - half.cpu_seconds)


def _variant_figures(model: Timed, single: Timed, seed: Timed, pipeline: Timed, whole: Timed) -> dict[str, Any]:
    """`pipeline` is the marginal rate of `clipsearch index` (marginal()), `whole` its whole run."""
    return {
        "model_img_s": model.per_second,
        "pipeline_img_s": pipeline.per_second,
        "run_img_s": whole.per_second,
        "model_bs1_img_s": single.per_second,
        # How much batches speed the model up on this machine.
        "model_batch_gain": ratio(model.per_second, single.per_second),
        # The most any pipeline on this model can gain on the seed loop: its model alone, nothing else.
        "ceiling_vs_seed": ratio(model.per_second, seed.per_second),
        "pipeline_vs_seed": ratio(pipeline.per_second, seed.per_second),
        "pipeline_vs_model": ratio(pipeline.per_second, model.per_second),
        "model_cpu_ms": model.cpu_ms_per_item,
        "pipeline_cpu_ms": pipeline.cpu_ms_per_item,
    }


VARIANT_FIGURES = (
    "model_img_s",
    "pipeline_img_s",
    "run_img_s",
    "pipeline_vs_seed",
    "pipeline_vs_model",
    "model_bs1_img_s",
    "model_batch_gain",
    "ceiling_vs_seed",
    "model_cpu_ms",
    "pipeline_cpu_ms",
)


def _summary(
    kind_files: list[Path],
    seed_files: list[Path],
    rounds: list[dict[str, Any]],
    variants: list[IngestVariant],
    seed: SeedLoop,
) -> dict[str, Any]:
    with Image.open(kind_files[0]) as first:
        width, height = first.size
    figures: dict[str, Any] = {
        "files": len(kind_files),
        "seed_files": len(seed_files),
        "width": width,
        "height": height,
        "mean_file_bytes": folder_bytes(kind_files[0].parent) // len(kind_files),
        "rounds": rounds,
        # Medians over the rounds; each round's ratios compare figures taken minutes apart at most.
        "seed_img_s": median([r["seed_img_s"] for r in rounds]),
        "seed_cpu_ms": median([r["seed_cpu_ms"] for r in rounds]),
    }
    for variant in variants:
        info = variant.model.info
        merged: dict[str, Any] = {"runtime": info.runtime, "dtype": info.dtype}
        for key in VARIANT_FIGURES:
            merged[key] = median([r[variant.name][key] for r in rounds])
        # CPU time per image barely depends on other people's load: what an idle machine's ratios would be,
        # were every stage kept busy.
        merged["cpu_pipeline_vs_seed"] = ratio(figures["seed_cpu_ms"], merged["pipeline_cpu_ms"])
        merged["cpu_pipeline_vs_model"] = ratio(merged["model_cpu_ms"], merged["pipeline_cpu_ms"])
        figures[variant.name] = merged
    figures["client_prepare_cpu_ms"] = client_prepare_ms(kind_files, variants[0].model.info.image_size)
    figures["client_decode_cpu_ms"] = client_decode_ms(kind_files, variants[0].model.info.image_size)
    figures["seed_prepare_cpu_ms"] = seed_prepare_ms(seed_files, seed.processor)
    return figures


@dataclass(frozen=True)
class IngestVariant:
    """An embedder setting under test: its process's address and the same model loaded in this process."""

    name: str
    address: str
    model: ClipEmbedder


def run(
    services: Services,
    variants: list[IngestVariant],
    checkpoint: Path,
    png_folder: Path,
    jpeg_folder: Path,
    halves: dict[str, Path],
    *,
    rounds: int,
    model_images: int,
    seed_png_files: int,
    run_id: str,
) -> dict[str, Any]:
    """Rounds of: for PNG frames and JPEG photos, (a) the seed loop (torch fp32, batch 1), then for each
    variant (auto, int8: an embedder process each) (c) its model alone on the same runtime and precision
    (batch 16, then batch 1) and (b) `clipsearch index` against its embedder of `halves[kind]` (the first
    half of the files) then of the whole folder: its marginal rate is that of the second half (marginal()).
    Ratios are taken within each round, then their median reported."""
    seed = SeedLoop(checkpoint, "float32")
    png_files, jpeg_files = image_files(png_folder), image_files(jpeg_folder)
    seed_files = {"png": png_files[:seed_png_files], "jpeg": jpeg_files}
    folders = {"png": png_folder, "jpeg": jpeg_folder}
    for variant in variants:
        with Client(variant.address, services.search, timeout=600) as client:
            client.embed_image(png_files[0])  # the embedder's first forward pass is slow: keep it out
    per_kind: dict[str, list[dict[str, Any]]] = {"png": [], "jpeg": []}
    redis_pid = services.stack.redis.pid
    assert redis_pid is not None  # the bench starts its own Redis
    with redis.Redis.from_url(services.redis_url) as client:
        for number in range(rounds):
            for kind, rows in per_kind.items():
                seeded = seed.run(seed_files[kind], client, redis_pid)
                row: dict[str, Any] = {
                    "load_average": load_average(),
                    "seed_img_s": seeded.per_second,
                    "seed_cpu_ms": seeded.cpu_ms_per_item,
                }
                for variant in variants:
                    model = model_only(variant.model, model_images, warm_up=number == 0 and kind == "png")
                    single = model_only(variant.model, model_images, warm_up=False, batch_size=1)
                    timed = []
                    for part, folder in (("half", halves[kind]), ("all", folders[kind])):
                        collection = f"{kind}-{variant.name}-{run_id}-{number}-{part}"
                        report, pipeline = clipsearch_index(
                            services, [folder], collection, embedder=variant.address, without_start=True
                        )
                        expected = len(image_files(folder))
                        if report["indexed"] != expected:
                            raise RuntimeError(f"clipsearch index wrote {report['indexed']} {kind} files of {expected}")
                        timed.append(pipeline)
                    row[variant.name] = _variant_figures(model, single, seeded, marginal(*timed), timed[1])
                rows.append(row)
    return {
        "variants": [variant.name for variant in variants],
        "seed_dtype": "float32",
        "model_batch": MODEL_BATCH,
        "rounds": rounds,
        # What each clipsearch index run spends before it starts (interpreter, imports): left out of its
        # CPU figures above, which cover the run itself (clipsearch_index's without_start).
        "client_start_cpu_seconds": round(services.client_startup_cpu(), 3),
        "png": _summary(png_files, seed_files["png"], per_kind["png"], variants, seed),
        "jpeg": _summary(jpeg_files, seed_files["jpeg"], per_kind["jpeg"], variants, seed),
    }

"""Shared benchmark plumbing: sizes, cached checkpoints and media, the service stack, timing, results."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFilter

from clipsearch.testing.processes import (
    DEPLOYED_SEARCH_SETTINGS,
    ServiceProcess,
    Stack,
    base_env,
    rss_bytes,
    search_process,
    start_stack,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO / "bench" / ".cache"
MODEL_BATCH = 16  # the model-only figure's batch size, as the targets define it


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does: QUICK, FULL, or SMOKE (which only checks that everything runs)."""

    name: str
    arch: str  # checkpoint written when --model is not given
    png_frames: int
    jpeg_photos: int
    model_only_images: int  # random images per model-only measurement (batches of MODEL_BATCH)
    ingest_rounds: int  # model only, seed loop and clipsearch index, taken in turn this many times
    seed_png_frames: int  # of the PNG frames, how many the seed loop indexes per round (it is slow)
    query_items: tuple[int, ...]
    queries: int  # vector queries per index size (search-only and recall)
    text_queries: int
    video_seconds: int
    video_fps: int
    batching_seconds: float | None = None  # per phase of bench.batching
    batching_requests: int | None = None  # instead of a time, calls per phase
    frame_size: tuple[int, int] = (1920, 1080)  # of the PNG frames
    photo_size: tuple[int, int] = (4032, 3024)  # of the JPEG photos
    video_size: tuple[int, int] = (1920, 1080)
    load_seconds: float = 30.0  # bench.load: measured seconds, warm-up seconds, client threads
    load_warmup: float = 10.0
    load_clients: int = 16


QUICK = Sizes(
    "quick",
    "tiny",
    png_frames=8,
    jpeg_photos=4,
    model_only_images=32,
    ingest_rounds=2,
    seed_png_frames=8,
    query_items=(10_000,),
    queries=100,
    text_queries=20,
    video_seconds=10,
    video_fps=25,
    batching_seconds=3.0,
    load_seconds=5.0,
    load_warmup=2.0,
    load_clients=8,
)
# Seconds, not minutes: every part runs and reports, and no figure means much. The tests run it
# (python -m bench --smoke). PNG frames over the client's 1 MB encoded limit (decoded and shrunk by the
# client) and small JPEGs (sent encoded), a 3-second video, 500 vectors, a few calls of each kind.
SMOKE = Sizes(
    "smoke",
    "tiny",
    png_frames=2,
    jpeg_photos=2,
    model_only_images=16,
    ingest_rounds=1,
    seed_png_frames=2,
    query_items=(500,),
    queries=10,
    text_queries=3,
    video_seconds=3,
    video_fps=25,
    batching_requests=16,
    frame_size=(1280, 720),
    photo_size=(800, 600),
    video_size=(320, 240),
    load_seconds=2.0,
    load_warmup=1.0,
    load_clients=4,
)
FULL = Sizes(
    "full",
    "vit-b-16",
    png_frames=16,
    jpeg_photos=4,
    model_only_images=16,
    ingest_rounds=3,
    seed_png_frames=8,
    query_items=(10_000, 100_000),
    queries=200,
    text_queries=40,
    video_seconds=60,
    video_fps=25,
    batching_seconds=10.0,
)


# --- the machine ------------------------------------------------------------------------------------


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def machine() -> dict[str, Any]:
    """CPU, cores, whether bf16 is native, library versions: what the figures depend on."""
    import torch

    from embedder_service.model import cpu_supports_bf16

    cpu = platform.processor() or "unknown"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "native_bf16": cpu_supports_bf16(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "platform": platform.platform(),
    }


# --- timing -----------------------------------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, all its threads (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class CpuMeter:
    """CPU seconds used by this process, its finished children and some other processes since start().

    Under a shared machine's load, wall-clock rates move with other people's work; CPU time per item moves
    far less, so the suite reports both.
    """

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self._pids = list(pids)
        self._start = self._now()

    def _now(self) -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (
            time.process_time()
            + children.ru_utime
            + children.ru_stime
            + sum(process_cpu_seconds(pid) for pid in self._pids)
        )

    def seconds(self) -> float:
        return self._now() - self._start


@dataclass(frozen=True)
class Timed:
    """Items done, in wall seconds and CPU seconds (every process involved)."""

    count: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return rate(self.count, self.seconds)

    @property
    def cpu_ms_per_item(self) -> float:
        return round(1000 * self.cpu_seconds / self.count, 1) if self.count else float("nan")


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(seconds) * 1000, q)), 3) if seconds else float("nan")


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 3) if seconds > 0 else float("nan")


@dataclass
class Target:
    """A figure against its goal: met when value >= goal (or <= goal for upper bounds)."""

    name: str
    value: float | None
    goal: float
    upper_bound: bool = False  # True: the value must stay at or below the goal
    unit: str = "x"
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value <= self.goal if self.upper_bound else self.value >= self.goal

    @property
    def margin(self) -> float | None:
        """How far past (positive) or short of (negative) the goal, relative to it."""
        if self.value is None:
            return None
        gap = (self.goal - self.value) if self.upper_bound else (self.value - self.goal)
        return round(gap / self.goal, 3)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "goal": self.goal,
            "comparison": "<=" if self.upper_bound else ">=",
            "unit": self.unit,
            "met": self.met,
            "margin": self.margin,
            "note": self.note,
        }


# --- the cache --------------------------------------------------------------------------------------


def cache_dir(path: Path) -> Path:
    """The cache directory, made ignorable by git (weights and media must never be committed)."""
    path.mkdir(parents=True, exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n", encoding="ascii")
    return path


def checkpoint(cache: Path, arch: str) -> Path:
    """A random-weight checkpoint of `arch` (embedder_service.checkpoint), written once into the cache."""
    from embedder_service.checkpoint import write_checkpoint

    directory = cache / "checkpoints" / arch
    if (directory / "model.safetensors").is_file() and (directory / "preprocessor_config.json").is_file():
        return directory
    with building(directory) as partial:
        write_checkpoint(partial, arch=arch)
    return directory


@contextmanager
def building(final: Path) -> Iterator[Path]:
    """A temporary sibling of `final` to fill, renamed to `final` when the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.partial")
    if partial.is_dir():
        shutil.rmtree(partial)
    elif partial.exists():
        partial.unlink()
    yield partial
    if final.is_dir():
        shutil.rmtree(final)
    partial.rename(final)


# --- synthetic media --------------------------------------------------------------------------------


def scene(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth gradients and waves under flat shapes, softened: compresses like a rendered or filmed frame."""
    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    channels = []
    for _ in range(3):
        a, b = rng.uniform(-120, 120, 2)
        base, fx, fy, phase = rng.uniform(60, 190), rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 6.3)
        channels.append(base + a * xx + b * yy + 25 * np.sin(fx * 6.283 * xx + phase) * np.cos(fy * 6.283 * yy))
    image = Image.fromarray(np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    scale = width / 1920
    for _ in range(int(rng.integers(8, 20))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1 = x0 + int(rng.integers(40, 600) * scale) + 1
        y1 = y0 + int(rng.integers(40, 400) * scale) + 1
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=color)
    return image.filter(ImageFilter.GaussianBlur(1.5 * scale))


def with_noise(image: Image.Image, rng: np.random.Generator, sigma: float) -> Image.Image:
    """Adds sensor-like Gaussian noise: what makes real frames cost 2-3 MB as PNG."""
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0.0, sigma, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _pool_folder(pool: Path, count: int, make: Callable[[int, Path], None], name: str) -> Path:
    """`count` files of a generated pool (made as needed, kept), as a folder of exactly those files."""
    pool.mkdir(parents=True, exist_ok=True)
    folder = pool.with_name(f"{pool.name}-{count}")
    if folder.is_dir():
        return folder
    with building(folder) as partial:
        partial.mkdir()
        for n in range(count):
            source = pool / name.format(n + 1)
            if not source.exists():
                staged = source.with_name(f".{source.name}.partial{source.suffix}")
                make(n, staged)
                staged.rename(source)
            try:
                os.link(source, partial / source.name)
            except OSError:
                shutil.copyfile(source, partial / source.name)
    return folder


def png_frames(cache: Path, count: int, size: tuple[int, int] = (1920, 1080)) -> Path:
    """A folder of `count` PNG frames of `size` (about 2.5 MB each at 1080p), generated once."""

    def make(n: int, path: Path) -> None:
        rng = np.random.default_rng(1000 + n)
        with_noise(scene(rng, *size), rng, 1.6).save(path, "PNG")

    return _pool_folder(cache / "media" / f"png-{size[0]}x{size[1]}", count, make, "frame_{:05d}.png")


def jpeg_photos(cache: Path, count: int, size: tuple[int, int] = (4032, 3024)) -> Path:
    """A folder of `count` phone-sized JPEG photos (quality 92, 2-4 MB each), generated once."""

    def make(n: int, path: Path) -> None:
        rng = np.random.default_rng(5000 + n)
        with_noise(scene(rng, *size), rng, 3.0).save(path, "JPEG", quality=92)

    return _pool_folder(cache / "media" / f"jpeg-{size[0]}x{size[1]}", count, make, "IMG_{:04d}.jpg")


def video_codec() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def video(cache: Path, seconds: int, fps: int, size: tuple[int, int] = (1920, 1080)) -> Path:
    """An MP4 of moving shapes over a drifting scene (H.264 when PyAV has libx264, else MPEG-4), made once."""
    import av

    codec = video_codec()
    path = cache / "media" / f"video-{size[0]}x{size[1]}-{seconds}s-{fps}fps-{codec}.mp4"
    if path.is_file():
        return path
    width, height = size
    rng = np.random.default_rng(7)
    scenes = [np.asarray(scene(rng, width + 256, height)) for _ in range(max(1, seconds // 10))]
    noise = [rng.normal(0, 2.0, (height, width, 3)).astype(np.int16) for _ in range(4)]
    sprites = [
        (int(rng.integers(80, 300)), tuple(int(v) for v in rng.integers(0, 256, 3)), rng.uniform(-12, 12, 2))
        for _ in range(6)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with av.open(str(partial), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "23"}
        else:
            stream.bit_rate = 8_000_000
        for index in range(seconds * fps):
            second = index // fps
            background = scenes[(second // 10) % len(scenes)]
            shift = (index * 2) % 256  # a slow pan
            frame = background[:, shift : shift + width].astype(np.int16)
            for number, (side, color, velocity) in enumerate(sprites):
                x = int(abs((200 * number + velocity[0] * index) % (2 * (width - side)) - (width - side)))
                y = int(abs((150 * number + velocity[1] * index) % (2 * (height - side)) - (height - side)))
                frame[y : y + side, x : x + side] = color
            frame += noise[index % len(noise)]
            pixels = np.clip(frame, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(path)
    return path


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


# --- the services -----------------------------------------------------------------------------------


@dataclass
class Services:
    """Redis, one embedder and one search service, each a process of its own (clipsearch.testing.processes)."""

    stack: Stack
    workdir: Path
    extra_search: list[ServiceProcess] = field(default_factory=list)
    _startup_cpu: float | None = None

    @property
    def embedder(self) -> str:
        return self.stack.embedders[0].address

    @property
    def search(self) -> str:
        return self.stack.search.address

    @property
    def redis_url(self) -> str:
        return self.stack.redis.url

    def pids(self) -> list[int]:
        """The redis-server, embedder and search service processes."""
        return list(self.stack.pids().values())

    def client_startup_cpu(self) -> float:
        """CPU seconds of `clipsearch stats` (interpreter start, imports, one call): measured once."""
        if self._startup_cpu is None:
            meter = CpuMeter()
            subprocess.run(
                [sys.executable, "-m", "client", "stats", "--json", "--search", self.search],
                cwd=REPO,
                env=base_env(),
                capture_output=True,
                check=True,
                timeout=600,
            )
            self._startup_cpu = meter.seconds()
        return self._startup_cpu

    def embedder_rss(self) -> int:
        return rss_bytes(self.stack.embedders[0].pid)

    def search_service(self, index: str, dimension: int) -> ServiceProcess:
        """Another search service process over the same Redis, for an index of its own; stopped with the rest."""
        service = search_process(
            self.redis_url,
            dimension,
            self.workdir,
            index=index,
            extra={"SEARCH_REDIS_TIMEOUT_SECONDS": "300", **DEPLOYED_SEARCH_SETTINGS},
        )
        service.log_path = self.workdir / f"search-{index}.log"
        self.extra_search.append(service)
        return service.start().wait_serving()

    def stop(self) -> None:
        for service in self.extra_search:
            service.stop()
        self.stack.stop()


def start_services(workdir: Path, model: Path, embedder_threads: int, dtype: str = "auto") -> Services:
    """The services as `clipsearch serve` runs them, with Redis's default fsync policy."""
    stack = start_stack(
        workdir,
        str(model),
        embedder_threads=embedder_threads,
        dtype=dtype,
        appendfsync="everysec",
        index="bench",
        search_env=DEPLOYED_SEARCH_SETTINGS,
    )
    return Services(stack, workdir)


def clipsearch_index(
    services: Services, paths: Sequence[Path], collection: str, *, fps: float = 1.0, options: Sequence[str] = ()
) -> tuple[dict[str, Any], Timed]:
    """Runs `clipsearch index PATHS --json` (python -m client) against the services.

    Returns its report and a Timed of the items it indexed over the seconds it reports (the run itself,
    without the interpreter's start), with the CPU time of the client and every service process. That CPU
    time includes starting the client (Services.client_startup_cpu), so it errs on the high side.
    """
    command = [
        sys.executable,
        "-m",
        "client",
        "index",
        *map(str, paths),
        "--json",
        "--collection",
        collection,
        "--fps",
        f"{fps:g}",
        "--embedder",
        services.embedder,
        "--search",
        services.search,
        "--timeout",
        "600",
        *options,
    ]
    meter = CpuMeter(services.pids())
    done = subprocess.run(command, cwd=REPO, env=base_env(), capture_output=True, text=True, timeout=3600)
    cpu = meter.seconds()
    if done.returncode != 0:
        raise RuntimeError(f"clipsearch index exited with {done.returncode}:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    if report["failed"]:
        raise RuntimeError(f"clipsearch index could not index everything: {report['failed'][:3]}")
    return report, Timed(report["indexed"], report["seconds"], cpu)


def median(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(float(statistics.median(present)), 3) if present else None

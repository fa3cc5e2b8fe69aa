"""Shared benchmark plumbing: sizes, cached checkpoints and media, the service stack, timing, results."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL

from bench.media import building
from bench.media import folder_bytes as folder_bytes  # re-exported: the benchmarks reach the media helpers here
from bench.media import jpeg_photos as jpeg_photos
from bench.media import png_frames as png_frames
from bench.media import scene as scene
from bench.media import video as video
from bench.media import video_codec as video_codec
from bench.media import with_noise as with_noise
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
    film_seconds: int = 120  # bench.film: the generated film's length and size, and turns of each measurement
    film_size: tuple[int, int] = (1920, 1080)
    film_rounds: int = 3


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
    film_seconds=20,
    film_size=(640, 360),
    film_rounds=2,
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
    film_seconds=4,
    film_size=(320, 180),
    film_rounds=1,
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

    def __init__(self, pids: Sequence[int] = (), *, own: bool = True) -> None:
        self._pids = list(pids)
        self._own = own  # False: the other processes alone
        self._start = self._now()

    def _now(self) -> float:
        others = sum(process_cpu_seconds(pid) for pid in self._pids)
        if not self._own:
            return others
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime + others

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
    value = numerator / denominator
    # Three decimals, but a small ratio (a tiny model against a whole pipeline) keeps three digits, not 0.
    return round(value, 3) if abs(value) >= 0.01 else float(f"{value:.3g}")


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


# --- the services -----------------------------------------------------------------------------------


@dataclass
class Services:
    """Redis, one embedder and one search service, each a process of its own (clipsearch.testing.processes)."""

    stack: Stack
    workdir: Path
    extra_search: list[ServiceProcess] = field(default_factory=list)
    extra_embedders: list[ServiceProcess] = field(default_factory=list)  # other settings under test
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
        """The redis-server, embedder (all of them) and search service processes."""
        return [*self.stack.pids().values(), *(embedder.pid for embedder in self.extra_embedders)]

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
        for service in [*self.extra_search, *self.extra_embedders]:
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
    services: Services,
    paths: Sequence[Path],
    collection: str,
    *,
    fps: float = 1.0,
    options: Sequence[str] = (),
    embedder: str = "",
    without_start: bool = False,
) -> tuple[dict[str, Any], Timed]:
    """Runs `clipsearch index PATHS --json` (python -m client) against the services.

    Returns its report and a Timed of the items it indexed over the seconds it reports (the run itself,
    without the interpreter's start), with the CPU time of the client and every service process (counting
    the client's start, Services.client_startup_cpu). `embedder`: another embedder's address.
    `without_start`: the CPU time of the run itself instead: the client's over the seconds it reports (its
    "cpu_seconds") and every service process's over the whole command. The client's start (interpreter,
    imports, counting the files, the model check) costs far more than a few images and varies from one run
    to the next, so a difference of two runs (ingest.marginal) is only meaningful without it.
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
        embedder or services.embedder,
        "--search",
        services.search,
        "--timeout",
        "600",
        *options,
    ]
    meter = CpuMeter(services.pids(), own=not without_start)
    done = subprocess.run(command, cwd=REPO, env=base_env(), capture_output=True, text=True, timeout=3600)
    cpu = meter.seconds()
    if done.returncode != 0:
        raise RuntimeError(f"clipsearch index exited with {done.returncode}:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    if without_start:
        cpu += report["cpu_seconds"]
    if report["failed"]:
        raise RuntimeError(f"clipsearch index could not index everything: {report['failed'][:3]}")
    # One file is one item: the same files are indexed again by the next timed run, into its own collection,
    # so this run's items leave the index once measured.
    forget = [sys.executable, "-m", "client", "delete", "--source", *map(str, paths), "--collection", collection]
    forget += ["--search", services.search]
    gone = subprocess.run(forget, cwd=REPO, env=base_env(), capture_output=True, text=True, timeout=600)
    if gone.returncode != 0:
        raise RuntimeError(f"clipsearch delete exited with {gone.returncode}:\n{gone.stderr[-2000:]}")
    return report, Timed(report["indexed"], report["seconds"], cpu)


def median(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(float(statistics.median(present)), 3) if present else None

"""What an index run will do, counted first (files; videos by duration), and its progress against that: done, ETA."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import av

from ..uris import PathLike, display, path_to_uri
from .media import Found, MediaKind, Problem, discover
from .reports import ProgressEvent
from .shard import Shard, select

# Per-file work units: an image is one; a video is one per sampled frame (its duration times fps).


@dataclass
class Plan:
    """What a run over some paths will look at: files, and the work they make in units (see above)."""

    images: int = 0
    videos: int = 0
    video_seconds: float = 0.0
    units: int = 0
    weights: dict[str, int] = field(default_factory=dict)  # a file's label -> its units

    @property
    def files(self) -> int:
        return self.images + self.videos

    def describe(self) -> str:
        parts = [f"{self.images} image{'s' if self.images != 1 else ''}"]
        if self.videos:
            minutes = self.video_seconds / 60
            parts.append(f"{self.videos} video{'s' if self.videos != 1 else ''} ({minutes:.1f} min)")
        return " and ".join(parts)


def video_seconds(path: PathLike) -> float:
    """The video's duration from its container (no decoding); 0 when it does not say or cannot be opened."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if container.duration:
                return float(container.duration) / 1_000_000
            stream = container.streams.video[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
    except (av.FFmpegError, OSError, IndexError, ValueError):
        pass
    return 0.0


def plan(paths: Sequence[PathLike], *, recursive: bool = True, fps: float = 1.0, shard: Shard | None = None) -> Plan:
    """Walks the paths as an index run does (the same order, shard and skipped entries), opening only videos'
    headers for their duration."""
    result = Plan()
    for found in select(discover(paths, recursive), shard):
        if isinstance(found, Problem):
            continue
        _add(result, found, fps)
    return result


def _add(result: Plan, found: Found, fps: float) -> None:
    label = display(path_to_uri(found.path))  # the label an index run gives the file in its events
    if found.kind is MediaKind.VIDEO:
        seconds = video_seconds(found.path)
        weight = max(1, math.ceil(seconds * fps))
        result.videos += 1
        result.video_seconds += seconds
    else:
        weight = 1
        result.images += 1
    result.weights[label] = weight
    result.units += weight


class Meter:
    """Progress of a run against its plan, fed with the run's ProgressEvents (thread-safe).

    Units done are the images and frames written, found known, or skipped as stills; a failed file counts
    its plan weight less what it already did. The ETA is the time left at the rate so far.
    """

    def __init__(self, planned: Plan) -> None:
        self.plan = planned
        self.files_done = 0
        self.units_done = 0
        self.indexed = 0
        self.known = 0
        self.failed = 0
        self.pruned = 0
        self.current = ""
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._file_units = 0  # units seen since the current file started

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            kind, count = event.kind, event.count
            if kind == "file":
                self.files_done += 1 if self.current else 0
                self.current = event.path
                self._file_units = 0
            elif kind in ("indexed", "known", "source_added", "still"):
                self.units_done += count
                self._file_units += count
                if kind == "indexed":
                    self.indexed += count
                elif kind in ("known", "source_added"):
                    self.known += count
            elif kind == "failed":
                self.failed += 1
                weight = self.plan.weights.get(event.path, 1)
                self.units_done += max(0, weight - self._file_units) if event.path == self.current else 1
            elif kind == "pruned":
                self.pruned += count

    def finish(self) -> None:
        with self._lock:
            if self.current:
                self.files_done += 1
                self.current = ""
            self.units_done = max(self.units_done, self.plan.units)

    @property
    def total(self) -> int:
        return max(self.plan.units, self.units_done)

    @property
    def fraction(self) -> float:
        return 1.0 if self.total == 0 else min(1.0, self.units_done / self.total)

    def eta_seconds(self) -> float | None:
        """Seconds left at the rate so far; None until there is a rate."""
        elapsed = time.monotonic() - self._started
        if self.units_done <= 0 or elapsed < 1.0:
            return None
        rate = self.units_done / elapsed
        return max(0.0, (self.total - self.units_done) / rate)

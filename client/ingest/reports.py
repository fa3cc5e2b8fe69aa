"""What an index run reports: its counts and failures, and the progress events sent while it runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Failure:
    """A file (or video frame) that could not be indexed, and why."""

    path: str
    reason: str


@dataclass
class IndexReport:
    """What an index run did."""

    images: int = 0
    frames: int = 0
    videos: int = 0
    # Sampled video frames not embedded because they looked like the frame kept before them.
    still_frames: int = 0
    known: int = 0
    sources_added: int = 0
    failed: list[Failure] = field(default_factory=list)
    pruned_sources: int = 0
    pruned_items: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time (all its threads) over `seconds`
    # What is said: cues read from the videos' subtitle tracks (embedded, or files beside them) and stored.
    subtitle_lines: int = 0
    subtitle_tracks: int = 0
    # One line per subtitle problem (an unreadable file, an empty track): the video's frames are indexed all
    # the same, so these are not failures.
    subtitle_problems: list[str] = field(default_factory=list)
    subtitle_seconds: float = 0.0  # spent reading and storing subtitles

    @property
    def indexed(self) -> int:
        return self.images + self.frames

    def to_json(self) -> dict[str, object]:
        return {
            "indexed": self.indexed,
            "images": self.images,
            "frames": self.frames,
            "videos": self.videos,
            "skipped_still_frames": self.still_frames,
            "skipped_known": self.known,
            "sources_added": self.sources_added,
            "failed": [{"path": f.path, "error": f.reason} for f in self.failed],
            "pruned_sources": self.pruned_sources,
            "pruned_items": self.pruned_items,
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "subtitle_lines": self.subtitle_lines,
            "subtitle_tracks": self.subtitle_tracks,
            "subtitle_problems": list(self.subtitle_problems),
            "subtitle_seconds": round(self.subtitle_seconds, 3),
        }


@dataclass(frozen=True)
class ProgressEvent:
    """kind: "file" (started a file), "indexed", "known", "source_added", "still" (a video frame skipped as
    like the one before), "failed", "pruned", "subtitles" (message: a subtitle problem, or empty when lines
    were read), or "note" (a line to show, e.g. the collection chosen)."""

    kind: str
    count: int = 1
    path: str = ""
    message: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


class Tally:
    """Thread-safe counters of the report, each change also sent to the progress callback."""

    def __init__(self, report: IndexReport, callback: ProgressCallback | None) -> None:
        self.report = report
        self._callback = callback
        self._lock = threading.Lock()

    def _emit(self, event: ProgressEvent) -> None:
        if self._callback is not None:
            self._callback(event)

    def file(self, label: str) -> None:
        self._emit(ProgressEvent("file", 0, label))

    def indexed(self, images: int, frames: int) -> None:
        with self._lock:
            self.report.images += images
            self.report.frames += frames
        self._emit(ProgressEvent("indexed", images + frames))

    def known(self, count: int = 1) -> None:
        if count:
            with self._lock:
                self.report.known += count
            self._emit(ProgressEvent("known", count))

    def sources_added(self, count: int) -> None:
        if count:
            with self._lock:
                self.report.sources_added += count
            self._emit(ProgressEvent("source_added", count))

    def failed(self, label: str, reason: str) -> None:
        with self._lock:
            self.report.failed.append(Failure(label, reason))
        self._emit(ProgressEvent("failed", 1, label, reason))

    def pruned(self, sources: int, items: int) -> None:
        """One Delete call of a prune: `sources` newly removed sources, `items` items deleted."""
        self._emit(ProgressEvent("pruned", sources))
        with self._lock:
            self.report.pruned_items += items

    def pruned_sources(self, count: int) -> None:
        with self._lock:
            self.report.pruned_sources += count

    def still(self) -> None:
        with self._lock:
            self.report.still_frames += 1
        self._emit(ProgressEvent("still"))

    def subtitles(self, lines: int, tracks: int, problems: list[str], seconds: float) -> None:
        with self._lock:
            self.report.subtitle_lines += lines
            self.report.subtitle_tracks += tracks
            self.report.subtitle_problems += problems
            self.report.subtitle_seconds += seconds
        for problem in problems:
            self._emit(ProgressEvent("subtitles", 0, message=problem))

    def video(self) -> None:
        with self._lock:
            self.report.videos += 1

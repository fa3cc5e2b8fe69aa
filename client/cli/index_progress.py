"""`clipsearch index` on a terminal: count first, then a bar with total, percentage and ETA; Ctrl-C says what was done."""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from client.ingest.progress import Meter, Plan
from client.ingest.reports import ProgressEvent


class IndexBar:
    """The progress callback of an index run: a live bar on a terminal; failures and notes always on stderr."""

    def __init__(self, err: TextIO, live: bool, planned: Plan) -> None:
        self._err = err
        self.meter = Meter(planned)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._current = ""
        if live:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                TaskProgressColumn(),
                TextColumn("{task.fields[files]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[current]}", style="dim"),
                console=Console(file=err),
                transient=True,
            )

    def __enter__(self) -> IndexBar:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(
                "indexing", total=max(1, self.meter.total), files=self._files(), current=""
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _files(self) -> str:
        # Files are read well ahead of their embedding: the bar's share is the work done, not the files read.
        files = self.meter.plan.files
        return f"of {files} file{'s' if files != 1 else ''}"

    def _say(self, line: str, style: str) -> None:
        if self._progress is not None:
            self._progress.console.print(Text(line, style=style))
        else:
            print(line, file=self._err, flush=True)

    def __call__(self, event: ProgressEvent) -> None:
        self.meter(event)
        if event.kind == "failed":
            self._say(f"skipped {event.path}: {event.message}", "yellow")
        elif event.kind == "subtitles" and event.message:
            self._say(event.message, "yellow")  # names the video and the subtitle file or track
        elif event.kind == "note":
            self._say(event.message, "cyan")
        if self._progress is None or self._task is None:
            return
        if event.kind == "file":
            current = event.path.rsplit("/", 1)[-1]
            self._current = current if len(current) <= 32 else current[:31] + "…"
        self._progress.update(
            self._task,
            completed=self.meter.units_done,
            total=max(1, self.meter.total),
            files=self._files(),
            current=self._current,
        )

    def interrupted(self) -> str:
        """What was done when the run was interrupted, and how to resume."""
        m = self.meter
        return (
            f"interrupted after {min(m.files_done, m.plan.files)} of {m.plan.files} files "
            f"({m.fraction:.0%} of the work): {m.indexed} items indexed, {m.known} already indexed, "
            f"{m.failed} failed; run the same command again to resume (what is indexed is skipped)"
        )

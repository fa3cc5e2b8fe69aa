"""How the CLI prints results: rich tables for people, one JSON document with --json."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from client.ingest.reports import IndexReport, ProgressEvent
from client.results import DeleteResult, Hit, LabelScore, Stats


def console(stream: TextIO | None = None) -> Console:
    """A console that is as wide as the terminal, or wide enough not to fold lines in a pipe or file."""
    stream = stream or sys.stdout
    tty = stream.isatty()
    # Without a terminal rich assumes 80 columns; COLUMNS still wins when set.
    width = None if tty or os.environ.get("COLUMNS") else 240
    return Console(file=stream, width=width, highlight=False, soft_wrap=not tty, force_terminal=tty)


def print_json(doc: Any, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    stream.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    stream.flush()


def hits_table(hits: Sequence[Hit]) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("source", overflow="fold")
    table.add_column("time", justify="right")
    table.add_column("id", no_wrap=True)
    said = any(hit.said_lines for hit in hits)
    if said:
        table.add_column("said", overflow="fold")
    for hit in hits:
        source = hit.source or "-"
        if len(hit.sources) > 1:
            source += f" (+{len(hit.sources) - 1} more)"
        if hit.duplicates:
            copies = [path for copy in hit.duplicates for path in (copy.paths or (copy.id,))]
            source += f"\n+ {len(hit.duplicates)} near-duplicate{'s' if len(hit.duplicates) != 1 else ''}: "
            source += ", ".join(copies)
        time = hit.span
        if time != hit.time:
            time += f" ({hit.frames} frame{'s' if hit.frames != 1 else ''}, best {hit.time})"
        if hit.said_lines and hit.frames <= 1:
            time = hit.span  # a said moment: the span of its lines
        row: list[str | Text] = [str(hit.rank), f"{hit.score:.4f}", Text(source), time, hit.id]
        table.add_row(*row, *([Text(hit.text)] if said else []))
    return table


def labels_table(scores: Sequence[LabelScore]) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("label")
    table.add_column("probability", justify="right")
    table.add_column("cosine", justify="right")
    for score in scores:
        table.add_row(Text(score.label), f"{score.probability:.4f}", f"{score.cosine:.4f}")
    return table


def stats_table(stats: Stats) -> Table:
    table = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_row("items", str(stats.items))
    for name, count in stats.collections.items():
        table.add_row(Text(f"  {name}"), str(count))
    table.add_row(
        "index", f"{stats.index_name} ({stats.algorithm}, {stats.dimension} dimensions, {stats.distance_metric})"
    )
    if stats.indexing:
        table.add_row("indexing", stats.loading_message or f"{stats.percent_indexed:.0f}% done")
    table.add_row("redis memory", _bytes(stats.redis_memory_bytes))
    table.add_row("vector index memory", _bytes(stats.vector_index_memory_bytes))
    table.add_row("redis version", stats.redis_version)
    return table


def collections_table(collections: dict[str, int]) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("collection")
    table.add_column("items", justify="right")
    for name, count in collections.items():
        table.add_row(Text(name), str(count))
    return table


def report_summary(report: IndexReport) -> str:
    parts = [
        f"indexed {report.indexed} ({report.images} images, {report.frames} video frames{_videos(report.videos)})",
        f"skipped {report.known} already indexed",
    ]
    if report.still_frames:
        parts.append(f"{report.still_frames} video frames like the one before not embedded")
    if report.sources_added:
        parts.append(f"added a path to {report.sources_added} indexed items")
    parts.append(f"failed {len(report.failed)}")
    if report.pruned_sources or report.pruned_items:
        parts.append(f"pruned {report.pruned_sources} missing files ({report.pruned_items} items deleted)")
    if report.subtitle_lines or report.subtitle_tracks:
        tracks = f"{report.subtitle_tracks} track{'s' if report.subtitle_tracks != 1 else ''}"
        parts.append(f"{report.subtitle_lines} subtitle line{'s' if report.subtitle_lines != 1 else ''} from {tracks}")
    if report.subtitle_problems:
        parts.append(f"{len(report.subtitle_problems)} subtitle problems (above)")
    return "; ".join(parts) + f" in {report.seconds:.1f}s"


def _videos(count: int) -> str:
    if not count:
        return ""
    return f" from {count} video{'s' if count != 1 else ''}"


def delete_summary(result: DeleteResult) -> str:
    kept = f"; {result.updated} kept for their other sources" if result.updated else ""
    return f"deleted {result.deleted} items{kept}"


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


class _RateColumn(ProgressColumn):
    """Items per second over the whole run."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:.1f} items/s")


class IndexProgress:
    """Live progress of an index run on a terminal; failures are always reported on stderr."""

    def __init__(self, err: TextIO, live: bool) -> None:
        self._err = err
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._counts = {"indexed": 0, "known": 0, "failed": 0}
        if live:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(bar_width=16),
                _RateColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[current]}", style="dim"),
                console=Console(file=err),
                transient=True,
            )

    def __enter__(self) -> IndexProgress:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(self._describe(), total=None, current="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _describe(self) -> str:
        c = self._counts
        return f"indexed {c['indexed']}, known {c['known']}, failed {c['failed']}"

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind in ("failed", "subtitles") and event.message:
            # A subtitle problem is the message alone: it names the video and the file or track.
            line = f"skipped {event.path}: {event.message}" if event.kind == "failed" else event.message
            if self._progress is not None:
                self._progress.console.print(Text(line, style="yellow"))
            else:
                print(line, file=self._err, flush=True)
        if event.kind in self._counts:
            self._counts[event.kind] += event.count
        if event.kind == "source_added":
            self._counts["known"] += event.count
        if self._progress is None or self._task is None:
            return
        if event.kind == "file":
            name = event.path.rsplit("/", 1)[-1]
            self._progress.update(self._task, current=name if len(name) <= 32 else name[:31] + "…")
            return
        advance = event.count if event.kind in ("indexed", "known", "source_added") else 0
        self._progress.update(self._task, advance=advance, description=self._describe())

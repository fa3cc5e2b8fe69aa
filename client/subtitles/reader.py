"""Reading every subtitle of a video: embedded text tracks, then the files beside it."""

from __future__ import annotations

from pathlib import Path

from .embedded import read_embedded
from .files import SubtitleError, decode, parse, read_bytes
from .model import SubtitleRead, Track
from .sidecars import Sidecar, find_sidecars, sidecar_signature

__all__ = ["read_subtitles", "sidecar_signature"]


def read_subtitles(video: Path, label: str, sidecars: list[Sidecar] | None = None) -> SubtitleRead:
    """The subtitle tracks of a video; each problem (an unreadable file, an empty track) is one line in
    `problems`, and never stops the video's frames from being indexed."""
    read = SubtitleRead()
    read_embedded(video, label, read)
    for sidecar in find_sidecars(video) if sidecars is None else sidecars:
        name = sidecar.path.name
        try:
            text, _ = decode(read_bytes(sidecar.path), sidecar.language)
            cues, dropped = parse(text, sidecar.path.suffix)
        except SubtitleError as e:
            read.problems.append(f"{label}: subtitle file {name} {e}")
            continue
        if dropped:
            read.problems.append(f"{label}: subtitle file {name}: {dropped} lines end before they start: skipped")
        if not cues:
            read.problems.append(f"{label}: subtitle file {name} holds no subtitle lines")
            continue
        read.tracks.append(Track(name, sidecar.language, tuple(cues)))
    return read

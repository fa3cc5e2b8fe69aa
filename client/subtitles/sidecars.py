"""Subtitle files beside a video: `film.srt`, `film.zh.srt`, `film.chs.ass`, `film.en.vtt` for `film.mkv`."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

SUBTITLE_EXTENSIONS = (".srt", ".ass", ".ssa", ".vtt")


@dataclass(frozen=True)
class Sidecar:
    """A subtitle file beside a video, with the language part of its name ("" where there is none)."""

    path: Path
    language: str
    size: int
    mtime_ns: int


def find_sidecars(video: Path) -> list[Sidecar]:
    """The subtitle files in the video's folder named after it: the video's stem, then optionally a language
    part (and other parts, as in `film.en.forced.srt`), then a subtitle extension; sorted by name."""
    stem = video.stem
    found: list[Sidecar] = []
    try:
        entries = list(os.scandir(video.parent))
    except OSError:
        return []
    for entry in entries:
        name = entry.name
        suffix = os.path.splitext(name)[1].lower()
        if suffix not in SUBTITLE_EXTENSIONS or not name.startswith(stem):
            continue
        middle = name[len(stem) : len(name) - len(suffix)]
        if middle and not middle.startswith("."):
            continue  # `film2.srt` belongs to `film2`, not to `film`
        try:
            if not entry.is_file():
                continue
            stat = entry.stat()
        except OSError:
            continue
        parts = [p for p in middle.split(".") if p]
        found.append(Sidecar(Path(entry.path), parts[0].lower() if parts else "", stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda s: s.path.name)


def sidecar_signature(sidecars: list[Sidecar]) -> str:
    """What the cues of a video were read from besides the video itself: the subtitle files' names, sizes
    and modification times. A changed, added or removed file changes it, and the cues are read again."""
    digest = hashlib.sha256()
    for s in sidecars:
        digest.update(f"{s.path.name}\0{s.size}\0{s.mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return "files:" + digest.hexdigest()[:32]

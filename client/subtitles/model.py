"""The values subtitle reading produces: cues, tracks, and what was read with its problems."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cue:
    """A line said from start to end, in seconds from the start of the video, markup removed."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Track:
    """A subtitle track: embedded in the video ("embedded #2 (subrip)") or a file beside it ("film.zh.srt")."""

    name: str
    language: str
    cues: tuple[Cue, ...]


@dataclass
class SubtitleRead:
    """The tracks read for one video, and one line per problem (the video is indexed all the same)."""

    tracks: list[Track] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # tracks skipped for a reason that is not a fault

    @property
    def lines(self) -> int:
        return sum(len(t.cues) for t in self.tracks)

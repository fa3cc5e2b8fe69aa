"""Subtitles of a video: its embedded text tracks and the subtitle files beside it, as cues to store."""

from .model import Cue, SubtitleRead, Track
from .reader import read_subtitles, sidecar_signature
from .sidecars import Sidecar, find_sidecars

__all__ = ["Cue", "Sidecar", "SubtitleRead", "Track", "find_sidecars", "read_subtitles", "sidecar_signature"]

"""Keeping a video's stored cues in step with its subtitles during an index run."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from clipsearch.v1 import search_pb2

from ..errors import ServiceError
from .model import SubtitleRead
from .reader import read_subtitles
from .sidecars import find_sidecars, sidecar_signature


class CueCalls(Protocol):
    def cue_write(self, request: search_pb2.CueWriteRequest) -> search_pb2.CueWriteResponse: ...

    def cue_list(self, request: search_pb2.CueListRequest) -> search_pb2.CueListResponse: ...


class CueSync:
    """Reads a video's subtitles and stores them as its cues, unless what is stored was read from the same
    files (the video itself is the same: it is known by its content)."""

    def __init__(self, calls: CueCalls, collection: str) -> None:
        self._calls = calls
        self._collection = collection

    def video(self, path: Path, content_hash: str, label: str, *, known: bool) -> SubtitleRead | None:
        """What was read and stored, or None when the stored cues are current. `known`: the video's frames
        were stored before, so its cues may be too. A failed write is one more problem of the read."""
        sidecars = find_sidecars(path)
        signature = sidecar_signature(sidecars)
        if known:
            try:
                stored = self._calls.cue_list(
                    search_pb2.CueListRequest(
                        collection=self._collection, content_hash=content_hash, signature_only=True
                    )
                )
            except ServiceError as e:
                return SubtitleRead(problems=[f"{label}: its stored subtitles could not be looked up: {e}"])
            if stored.found and stored.signature == signature:
                return None
        read = read_subtitles(path, label, sidecars)
        request = search_pb2.CueWriteRequest(
            collection=self._collection,
            content_hash=content_hash,
            signature=signature,
            tracks=[
                search_pb2.CueTrack(
                    name=t.name[:200],
                    language=t.language[:32],
                    cues=[search_pb2.Cue(start_seconds=c.start, end_seconds=c.end, text=c.text[:480]) for c in t.cues],
                )
                for t in read.tracks
            ],
        )
        try:
            self._calls.cue_write(request)
        except ServiceError as e:
            read.problems.append(f"{label}: its subtitles could not be stored: {e}")
            read.tracks = []
        return read

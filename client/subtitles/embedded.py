"""Text subtitle tracks embedded in a video file, read through PyAV (FFmpeg's demuxers and decoders)."""

from __future__ import annotations

from pathlib import Path

import av

from .files import events_to_cues
from .model import SubtitleRead, Track

# FFmpeg decodes these into ASS dialogue; mov_text is MP4's, "text" raw lines.
TEXT_CODECS = frozenset({"subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text", "microdvd", "subviewer"})
# These hold pictures of the lines, not text (Blu-ray PGS, DVD VobSub, DVB): reading them would need OCR.
BITMAP_CODECS = frozenset({"hdmv_pgs_subtitle", "dvd_subtitle", "dvb_subtitle", "xsub", "dvb_teletext"})
MAX_TRACK_CUES = 20_000


def read_embedded(path: Path, label: str, into: SubtitleRead) -> None:
    """Adds the video's text subtitle tracks to `into`; bitmap tracks are noted, failures reported."""
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError):
        return  # the frames' decoder reports a file FFmpeg cannot open
    with container:
        streams = [s for s in container.streams if s.type == "subtitle"]
        text_streams = []
        for s in streams:
            codec = s.codec_context.name if s.codec_context else "unknown"
            name = f"embedded #{s.index} ({codec})"
            if codec in BITMAP_CODECS:
                into.notes.append(f"{label}: subtitle track {name} holds pictures, not text: skipped")
            elif codec not in TEXT_CODECS:
                into.notes.append(f"{label}: subtitle track {name} is in a format not read: skipped")
            else:
                text_streams.append(s)
        if not text_streams:
            return
        events: dict[int, list[tuple[float, float, str, bool]]] = {s.index: [] for s in text_streams}
        try:
            for packet in container.demux(text_streams):
                if packet.size == 0 or packet.pts is None or packet.time_base is None:
                    continue
                start = float(packet.pts * packet.time_base) * 1000
                duration = float((packet.duration or 0) * packet.time_base) * 1000
                for sub in packet.decode():
                    text = bytes(getattr(sub, "dialogue", b"") or getattr(sub, "text", b"") or b"")
                    if text and len(events[packet.stream.index]) < MAX_TRACK_CUES:
                        end = start + (duration or 2000.0)  # a line without a duration stays up 2 s
                        events[packet.stream.index].append((start, end, text.decode("utf-8", "replace"), False))
        except (av.FFmpegError, ValueError) as e:
            into.problems.append(f"{label}: embedded subtitles could not be read to the end: {e}")
        for s in text_streams:
            cues, dropped = events_to_cues(events[s.index])
            name = f"embedded #{s.index} ({s.codec_context.name})"
            language = str(s.metadata.get("language", "")).lower()
            if language in ("und", "unknown"):
                language = ""
            if dropped:
                into.problems.append(f"{label}: subtitle track {name}: {dropped} lines end before they start: skipped")
            if not cues:
                into.problems.append(f"{label}: subtitle track {name} is empty")
                continue
            into.tracks.append(Track(name, language, tuple(cues)))

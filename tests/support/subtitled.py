"""Small videos with subtitle tracks, muxed with PyAV at test time (no ffmpeg binary needed)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import av.subtitles.stream
import numpy as np

# FFmpeg's subtitle encoders want an ASS header even to pass packets through.
ASS_HEADER = b"""[Script Info]
ScriptType: v4.00+
PlayResX: 384
PlayResY: 288

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, \
Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, \
MarginV, Encoding
Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
"""

Line = tuple[float, float, str]


def _payload(codec: str, text: str) -> bytes:
    data = text.encode()
    if codec == "mov_text":
        return struct.pack(">H", len(data)) + data
    if codec == "ass":
        return b"0,0,Default,,0,0,0,," + data
    return data


def write_video(
    path: Path,
    *,
    seconds: float = 6.0,
    fps: int = 5,
    size: tuple[int, int] = (64, 48),
    subtitles: Sequence[tuple[str, str, Sequence[Line]]] = (),
    colors: Sequence[tuple[int, int, int]] = ((200, 40, 40), (40, 200, 40), (40, 40, 200)),
    codec: str = "mpeg4",
) -> Path:
    """A video of coloured frames (the colour changes every 2 s) with subtitle tracks given as
    (codec, language, lines): "subrip", "ass" or "webvtt" in .mkv, "mov_text" in .mp4. With codec="libx264"
    and an .mp4, a browser plays it."""
    width, height = size
    options = {"movflags": "+faststart"} if path.suffix == ".mp4" else {}
    with av.open(str(path), "w", options=options) as out:
        video = out.add_stream(codec, rate=fps)
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            video.options = {"preset": "veryfast", "g": str(fps)}
        tracks: list[tuple[av.subtitles.stream.SubtitleStream, str, Sequence[Line]]] = []
        time_base = Fraction(1, 1000)
        for codec, language, lines in subtitles:
            stream = out.add_stream(codec)
            assert isinstance(stream, av.subtitles.stream.SubtitleStream)
            stream.codec_context.subtitle_header = ASS_HEADER
            stream.time_base = time_base
            if language:
                stream.metadata["language"] = language
            tracks.append((stream, codec, lines))
        for i in range(int(seconds * fps)):
            color = colors[int(i / fps / 2) % len(colors)]
            rgb = np.empty((height, width, 3), np.uint8)
            rgb[:] = color
            rgb[: height // 4, : width // 4] = (i * 7) % 256  # a little motion
            for packet in video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        for stream, codec, lines in tracks:
            for start, end, text in lines:
                packet = av.Packet(_payload(codec, text))
                packet.stream = stream
                packet.time_base = time_base
                packet.pts = packet.dts = round(start * 1000)
                packet.duration = round((end - start) * 1000)
                out.mux(packet)
    return path


def srt(lines: Sequence[Line]) -> str:
    def stamp(t: float) -> str:
        ms = round(t * 1000)
        return f"{ms // 3_600_000:02}:{ms // 60_000 % 60:02}:{ms // 1000 % 60:02},{ms % 1000:03}"

    return "".join(f"{i}\n{stamp(a)} --> {stamp(b)}\n{text}\n\n" for i, (a, b, text) in enumerate(lines, 1))

"""Thumbnails made on the server (Pillow; PyAV for a video frame at its time), and what a browser can play."""

from __future__ import annotations

import contextlib
import io
import os
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import av
from PIL import Image, ImageOps

from client.ingest.media import REDUCING_GAP, MediaError, open_video
from clipsearch import imageformats

imageformats.register()  # HEIC/HEIF photos open like any other

THUMB_QUALITY = 82
# The largest image decoded for a thumbnail, as the embedder's default limit: larger ones were refused at indexing.
MAX_PIXELS = 1 << 28

_IMAGE_MIME = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".jfif": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".dib": "image/bmp",
    ".gif": "image/gif",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".ico": "image/x-icon",
    ".avif": "image/avif",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".jp2": "image/jp2",
    ".j2k": "image/jp2",
    ".tga": "image/x-tga",
    ".ppm": "image/x-portable-pixmap",
    ".pgm": "image/x-portable-graymap",
    ".pbm": "image/x-portable-bitmap",
    ".pnm": "image/x-portable-anymap",
}
_VIDEO_MIME = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".ogv": "video/ogg",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
    ".wmv": "video/x-ms-wmv",
    ".flv": "video/x-flv",
    ".mpg": "video/mpeg",
    ".mpeg": "video/mpeg",
    ".ts": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".mts": "video/mp2t",
    ".3gp": "video/3gpp",
    ".vob": "video/dvd",
}
# Containers and codecs current browsers play in a <video> (Chromium also plays these codecs in Matroska; the
# page tries every video anyway and shows the frame only when the browser refuses it).
_PLAYABLE_CONTAINERS = {".mp4", ".m4v", ".mov", ".webm", ".ogv", ".mkv"}
# Image types browsers show in an <img>; the page shows a preview of others (HEIC, TIFF, ...).
_SHOWN_IMAGES = {"image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif", "image/x-icon", "image/avif"}
_PLAYABLE_CODECS = {"h264", "vp8", "vp9", "av1", "theora"}


def image_mime(name: str) -> str:
    return _IMAGE_MIME.get(os.path.splitext(name)[1].lower(), "application/octet-stream")


def image_shown(mime: str) -> bool:
    """Whether browsers show an image of this type."""
    return mime in _SHOWN_IMAGES


def video_mime(name: str) -> str:
    return _VIDEO_MIME.get(os.path.splitext(name)[1].lower(), "application/octet-stream")


@dataclass(frozen=True)
class VideoInfo:
    """How a video file is served: its MIME type, and whether browsers play it."""

    mime: str
    playable: bool
    codec: str = ""


def probe_video(stream: BinaryIO | str, name: str) -> VideoInfo:
    """The video's codec, read from its header (nothing decoded); an unreadable file is not playable."""
    suffix = os.path.splitext(name)[1].lower()
    mime = video_mime(name)
    try:
        with av.open(stream, mode="r") as container:
            codec = container.streams.video[0].codec_context.name if container.streams.video else ""
    except Exception:  # noqa: BLE001 - PyAV raises many types for corrupt or unknown files
        return VideoInfo(mime, False)
    playable = suffix in _PLAYABLE_CONTAINERS and codec in _PLAYABLE_CODECS
    if playable and suffix == ".mov":
        mime = "video/mp4"  # QuickTime files with these codecs are MP4 to browsers, which refuse video/quicktime
    return VideoInfo(mime, playable, codec)


class VideoInfoCache:
    """VideoInfo by content hash: a video's codec is a property of its bytes, probed once per process."""

    def __init__(self) -> None:
        self._known: dict[str, VideoInfo] = {}
        self._lock = threading.Lock()

    def get(self, content_hash: str) -> VideoInfo | None:
        with self._lock:
            return self._known.get(content_hash)

    def put(self, content_hash: str, info: VideoInfo) -> None:
        with self._lock:
            if len(self._known) > 100_000:
                self._known.clear()
            self._known[content_hash] = info


def _encode(image: Image.Image, max_side: int) -> bytes:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    elif image.mode != "RGB":
        image = image.convert("RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC, reducing_gap=REDUCING_GAP)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def image_thumbnail(stream: BinaryIO, max_side: int) -> bytes:
    """A JPEG whose longer side is at most max_side, upright as its EXIF orientation says."""
    try:
        with Image.open(stream) as im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise MediaError(f"image is {width}x{height} pixels, too large to show")
            if im.format == "JPEG":
                im.draft("RGB", (max_side, max_side))  # libjpeg decodes at a reduced scale: much less work
            upright = ImageOps.exif_transpose(im)
            return _encode(upright, max_side)
    except MediaError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for corrupt files
        raise MediaError(f"cannot decode image: {exc}") from None


def frame_thumbnail(stream: BinaryIO, timestamp: float, max_side: int) -> bytes:
    """A JPEG of the video's frame at `timestamp` seconds (the first at or after it, as indexing sampled)."""
    try:
        with open_video(stream) as opened:
            container, video, time_base, start = opened.container, opened.stream, opened.time_base, opened.start
            target = start + int(Fraction(timestamp).limit_denominator(1_000_000) / time_base)
            if timestamp > 0:
                # Where the container cannot seek, the frames are decoded from the start instead.
                with contextlib.suppress(av.FFmpegError):
                    container.seek(target, stream=video, backward=True, any_frame=False)
            chosen: av.VideoFrame | None = None
            # Half a microsecond of slack: indexing stored the time as a float.
            threshold = Fraction(timestamp) - Fraction(1, 2_000_000)
            for frame in container.decode(video):
                if frame.pts is None:
                    continue
                chosen = frame
                if (frame.pts - start) * time_base >= threshold:
                    break
            if chosen is None:
                raise MediaError("no frame at this time")
            return _encode(_upright(chosen, max_side), max_side)
    except MediaError:
        raise
    except Exception as exc:  # noqa: BLE001 - av.FFmpegError and friends for corrupt streams
        raise MediaError(f"cannot decode video: {exc}") from None


def _upright(frame: av.VideoFrame, max_side: int) -> Image.Image:
    """The frame as RGB, scaled by swscale to fit max_side, turned as the stream's rotation says."""
    scale = min(1.0, max_side / max(frame.width, frame.height))
    width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    image: Image.Image = frame.to_image(  # type: ignore[no-untyped-call]
        width=width, height=height, interpolation="BICUBIC"
    )
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    # rotation is counterclockwise, as PIL's rotate turns for positive angles (the same as indexing).
    return image.rotate(90 * quarter_turns, expand=True) if quarter_turns else image

"""Local media: finding image and video files, reading them safely, shrinking images, sampling videos."""

from __future__ import annotations

import enum
import io
import math
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from PIL import Image

from clipsearch import imageformats
from clipsearch.orientation import UPRIGHT
from clipsearch.v1 import embedder_pb2

from ..uris import PathLike
from .gops import trimmed_packets

imageformats.register()  # HEIC/HEIF photos open like any other

IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".webp",
        ".bmp",
        ".dib",
        ".gif",
        ".tif",
        ".tiff",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".tga",
        ".ico",
        ".heic",
        ".heif",
        ".avif",
        ".jp2",
        ".j2k",
    }
)
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".wmv",
        ".flv",
        ".mpg",
        ".mpeg",
        ".m2ts",
        ".mts",
        ".ts",
        ".3gp",
        ".ogv",
        ".vob",
    }
)


class MediaError(Exception):
    """A file cannot be used: unreadable, not a regular file, undecodable or too large."""


class MediaKind(enum.Enum):
    IMAGE = "image"
    VIDEO = "video"


@dataclass(frozen=True)
class Found:
    """A file to index."""

    path: Path
    kind: MediaKind


@dataclass(frozen=True)
class Problem:
    """A path that was named or found but cannot be indexed, and why."""

    path: Path
    reason: str


def media_kind(path: PathLike) -> MediaKind | None:
    suffix = os.path.splitext(os.fsdecode(path))[1].lower()
    if suffix in IMAGE_EXTENSIONS:
        return MediaKind.IMAGE
    if suffix in VIDEO_EXTENSIONS:
        return MediaKind.VIDEO
    return None


def discover(paths: Iterable[PathLike], recursive: bool = True) -> Iterator[Found | Problem]:
    """Images and videos under `paths`, in a stable order, with a Problem for each unusable path.

    Never opens a file (so a FIFO cannot block). Directories are walked in sorted order; inside them,
    hidden entries and files of other types are passed over silently, and symlinked directories are
    followed once each (no loops). A path named explicitly with an unknown extension is a Problem.
    """
    visited: set[tuple[int, int]] = set()
    for given in paths:
        path = Path(os.fsdecode(given))
        try:
            st = path.stat()
        except FileNotFoundError:
            reason = "dangling symbolic link" if path.is_symlink() else "no such file or directory"
            yield Problem(path, reason)
            continue
        except OSError as exc:
            yield Problem(path, _os_reason(exc))
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(path, st, recursive, visited)
        elif not stat.S_ISREG(st.st_mode):
            yield Problem(path, "not a regular file")
        elif (kind := media_kind(path)) is None:
            yield Problem(path, "not an image or video (unknown file extension)")
        else:
            yield Found(path, kind)


def _walk(
    directory: Path, st: os.stat_result, recursive: bool, visited: set[tuple[int, int]]
) -> Iterator[Found | Problem]:
    key = (st.st_dev, st.st_ino)
    if key in visited:
        return
    visited.add(key)
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
    except OSError as exc:
        yield Problem(directory, _os_reason(exc))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            entry_st = entry.stat()  # follows symlinks
        except FileNotFoundError:
            if media_kind(path) is not None:
                yield Problem(path, "dangling symbolic link")
            continue
        except OSError as exc:
            yield Problem(path, _os_reason(exc))
            continue
        if stat.S_ISDIR(entry_st.st_mode):
            if recursive:
                yield from _walk(path, entry_st, recursive, visited)
            continue
        kind = media_kind(path)
        if kind is None:
            continue
        if not stat.S_ISREG(entry_st.st_mode):
            yield Problem(path, "not a regular file")
        else:
            yield Found(path, kind)


def _os_reason(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)


def open_regular(path: PathLike) -> io.BufferedReader:
    """Opens a file for reading, refusing anything but a regular file without blocking on a FIFO."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise MediaError(_os_reason(exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MediaError("not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_file(path: PathLike, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most max_bytes."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise MediaError(f"file is {size} bytes, more than the limit of {max_bytes}")
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise MediaError(_os_reason(exc)) from None
    if len(data) > max_bytes:
        raise MediaError(f"file grew past the limit of {max_bytes} bytes while being read")
    if not data:
        raise MediaError("file is empty")
    return data


# Pillow's resize reduces by an integer factor (a box filter) while the image stays at least this many
# times the target size, then resamples bicubically: about 3x less work than bicubic from 1080p.
REDUCING_GAP = 2.0


@dataclass(frozen=True)
class ImageLimits:
    """What the embedder accepts, and when the client shrinks an image itself."""

    image_size: int
    max_image_pixels: int
    # Files up to this size go to the embedder as they are; larger ones are decoded and shrunk here.
    encoded_max_bytes: int = 1 << 20


@dataclass(frozen=True)
class PreparedImage:
    """An image ready for EmbedImages, with its pixel size when known here (else 0: the server says)."""

    image: embedder_pb2.Image
    width: int = 0
    height: int = 0


def shrunk_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) scaled so the shorter side is short_side; never enlarged."""
    shortest = min(width, height)
    if shortest <= short_side:
        return width, height
    scale = short_side / shortest
    w = short_side if width == shortest else max(short_side, round(width * scale))
    h = short_side if height == shortest else max(short_side, round(height * scale))
    return w, h


def prepare_image(data: bytes, limits: ImageLimits) -> PreparedImage:
    """Small files are sent encoded; large ones are decoded, oriented and shrunk here, sent as raw RGB.

    Shrinking takes Pillow's cheap paths: a JPEG is decoded at a reduced DCT scale (draft) that is still
    at least REDUCING_GAP times the target size, and the resize first reduces by an integer factor with a
    box filter while the image stays at least REDUCING_GAP times the target. The embedder's vectors of such
    an image stay within a cosine of 0.999 of those of the full-size image, for the families that crop
    (CLIP) and those that resize to the square (tests/unit/test_client_media.py,
    tests/service/test_client_shrink_families.py).
    """
    if len(data) <= limits.encoded_max_bytes:
        return PreparedImage(embedder_pb2.Image(encoded=data))
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > limits.max_image_pixels:
                raise MediaError(
                    f"image is {width}x{height} pixels, more than the embedder's limit of {limits.max_image_pixels}"
                )
            # The part of the decoded pixels that holds the image: all of them, unless a JPEG is drafted.
            box: tuple[float, float, float, float] | None = None
            if im.format == "JPEG":
                # Lets libjpeg decode at a reduced scale that stays REDUCING_GAP times the target size. Just
                # above the target (1/8 of 806x537 for 64), its blockier pixels moved a SigLIP vector to a
                # cosine of 0.975 of the whole image's: unlike CLIP's crop, a square resize keeps every edge.
                scale = max(1, limits.image_size) * REDUCING_GAP / min(width, height)
                drafted = im.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
                # The reduced scale rounds each side up to whole pixels; box is where the image ends.
                if drafted is not None and drafted[1][2:] != im.size:
                    box = drafted[1]
            orientation = im.getexif().get(0x0112, 1)
            # convert copies the whole decoded image, even when it changes nothing.
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            # Shrunk as stored, from the full size, then turned upright: turning the small image is cheaper.
            w, h = shrunk_size(width, height, limits.image_size)
            if (w, h) != rgb.size or box is not None:
                rgb = rgb.resize((w, h), Image.Resampling.BICUBIC, box=box, reducing_gap=REDUCING_GAP)
            if orientation in UPRIGHT:
                rgb = rgb.transpose(UPRIGHT[orientation])
            raw = embedder_pb2.RawImage(rgb=rgb.tobytes(), width=rgb.width, height=rgb.height)
    except MediaError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for hostile or corrupt files
        raise MediaError(f"cannot decode image: {exc}") from None
    full_w, full_h = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    return PreparedImage(embedder_pb2.Image(raw=raw), full_w, full_h)


class FrameSampler:
    """Picks frames at `fps`: the first frame at or after each multiple of 1/fps seconds.

    Works in exact fractions, so 0.3 s at 10 fps is not lost to rounding. A frame that covers several
    multiples (a gap in the video) is taken once.
    """

    def __init__(self, fps: float | Fraction) -> None:
        rate = Fraction(fps).limit_denominator(1_000_000) if isinstance(fps, float) else Fraction(fps)
        if rate <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = rate
        self._next = 0  # index k of the next multiple k/fps to reach

    def take(self, t: Fraction) -> bool:
        position = t * self.fps
        if t < 0 or position < self._next:
            return False
        self._next = math.floor(position) + 1
        return True

    def last_before(self, end: Fraction) -> Fraction | None:
        """The last multiple of 1/fps before `end` that take() has not passed yet (None: none)."""
        last = math.ceil(end * self.fps) - 1
        return Fraction(last) / self.fps if last >= self._next else None


@dataclass(frozen=True)
class VideoFrame:
    """A sampled frame as raw RGB, shrunk for the embedder, with where it sits in the video."""

    rgb: bytes
    width: int
    height: int
    source_width: int
    source_height: int
    timestamp_seconds: float
    frame_index: int


# Non-reference frames (no other frame is predicted from them: most B-frames) are not decoded when the
# sampling interval spans at least this many frames, so a sample moves to a decoded neighbour by at most a
# small part of the interval. On a film-like x264 encode this skips a sixth to a half of the frames.
NONREF_MIN_FRAMES_PER_SAMPLE = 4


def iter_video_frames(
    source: BinaryIO | PathLike, fps: float, short_side: int, max_pixels: int, *, skip_nonref: bool = True
) -> Iterator[VideoFrame]:
    """Decodes the first video stream in-stream and yields the frames FrameSampler picks.

    Frames are converted with swscale straight to RGB at a size whose shorter side is short_side (never
    enlarged), and turned upright when the stream carries a rotation. With skip_nonref, and samples at
    least NONREF_MIN_FRAMES_PER_SAMPLE frames apart, non-reference frames are not decoded: the first
    decoded frame at or after each multiple of 1/fps is taken, and its timestamp is its own; in H.264,
    the end of a group of pictures after the last frame a sample takes is not decoded either.
    """
    sampler = FrameSampler(fps)
    yield from _decoded_frames(source, short_side, max_pixels, sampler.take, sampler=sampler if skip_nonref else None)


def frames_at(source: PathLike, timestamps: Iterable[float], short_side: int, max_pixels: int) -> Iterator[VideoFrame]:
    """Decodes the frames that start at the given timestamps (as iter_video_frames reported them), in order."""
    remaining = {round(t * 1_000_000) for t in timestamps}

    def take(t: Fraction) -> bool:
        key = round(float(t) * 1_000_000)
        if key not in remaining:
            return False
        remaining.discard(key)
        return True

    if remaining:
        yield from _decoded_frames(source, short_side, max_pixels, take, done=lambda: not remaining)


def skips_nonref(frame_rate: Fraction | None, sampling_fps: Fraction) -> bool:
    """Whether sampling at sampling_fps a stream of frame_rate (None: unknown) leaves its non-reference
    frames undecoded."""
    return frame_rate is not None and frame_rate >= NONREF_MIN_FRAMES_PER_SAMPLE * sampling_fps


@dataclass(frozen=True)
class OpenVideo:
    """The first video stream of an open container, with its time base and first timestamp (in that base)."""

    container: av.container.InputContainer
    stream: av.VideoStream
    time_base: Fraction
    start: int


@contextmanager
def open_video(source: BinaryIO | PathLike) -> Iterator[OpenVideo]:
    """Opens a video with PyAV, its first video stream set to decode on threads, and closes it on leaving.

    MediaError when PyAV cannot open the file, it holds no video stream, or the stream has no time base.
    """
    target = source if hasattr(source, "read") else os.fsdecode(source)
    try:
        container = av.open(target, mode="r")
    except Exception as exc:  # noqa: BLE001 - PyAV and Pillow raise many types for corrupt files
        raise MediaError(f"cannot open video: {exc}") from None
    with container:
        if not container.streams.video:
            raise MediaError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        time_base = stream.time_base
        if time_base is None:
            raise MediaError("video stream has no time base")
        yield OpenVideo(container, stream, time_base, stream.start_time or 0)


def _decoded_frames(
    source: BinaryIO | PathLike,
    short_side: int,
    max_pixels: int,
    take: Callable[[Fraction], bool],
    done: Callable[[], bool] = lambda: False,
    sampler: FrameSampler | None = None,
) -> Iterator[VideoFrame]:
    """The frames of the first video stream whose timestamp (seconds from its start) `take` accepts, converted
    as iter_video_frames describes, until `done`; PyAV's errors become MediaError. With the sampler behind
    `take`, non-reference frames are skipped where skips_nonref allows, and in H.264 the ends of groups of
    pictures that no sample needs are not decoded (client.gops)."""
    with open_video(source) as video:
        container, stream, time_base, start = video.container, video.stream, video.time_base, video.start
        rate = stream.average_rate or stream.guessed_rate
        # Without every frame decoded, a frame's position comes from its timestamp and the frame rate.
        by_time = sampler is not None and rate is not None and skips_nonref(rate, sampler.fps)
        frames: Iterator[av.VideoFrame] = container.decode(stream)
        if by_time and sampler is not None:
            stream.codec_context.skip_frame = "NONREF"
            if stream.codec_context.name == "h264":
                try:
                    packets = trimmed_packets(
                        container, stream, lambda pts: (pts - start) * time_base, sampler.last_before
                    )
                except ValueError:
                    pass  # not length-prefixed H.264: decoded whole
                else:
                    frames = (frame for packet in packets for frame in packet.decode())
        try:
            for index, frame in enumerate(frames):
                if frame.pts is None:
                    continue
                timestamp = (frame.pts - start) * time_base
                if not take(timestamp):
                    continue
                if frame.width * frame.height > max_pixels:
                    raise MediaError(
                        f"video frames are {frame.width}x{frame.height} pixels, more than the limit of {max_pixels}"
                    )
                position = round(timestamp * rate) if by_time and rate is not None else index
                yield _convert(frame, position, float(timestamp), short_side)
                if done():
                    return
        except MediaError:
            raise
        except Exception as exc:  # noqa: BLE001 - av.FFmpegError and friends for corrupt streams
            raise MediaError(f"cannot decode video: {exc}") from None


def _convert(frame: av.VideoFrame, index: int, timestamp: float, short_side: int) -> VideoFrame:
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    w, h = shrunk_size(frame.width, frame.height, short_side)
    array: np.ndarray = frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="BICUBIC")
    source_w, source_h = frame.width, frame.height
    if quarter_turns:
        # rotation is counterclockwise, as np.rot90 turns for positive k.
        array = np.ascontiguousarray(np.rot90(array, quarter_turns))
        if quarter_turns % 2:
            source_w, source_h = source_h, source_w
    height, width = array.shape[:2]
    return VideoFrame(array.tobytes(), width, height, source_w, source_h, timestamp, index)


def format_timestamp(seconds: float) -> str:
    """hh:mm:ss (with tenths when the time is not whole) for a video frame's position."""
    whole, tenths = divmod(max(0, round(seconds * 10)), 10)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{text}.{tenths}" if tenths else text

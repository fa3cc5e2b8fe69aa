"""Photos and videos uploaded into a library's folder: streamed to disk, typed by content, never overwriting."""

from __future__ import annotations

import contextlib
import os
import secrets
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from client.ingest.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, open_video
from clipsearch import imageformats

from .files import MediaProblem

imageformats.register()  # HEIC/HEIF uploads are recognised like any other photo

# The reasons of refused uploads (ErrorDoc.reason), for the page to say in its own words.
FILE_TOO_LARGE = "file_too_large"
NOT_MEDIA = "not_media"
UPLOAD_EMPTY = "upload_empty"
WRITE_FAILED = "write_failed"
# Hidden, so neither the indexer nor a walk of the folder takes a file still arriving for a photo.
TEMP_PREFIX = ".clipsearch-upload-"
# Enough of the head of a file to tell its type (an MPEG transport stream shows its second packet at 188).
HEAD_BYTES = 512
MAX_NAME_BYTES = 200
# A photo may hold at most this many pixels (Pillow's own bomb check is lower; this is the page's).
MAX_PHOTO_PIXELS = 1 << 28

# ISO base media brands (bytes 8..12 of an `ftyp` box) of still images; other brands are videos.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"hevc", b"hevx"}
_AVIF_BRANDS = {b"avif", b"avis"}
# Pillow's format name -> (extension a saved file gets, extensions accepted as they are).
_PHOTO_FORMATS = {
    "JPEG": (".jpg", {".jpg", ".jpeg", ".jpe", ".jfif"}),
    "PNG": (".png", {".png"}),
    "GIF": (".gif", {".gif"}),
    "WEBP": (".webp", {".webp"}),
    "BMP": (".bmp", {".bmp", ".dib"}),
    "TIFF": (".tif", {".tif", ".tiff"}),
    "HEIF": (".heic", {".heic", ".heif", ".hif"}),
    "AVIF": (".avif", {".avif"}),
}


@dataclass(frozen=True)
class Kind:
    """What the first bytes of a file say it is: a photo or a video, and the extensions that fit."""

    media: str  # "photo" or "video"
    extension: str
    accepted: frozenset[str]


def sniff(head: bytes) -> Kind | None:
    """The kind of file its first bytes show, or None for anything that is neither a photo nor a video."""

    def photo(extension: str, *accepted: str) -> Kind:
        return Kind("photo", extension, frozenset({extension, *accepted}))

    def video(extension: str, *accepted: str) -> Kind:
        return Kind("video", extension, frozenset({extension, *accepted}))

    if head.startswith(b"\xff\xd8\xff"):
        return photo(".jpg", ".jpeg", ".jpe", ".jfif")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return photo(".png")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return photo(".gif")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return photo(".webp")
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return video(".avi")
    if head[:2] == b"BM" and len(head) >= 14:
        return photo(".bmp", ".dib")
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return photo(".tif", ".tiff")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return photo(".heic", ".heif", ".hif")
        if brand in _AVIF_BRANDS:
            return photo(".avif")
        if brand == b"qt  ":
            return video(".mov")
        if brand.startswith(b"3g"):
            return video(".3gp")
        return video(".mp4", ".m4v", ".mov")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return video(".webm" if b"webm" in head else ".mkv", ".mkv", ".webm")
    if head.startswith(b"OggS"):
        return video(".ogv")
    if head.startswith(b"FLV"):
        return video(".flv")
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return video(".wmv")
    if head.startswith(b"\x00\x00\x01\xba"):
        return video(".mpg", ".mpeg", ".vob")
    if head[:1] == b"\x47" and head[188:189] == b"\x47":
        return video(".ts", ".m2ts", ".mts")
    return None


def safe_name(name: str) -> str:
    """A file name that stays in the folder and is not hidden: the last path part, NFC, without control
    characters or leading dots, at most MAX_NAME_BYTES of UTF-8; "upload" when nothing is left."""
    name = unicodedata.normalize("NFC", name.replace("\\", "/").rsplit("/", 1)[-1])
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C" and ch not in '<>:"|?*')
    name = name.strip().lstrip(".").strip()
    stem, suffix = os.path.splitext(name)
    if len(suffix.encode("utf-8")) > 16:
        stem, suffix = name, ""
    while len((stem + suffix).encode("utf-8")) > MAX_NAME_BYTES and stem:
        stem = stem[:-1]
    name = (stem.rstrip() + suffix) if stem.strip() else ""
    return name if name and name not in (".", "..") else "upload"


def final_name(given: str, kind: Kind) -> str:
    """The safe name with an extension that fits the content (`photo.jpg` holding a PNG becomes `photo.png`)."""
    name = safe_name(given)
    stem, suffix = os.path.splitext(name)
    if suffix.lower() in kind.accepted:
        return name
    return (stem if stem else "upload") + kind.extension


def check_photo(path: Path) -> str:
    """Pillow's format name of a photo it reads whole; MediaProblem 415 when it cannot."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PHOTO_PIXELS:
                raise MediaProblem(415, f"the photo is {width}x{height} pixels, more than this server takes", NOT_MEDIA)
            image.verify()
            return str(image.format or "")
    except MediaProblem:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for files it cannot read
        raise MediaProblem(415, f"not a photo this server reads ({exc})", NOT_MEDIA) from None


def check_video(path: Path) -> None:
    """That PyAV opens the file and it holds a video stream whose frames decode; MediaProblem 415 otherwise."""
    try:
        with open_video(path) as video:
            for _ in video.container.decode(video.stream):
                return
    except Exception as exc:  # noqa: BLE001 - MediaError, and av.FFmpegError and friends from a damaged file
        raise MediaProblem(415, f"not a video this server reads ({exc})", NOT_MEDIA) from None
    raise MediaProblem(415, "the video has no frame that decodes", NOT_MEDIA)


@dataclass(frozen=True)
class Limits:
    photo_bytes: int
    video_bytes: int

    def of(self, kind: Kind) -> int:
        return self.photo_bytes if kind.media == "photo" else self.video_bytes


def _mib(n: int) -> str:
    return f"{n / (1 << 30):g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):g} MiB"


_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def write_problem(exc: OSError) -> MediaProblem:
    """What the page is told when the folder cannot take the file."""
    if isinstance(exc, PermissionError):
        return MediaProblem(403, "the server may not write into the library's folder (permission denied)", WRITE_FAILED)
    return MediaProblem(507, f"cannot write the file into the library's folder: {exc.strerror or exc}", WRITE_FAILED)


def _create_temp(folder: Path) -> tuple[Path, int]:
    for _ in range(10):
        path = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}.part"
        try:
            return path, os.open(path, _EXCLUSIVE, 0o644)
        except FileExistsError:
            continue
        except OSError as exc:
            raise write_problem(exc) from None
    raise MediaProblem(500, "cannot create a temporary file in the library's folder", WRITE_FAILED)


async def receive(chunks: AsyncIterator[bytes], folder: Path, limits: Limits) -> tuple[Path, Kind, int]:
    """Streams the body into a hidden temporary file in `folder`: (its path, its kind, its size). Refuses
    (and removes the file) an empty body, a head that is no photo or video, or more bytes than its kind's
    limit."""
    path, fd = _create_temp(folder)
    kind: Kind | None = None
    head = b""
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                if not chunk:
                    continue
                if kind is None:
                    head = (head + chunk)[:HEAD_BYTES]
                    if len(head) >= HEAD_BYTES:
                        kind = _kind_of(head)
                size += len(chunk)
                if kind is not None and size > limits.of(kind):
                    raise MediaProblem(
                        413, f"the {kind.media} is larger than the limit of {_mib(limits.of(kind))}", FILE_TOO_LARGE
                    )
                if kind is None and size > limits.video_bytes:
                    raise MediaProblem(
                        413, f"the file is larger than the limit of {_mib(limits.video_bytes)}", FILE_TOO_LARGE
                    )
                out.write(chunk)
        if size == 0:
            raise MediaProblem(400, "the file is empty (0 bytes)", UPLOAD_EMPTY)
        if kind is None:
            kind = _kind_of(head)
            if size > limits.of(kind):
                raise MediaProblem(
                    413, f"the {kind.media} is larger than the limit of {_mib(limits.of(kind))}", FILE_TOO_LARGE
                )
        return path, kind, size
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        raise write_problem(exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def _kind_of(head: bytes) -> Kind:
    kind = sniff(head)
    if kind is None:
        raise MediaProblem(
            415, "the file is neither a photo nor a video (its content says so, whatever its name)", NOT_MEDIA
        )
    return kind


def settle(temp: Path, kind: Kind, given_name: str) -> Path:
    """Checks the temporary file's content, then gives it its final name in the same folder without
    overwriting anything ("name (2).jpg" when taken); returns the final path. The temporary file is gone
    either way."""
    try:
        if kind.media == "photo":
            actual = check_photo(temp)
            extension = _PHOTO_FORMATS.get(actual.upper(), (kind.extension, kind.accepted))
            kind = Kind("photo", extension[0], frozenset(extension[1]))
        else:
            check_video(temp)
        name = final_name(given_name, kind)
        if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
            raise MediaProblem(415, f"files like {name} are not indexed", NOT_MEDIA)
        return _link_unique(temp, name)
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()


def _link_unique(temp: Path, name: str) -> Path:
    """A hard link to temp under `name` or "stem (N)suffix", whichever is free: an existing file (or FIFO,
    or link) is never replaced, and the indexer sees the file appear whole."""
    stem, suffix = os.path.splitext(name)
    for n in range(1, 10_000):
        candidate = temp.parent / (name if n == 1 else f"{stem} ({n}){suffix}")
        try:
            os.link(temp, candidate, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError:
            # A file system without hard links: claim the name with an empty file of our own, then put the
            # upload in its place in one step (still never over a file that was there).
            try:
                os.close(os.open(candidate, _EXCLUSIVE, 0o644))
            except FileExistsError:
                continue
            except OSError as exc:
                raise write_problem(exc) from None
            os.replace(temp, candidate)
        return candidate
    raise MediaProblem(409, f"too many files named like {name} in this folder", WRITE_FAILED)

"""The web page's library options, shared by `clipsearch web` and `clipsearch serve` (which passes them on)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

# Kept equal to client/web/settings.py's defaults, without importing the web stack.
DEFAULT_UPLOAD_VIDEO_BYTES = 4 << 30
DEFAULT_UPLOAD_PHOTO_BYTES = 200 << 20
_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def size(text: str) -> int:
    """Bytes from "4G", "4GiB", "500M", "512k", "1000B", or a plain number of MiB."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(?:([kmgt])(?:i?b)?|(b))?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4G, 500M, or a number of MiB)")
    unit = match.group(2) or match.group(3) or "m"
    value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_library_arguments(parser: argparse.ArgumentParser) -> None:
    """--library-root, --max-upload-video and --max-upload-photo."""
    group = parser.add_argument_group("the page's library panel")
    group.add_argument(
        "--library-root",
        action="append",
        type=Path,
        metavar="DIR",
        help="a folder under which the page may add libraries and upload files (repeatable; default: the "
        "home directory of the user running it); symlinks are resolved first",
    )
    group.add_argument(
        "--max-upload-video",
        type=size,
        default=DEFAULT_UPLOAD_VIDEO_BYTES,
        metavar="SIZE",
        help="largest video the page uploads into a library (default: 4G; K, M, G suffixes, or a number of MiB)",
    )
    group.add_argument(
        "--max-upload-photo",
        type=size,
        default=DEFAULT_UPLOAD_PHOTO_BYTES,
        metavar="SIZE",
        help="largest photo the page uploads into a library (default: 200M)",
    )


def library_argv(args: argparse.Namespace) -> tuple[str, ...]:
    """The same options as arguments for a `clipsearch web` child."""
    argv: list[str] = []
    for root in args.library_root or []:
        argv += ["--library-root", str(Path(root).expanduser().resolve())]
    if args.max_upload_video != DEFAULT_UPLOAD_VIDEO_BYTES:
        argv += ["--max-upload-video", f"{args.max_upload_video}B"]
    if args.max_upload_photo != DEFAULT_UPLOAD_PHOTO_BYTES:
        argv += ["--max-upload-photo", f"{args.max_upload_photo}B"]
    return tuple(argv)

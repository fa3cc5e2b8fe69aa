"""Subtitle files read: size and content checked, encoding detected, parsed with pysubs2, markup removed."""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from pathlib import Path

import charset_normalizer
import pysubs2

from .markup import strip_markup
from .model import Cue

MAX_SUBTITLE_FILE_BYTES = 20 << 20  # a film's subtitles are well under 1 MB; anything this large is not one
# The encodings subtitle files come in besides UTF-8 and UTF-16 (told by their byte order mark or their NULs):
# Simplified and Traditional Chinese, Japanese, and Western European.
_LEGACY_ENCODINGS = ["gb18030", "big5", "cp932", "cp1252"]
# A file's language part that names its script decides between encodings a short file cannot tell apart.
_LANGUAGE_ENCODINGS = {
    **dict.fromkeys(("zh", "chs", "sc", "gb", "zh-cn", "zh-hans", "chi", "zho", "cn"), "gb18030"),
    **dict.fromkeys(("cht", "tc", "big5", "zh-tw", "zh-hk", "zh-hant"), "big5"),
    **dict.fromkeys(("ja", "jp", "jpn"), "cp932"),
}
_FORMATS = {".srt": "srt", ".ass": "ass", ".ssa": "ssa", ".vtt": "vtt"}


class SubtitleError(Exception):
    """A subtitle file that cannot be read; the message is one line for the index report."""


def read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_SUBTITLE_FILE_BYTES:
            raise SubtitleError(
                f"{size / (1 << 20):.0f} MB, larger than a subtitle file can be "
                f"({MAX_SUBTITLE_FILE_BYTES >> 20} MB): not read"
            )
        with path.open("rb") as f:
            return f.read(MAX_SUBTITLE_FILE_BYTES + 1)
    except OSError as e:
        raise SubtitleError(f"cannot be read: {e.strerror or e}") from None


def decode(data: bytes, language: str = "") -> tuple[str, str]:
    """The text of a subtitle file and the encoding it was in."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return _strict(data, encoding), encoding
    sample = data[:4096]
    if len(sample) >= 4 and sample.count(0) > len(sample) // 4:  # UTF-16 without its mark: every other byte 0
        encoding = "utf-16-le" if sample[1::2].count(0) > sample[0::2].count(0) else "utf-16-be"
        return _strict(data, encoding), encoding
    if b"\x00" in sample:
        raise SubtitleError("holds binary data, not text: not a subtitle file")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    hinted = _LANGUAGE_ENCODINGS.get(language.lower())
    if hinted:
        try:
            return data.decode(hinted), hinted
        except UnicodeDecodeError:
            pass
    best = charset_normalizer.from_bytes(data, cp_isolation=_LEGACY_ENCODINGS).best()
    if best is None:
        raise SubtitleError(
            "in an encoding that is none of UTF-8, UTF-16, GB18030/GBK, Big5, Shift-JIS or cp1252: convert it to UTF-8"
        )
    return str(best), best.encoding


def _strict(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise SubtitleError(f"not valid {encoding} at byte {e.start}") from None


def parse(text: str, suffix: str) -> tuple[list[Cue], int]:
    """The cues of a subtitle file's text, in time order, and how many of its events were dropped (ending
    before they start, or before 0 s; comments and drawings without words are dropped silently)."""
    try:
        subs = pysubs2.SSAFile.from_string(text, format_=_FORMATS.get(suffix.lower()))
    except (pysubs2.Pysubs2Error, ValueError, KeyError, IndexError) as e:
        raise SubtitleError(f"not a readable {suffix.lstrip('.').upper() or 'subtitle'} file: {e}") from None
    return events_to_cues((e.start, e.end, e.text, e.is_comment) for e in subs.events)


def events_to_cues(events: Iterable[tuple[float, float, str, bool]]) -> tuple[list[Cue], int]:
    cues: list[Cue] = []
    dropped = 0
    for start_ms, end_ms, raw, comment in events:
        if comment:
            continue
        line = strip_markup(raw)
        if not line:
            continue
        start, end = max(0.0, start_ms / 1000), end_ms / 1000
        if end <= start:
            dropped += 1
            continue
        cues.append(Cue(start, end, line))
    cues.sort(key=lambda c: (c.start, c.end))
    return cues, dropped

"""Markup out of subtitle text: ASS override blocks and drawings, HTML and WebVTT tags, entities."""

from __future__ import annotations

import html
import re

_BLOCK = re.compile(r"\{([^}]*)\}")
_DRAWING = re.compile(r"\\p(\d+)")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<\d{1,2}:\d{2}(?::\d{2})?[.,]\d{3}>")
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def strip_markup(text: str) -> str:
    """The words of a cue: override blocks ({\\an8}, {\\i1}) and the shapes drawn in drawing mode
    ({\\p1}m 0 0 l 100 0{\\p0}) removed, \\N and \\n as line breaks, \\h as a space, tags (<i>, <font>,
    <c.yellow>, <v Name>, <00:00:01.000>) removed, entities decoded, spaces collapsed, empty lines dropped."""
    out: list[str] = []
    drawing = False
    pos = 0
    for block in _BLOCK.finditer(text):
        if not drawing:
            out.append(text[pos : block.start()])
        for level in _DRAWING.findall(block.group(1)):
            drawing = int(level) > 0
        pos = block.end()
    if not drawing:
        out.append(text[pos:])
    plain = "".join(out).replace("\\N", "\n").replace("\\n", "\n").replace("\\h", " ")
    plain = html.unescape(_TAG.sub("", plain))
    lines = (_SPACES.sub(" ", _CONTROL.sub("", line)).strip() for line in plain.splitlines())
    return "\n".join(line for line in lines if line)

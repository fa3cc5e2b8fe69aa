"""Reading subtitles: markup, encodings, sidecar names, embedded tracks, and every kind of bad input."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import pytest

from client.subtitles import find_sidecars, read_subtitles, sidecar_signature
from client.subtitles.files import decode
from client.subtitles.markup import strip_markup
from tests.support.subtitled import srt, write_video

LINES = [(1.0, 2.0, "Hello there"), (3.0, 4.5, "See you tomorrow")]


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("<i>Hello</i> <b>there</b>", "Hello there"),
        ("{\\an8}Top line", "Top line"),
        ("{\\i1}one{\\i0}\\Ntwo", "one\ntwo"),
        ("{\\p1}m 0 0 l 100 0 100 100{\\p0}words", "words"),
        ('<font color="#ff0000">red</font> &amp; blue', "red & blue"),
        ("<v Bob>Hi<00:00:01.500> <c.yellow>you</c>", "Hi you"),
        ("  spaced\\h\\hout  ", "spaced out"),
    ],
)
def test_markup_is_stripped(raw: str, plain: str) -> None:
    assert strip_markup(raw) == plain


@pytest.mark.parametrize(
    ("text", "encoding", "language"),
    [
        ("1\n00:00:01,000 --> 00:00:02,000\n我们明天见，好吗？\n", "gbk", ""),
        ("1\n00:00:01,000 --> 00:00:02,000\n明天\n", "gb18030", "zh"),
        ("1\n00:00:01,000 --> 00:00:02,000\n我們明天見，好嗎？今天天氣很好。\n", "big5", ""),
        ("1\n00:00:01,000 --> 00:00:02,000\nまた明日会いましょう。今日はいい天気ですね。\n", "shift_jis", ""),
        ("1\n00:00:01,000 --> 00:00:02,000\nÀ demain, café crème\n", "cp1252", ""),
        ("1\n00:00:01,000 --> 00:00:02,000\n我们明天见\n", "utf-16-le", ""),
        ("1\n00:00:01,000 --> 00:00:02,000\n我们明天见\n", "utf-16-be", ""),
    ],
)
def test_encodings(text: str, encoding: str, language: str) -> None:
    assert decode(text.encode(encoding), language)[0] == text


def test_byte_order_marks() -> None:
    text = "1\n00:00:01,000 --> 00:00:02,000\nhé\n"
    assert decode(codecs.BOM_UTF8 + text.encode())[0] == text
    assert decode(text.encode("utf-16"))[0] == text


def test_sidecars_by_name(tmp_path: Path) -> None:
    video = tmp_path / "film.mp4"
    video.write_bytes(b"")
    for name in ("film.srt", "film.zh.srt", "film.chs.ass", "film.en.vtt", "film2.srt", "other.srt", "film.txt"):
        (tmp_path / name).write_text("x")
    found = {s.path.name: s.language for s in find_sidecars(video)}
    assert found == {"film.srt": "", "film.zh.srt": "zh", "film.chs.ass": "chs", "film.en.vtt": "en"}
    before = sidecar_signature(find_sidecars(video))
    os.utime(tmp_path / "film.zh.srt", ns=(1, 1))
    assert sidecar_signature(find_sidecars(video)) != before


def test_embedded_tracks(tmp_path: Path) -> None:
    mkv = write_video(
        tmp_path / "a.mkv",
        subtitles=[("subrip", "eng", LINES), ("ass", "", [(0.5, 1.5, "{\\an8}<b>Top</b>")]), ("webvtt", "fre", LINES)],
    )
    mp4 = write_video(tmp_path / "b.mp4", subtitles=[("mov_text", "chi", [(2.0, 3.0, "我们明天见")])])
    read = read_subtitles(mkv, "a.mkv")
    assert read.problems == []
    assert [(t.language, [(c.start, c.end, c.text) for c in t.cues]) for t in read.tracks] == [
        ("eng", LINES),
        ("", [(0.5, 1.5, "Top")]),
        ("fre", LINES),
    ]
    read = read_subtitles(mp4, "b.mp4")
    assert [(c.start, c.end, c.text) for t in read.tracks for c in t.cues] == [(2.0, 3.0, "我们明天见")]


def one_line(problems: list[str]) -> str:
    assert len(problems) == 1 and "\n" not in problems[0], problems
    return problems[0]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"1\n00:00:0x,000 --> 00:00:02,000\nbroken\n\n", "no subtitle lines"),
        (os.urandom(64 << 10), "binary data"),
        (b"", "no subtitle lines"),
        (bytes(range(0x80, 0x100)) * 40, "an encoding that is none of"),
    ],
    ids=["malformed timestamps", "binary junk", "empty", "undecodable"],
)
def test_bad_files_are_one_line(tmp_path: Path, content: bytes, expected: str) -> None:
    video = write_video(tmp_path / "film.mp4", seconds=1)
    (tmp_path / "film.srt").write_bytes(content)
    read = read_subtitles(video, "film.mp4")
    assert read.tracks == []
    assert expected in one_line(read.problems)


def test_negative_and_overlapping_cues(tmp_path: Path) -> None:
    video = write_video(tmp_path / "film.mp4", seconds=1)
    lines = srt([(2.0, 4.0, "overlaps"), (3.0, 5.0, "the one before"), (6.0, 6.0, "no time at all")])
    (tmp_path / "film.srt").write_text(lines + "4\n-00:00:01,000 --> 00:00:01,500\nbefore the start\n\n")
    read = read_subtitles(video, "film.mp4")
    assert [c.text for t in read.tracks for c in t.cues] == ["before the start", "overlaps", "the one before"]
    assert "1 lines end before they start" in one_line(read.problems)


def test_a_huge_file_is_not_read(tmp_path: Path) -> None:
    video = write_video(tmp_path / "film.mp4", seconds=1)
    with (tmp_path / "film.srt").open("wb") as f:
        f.truncate(200 << 20)  # sparse: 200 MB on paper, nothing on disk
    assert "200 MB" in one_line(read_subtitles(video, "film.mp4").problems)


def test_empty_embedded_track(tmp_path: Path) -> None:
    mkv = write_video(tmp_path / "e.mkv", seconds=1, subtitles=[("subrip", "eng", [])])
    read = read_subtitles(mkv, "e.mkv")
    assert read.tracks == []
    assert "is empty" in one_line(read.problems)

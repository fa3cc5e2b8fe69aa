"""Indexing what is said, against in-process services: embedded tracks (SubRip in .mkv, mov_text in .mp4) and
files beside the video (a GBK .zh.srt) found by a said query at the right video and span; files read again
when changed; cues gone with their video; every bad subtitle input indexed for its frames, reported in one line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from client import Client
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.support.subtitled import srt, write_video

ENGLISH = [(1.0, 2.2, "Hello there."), (3.0, 4.5, "<i>See you tomorrow</i>, then."), (5.0, 5.8, "Goodbye!")]
MOV_TEXT = [(0.5, 1.5, "Where is the lighthouse?"), (2.5, 4.0, "Past the harbour, by the boats.")]
CHINESE = [(1.0, 2.0, "你好"), (2.5, 4.5, "我们明天见，好吗？"), (5.0, 5.5, "好的")]


@pytest.fixture
def stub(search_address: str) -> Iterator[search_pb2_grpc.SearchStub]:
    with grpc.insecure_channel(search_address) as channel:
        yield search_pb2_grpc.SearchStub(channel)


def said(stub: search_pb2_grpc.SearchStub, text: str) -> list[pb.Match]:
    return list(stub.Query(pb.QueryRequest(said=text, k=10)).matches)


def test_embedded_tracks_and_a_gbk_file_beside_a_video(client: Client, stub, tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    write_video(library / "night.mkv", subtitles=[("subrip", "eng", ENGLISH)])
    write_video(library / "harbour.mp4", subtitles=[("mov_text", "eng", MOV_TEXT)])
    write_video(library / "film.mp4")
    (library / "film.zh.srt").write_bytes(srt(CHINESE).encode("gbk"))

    report = client.index([library])
    assert report.failed == [] and report.frames > 0
    assert (report.subtitle_lines, report.subtitle_tracks) == (8, 3)
    assert report.subtitle_problems == []

    found = said(stub, '"see you tomorrow"')
    assert len(found) == 1
    assert found[0].item.metadata.sources[0].endswith("/night.mkv")
    assert (found[0].start_seconds, found[0].end_seconds) == (3.0, 4.5)
    assert [line.text for line in found[0].said_lines] == ["See you tomorrow, then."]

    found = said(stub, "harbour boats")
    assert [m.item.metadata.sources[0].rsplit("/", 1)[1] for m in found] == ["harbour.mp4"]
    assert (found[0].start_seconds, found[0].end_seconds) == (2.5, 4.0)

    for query in ("明天见", "我们 明天", "明天"):
        found = said(stub, query)
        assert [m.item.metadata.sources[0].rsplit("/", 1)[1] for m in found] == ["film.mp4"], query
        assert found[0].said_lines[0].text == "我们明天见，好吗？"
        assert found[0].said_lines[0].language == "zh" and found[0].said_lines[0].track == "film.zh.srt"
        assert (found[0].start_seconds, found[0].end_seconds) == (2.5, 4.5)


def test_a_changed_file_is_read_again_and_cues_go_with_the_video(client: Client, stub, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4")
    sidecar = tmp_path / "clip.en.srt"
    sidecar.write_text(srt([(1.0, 2.0, "the first version")]))
    assert client.index([tmp_path]).subtitle_lines == 1
    again = client.index([tmp_path])
    assert (again.known > 0, again.subtitle_lines) == (True, 0)  # unchanged: not read again

    sidecar.write_text(srt([(1.0, 2.0, "the second version"), (3, 4, "and more")]))
    os.utime(sidecar, ns=(sidecar.stat().st_atime_ns, sidecar.stat().st_mtime_ns + 10**9))
    assert client.index([tmp_path]).subtitle_lines == 2
    assert said(stub, "first version") == []
    assert len(said(stub, "second version")) == 1

    content_hash = next(iter(client.list_items())).content_hash
    assert stub.CueList(pb.CueListRequest(content_hash=content_hash)).found
    client.delete(sources=[video])
    assert said(stub, "second version") == []
    assert not stub.CueList(pb.CueListRequest(content_hash=content_hash)).found


BAD_FILES = {
    "malformed timestamps": (b"1\n00:00:0x,000 --> 00:00:02,000\nbroken\n\n", "no subtitle lines"),
    "binary junk": (os.urandom(32 << 10), "binary data"),
    "unknown encoding": (bytes(range(0x80, 0x100)) * 40, "an encoding that is none of"),
    "negative and backwards cues": (
        srt([(2.0, 3.0, "fine")]).encode() + b"2\n00:00:05,000 --> 00:00:04,000\nbackwards\n\n",
        "1 lines end before they start",
    ),
}


@pytest.mark.parametrize("case", [*BAD_FILES, "200 MB", "empty track"])
def test_bad_subtitles_index_the_frames_and_report_one_line(client: Client, tmp_path: Path, case: str) -> None:
    if case == "empty track":
        write_video(tmp_path / "film.mkv", seconds=2, subtitles=[("subrip", "eng", [])])
        expected = "is empty"
    else:
        write_video(tmp_path / "film.mp4", seconds=2)
        sidecar = tmp_path / "film.srt"
        if case == "200 MB":
            with sidecar.open("wb") as f:
                f.truncate(200 << 20)
            expected = "200 MB"
        else:
            content, expected = BAD_FILES[case]
            sidecar.write_bytes(content)
    report = client.index([tmp_path])
    assert report.failed == [] and report.frames > 0
    assert len(report.subtitle_problems) == 1, report.subtitle_problems
    problem = report.subtitle_problems[0]
    assert "\n" not in problem and expected in problem and "film." in problem


def test_a_reindex_keeps_what_is_said(client: Client, stub, tmp_path: Path) -> None:
    write_video(tmp_path / "night.mkv", subtitles=[("subrip", "eng", ENGLISH)])
    client.index([tmp_path])
    before = said(stub, "goodbye")
    report = client.reindex()
    assert report.finished and report.dropped == []
    after = said(stub, "goodbye")
    assert len(before) == len(after) == 1
    assert (after[0].start_seconds, after[0].end_seconds) == (5.0, 5.8)
    assert after[0].item.metadata.sources == before[0].item.metadata.sources

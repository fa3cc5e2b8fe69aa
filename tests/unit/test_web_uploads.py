"""Uploaded files: their type from their first bytes, and names that stay in the folder and fit the content."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from client.web.files import MediaProblem
from client.web.uploads import check_video, final_name, safe_name, settle, sniff
from tests.support.client import write_video

HEADS = {
    b"\xff\xd8\xff\xe0" + b"\x00" * 20: ("photo", ".jpg"),
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 20: ("photo", ".png"),
    b"GIF89a" + b"\x00" * 20: ("photo", ".gif"),
    b"RIFF\x00\x00\x00\x00WEBPVP8 ": ("photo", ".webp"),
    b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00": ("photo", ".heic"),
    b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00": ("photo", ".avif"),
    b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00": ("video", ".mp4"),
    b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00": ("video", ".mov"),
    b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01matroska": ("video", ".mkv"),
    b"RIFF\x00\x00\x00\x00AVI LIST": ("video", ".avi"),
}


@pytest.mark.parametrize(("head", "expected"), list(HEADS.items()))
def test_the_first_bytes_say_what_a_file_is(head: bytes, expected: tuple[str, str]) -> None:
    kind = sniff(head)
    assert kind is not None and (kind.media, kind.extension) == expected


@pytest.mark.parametrize(
    "head", [b"<!doctype html><html>", b"%PDF-1.7\n", b"PK\x03\x04zip", b"#!/bin/sh\nrm -rf /", b"GET / HTTP/1.1"]
)
def test_what_is_neither_photo_nor_video_is_not_taken(head: bytes) -> None:
    assert sniff(head + b"\x00" * 600) is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("holiday.jpg", "holiday.jpg"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        (".bashrc", "bashrc"),
        ("...", "upload"),
        ("", "upload"),
        ("a\x00b\nc.jpg", "abc.jpg"),
        ("海滩 sunset.jpg", "海滩 sunset.jpg"),
        ("x" * 300 + ".jpg", "x" * 196 + ".jpg"),
    ],
)
def test_names_are_made_safe(given: str, expected: str) -> None:
    assert safe_name(given) == expected


def test_the_extension_follows_the_content() -> None:
    png = sniff(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    jpeg = sniff(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    assert png is not None and jpeg is not None
    assert final_name("photo.jpg", png) == "photo.png"
    assert final_name("photo.JPEG", jpeg) == "photo.JPEG"
    assert final_name("notes.txt", jpeg) == "notes.jpg"
    assert final_name("noext", jpeg) == "noext.jpg"


def test_without_hard_links_an_upload_still_never_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    (tmp_path / "photo.png").write_bytes(b"already here")
    image = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(image, "PNG")
    temp = tmp_path / ".clipsearch-upload-x.part"
    temp.write_bytes(image.getvalue())
    kind = sniff(image.getvalue())
    assert kind is not None
    final = settle(temp, kind, "photo.png")
    assert final.name == "photo (2).png" and final.read_bytes() == image.getvalue()
    assert (tmp_path / "photo.png").read_bytes() == b"already here"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo (2).png", "photo.png"]


def test_a_video_is_checked_by_decoding_a_frame(tmp_path: Path) -> None:
    check_video(write_video(tmp_path / "film.mp4", seconds=1))
    head = (tmp_path / "film.mp4").read_bytes()[:64]
    (tmp_path / "cut.mp4").write_bytes(head + os.urandom(4096))
    audio = tmp_path / "song.mkv"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    for path, words in ((tmp_path / "cut.mp4", "not a video this server reads"), (audio, "no video stream")):
        with pytest.raises(MediaProblem) as refused:
            check_video(path)
        assert refused.value.status == 415 and words in str(refused.value), refused.value

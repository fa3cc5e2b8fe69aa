"""Media by item id on the real stack: thumbnails, files with Range, changed or vanished files, path tricks."""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.service.web.conftest import WebStack
from tests.service.web.support import PHOTOS, Reply, mean_colour, request, second_colour, write_photo

SCRATCH = "scratch"


class _OpenRecorder:
    """Records every file this process opens while on (the web app runs in this process's threads)."""

    def __init__(self) -> None:
        self.on = False
        self.opened: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if self.on and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            with self.lock:
                self.opened.append(os.fsdecode(args[0]))


_RECORDER = _OpenRecorder()
sys.addaudithook(_RECORDER)


@contextmanager
def files_opened() -> Iterator[list[str]]:
    """The files opened by anything in this process inside the block (e.g. the web app handling a request)."""
    with _RECORDER.lock:
        _RECORDER.opened = []
    _RECORDER.on = True
    try:
        yield _RECORDER.opened
    finally:
        _RECORDER.on = False


def close_to(actual: tuple[float, float, float], expected: tuple[int, int, int], tolerance: float = 25) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_photo_thumbnails_are_small_jpegs_of_the_photo(web_stack: WebStack, name: str) -> None:
    reply = request(web_stack.base_url, "GET", f"/media/{web_stack.id_of(name)}/thumb")
    assert reply.status == 200
    assert reply.headers["content-type"] == "image/jpeg"
    assert reply.headers["x-content-type-options"] == "nosniff"
    with Image.open(io.BytesIO(reply.body)) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) <= 320
    assert close_to(mean_colour(reply.body), PHOTOS[name])


@pytest.mark.parametrize("second", range(6))
def test_a_video_thumbnail_is_the_frame_at_its_time(web_stack: WebStack, second: int) -> None:
    reply = request(web_stack.base_url, "GET", f"/media/{web_stack.id_of('clip.mp4', second)}/thumb")
    assert reply.status == 200 and reply.headers["content-type"] == "image/jpeg"
    assert close_to(mean_colour(reply.body), second_colour(second))


def test_a_large_photo_is_shrunk_to_320_pixels_and_turned_upright(web_stack: WebStack, tmp_path: Path) -> None:
    path = tmp_path / "portrait.jpg"
    image = Image.new("RGB", (1920, 1080), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: shown turned 90° clockwise
    image.save(path, exif=exif)
    item_id = _index(web_stack, path)
    try:
        reply = request(web_stack.base_url, "GET", f"/media/{item_id}/thumb")
        with Image.open(io.BytesIO(reply.body)) as thumb:
            assert thumb.size == (180, 320)
    finally:
        web_stack.client.delete(ids=[item_id])


def _index(stack: WebStack, path: Path) -> str:
    report = stack.client.index([path], collection=SCRATCH)
    assert report.indexed == 1, report
    items = list(stack.client.list_items())
    return next(i.id for i in items if i.source == str(path))


def test_thumbnails_are_cached_and_a_rewritten_file_is_noticed(web_stack: WebStack, tmp_path: Path) -> None:
    path = write_photo(tmp_path / "cached.png", (40, 200, 200))
    item_id = _index(web_stack, path)
    cache = web_stack.cache_dir
    try:
        first = request(web_stack.base_url, "GET", f"/media/{item_id}/thumb")
        assert first.status == 200
        before = {p for p in cache.rglob("*") if p.is_file()}
        with files_opened() as opened:
            again = request(web_stack.base_url, "GET", f"/media/{item_id}/thumb")
        assert again.body == first.body
        # Served from the cache: the photo is opened (to check it is still there), never decoded again,
        # and nothing new is cached.
        assert {p for p in cache.rglob("*") if p.is_file()} == before
        assert opened.count(str(path)) == 1
        # The same bytes written again: a new mtime, so the file is checked again and its thumbnail remade.
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
        touched = request(web_stack.base_url, "GET", f"/media/{item_id}/thumb")
        assert touched.status == 200
        assert len({p for p in cache.rglob("*") if p.is_file()} - before) == 2  # its hash check and thumbnail
        # Other content under the same name: the index's hash no longer matches.
        write_photo(path, (250, 250, 250), seed=5)
        changed = request(web_stack.base_url, "GET", f"/media/{item_id}/thumb")
        assert changed.status == 410
        assert "changed since it was indexed" in changed.error and "cached.png" in changed.error
        assert request(web_stack.base_url, "GET", f"/media/{item_id}/file").status == 410
    finally:
        web_stack.client.delete(ids=[item_id])


def test_a_vanished_file_is_410_saying_so(web_stack: WebStack, tmp_path: Path) -> None:
    path = write_photo(tmp_path / "gone 走了.png", (90, 90, 30))
    item_id = _index(web_stack, path)
    try:
        assert request(web_stack.base_url, "GET", f"/media/{item_id}/thumb").status == 200
        path.unlink()
        for kind in ("thumb", "file"):
            reply = request(web_stack.base_url, "GET", f"/media/{item_id}/{kind}")
            assert reply.status == 410
            assert "gone 走了.png" in reply.error and "deleted since it was indexed" in reply.error
    finally:
        web_stack.client.delete(ids=[item_id])


def test_a_file_replaced_by_a_fifo_or_a_symlink_elsewhere_is_refused_without_blocking(
    web_stack: WebStack, tmp_path: Path
) -> None:
    path = write_photo(tmp_path / "swap.png", (10, 10, 10))
    item_id = _index(web_stack, path)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    try:
        path.unlink()
        os.mkfifo(path)
        reply = request(web_stack.base_url, "GET", f"/media/{item_id}/file")
        assert reply.status == 410 and "not a regular file" in reply.error
        path.unlink()
        path.symlink_to(secret)
        reply = request(web_stack.base_url, "GET", f"/media/{item_id}/file")
        assert reply.status == 410 and b"not for the web" not in reply.body
    finally:
        web_stack.client.delete(ids=[item_id])


def test_an_item_without_a_file_has_no_media(web_stack: WebStack) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, "PNG")
    report = web_stack.client.index_images([buffer.getvalue()], collection=SCRATCH)
    assert report.indexed == 1
    item = next(i for i in web_stack.client.list_items() if i.collection == SCRATCH and not i.sources)
    try:
        reply = request(web_stack.base_url, "GET", f"/media/{item.id}/thumb")
        assert reply.status == 404 and "no file" in reply.error
    finally:
        web_stack.client.delete(ids=[item.id])


def test_unknown_ids_are_404(web_stack: WebStack) -> None:
    for kind in ("thumb", "file"):
        reply = request(web_stack.base_url, "GET", f"/media/img-0123456789abcdef0123456789abcdef/{kind}")
        assert reply.status == 404 and "no item" in reply.error


TRICKS = [
    "/media/..%2F..%2Fetc%2Fpasswd/file",
    "/media/%2e%2e/file",
    "/media/../../etc/passwd",
    "/media/..%2f..%2fetc%2fpasswd/thumb",
    "/media/%252e%252e%252fetc%252fpasswd/file",
    "/media/.hidden/file",
    "/media/img-abc%00/file",
    "/media/img-abc%20def/thumb",
    "/media/img-abc%5c..%5c/file",
    "/media/file:%2F%2F%2Fetc%2Fpasswd/file",
    "/media/%2Fetc%2Fpasswd/file",
    "/media/" + "a" * 300 + "/file",
    "/media/img-%E4%B8%AD/file",
    "/media/~root/file",
    "/static/../client/web/server.py",
    "/static/..%2F__init__.py",
    "/static/%2e%2e/%2e%2e/pyproject.toml",
]


@pytest.mark.parametrize("target", TRICKS)
def test_path_tricks_are_4xx_and_read_no_file(web_stack: WebStack, target: str) -> None:
    with files_opened() as opened:
        reply = request(web_stack.base_url, "GET", target)
    assert 400 <= reply.status < 500, (reply.status, reply.body[:200])
    assert b"root:" not in reply.body and b"def " not in reply.body
    assert opened == [], opened
    if reply.headers.get("content-type", "").startswith("application/json"):
        assert reply.error


def test_a_photo_file_is_served_inline_with_its_type_and_utf8_name(web_stack: WebStack) -> None:
    path = web_stack.library.files["黄色的花.png"]
    reply = request(web_stack.base_url, "GET", f"/media/{web_stack.id_of('黄色的花.png')}/file")
    assert reply.status == 200
    assert reply.body == path.read_bytes()
    assert reply.headers["content-type"] == "image/png"
    disposition = reply.headers["content-disposition"]
    assert disposition.startswith("inline") and "%E9%BB%84%E8%89%B2%E7%9A%84%E8%8A%B1.png" in disposition
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in reply.headers["content-security-policy"]


def _video(stack: WebStack, headers: dict[str, str] | None = None) -> Reply:
    return request(stack.base_url, "GET", f"/media/{stack.id_of('clip.mp4', 3)}/file", headers=headers)


def test_a_video_is_served_whole_with_accept_ranges(web_stack: WebStack) -> None:
    data = web_stack.library.files["clip.mp4"].read_bytes()
    reply = _video(web_stack)
    assert reply.status == 200 and reply.body == data
    assert reply.headers["accept-ranges"] == "bytes"
    assert reply.headers["content-type"] == "video/mp4"
    assert int(reply.headers["content-length"]) == len(data)


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, None), ("bytes=-50", -50, None), ("bytes=10-10", 10, 10)],
)
def test_video_range_requests_get_206_with_exactly_those_bytes(
    web_stack: WebStack, header: str, start: int, end: int | None
) -> None:
    data = web_stack.library.files["clip.mp4"].read_bytes()
    size = len(data)
    first = start if start >= 0 else size + start
    last = size - 1 if end is None else end
    reply = _video(web_stack, {"Range": header})
    assert reply.status == 206
    assert reply.headers["content-range"] == f"bytes {first}-{last}/{size}"
    assert reply.body == data[first : last + 1]
    assert int(reply.headers["content-length"]) == last - first + 1


def test_unsatisfiable_ranges_are_416_and_malformed_ones_400_both_in_json(web_stack: WebStack) -> None:
    size = web_stack.library.files["clip.mp4"].stat().st_size
    beyond = _video(web_stack, {"Range": f"bytes={size}-"})
    assert beyond.status == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"
    assert str(size) in beyond.error
    backwards = _video(web_stack, {"Range": "bytes=50-10"})
    assert backwards.status == 400 and "Range" in backwards.error


def test_several_ranges_come_back_as_multipart_byteranges(web_stack: WebStack) -> None:
    data = web_stack.library.files["clip.mp4"].read_bytes()
    reply = _video(web_stack, {"Range": "bytes=0-3,100-103"})
    assert reply.status == 206
    assert reply.headers["content-type"].startswith("multipart/byteranges")
    assert data[0:4] in reply.body and data[100:104] in reply.body


def test_a_video_browsers_cannot_play_is_still_served_and_marked(web_stack: WebStack) -> None:
    item_id = web_stack.id_of("legacy.avi", 1)
    item = request(web_stack.base_url, "GET", f"/api/items/{item_id}").json()
    assert not item["playable"] and item["mime"] == "video/x-msvideo"
    reply = request(web_stack.base_url, "GET", f"/media/{item_id}/file", headers={"Range": "bytes=0-15"})
    assert reply.status == 206 and reply.body == web_stack.library.files["legacy.avi"].read_bytes()[:16]
    thumb = request(web_stack.base_url, "GET", f"/media/{item_id}/thumb")
    assert thumb.status == 200 and close_to(mean_colour(thumb.body), second_colour(1))

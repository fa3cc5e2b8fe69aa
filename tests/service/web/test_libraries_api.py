"""The library API on the real stack: add under the roots only, rescan, remove, uploads typed by content, and
every state-changing request refused from another site, each refusal writing nothing."""

from __future__ import annotations

import http.client
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from PIL import Image

from client import Client
from client import libraries as client_libraries
from client.web import WebSettings, create_app
from clipsearch.testing.web import WebThread
from tests.service.web.support import Reply, request, write_photo, write_video
from tests.support.libraries import Meddler
from tests.support.search import SearchServerFactory

PHOTO_LIMIT = 256 << 10
VIDEO_LIMIT = 1 << 20
JSON = {"Content-Type": "application/json"}
OCTETS = {"Content-Type": "application/octet-stream"}


@dataclass(frozen=True)
class LibraryStack:
    base_url: str
    root: Path
    outside: Path
    client: Client

    def libraries(self) -> list[dict[str, Any]]:
        reply = request(self.base_url, "GET", "/api/libraries")
        assert reply.status == 200, reply.body
        found: list[dict[str, Any]] = reply.json()["libraries"]
        return found

    def add(self, path: Path | str, **extra: str) -> Reply:
        body = json.dumps({"path": str(path), **extra}).encode()
        return request(self.base_url, "POST", "/api/libraries", body=body, headers=JSON)

    def upload(self, library: str, name: str, data: bytes, headers: dict[str, str] | None = None) -> Reply:
        target = f"/api/libraries/{quote(library)}/upload?name={quote(name)}"
        return request(self.base_url, "POST", target, body=data, headers=headers or OCTETS)


@pytest.fixture
def library_stack(
    tmp_path: Path, embedder_address: str, search_server_factory: SearchServerFactory
) -> Iterator[LibraryStack]:
    search = search_server_factory()
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "photos").mkdir(parents=True)
    outside.mkdir()
    settings = WebSettings(
        cache_dir=tmp_path / "cache",
        library_roots=(root,),
        max_upload_photo_bytes=PHOTO_LIMIT,
        max_upload_video_bytes=VIDEO_LIMIT,
    )
    with Client(embedder_address, search.address, connect_timeout=30) as client:
        thread = WebThread(create_app(settings, client))
        try:
            yield LibraryStack(thread.start().rstrip("/"), root, outside, client)
        finally:
            thread.stop()


def snapshot(*folders: Path) -> set[str]:
    """Every entry under the folders, hidden ones included."""
    return {str(p) for folder in folders for p in folder.rglob("*")}


def jpeg(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG")
    return out.getvalue()


def test_add_list_rescan_and_remove_a_folder_under_a_root(library_stack: LibraryStack) -> None:
    folder = library_stack.root / "photos"
    write_photo(folder / "red.jpg", (220, 30, 30))
    added = library_stack.add(folder, collection="home")
    assert added.status == 201, added.body
    doc = added.json()
    assert doc["name"] == "photos" and doc["path"] == str(folder) and doc["collection"] == "home"
    assert doc["uploads"] is True
    listed = request(library_stack.base_url, "GET", "/api/libraries").json()
    assert [lib["name"] for lib in listed["libraries"]] == ["photos"]
    assert listed["roots"] == [str(library_stack.root)]
    assert listed["max_upload_video_bytes"] == VIDEO_LIMIT
    again = library_stack.add(folder)
    assert again.status == 409 and "photos" in again.error and again.json()["reason"] == "library_conflict"
    rescan = request(library_stack.base_url, "POST", "/api/libraries/photos/rescan", body=b"{}", headers=JSON)
    assert rescan.status == 200, rescan.body
    assert library_stack.client.library("photos").rescan_requests == 1
    removed = request(library_stack.base_url, "POST", "/api/libraries/photos/remove", body=b"{}", headers=JSON)
    assert removed.status == 200 and removed.json()["name"] == "photos"
    assert library_stack.libraries() == []
    assert (folder / "red.jpg").is_file()  # files are never touched
    missing = request(library_stack.base_url, "POST", "/api/libraries/photos/remove", body=b"{}", headers=JSON)
    assert missing.status == 404 and missing.json()["reason"] == "library_not_found"


def test_libraries_that_keep_changing_are_a_conflict_the_page_shows(
    library_stack: LibraryStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_libraries, "CHANGED_FIRST_DELAY", 0.01)
    (library_stack.root / "music").mkdir()
    assert library_stack.add(library_stack.root / "photos").status == 201
    Meddler(times=10**6).install(monkeypatch)  # every read-modify-write of the libraries races another
    added = library_stack.add(library_stack.root / "music")
    assert added.status == 409 and "kept changing" in added.error and added.json()["reason"] == "library_conflict"
    rescan = request(library_stack.base_url, "POST", "/api/libraries/photos/rescan", body=b"{}", headers=JSON)
    assert rescan.status == 409 and "kept changing" in rescan.error
    assert [lib["name"] for lib in library_stack.libraries()] == ["photos"]


def test_paths_outside_the_roots_symlinks_out_of_them_and_fifos_are_refused(library_stack: LibraryStack) -> None:
    root = library_stack.root
    (root / "escape").symlink_to(library_stack.outside, target_is_directory=True)
    os.mkfifo(root / "pipe")
    before = snapshot(root, library_stack.outside)
    cases = {
        str(library_stack.outside): 403,
        "/": 403,
        str(root / "escape"): 403,
        str(root / "photos" / ".." / ".." / "outside"): 403,
        str(root / "pipe"): 400,
        str(root / "nothing-here"): 400,
        "photos": 400,
        "": 400,
    }
    for path, status in cases.items():
        reply = library_stack.add(path)
        assert reply.status == status, (path, reply.body)
        assert reply.error
    assert "outside the folders this server may add" in library_stack.add("/").error
    assert library_stack.add("/").json()["reason"] == "outside_roots"
    assert library_stack.add(root / "pipe").json()["reason"] == "not_a_folder"
    assert "--library-root" in library_stack.add("/").error
    assert "not a folder" in library_stack.add(root / "pipe").error
    assert library_stack.libraries() == []
    assert snapshot(root, library_stack.outside) == before


def test_cross_site_requests_that_change_anything_are_refused(library_stack: LibraryStack) -> None:
    folder = library_stack.root / "photos"
    assert library_stack.add(folder).status == 201
    before = (snapshot(library_stack.root), library_stack.libraries())
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    elsewhere = [
        {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://evil.example"},  # an older browser: Origin alone
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Sec-Fetch-Site": "same-site"},
    ]
    targets = [
        ("/api/libraries", f"path={quote(str(library_stack.root))}".encode()),
        ("/api/libraries/photos/rescan", b"x=1"),
        ("/api/libraries/photos/remove", b"x=1"),
        ("/api/libraries/photos/upload?name=a.jpg", jpeg()),
    ]
    for target, body in targets:
        for headers in elsewhere:
            reply = request(library_stack.base_url, "POST", target, body=body, headers={**form, **headers})
            assert reply.status == 403, (target, headers, reply.body)
            assert "refused" in reply.error and "another" in reply.error and reply.json()["reason"] == "cross_site"
        # From this page but as a form would send it: still refused (the page sends JSON or the bytes).
        same = {"Origin": library_stack.base_url, "Sec-Fetch-Site": "same-origin"}
        reply = request(library_stack.base_url, "POST", target, body=body, headers={**form, **same})
        assert reply.status == 415 and reply.json()["reason"] == "wrong_body", (target, reply.body)
    assert (snapshot(library_stack.root), library_stack.libraries()) == before
    assert library_stack.client.library("photos").rescan_requests == 0


def test_uploads_are_typed_by_content_named_safely_and_never_overwrite(library_stack: LibraryStack) -> None:
    folder = library_stack.root / "photos"
    assert library_stack.add(folder).status == 201
    page = {"Origin": library_stack.base_url, "Sec-Fetch-Site": "same-origin", **OCTETS}
    first = library_stack.upload("photos", "holiday.jpg", jpeg(), page)
    assert first.status == 201, first.body
    assert first.json() == {
        "name": "holiday.jpg",
        "path": str(folder / "holiday.jpg"),
        "media": "photo",
        "bytes": len(jpeg()),
    }
    second = library_stack.upload("photos", "holiday.jpg", jpeg((0, 0, 200)))
    assert second.status == 201 and second.json()["name"] == "holiday (2).jpg"
    assert (folder / "holiday.jpg").read_bytes() == jpeg()  # the first is untouched
    # Path parts and hidden names stay out; a PNG called .jpg is saved as what it is.
    png = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 200, 0)).save(png, "PNG")
    tricky = library_stack.upload("photos", "../../../.bashrc.jpg", png.getvalue())
    assert tricky.status == 201, tricky.body
    assert tricky.json()["name"] == "bashrc.png" and (folder / "bashrc.png").is_file()
    video = library_stack.upload(
        "photos", "clip.mp4", write_video(library_stack.outside / "clip.mp4", seconds=1).read_bytes()
    )
    assert video.status == 201 and video.json()["media"] == "video", video.body
    # A FIFO in the way is never opened: the upload takes the next free name.
    os.mkfifo(folder / "pipe.jpg")
    beside = library_stack.upload("photos", "pipe.jpg", jpeg())
    assert beside.status == 201 and beside.json()["name"] == "pipe (2).jpg"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left


def chunked(base_url: str, target: str, chunks: Iterator[bytes]) -> Reply:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    try:
        connection.request("POST", target, body=chunks, headers=OCTETS, encode_chunked=True)
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    except (BrokenPipeError, ConnectionResetError):
        return Reply(0, {}, b"")
    finally:
        connection.close()


def test_empty_oversized_and_disguised_uploads_are_refused_and_write_nothing(library_stack: LibraryStack) -> None:
    folder = library_stack.root / "photos"
    assert library_stack.add(folder).status == 201
    before = snapshot(library_stack.root)
    empty = library_stack.upload("photos", "empty.jpg", b"")
    assert empty.status == 400 and "empty" in empty.error and empty.json()["reason"] == "upload_empty"
    html = b"<!doctype html><html><body><script>alert(1)</script></body></html>" * 20
    disguised = library_stack.upload("photos", "cat.jpg", html)
    assert disguised.status == 415 and "neither a photo nor a video" in disguised.error
    assert disguised.json()["reason"] == "not_media"
    broken = library_stack.upload("photos", "broken.jpg", jpeg()[:200])
    assert broken.status == 415 and "photo" in broken.error
    big_photo = jpeg()[:2] + b"\xff\xe0" + os.urandom(PHOTO_LIMIT)
    announced = library_stack.upload("photos", "big.jpg", big_photo)
    assert announced.status == 413 and "photo" in announced.error and "256 MiB" not in announced.error
    over_everything = library_stack.upload("photos", "huge.mp4", b"\x00" * (VIDEO_LIMIT + 1))
    assert over_everything.status == 413 and over_everything.json()["reason"] == "file_too_large"
    assert announced.json()["reason"] == "file_too_large"
    streamed = chunked(
        library_stack.base_url,
        "/api/libraries/photos/upload?name=big.jpg",
        iter([big_photo[i : i + 65536] for i in range(0, len(big_photo), 65536)]),
    )
    assert streamed.status in (413, 0), streamed.body  # 0: the server answered and closed mid-body
    unknown = library_stack.upload("nope", "a.jpg", jpeg())
    assert unknown.status == 404
    assert snapshot(library_stack.root) == before


def test_with_a_password_every_library_request_needs_it(library_stack: LibraryStack, tmp_path: Path) -> None:
    settings = WebSettings(cache_dir=tmp_path / "cache-2", library_roots=(library_stack.root,), password="s3cret")
    thread = WebThread(create_app(settings, library_stack.client))
    url = thread.start().rstrip("/")
    try:
        body = json.dumps({"path": str(library_stack.root / "photos")}).encode()
        assert request(url, "GET", "/api/libraries").status == 401
        assert request(url, "POST", "/api/libraries", body=body, headers=JSON).status == 401
        upload = request(url, "POST", "/api/libraries/photos/upload?name=a.jpg", body=jpeg(), headers=OCTETS)
        assert upload.status == 401
        assert library_stack.libraries() == [] and snapshot(library_stack.root) == {str(library_stack.root / "photos")}
        added = request(url, "POST", "/api/libraries", body=body, headers=JSON, password="s3cret")
        assert added.status == 201, added.body
    finally:
        thread.stop()

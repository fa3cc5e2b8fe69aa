"""HEIC and AVIF photos (written at test time) are indexed, get thumbnails, and can be searched by."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pillow_heif
import pytest
from PIL import Image

from client import Client
from client.web import WebSettings, create_app
from clipsearch.testing.web import WebThread
from tests.service.web.support import mean_colour, multipart, request
from tests.support.search import SearchServerFactory

COLOURS = {"iphone.heic": (200, 40, 40), "modern.avif": (40, 60, 210)}


def write_photo(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (96, 64), colour)
    if path.suffix == ".heic":
        pillow_heif.from_pillow(image).save(str(path), quality=90)
    else:
        image.save(path, quality=90)
    return path


@pytest.fixture
def formats_stack(
    tmp_path: Path, embedder_address: str, search_server_factory: SearchServerFactory
) -> Iterator[tuple[str, Client, dict[str, Path]]]:
    search = search_server_factory()
    files = {name: write_photo(tmp_path / "photos" / name, colour) for name, colour in COLOURS.items()}
    with Client(embedder_address, search.address, connect_timeout=30) as client:
        thread = WebThread(create_app(WebSettings(cache_dir=tmp_path / "cache"), client))
        try:
            yield thread.start().rstrip("/"), client, files
        finally:
            thread.stop()


def test_heic_and_avif_are_indexed_shown_and_searched_by(formats_stack: tuple[str, Client, dict[str, Path]]) -> None:
    base, client, files = formats_stack
    # Pillow needs the plugin for HEIC: the file really is HEIF, not a JPEG with another name.
    assert files["iphone.heic"].read_bytes()[4:12] in (b"ftypheic", b"ftypmif1")
    report = client.index([files["iphone.heic"].parent], collection="formats")
    assert not report.failed, report.failed
    items = {Path(item.source).name: item for item in client.list_items()}
    assert set(items) == set(COLOURS)
    for name, colour in COLOURS.items():
        thumb = request(base, "GET", f"/media/{items[name].id}/thumb")
        assert thumb.status == 200, thumb.body
        assert thumb.headers["content-type"] == "image/jpeg"
        assert mean_colour(thumb.body) == pytest.approx(colour, abs=12)
        body, content_type = multipart("image", name, files[name].read_bytes(), "image/heic")
        found = request(base, "POST", "/api/search/image?top=1", body=body, headers={"Content-Type": content_type})
        assert found.status == 200, found.body
        assert [hit["id"] for hit in found.json()["hits"]] == [items[name].id]

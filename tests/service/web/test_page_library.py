"""The page on a library of its own: Chinese queries, file names and collections end to end, and an index
built with another model than the embedder's."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, urlsplit

import grpc
import pytest

from client import Client
from client.web import WebSettings, create_app
from clipsearch.testing.web import WebThread
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.service.web.browser import card, results, wait_for_results
from tests.service.web.support import request, write_photo
from tests.support.search import SearchServerFactory, make_item, random_vectors

# A real Chromium against the whole stack: the system tier.
pytestmark = pytest.mark.system

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'").expect

SMILING = "照片/微笑的男人.jpg"
FAMILY = "家庭"
OTHER_MODEL = pb.EmbeddingModel(model_id="OFA-Sys/chinese-clip-vit-base-patch16", family="chinese_clip", dimension=32)


WebApp = Callable[[str], str]


@pytest.fixture
def web_app(embedder_address: str, tmp_path: Path) -> Iterator[WebApp]:
    """start(search_address) -> the base URL of a web app on the tiny embedder and that search service."""
    threads: list[WebThread] = []

    def start(search_address: str) -> str:
        services = dataclasses.replace(
            WebSettings().services,
            embedder_addresses=(embedder_address,),
            search_address=search_address,
            connect_timeout=30,
        )
        thread = WebThread(create_app(WebSettings(services=services, cache_dir=tmp_path / f"cache-{len(threads)}")))
        threads.append(thread)
        return thread.start().rstrip("/")

    yield start
    for thread in threads:
        thread.stop()


def test_chinese_query_file_names_and_collection_end_to_end(
    page: Page, web_app: WebApp, search_server_factory: SearchServerFactory, embedder_address: str, tmp_path: Path
) -> None:
    library = tmp_path / "library"
    smiling = write_photo(library / SMILING, (200, 160, 120))
    write_photo(library / "照片/蓝色的海.png", (30, 60, 220))
    search = search_server_factory()
    with Client(embedder_address, search.address, connect_timeout=30) as client:
        assert not client.index([library], collection=FAMILY).failed
    base_url = web_app(search.address)

    page.goto(base_url + "/")
    box = page.get_by_role("searchbox", name="Search")
    box.press_sequentially("微笑的男人", delay=30)  # no Enter: the search runs after a pause in typing
    page.wait_for_url(re.compile(re.escape("q=" + quote("微笑的男人"))))
    api = request(base_url, "GET", f"/api/search?q={quote('微笑的男人')}&top=24").json()
    wait_for_results(page, len(api["hits"]))
    page.reload()
    expect(box).to_have_value("微笑的男人")
    assert parse_qs(urlsplit(page.url).query)["q"] == ["微笑的男人"]
    wait_for_results(page, len(api["hits"]))

    # The photo itself, uploaded: its Chinese name in the chip, the thumbnail's alt text, the caption, the viewer.
    page.get_by_label("Search by image").set_input_files(str(smiling))
    expect(page.get_by_text("Pictures like 微笑的男人.jpg")).to_be_visible()
    wait_for_results(page, 2)
    found = card(page, "微笑的男人.jpg")
    expect(found).to_contain_text("微笑的男人.jpg")
    assert found.locator(".card-name").get_attribute("title") == str(smiling)
    found.get_by_role("button", name="Open 微笑的男人.jpg").click()
    viewer = page.get_by_role("dialog", name="微笑的男人.jpg")
    expect(viewer).to_be_visible()
    expect(viewer.get_by_role("img", name="微笑的男人.jpg")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#viewer .viewer-img')?.naturalWidth > 0")
    expect(viewer).to_contain_text(str(smiling))
    expect(viewer).to_contain_text(FAMILY)
    page.keyboard.press("Escape")

    collection = page.get_by_role("combobox", name="Collection")
    expect(collection.get_by_role("option", name=f"{FAMILY} (2)")).to_have_count(1)
    collection.select_option(FAMILY)
    page.wait_for_url(re.compile(r"[?&]collection=" + re.escape(quote(FAMILY))))
    wait_for_results(page, 2)
    page.reload()  # the image search is gone with the page; the collection stays in the URL
    expect(collection).to_have_value(FAMILY)


def test_an_index_of_another_model_says_so_and_names_reindex(
    page: Page, web_app: WebApp, search_server_factory: SearchServerFactory, embedder_address: str, tmp_path: Path
) -> None:
    search = search_server_factory()
    photo = write_photo(tmp_path / "照片/微笑的男人.jpg", (200, 160, 120))
    with grpc.insecure_channel(search.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        item = make_item("a" * 32, random_vectors(1)[0], sources=[photo.as_uri()], collection=FAMILY)
        stub.Upsert(pb.UpsertRequest(items=[item], model=OTHER_MODEL))
    with Client(embedder_address, search.address, connect_timeout=30) as client:
        ours = client.model_info().model_id
    base_url = web_app(search.address)

    reply = request(base_url, "GET", f"/api/search?q={quote('微笑的男人')}")
    assert reply.status == 409
    assert reply.json()["reason"] == "model_mismatch"
    assert OTHER_MODEL.model_id in reply.error and ours in reply.error and "clipsearch reindex" in reply.error

    searches: list[str] = []
    page.on("request", lambda r: searches.append(r.url) if "/api/search" in r.url else None)
    page.goto(base_url + f"/?q={quote('微笑的男人')}")
    alert = page.get_by_role("alert").filter(has_text="The library was indexed with another model")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(OTHER_MODEL.model_id)
    expect(alert).to_contain_text(ours)
    expect(alert.locator("code", has_text="clipsearch reindex")).to_have_count(1)
    expect(results(page)).to_have_count(0)
    # Both services answer: no "service down" banner, and the search is not retried in a loop.
    expect(page.get_by_text("Search service: up")).to_be_visible()
    expect(page.get_by_text(re.compile(r"service\b.* is down"))).to_have_count(0)
    page.wait_for_timeout(500)
    assert len(searches) == 1, searches

"""The page while the library loads after a restart: a banner saying how far, not a service-down error."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from client.web import WebSettings, create_app
from clipsearch.testing.web import WebThread
from search_service.redis_server import LocalRedis
from search_service.server import build_server
from tests.service.web.browser import screenshot
from tests.support.search import search_test_config, write_filler

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'").expect

# A browser drives the page: the system tier, like the other page tests.
pytestmark = pytest.mark.system

# Redis's own test settings: a delay per key loaded (microseconds), progress every KiB.
SLOW_LOAD = ("key-load-delay 2000", "loading-process-events-interval-bytes 1024")


@pytest.fixture
def loading_library(redis_data_dir: Path, embedder_address: str, tmp_path: Path) -> Iterator[tuple[str, LocalRedis]]:
    """A web app on a search service whose Redis is restarting with a library that loads for several seconds."""
    local = LocalRedis(redis_data_dir)
    with local, local.client() as client:
        write_filler(client, 6000, seed=3)
    local.extra_config = SLOW_LOAD
    starting = threading.Thread(target=local.start)
    starting.start()
    search = build_server(dataclasses.replace(search_test_config(local.url), dimension=32))
    search.start()
    services = dataclasses.replace(
        WebSettings().services, embedder_addresses=(embedder_address,), search_address=f"127.0.0.1:{search.port}"
    )
    thread = WebThread(create_app(WebSettings(services=services, cache_dir=tmp_path / "cache", probe_timeout=5.0)))
    try:
        yield thread.start().rstrip("/"), local
    finally:
        thread.stop()
        search.stop(0)
        starting.join()
        local.stop()


def test_the_page_shows_the_library_loading_then_clears_it(loading_library: tuple[str, LocalRedis], page: Page) -> None:
    url, _local = loading_library
    page.goto(url + "/")
    banner = page.locator("#banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Loading the library: ")
    expect(banner).to_have_class("banner banner-info")
    expect(banner.locator(".banner-retry")).to_be_hidden()
    expect(page.locator("#services")).to_contain_text("Search service: up")
    screenshot(page, "library_loading_banner")
    # The page checks again by itself while the library loads, and the banner goes once it is loaded.
    expect(banner).to_be_hidden(timeout=120_000)
    expect(page.locator("#library")).to_contain_text("Library: 0 items")

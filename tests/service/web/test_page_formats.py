"""In a real Chromium: an H.264 Matroska video plays from its moment, and a HEIC photo is shown."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from client import Client
from client.results import Item
from client.web import WebSettings, create_app
from clipsearch.testing.web import WebThread
from tests.service.web.browser import card, wait_for_results
from tests.service.web.support import write_video
from tests.service.web.test_image_formats import write_photo
from tests.service.web.test_page_viewer import PLAYING_AT
from tests.support.search import SearchServerFactory

# A real Chromium against the whole stack: the system tier.
pytestmark = pytest.mark.system

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'").expect


@dataclass(frozen=True)
class FormatsStack:
    base_url: str
    items: list[Item]

    def frame(self, name: str, second: int) -> Item:
        return next(i for i in self.items if Path(i.source).name == name and round(i.timestamp_seconds or 0) == second)


@pytest.fixture
def formats_stack(
    tmp_path: Path, embedder_address: str, search_server_factory: SearchServerFactory
) -> Iterator[FormatsStack]:
    search = search_server_factory()
    folder = tmp_path / "media"
    write_video(folder / "film.mkv")
    write_photo(folder / "iphone.heic", (200, 40, 40))
    with Client(embedder_address, search.address, connect_timeout=30) as client:
        report = client.index([folder], fps=1.0)
        assert not report.failed, report.failed
        items = list(client.list_items())
        thread = WebThread(create_app(WebSettings(cache_dir=tmp_path / "cache"), client))
        try:
            yield FormatsStack(thread.start().rstrip("/"), items)
        finally:
            thread.stop()


def test_h264_matroska_plays_from_its_moment(page: Page, formats_stack: FormatsStack) -> None:
    frame = formats_stack.frame("film.mkv", 3)
    page.goto(f"{formats_stack.base_url}/?like={frame.id}&media=video&frames=1")
    wait_for_results(page)
    card(page, "film.mkv at 00:00:04").get_by_role("button", name="Open film.mkv").click()
    dialog = page.get_by_role("dialog", name="film.mkv")
    expect(dialog).to_be_visible()
    started = page.wait_for_function(PLAYING_AT).json_value()
    assert abs(started - 4.0) <= 1.0, started
    expect(dialog.get_by_text("This browser cannot play")).to_be_hidden()
    expect(dialog.get_by_role("link", name="Open video")).to_be_visible()


def test_heic_photo_is_shown_as_a_preview(page: Page, formats_stack: FormatsStack) -> None:
    page.goto(f"{formats_stack.base_url}/?q=a+red+photo")
    wait_for_results(page)  # every thumbnail loaded, the HEIC photo's included
    heic = card(page, "iphone.heic")
    heic.get_by_role("button", name="Open iphone.heic").click()
    dialog = page.get_by_role("dialog", name="iphone.heic")
    image = dialog.get_by_role("img", name="iphone.heic")
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    expect(dialog.get_by_text("this is a preview")).to_be_visible()
    expect(dialog.get_by_role("link", name="Open original")).to_be_visible()

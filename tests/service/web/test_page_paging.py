"""Paging in a real Chromium: results load page by page as the grid scrolls, and the count grows with them.
The test library is small, so the page is served with pages of 4 results instead of 24."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.service.web.browser import PHONE, alts, opened_page, results, wait_for_results
from tests.service.web.conftest import WebStack
from tests.service.web.support import request as http_request

# A real Chromium against the whole stack: the system tier.
pytestmark = pytest.mark.system

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request, Route

expect = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'").expect

PAGE_SIZE = 4


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    # A phone-sized window: a page of 4 results is two rows, so later pages load only on scrolling.
    with opened_page(browser, request.node.name, viewport={"width": PHONE["width"], "height": 600}) as opened:
        yield opened


def small_pages(page: Page, base_url: str) -> None:
    """Serves the page's script with PAGE_SIZE results per page."""
    script = http_request(base_url, "GET", "/static/app.js").body.decode()
    assert "const PAGE = 24;" in script

    def fulfil(route: Route) -> None:
        route.fulfill(
            body=script.replace("const PAGE = 24;", f"const PAGE = {PAGE_SIZE};"), content_type="text/javascript"
        )

    page.route("**/static/app.js", fulfil)


def like_hits(stack: WebStack, item_id: str) -> list[str]:
    """The alt texts of "More like" an item's results, from the API, every video frame its own result."""
    query = urlencode({"like": item_id, "top": "100", "frames": "1"})
    reply = http_request(stack.base_url, "GET", f"/api/search?{query}")
    assert reply.status == 200, reply.body
    return [f"{h['name']} at {h['time']}" if h["media"] == "video" else h["name"] for h in reply.json()["hits"]]


def test_results_load_page_by_page_while_scrolling(page: Page, web_stack: WebStack) -> None:
    # The item with the most results (scores below 0 are not listed; the tiny model decides how many).
    like, expected = max(
        ((item.id, like_hits(web_stack, item.id)) for found in web_stack.items.values() for item in found),
        key=lambda pair: len(pair[1]),
    )
    assert len(expected) > 2 * PAGE_SIZE, expected
    small_pages(page, web_stack.base_url)
    offsets: list[int] = []

    def record(sent: Request) -> None:
        if "/api/search?" in sent.url:
            offsets.append(int(parse_qs(urlsplit(sent.url).query)["offset"][0]))

    page.on("request", record)
    # The page asks for the next page as soon as the end of the grid is within 800 px of the screen, which a
    # page of 4 results is: later pages are held back until the first page has been seen on its own.
    held: list[Route] = []

    def hold_later_pages(route: Route) -> None:
        if parse_qs(urlsplit(route.request.url).query)["offset"][0] == "0":
            route.continue_()
        else:
            held.append(route)

    page.route("**/api/search?*", hold_later_pages)
    # frames=1 lists every video frame, enough results for several pages of the small library.
    page.goto(f"{web_stack.base_url}/?like={like}&frames=1")
    status = page.get_by_role("status")
    expect(status).to_have_text(re.compile(rf"^{PAGE_SIZE} results · more below"))
    expect(results(page)).to_have_count(PAGE_SIZE)
    more = page.get_by_role("button", name="Show more results")
    expect(more).to_be_visible()
    page.unroute("**/api/search?*", hold_later_pages)
    for route in held:
        route.continue_()
    # Scrolling to the end of the grid loads the following pages until there are no more.
    for _ in range(200):
        if re.match(rf"^{len(expected)} results(?! · more)", status.inner_text()):
            break
        page.mouse.wheel(0, 2000)
        page.wait_for_timeout(100)
    else:
        raise AssertionError(f"scrolling stopped at {status.inner_text()!r}")
    wait_for_results(page, len(expected))
    assert alts(page) == expected
    assert offsets == list(range(0, len(expected), PAGE_SIZE)), offsets
    expect(more).to_be_hidden()

"""The page in a real Chromium on the real stack: searching by text and by image, the score cut-off, filters,
the URL, the keyboard and the banner when a service is down."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest

from tests.service.web.browser import (
    alts,
    best_matches,
    card,
    results,
    search,
    wait_for_results,
)
from tests.service.web.conftest import OwnWebStack, WebStack
from tests.service.web.support import multipart, request

# A real Chromium against the whole stack: the system tier.
pytestmark = pytest.mark.system

if TYPE_CHECKING:
    from playwright.sync_api import FilePayload, Page

expect = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'").expect


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


# The tiny random-weight model scores some items below 0; with no cut-off by default every query finds the
# whole library, and tests that need a cut-off compare the page with the API.
QUERIES = ("a red square", "a photo", "squares", "colours", "a video frame", "海滩", "blue sky")


def api_hits(stack: WebStack, **params: str) -> list[dict[str, Any]]:
    reply = request(stack.base_url, "GET", f"/api/search?{urlencode({'top': '100', **params})}")
    assert reply.status == 200, reply.body
    hits: list[dict[str, Any]] = reply.json()["hits"]
    return hits


def alt_of(hit: dict[str, Any]) -> str:
    return f"{hit['name']} at {hit['time']}" if hit["media"] == "video" else str(hit["name"])


def busiest_query(stack: WebStack) -> str:
    return max(QUERIES, key=lambda query: len(api_hits(stack, q=query)))


def test_text_search_shows_a_grid_of_loaded_thumbnails(page: Page, web_stack: WebStack) -> None:
    query = busiest_query(web_stack)
    expected = [alt_of(hit) for hit in api_hits(web_stack, q=query, top="24")]
    page.goto(web_stack.base_url + "/")
    expect(page.get_by_role("heading", name="Find any moment in your photos and videos")).to_be_visible()
    search(page, query)
    n = wait_for_results(page, len(expected))
    assert query_of(page.url)["q"] == [query]
    assert alts(page) == expected
    loaded = page.locator("#results img").evaluate_all("(images) => images.map((img) => img.naturalWidth)")
    assert len(loaded) == n and all(width > 0 for width in loaded), loaded
    # Each card shows its score and offers "More like this", "What is this?" and the viewer.
    assert re.search(r"\b[01]\.\d\d\b", results(page).first.inner_text())
    expect(page.get_by_role("button", name="More like this")).to_have_count(n)
    expect(page.get_by_role("button", name="What is this?")).to_have_count(n)
    expect(results(page).first.get_by_role("button", name=f"Open {expected[0].split(' at ')[0]}")).to_be_visible()
    # A video frame's thumbnail says which file and when.
    like = web_stack.id_of("clip.mp4", 3)
    frames = [alt_of(hit) for hit in api_hits(web_stack, like=like, media="video", top="24")]
    page.goto(web_stack.base_url + f"/?like={like}&media=video")
    wait_for_results(page, len(frames))
    assert alts(page) == frames
    assert all(re.fullmatch(r"(clip\.mp4|legacy\.avi) at 00:00:0\d", alt) for alt in frames), frames
    expect(card(page, frames[0])).to_contain_text(frames[0].split(" at ")[1])


def test_typing_searches_after_a_pause_and_back_restores_the_previous_query(page: Page, web_stack: WebStack) -> None:
    page.goto(web_stack.base_url + "/?q=green")
    wait_for_results(page)
    box = page.get_by_role("searchbox", name="Search")
    expect(box).to_have_value("green")
    box.fill("")
    box.press_sequentially("blue sky", delay=30)  # no Enter: the debounced search runs
    page.wait_for_url(re.compile(r"[?&]q=blue(\+|%20)sky"))
    wait_for_results(page)
    page.go_back()
    page.wait_for_url(re.compile(r"[?&]q=green"))
    expect(box).to_have_value("green")
    page.go_forward()
    expect(box).to_have_value("blue sky")


def test_chinese_query_round_trips_in_the_url(page: Page, web_stack: WebStack) -> None:
    page.goto(web_stack.base_url + "/")
    search(page, "黄色的花")
    wait_for_results(page, len(api_hits(web_stack, q="黄色的花", top="24")))
    assert query_of(page.url)["q"] == ["黄色的花"]
    assert "%E9%BB%84%E8%89%B2" in page.url  # UTF-8, percent-encoded
    # The shared link opens the same search.
    page.goto(page.url)
    expect(page.get_by_role("searchbox", name="Search")).to_have_value("黄色的花")
    wait_for_results(page)
    assert "黄色的花" in page.title()
    # Chinese file names show as they are.
    page.get_by_label("Search by image").set_input_files(str(web_stack.library.files["黄色的花.png"]))
    expect(page.get_by_text("Pictures like 黄色的花.png")).to_be_visible()
    wait_for_results(page)
    assert "黄色的花.png" in best_matches(page)
    expect(card(page, "黄色的花.png")).to_contain_text("黄色的花.png")
    expect(card(page, "黄色的花.png").get_by_role("button", name="Open 黄色的花.png")).to_be_visible()


def test_search_by_image_upload_puts_that_photo_first(page: Page, web_stack: WebStack) -> None:
    page.goto(web_stack.base_url + "/")
    page.get_by_label("Search by image").set_input_files(str(web_stack.library.files["green.jpg"]))
    wait_for_results(page)
    assert "green.jpg" in best_matches(page)
    expect(page.get_by_text("Pictures like green.jpg")).to_be_visible()
    # A file that is no image gets a clear message from the server, not a blank page.
    broken: FilePayload = {"name": "broken.png", "mimeType": "image/png", "buffer": b"not a picture at all"}
    page.get_by_label("Search by image").set_input_files(broken)
    alert = page.get_by_role("alert").filter(has_text="The search did not work")
    expect(alert).to_be_visible()
    assert len(alert.inner_text().strip().splitlines()) >= 2  # a title and the server's reason
    expect(results(page)).to_have_count(0)


def test_image_search_stays_in_the_url_through_a_reload(page: Page, web_stack: WebStack) -> None:
    page.goto(web_stack.base_url + "/?media=image")
    page.get_by_label("Search by image").set_input_files(str(web_stack.library.files["blue.png"]))
    n = wait_for_results(page)
    page.wait_for_url(re.compile(r"[?&]image=[a-z0-9]+"))
    first = alts(page)
    assert query_of(page.url)["media"] == ["image"]
    page.reload()
    expect(page.get_by_text("Pictures like blue.png")).to_be_visible()
    wait_for_results(page, n)
    assert alts(page) == first
    # Another tab has not searched by this picture: the page says so instead of showing nothing.
    other = page.context.browser.new_page() if page.context.browser else None
    assert other is not None
    try:
        other.goto(page.url)
        expect(other.get_by_role("heading", name="This picture is no longer here")).to_be_visible()
    finally:
        other.close()


def _file_transfer(page: Page, path: Path, mime: str) -> object:
    """A DataTransfer in the page holding the file at `path`, as a drag or the clipboard carries it."""
    data = base64.b64encode(path.read_bytes()).decode()
    return page.evaluate_handle(
        """([data, name, mime]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            return transfer;
        }""",
        [data, path.name, mime],
    )


def test_drop_and_paste_an_image_search_by_it(page: Page, web_stack: WebStack) -> None:
    page.goto(web_stack.base_url + "/")
    transfer = _file_transfer(page, web_stack.library.files["blue.png"], "image/png")
    page.dispatch_event("main", "dragenter", {"dataTransfer": transfer})
    expect(page.get_by_text("Drop an image to find pictures like it")).to_be_visible()
    page.dispatch_event("main", "drop", {"dataTransfer": transfer})
    expect(page.get_by_text("Drop an image to find pictures like it")).to_be_hidden()
    wait_for_results(page)
    assert "blue.png" in best_matches(page)
    transfer = _file_transfer(page, web_stack.library.files["red.png"], "image/png")
    page.evaluate(
        "(transfer) => document.body.dispatchEvent(new ClipboardEvent('paste', {clipboardData: transfer, bubbles: true}))",
        transfer,
    )
    expect(page.get_by_text("Pictures like red.png")).to_be_visible()
    wait_for_results(page)
    assert "red.png" in best_matches(page)


def test_more_like_this_searches_by_that_item(page: Page, web_stack: WebStack) -> None:
    page.goto(web_stack.base_url + f"/?like={web_stack.id_of('green.jpg')}")
    wait_for_results(page)
    page.get_by_role("searchbox", name="Search").fill("anything")
    page.get_by_role("searchbox", name="Search").press("Enter")
    page.wait_for_url(re.compile(r"[?&]q=anything"))
    wait_for_results(page, len(api_hits(web_stack, q="anything", top="24")))
    first = alts(page)[0]
    results(page).first.get_by_role("button", name="More like this").click()
    page.wait_for_url(re.compile(r"[?&]like="))
    liked = query_of(page.url)["like"][0]
    expected = [alt_of(hit) for hit in api_hits(web_stack, like=liked, top="24")]
    wait_for_results(page, len(expected))
    # The item itself is left out: the others nearest to it, in the API's order.
    assert alts(page) == expected and first not in expected
    expect(page.get_by_text(f"More like {first}")).to_be_visible()
    expect(page.get_by_role("searchbox", name="Search")).to_have_value("")
    page.go_back()
    page.wait_for_url(re.compile(r"[?&]q=anything"))
    expect(page.get_by_role("searchbox", name="Search")).to_have_value("anything")
    expect(page.get_by_text(f"More like {first}")).to_be_hidden()


def test_minimum_score_hides_weaker_matches_and_says_when_nothing_is_left(page: Page, web_stack: WebStack) -> None:
    query = busiest_query(web_stack)
    scores = [hit["score"] for hit in api_hits(web_stack, q=query)]
    # A cut-off that keeps the best matches and hides the others.
    cutoffs = sorted({math.floor(score * 100) / 100 for score in scores})
    assert len(cutoffs) >= 2, f"scores too close together to test a cut-off: {scores}"
    cutoff = cutoffs[len(cutoffs) // 2]
    # Counted by the API: frames of a moment below the cut-off split it in two.
    kept = len(api_hits(web_stack, q=query, min_score=f"{cutoff:.2f}"))
    assert 0 < sum(score >= cutoff for score in scores) < len(scores)
    page.goto(web_stack.base_url + f"/?q={quote(query)}")
    wait_for_results(page, len(scores))
    slider = page.get_by_role("slider", name="Minimum score")
    slider.fill(f"{cutoff:.2f}")
    page.wait_for_url(re.compile(rf"[?&]min={cutoff:.2f}"))
    wait_for_results(page, kept)
    card_scores = [
        float(s) for s in page.locator("#results li").evaluate_all("(cards) => cards.map((c) => c.dataset.score)")
    ]
    assert all(score >= cutoff for score in card_scores), card_scores
    # Above the best match: an honest empty state, which offers the cut-off that shows the best match.
    slider.fill("0.99" if max(scores) < 0.99 else "1")
    expect(page.get_by_role("heading", name="Nothing above this score")).to_be_visible()
    expect(results(page)).to_have_count(0)
    best = math.floor(max(scores) * 100) / 100
    page.get_by_role("button", name=f"Lower the minimum to {best:.2f}").click()
    wait_for_results(page)
    assert alts(page)


def api_image_alts(stack: WebStack, photo: str, **params: str) -> list[str]:
    body, content_type = multipart("image", photo, stack.library.files[photo].read_bytes(), "image/jpeg")
    target = f"/api/search/image?{urlencode({'top': '24', **params})}"
    reply = request(stack.base_url, "POST", target, body=body, headers={"Content-Type": content_type})
    assert reply.status == 200, reply.body
    return [alt_of(hit) for hit in reply.json()["hits"]]


def test_filters_by_collection_and_kind(page: Page, web_stack: WebStack) -> None:
    photo = "trips/海滩 sunset.jpg"
    page.goto(web_stack.base_url + "/")
    page.get_by_label("Search by image").set_input_files(str(web_stack.library.files[photo]))
    total = wait_for_results(page, len(api_image_alts(web_stack, photo)))
    collection = page.get_by_role("combobox", name="Collection")
    expect(collection.get_by_role("option", name=re.compile("^假期"))).to_have_count(1)
    collection.select_option("假期")
    page.wait_for_url(re.compile(r"[?&]collection=%E5%81%87%E6%9C%9F"))
    holiday = api_image_alts(web_stack, photo, collection="假期")
    wait_for_results(page, len(holiday))
    assert alts(page) == holiday and "海滩 sunset.jpg" in best_matches(page)
    page.get_by_role("radiogroup", name="Show").get_by_role("radio", name="Video frames").check()
    page.wait_for_url(re.compile(r"[?&]media=video"))
    frames = api_image_alts(web_stack, photo, collection="假期", media="video")
    wait_for_results(page, len(frames))
    assert alts(page) == frames and all(" at " in alt for alt in frames)
    page.get_by_role("radio", name="Photos").check()
    wait_for_results(page, 1)
    assert alts(page) == ["海滩 sunset.jpg"]
    collection.select_option("")
    page.get_by_role("radio", name="All").check()
    page.wait_for_url(re.compile(r"/\?image=[a-z0-9]+$"))  # the filters gone, the picture kept
    wait_for_results(page, total)
    expect(page.get_by_text("Pictures like 海滩 sunset.jpg")).to_be_visible()


def test_keyboard_focuses_moves_opens_and_closes(page: Page, web_stack: WebStack) -> None:
    page.goto(web_stack.base_url + "/")
    page.locator("body").click(position={"x": 5, "y": 400})
    page.keyboard.press("/")
    box = page.get_by_role("searchbox", name="Search")
    expect(box).to_be_focused()
    page.keyboard.type(busiest_query(web_stack))
    page.keyboard.press("Enter")
    n = wait_for_results(page)
    buttons = page.locator("#results .card-open")
    page.keyboard.press("ArrowDown")
    expect(buttons.nth(0)).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(buttons.nth(1)).to_be_focused()
    columns = page.evaluate(
        "() => { const cards = [...document.querySelectorAll('#results li')];"
        " return cards.filter((c) => c.offsetTop === cards[0].offsetTop).length; }"
    )
    assert 1 < columns < n
    page.keyboard.press("ArrowDown")
    expect(buttons.nth(1 + columns)).to_be_focused()
    page.keyboard.press("ArrowLeft")
    expect(buttons.nth(columns)).to_be_focused()
    name = alts(page)[columns].split(" at ")[0]
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name=name)
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(buttons.nth(columns)).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect(buttons.nth(0)).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect(box).to_be_focused()


def test_banner_names_the_service_that_is_down(page: Page, own_web_stack: OwnWebStack) -> None:
    page.goto(own_web_stack.base_url + "/")
    expect(page.get_by_text("Search service: up")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    own_web_stack.stop_search()
    search(page, "a red square")
    banner = page.get_by_role("alert").filter(has_text=re.compile(r"Search service\b.* is down"))
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(own_web_stack.search_address)
    expect(page.get_by_text("The search did not work")).to_be_visible()
    expect(page.get_by_text("Embedder service: up")).to_be_visible()
    own_web_stack.stop_embedder()
    page.get_by_role("button", name="Check again").click()
    expect(page.get_by_role("alert").filter(has_text=re.compile(r"Embedder service\b.* is down"))).to_be_visible()
    expect(banner).to_be_visible()

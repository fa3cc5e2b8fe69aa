"""The page's viewer in a real Chromium on the real stack: the full photo, a video playing from the frame's
moment (with Range requests), a video the browser cannot play, and "What is this?"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest

from tests.service.web.browser import card, wait_for_results
from tests.service.web.conftest import WebStack
from tests.service.web.support import request

# A real Chromium against the whole stack: the system tier.
pytestmark = pytest.mark.system

if TYPE_CHECKING:
    from playwright.sync_api import Page, Response

expect = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'").expect

# The first time the viewer's video plays: its position then, or null while it does not play yet.
PLAYING_AT = """() => {
    const video = document.querySelector("dialog[open] video");
    return video && !video.paused && video.readyState >= 3 && video.currentTime > 0 ? video.currentTime : null;
}"""


def frame_search(stack: WebStack, name: str, seconds: range) -> tuple[str, dict[str, Any]]:
    """A search (its URL query) whose results include a frame of video `name` at one of `seconds`, and that
    hit. The tiny model's scores decide which searches list which frames, so this looks for one."""
    for like in [item.id for found in stack.items.values() for item in found]:
        params = {"like": like, "media": "video", "collection": "假期"}
        reply = request(stack.base_url, "GET", f"/api/search?{urlencode({**params, 'top': '24'})}")
        assert reply.status == 200, reply.body
        for hit in reply.json()["hits"]:
            if hit["name"] == name and round(hit["timestamp_seconds"]) in seconds:
                return urlencode(params), hit
    raise AssertionError(f"no search lists a frame of {name} at {seconds}")


def open_from_results(page: Page, stack: WebStack, query: str, hit: dict[str, Any]) -> None:
    page.goto(f"{stack.base_url}/?{query}")
    wait_for_results(page)
    alt = f"{hit['name']} at {hit['time']}"
    card(page, alt).get_by_role("button", name=f"Open {hit['name']}").click()


def test_video_frame_plays_from_its_moment(page: Page, web_stack: WebStack) -> None:
    query, hit = frame_search(web_stack, "clip.mp4", range(1, 5))
    statuses: list[int] = []

    def record(response: Response) -> None:
        if response.url.endswith(hit["media_url"]):
            statuses.append(response.status)

    page.on("response", record)
    open_from_results(page, web_stack, query, hit)
    dialog = page.get_by_role("dialog", name="clip.mp4")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(hit["time"])
    started = page.wait_for_function(PLAYING_AT).json_value()
    assert abs(started - hit["timestamp_seconds"]) <= 1.0, (started, hit["timestamp_seconds"])
    page.wait_for_timeout(400)
    state = dialog.locator("video").evaluate("(v) => ({time: v.currentTime, paused: v.paused, ended: v.ended})")
    assert state["time"] > started, state  # it plays on
    assert not state["paused"] or state["ended"], state
    assert 206 in statuses, statuses  # seeking reads the file by Range
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    # Closing stops the video (in the dialog's close event, which the browser dispatches after hiding it).
    page.wait_for_function(
        "() => document.querySelector('dialog video') === null || document.querySelector('dialog video').paused",
        timeout=5000,
    )


def test_video_the_browser_cannot_play_shows_the_frame_and_says_so(page: Page, web_stack: WebStack) -> None:
    query, hit = frame_search(web_stack, "legacy.avi", range(3))
    assert hit["playable"] is False
    open_from_results(page, web_stack, query, hit)
    dialog = page.get_by_role("dialog", name="legacy.avi")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_text("This browser cannot play this video file")).to_be_visible()
    frame = dialog.get_by_role("img", name=f"legacy.avi at {hit['time']}")
    expect(frame).to_be_visible()
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=frame.element_handle())
    expect(dialog.locator("video")).to_have_count(0)
    expect(dialog.get_by_role("link", name="Open video")).to_have_attribute("href", hit["media_url"])


def test_photo_opens_full_size_and_what_is_this_classifies_it(page: Page, web_stack: WebStack) -> None:
    page.goto(web_stack.base_url + "/")
    page.get_by_label("Search by image").set_input_files(str(web_stack.library.files["red.png"]))
    wait_for_results(page)
    red = card(page, "red.png")
    red.get_by_role("button", name="Open red.png").click()
    dialog = page.get_by_role("dialog", name="red.png")
    expect(dialog).to_be_visible()
    image = dialog.get_by_role("img", name="red.png")
    expect(image).to_have_attribute("src", f"/media/{web_stack.id_of('red.png')}/file")
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    expect(dialog).to_contain_text("photos")  # its collection
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(red.get_by_role("button", name="Open red.png")).to_be_focused()

    red.get_by_role("button", name="What is this?").click()
    labels = dialog.get_by_role("textbox", name="Labels")
    expect(labels).to_be_focused()
    labels.fill("红色的方块")
    dialog.get_by_role("button", name="Classify").click()
    expect(dialog.get_by_text("Type at least two labels")).to_be_visible()
    labels.fill("红色的方块, a green field， the blue sea")  # an ASCII and a full-width comma
    dialog.get_by_role("button", name="Classify").click()
    answers = dialog.get_by_role("list", name="Classification").get_by_role("listitem")
    expect(answers).to_have_count(3)
    rows = [row.split("\n") for row in answers.all_inner_texts()]
    assert sorted(label for label, _ in rows) == sorted(["红色的方块", "a green field", "the blue sea"])
    percents = [float(percent.rstrip("%")) for _, percent in rows]
    assert percents == sorted(percents, reverse=True)
    assert abs(sum(percents) - 100) <= 0.5, percents

"""Searching what is said on the page, in a real Chromium on the real stack: the phrase typed in the second
field, the result showing its line with the words highlighted, and the viewer playing from the line's start
with the video's subtitles shown (an embedded mov_text track, served as WebVTT from the stored cues)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from client import Client
from client.web import create_app
from clipsearch.testing.web import WebThread
from tests.service.web.browser import results, screenshot, wait_for_results
from tests.service.web.conftest import WebStack, _search_config, _start_search
from tests.service.web.support import request
from tests.support.subtitled import srt, write_video

pytestmark = pytest.mark.system

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'").expect

CUE = (2.0, 5.0, "Well then: see you tomorrow, by the harbour.")
CHINESE = (1.0, 3.0, "我们明天见")
# The first time the viewer's video plays: its position then, or null while it does not play yet.
PLAYING_AT = """() => {
    const video = document.querySelector("dialog[open] video");
    return video && !video.paused && video.readyState >= 3 && video.currentTime > 0 ? video.currentTime : null;
}"""
# The text of the cues the viewer's video shows now ("" while none), and which track shows them.
SHOWN = """() => {
    const video = document.querySelector("dialog[open] video");
    const track = video && [...video.textTracks].find((t) => t.mode === "showing");
    if (!track || !track.activeCues) return null;
    return {label: track.label, text: [...track.activeCues].map((c) => c.text).join(" ")};
}"""


@pytest.fixture(scope="module")
def said_site(
    tmp_path_factory: pytest.TempPathFactory, embedder_address: str, redis_url: str, web_stack: WebStack
) -> Iterator[str]:
    """A web app on a search index of its own holding one talking video: H.264 with an English mov_text
    track inside, and a GBK Chinese subtitle file beside it."""
    library = tmp_path_factory.mktemp("said-library")
    write_video(
        library / "talk.mp4",
        seconds=6,
        fps=10,
        size=(160, 96),
        codec="libx264",
        subtitles=[("mov_text", "eng", [(0.5, 1.5, "Hello."), CUE])],
    )
    (library / "talk.zh.srt").write_bytes(srt([CHINESE]).encode("gbk"))
    server, address = _start_search(_search_config(redis_url, f"said{uuid.uuid4().hex[:8]}"))
    try:
        with Client(embedder_address, address, connect_timeout=30) as client:
            report = client.index([library])
            assert (report.subtitle_lines, report.subtitle_tracks, report.failed) == (3, 2, [])
        settings = web_stack.settings(tmp_path_factory.mktemp("said-cache"))
        services = dataclasses.replace(settings.services, search_address=address)
        thread = WebThread(create_app(dataclasses.replace(settings, services=services)))
        url = thread.start().rstrip("/")
        try:
            yield url
        finally:
            thread.stop()
    finally:
        server.stop(0)


def test_the_line_is_found_shown_and_played_with_subtitles(page: Page, said_site: str) -> None:
    page.goto(said_site)
    box = page.get_by_role("searchbox", name="What is said")
    box.fill("see you tomorrow")
    box.press("Enter")
    assert wait_for_results(page, 1) == 1
    card = results(page).first
    expect(card).to_contain_text("see you tomorrow, by the harbour")
    marks = card.locator("mark").all_inner_texts()
    assert [m.lower() for m in marks] == ["see", "you", "tomorrow"], marks
    screenshot(page, "said-results")

    card.get_by_role("button", name="Open talk.mp4").click()
    dialog = page.get_by_role("dialog", name="talk.mp4")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".viewer-said")).to_contain_text("see you tomorrow")
    started = page.wait_for_function(PLAYING_AT).json_value()
    assert abs(started - CUE[0]) <= 1.5, started
    shown = page.wait_for_function(f"() => {{ const s = ({SHOWN})(); return s && s.text ? s : null; }}").json_value()
    assert shown["text"] == CUE[2] and "mov_text" in shown["label"], shown
    showing = dialog.locator("video").evaluate("(v) => [...v.textTracks].filter((t) => t.mode === 'showing').length")
    assert showing == 1
    screenshot(page, "said-viewer")


def test_chinese_and_the_tracks(page: Page, said_site: str) -> None:
    page.goto(f"{said_site}/?said=明天")
    assert wait_for_results(page, 1) == 1
    card = results(page).first
    expect(card).to_contain_text("我们明天见")
    assert card.locator("mark").all_inner_texts() == ["明天"]
    hit = request(said_site, "GET", f"/api/search?said={quote('明天')}").json()["hits"][0]
    tracks = request(said_site, "GET", f"/media/{hit['id']}/subtitles").json()
    assert [(t["name"], t["language"], t["cues"]) for t in tracks] == [
        ("embedded #1 (mov_text)", "eng", 2),
        ("talk.zh.srt", "zh", 1),
    ]
    vtt = request(said_site, "GET", tracks[1]["url"])
    assert vtt.status == 200 and vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.body.decode() == "WEBVTT\n\n1\n00:00:01.000 --> 00:00:03.000\n我们明天见\n"
    missing = request(said_site, "GET", f"/media/{hit['id']}/subtitles/5.vtt")
    assert missing.status == 404 and "no track 5" in missing.error

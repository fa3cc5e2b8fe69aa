"""The page's "Collapse near-duplicates" toggle in a real Chromium, and the API's collapse_duplicates."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client import Client
from client.web import WebSettings, create_app
from clipsearch.testing.web import WebThread
from tests.service.web.browser import launched_chromium, opened_page, results, wait_for_results
from tests.service.web.support import multipart, request
from tests.support.photos import copies, encode, scene
from tests.support.search import SearchServerFactory

# A real Chromium against the whole stack: the system tier.
pytestmark = pytest.mark.system

expect = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'").expect

COPIES = ("beach.png", "beach.half.jpg", "beach.q60.jpg")


@pytest.fixture
def site(
    search_server_factory: SearchServerFactory, embedder_address: str, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """A web app over an index of its own: a photo in three files (copies) and another photo."""
    folder = tmp_path / "library"
    folder.mkdir()
    files = copies(scene(1))
    for name in COPIES:
        (folder / name).write_bytes(files[name.removeprefix("beach.")])
    (folder / "other.png").write_bytes(encode(scene(2), "PNG"))
    search = search_server_factory()
    with Client(embedder_address, search.address, connect_timeout=30) as client:
        assert not client.index([folder]).failed
    services = dataclasses.replace(
        WebSettings().services,
        embedder_addresses=(embedder_address,),
        search_address=search.address,
        connect_timeout=30,
    )
    thread = WebThread(create_app(WebSettings(cache_dir=tmp_path / "cache", services=services)))
    try:
        yield thread.start().rstrip("/"), folder
    finally:
        thread.stop()


def api_hits(base_url: str, folder: Path, *, collapse: bool, min_score: float) -> list[dict[str, Any]]:
    """The API's hits for a search by beach.png's picture."""
    body, content_type = multipart("image", "beach.png", (folder / "beach.png").read_bytes())
    target = f"/api/search/image?min_score={min_score}&collapse_duplicates={str(collapse).lower()}"
    reply = request(base_url, "POST", target, body=body, headers={"Content-Type": content_type})
    assert reply.status == 200, reply.body
    hits: list[dict[str, Any]] = json.loads(reply.body)["hits"]
    return hits


def test_the_api_lists_a_photos_copies_with_collapse_duplicates(site: tuple[str, Path]) -> None:
    base_url, folder = site
    assert len(api_hits(base_url, folder, collapse=False, min_score=-1)) == 4
    hits = api_hits(base_url, folder, collapse=True, min_score=-1)
    assert len(hits) == 2
    first = hits[0]
    assert sorted([first["name"], *(d["name"] for d in first["duplicates"])]) == sorted(COPIES)
    assert all({"id", "score", "name", "source", "thumbnail_url"} <= set(d) for d in first["duplicates"])
    assert [d["score"] for d in first["duplicates"]] == sorted((d["score"] for d in first["duplicates"]), reverse=True)
    assert hits[1]["name"] == "other.png" and hits[1]["duplicates"] == []


def test_the_toggle_collapses_copies_into_one_card_and_stays_in_the_url(site: tuple[str, Path]) -> None:
    base_url, folder = site
    # The page cuts at a score of 0, which the tiny random-weight model may put "other.png" under.
    plain = len(api_hits(base_url, folder, collapse=False, min_score=0))
    collapsed = len(api_hits(base_url, folder, collapse=True, min_score=0))
    assert plain - collapsed == 2
    with launched_chromium() as browser, opened_page(browser, "collapse-duplicates") as page:
        page.goto(base_url + "/")
        page.get_by_label("Search by image").set_input_files(str(folder / "beach.png"))
        wait_for_results(page, plain)
        toggle = page.get_by_role("checkbox", name="Collapse near-duplicates")
        expect(toggle).not_to_be_checked()
        toggle.check()
        page.wait_for_url(re.compile(r"[?&]dups=1"))
        wait_for_results(page, collapsed)
        beach = results(page).filter(has_text="near-duplicate")
        expect(beach).to_have_count(1)
        expect(beach).to_contain_text("+ 2 near-duplicates")
        titles = beach.locator(".card-span").get_attribute("title") or ""
        shown = [beach.locator(".card-name").inner_text(), *(Path(p).name for p in titles.splitlines())]
        assert sorted(shown) == sorted(COPIES)
        toggle.uncheck()
        page.wait_for_url(lambda url: "dups=1" not in url)
        wait_for_results(page, plain)
        expect(results(page).filter(has_text="near-duplicate")).to_have_count(0)
        # The state comes from the URL, like the other filters.
        page.goto(base_url + "/?dups=1")
        expect(page.get_by_role("checkbox", name="Collapse near-duplicates")).to_be_checked()

"""A person keeps a library from the page, on `clipsearch serve` (its indexer watching) in a real Chromium: add a
folder and watch it index, find its photos, copy and delete files with no command, upload a photo and a video,
and restart serve."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.service.web.browser import launched_chromium, opened_page, screenshot, search, wait_for_results
from tests.service.web.support import write_photo, write_video
from tests.support.e2e import ServeProcess, start_serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

expect = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'").expect

# How soon a file copied into or deleted from a watched folder shows in searches, as the page promises.
WATCH_SECONDS = 10.0
PHOTOS = {"red.jpg": (220, 30, 30), "green.png": (30, 200, 60), "blue.jpg": (30, 60, 220), "grey.png": (128, 128, 128)}


@pytest.fixture
def browser() -> Iterator[Browser]:
    with launched_chromium() as launched:
        yield launched


def serve(tmp: Path, model: Path, home: Path) -> ServeProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    return start_serve(tmp, model, "--library-root", str(home), web=True).wait_ready()


def card_names(page: Page) -> set[str]:
    names: list[str] = page.locator("#results img").evaluate_all("(images) => images.map((img) => img.alt)")
    return {name.split(" at ")[0] for name in names}


def searched_until(page: Page, done: Callable[[set[str]], bool], within: float) -> float:
    """Searches again (as a person presses Enter) until `done(names of the results)`; the seconds it took."""
    started = time.monotonic()
    while True:
        search(page, "a photo")
        wait_for_results(page)
        if done(card_names(page)):
            return time.monotonic() - started
        assert time.monotonic() - started < within, f"not within {within:.0f} s: {sorted(card_names(page))}"
        page.wait_for_timeout(500)


def library_row(page: Page, name: str) -> Locator:
    page.get_by_role("button", name="Library").click()
    panel = page.get_by_role("dialog", name="Library")
    expect(panel).to_be_visible()
    return panel.get_by_role("list", name="Libraries").get_by_role("listitem", name=name)


def close_panel(page: Page) -> None:
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog", name="Library")).to_be_hidden()


@pytest.mark.system
def test_a_library_kept_from_the_page(tmp_path: Path, tiny_clip_dir: Path, browser: Browser) -> None:
    home = tmp_path / "home"
    folder = home / "Pictures"
    for name, colour in PHOTOS.items():
        write_photo(folder / name, colour)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this photo was cut short")
    extra = tmp_path / "elsewhere"
    stack = serve(tmp_path / "first", tiny_clip_dir, home)
    try:
        url = stack.ready["web_url"]
        with opened_page(browser, "library-e2e") as page:
            page.goto(url)
            row = library_row(page, "Pictures")
            panel = page.get_by_role("dialog", name="Library")
            panel.get_by_role("textbox", name="Folder on the server").fill(str(folder))
            # Every state the panel shows, as the indexer reports its progress.
            page.evaluate(
                """() => { window.seenStates = [];
                    new MutationObserver(() => document.querySelectorAll('.lib-state').forEach((s) => {
                        if (window.seenStates.at(-1) !== s.textContent) window.seenStates.push(s.textContent); }))
                    .observe(document.getElementById('library-panel'), {subtree: true, childList: true, characterData: true});
                }"""
            )
            panel.get_by_role("button", name="Add folder").click()
            expect(row).to_contain_text("Watching for changes", timeout=120_000)
            expect(row).to_contain_text(f"{len(PHOTOS)} items")
            row.get_by_text("1 file could not be indexed").click()
            expect(row.get_by_role("listitem").filter(has_text="broken.jpg")).to_be_visible()
            seen: list[str] = page.evaluate("() => window.seenStates")
            assert seen[-1] == "Watching for changes", seen
            assert any(s.startswith(("Waiting", "Looking", "Indexing")) for s in seen[:-1]), seen
            screenshot(page, "library-e2e-panel-watching")
            close_panel(page)
            searched_until(page, lambda names: names >= set(PHOTOS), WATCH_SECONDS)

            # A photo copied in is found, a deleted one is gone, with no command run.
            write_photo(extra / "orange.jpg", (250, 140, 40))
            shutil.copy(extra / "orange.jpg", folder / "orange.jpg")
            copied = searched_until(page, lambda names: "orange.jpg" in names, WATCH_SECONDS)
            (folder / "grey.png").unlink()
            deleted = searched_until(page, lambda names: "grey.png" not in names, WATCH_SECONDS)
            print(f"copied photo found after {copied:.1f} s, deleted photo gone after {deleted:.1f} s")

            # Uploads from the page: a photo and a short video, both found.
            write_photo(extra / "upload.png", (200, 40, 200))
            write_video(extra / "clip.mp4", seconds=2)
            row = library_row(page, "Pictures")
            row.get_by_label("Upload").set_input_files([str(extra / "upload.png"), str(extra / "clip.mp4")])
            uploads = row.get_by_role("listitem")
            expect(uploads.filter(has_text="upload.png")).to_contain_text("added")
            expect(uploads.filter(has_text="clip.mp4")).to_contain_text("added")
            close_panel(page)
            searched_until(page, lambda names: {"upload.png", "clip.mp4"} <= names, WATCH_SECONDS * 3)
            assert (folder / "upload.png").read_bytes() == (extra / "upload.png").read_bytes()
    finally:
        stack.stop()

    # Restarted on the same data, serve still lists the library and watches it.
    again = serve(tmp_path / "first", tiny_clip_dir, home)
    try:
        with opened_page(browser, "library-e2e-restarted") as page:
            page.goto(again.ready["web_url"])
            row = library_row(page, "Pictures")
            expect(row).to_contain_text("Watching for changes", timeout=120_000)
            close_panel(page)
            write_photo(folder / "after-restart.jpg", (20, 20, 20))
            searched_until(page, lambda names: "after-restart.jpg" in names, WATCH_SECONDS)
    finally:
        again.stop()

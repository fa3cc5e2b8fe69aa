"""The library panel in a real Chromium: add a folder, the refusals it shows, upload by the file picker and by a
drop, rescan, and remove after a confirmation; at desktop and phone sizes."""

from __future__ import annotations

import base64
import io
import re
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from tests.service.web.browser import PHONE, opened_page, screenshot
from tests.service.web.support import write_photo
from tests.service.web.test_libraries_api import LibraryStack, library_stack

# A real Chromium against the whole stack: the system tier.
pytestmark = pytest.mark.system

if TYPE_CHECKING:
    from playwright.sync_api import Browser, FilePayload, Locator, Page

expect = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'").expect

__all__ = ["library_stack"]


def open_panel(page: Page, stack: LibraryStack) -> Locator:
    page.goto(stack.base_url + "/")
    page.get_by_role("button", name="Library").click()
    panel = page.get_by_role("dialog", name="Library")
    expect(panel).to_be_visible()
    return panel


def add_folder(panel: Locator, path: str, collection: str = "") -> None:
    panel.get_by_role("textbox", name="Folder on the server").fill(path)
    if collection:
        panel.get_by_role("textbox", name="Collection (optional)").fill(collection)
    panel.get_by_role("button", name="Add folder").click()


def png_bytes(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, "PNG")
    return out.getvalue()


def test_panel_adds_uploads_rescans_and_removes(page: Page, library_stack: LibraryStack) -> None:
    folder = library_stack.root / "photos"
    write_photo(folder / "red.jpg", (220, 30, 30))
    panel = open_panel(page, library_stack)
    expect(panel.get_by_text(f"Folders under {library_stack.root} can be added")).to_be_visible()
    expect(panel.get_by_text("No folders yet")).to_be_visible()
    # Outside the roots: the server's refusal, said in the panel; nothing is added.
    add_folder(panel, str(library_stack.outside))
    expect(panel.get_by_role("alert")).to_contain_text("outside the folders this server may add")
    add_folder(panel, str(folder), "家")
    libraries = panel.get_by_role("list", name="Libraries")
    row = libraries.get_by_role("listitem", name="photos")
    expect(row).to_be_visible()
    expect(row).to_contain_text(str(folder))
    expect(row).to_contain_text("Collection 家")
    expect(row).to_contain_text("Waiting for the indexer")  # no indexer runs beside this server
    expect(panel.get_by_role("status")).to_contain_text("Added “photos”")
    screenshot(page, "library-panel-desktop")

    # The file picker: a photo, a file that only claims to be one, and an empty one.
    files: list[FilePayload] = [
        {"name": "green.png", "mimeType": "image/png", "buffer": png_bytes((30, 200, 60))},
        {"name": "page.jpg", "mimeType": "image/jpeg", "buffer": b"<html><body>not a photo</body></html>" * 30},
        {"name": "empty.jpg", "mimeType": "image/jpeg", "buffer": b""},
    ]
    row.get_by_label("Upload").set_input_files(files)
    uploads = row.get_by_role("listitem")
    expect(uploads.filter(has_text="green.png")).to_contain_text("added")
    expect(uploads.filter(has_text="page.jpg")).to_contain_text("neither a photo nor a video")
    expect(uploads.filter(has_text="empty.jpg")).to_contain_text("empty file")
    assert (folder / "green.png").read_bytes() == png_bytes((30, 200, 60))
    assert not (folder / "page.jpg").exists() and not (folder / "empty.jpg").exists()

    # A drop onto the library: the same name again is kept beside the first, never over it.
    data = base64.b64encode(png_bytes((30, 60, 220))).decode()
    transfer = page.evaluate_handle(
        """(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "green.png", { type: "image/png" }));
            return transfer;
        }""",
        data,
    )
    zone = row.locator(".lib-drop")
    zone.dispatch_event("dragover", {"dataTransfer": transfer})
    zone.dispatch_event("drop", {"dataTransfer": transfer})
    expect(uploads.filter(has_text="added as green (2).png")).to_be_visible()
    assert (folder / "green (2).png").read_bytes() == png_bytes((30, 60, 220))
    expect(page.locator("#drop")).to_be_hidden()  # the page's own drop target stays out of it

    row.get_by_role("button", name="Rescan").click()
    expect(row).to_contain_text("The indexer will look through the folder again")
    assert library_stack.client.library("photos").rescan_requests == 1

    row.get_by_role("button", name="Remove").click()
    confirm = row.get_by_role("group")
    expect(confirm).to_contain_text("The files stay in the folder")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    assert [lib.name for lib in library_stack.client.list_libraries()] == ["photos"]
    row.get_by_role("button", name="Remove").click()
    confirm.get_by_role("button", name="Remove").click()
    expect(libraries.get_by_role("listitem")).to_have_count(0)
    expect(panel.get_by_role("status")).to_contain_text(re.compile(r"Removed “photos”"))
    assert library_stack.client.list_libraries() == []
    assert (folder / "red.jpg").is_file() and (folder / "green.png").is_file()
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(page.get_by_role("button", name="Library")).to_be_focused()


def test_panel_on_a_phone(browser: Browser, library_stack: LibraryStack) -> None:
    folder = library_stack.root / "photos"
    write_photo(folder / "red.jpg", (220, 30, 30))
    library_stack.client.add_library(folder, "home")
    with opened_page(browser, "library-panel-phone", viewport=PHONE, is_mobile=True, has_touch=True) as page:
        panel = open_panel(page, library_stack)
        row = panel.get_by_role("list", name="Libraries").get_by_role("listitem", name="photos")
        expect(row).to_be_visible()
        box = panel.bounding_box()
        assert box is not None and box["width"] <= PHONE["width"] + 1
        for control in ("Upload", "Rescan", "Remove"):
            target = row.locator(".lib-actions").get_by_text(control, exact=True)
            control_box = target.bounding_box()
            assert control_box is not None and control_box["x"] + control_box["width"] <= PHONE["width"], control
        widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], widths


def test_panel_shows_the_indexers_progress_and_failures_live(page: Page, library_stack: LibraryStack) -> None:
    from client import LibraryFailure, LibraryStatus

    folder = library_stack.root / "photos"
    library_stack.client.add_library(folder, "home")
    panel = open_panel(page, library_stack)
    row = panel.get_by_role("list", name="Libraries").get_by_role("listitem", name="photos")
    expect(row).to_contain_text("Waiting for the indexer")
    # What an indexer reports reaches the open panel without a reload.
    report = library_stack.client.report_library_status
    report("photos", LibraryStatus(state="scanning", files_total=7))
    expect(row).to_contain_text("Looking for files (7 files so far)")
    failures = (LibraryFailure(str(folder / "broken.jpg"), "cannot identify image file"),)
    report(
        "photos",
        LibraryStatus(
            state="indexing", files_done=3, files_total=12, eta_seconds=95, failures=failures, failed_files=1
        ),
    )
    expect(row).to_contain_text("Indexing 3 of 12 files · about 2 min left")
    progress = row.get_by_role("progressbar", name="Indexing photos")
    expect(progress).to_have_attribute("value", "0.25")
    row.get_by_text("1 file could not be indexed").click()
    expect(row.get_by_role("listitem").filter(has_text="broken.jpg")).to_contain_text("cannot identify image file")
    screenshot(page, "library-panel-indexing")
    report("photos", LibraryStatus(state="watching"))
    expect(row).to_contain_text("Watching for changes")
    expect(progress).to_be_hidden()
    expect(row.get_by_text("could not be indexed")).to_be_hidden()
    report("photos", LibraryStatus(state="error", message="the folder is gone"))
    expect(row).to_contain_text("Cannot watch the folder: the folder is gone")


def test_panel_in_chinese(browser: Browser, library_stack: LibraryStack) -> None:
    from client import LibraryStatus

    folder = library_stack.root / "photos"
    library_stack.client.add_library(folder, "家")
    library_stack.client.report_library_status(
        "photos", LibraryStatus(state="indexing", files_done=2, files_total=5, eta_seconds=30)
    )
    with opened_page(browser, "library-panel-chinese", locale="zh-CN") as page:
        page.goto(library_stack.base_url + "/")
        page.get_by_role("button", name="图库").click()
        panel = page.get_by_role("dialog", name="图库")
        row = panel.get_by_role("list", name="图库中的文件夹").get_by_role("listitem", name="photos")
        expect(row).to_contain_text("正在索引：已完成 2 个，共 5 个文件 · 约剩 30 秒")
        expect(row).to_contain_text("相册“家” · 0 项")
        expect(row.get_by_role("button", name="重新扫描")).to_be_visible()
        # A refusal from the server, in Chinese, with the server's own sentence beside it.
        panel.get_by_role("textbox", name="服务器上的文件夹").fill(str(library_stack.outside))
        panel.get_by_role("button", name="添加文件夹").click()
        expect(panel.get_by_role("alert")).to_contain_text("这个文件夹不在服务器允许添加的文件夹之下")
        screenshot(page, "library-panel-chinese")

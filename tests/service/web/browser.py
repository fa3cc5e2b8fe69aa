"""Chromium for the page tests: Debian's browser driven by Playwright, and screenshots kept as test artifacts."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from clipsearch.testing.browser import CHROMIUM_ARGS, chromium_path

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

REPO = Path(__file__).resolve().parents[3]
# Screenshots of every page test land here (git-ignored); CI may point it elsewhere to keep them.
ARTIFACTS = Path(os.environ.get("CLIPSEARCH_TEST_ARTIFACTS", REPO / "tests" / "service" / "web" / "artifacts"))
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Generous for a busy 2-core machine; reaching one fails the test, nothing asserts on durations.
TIMEOUT_MS = 30_000
NO_CHROMIUM = (
    "Chromium is not installed, so the browser tests skip: install Debian's package with "
    "`sudo apt-get install chromium` (`make test` does it when run as root where apt-get is available)"
)


@contextmanager
def launched_chromium() -> Iterator[Browser]:
    """A headless Chromium, or a skip that says how to install it."""
    executable = chromium_path()
    if executable is None:
        pytest.skip(NO_CHROMIUM)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'")
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def opened_page(browser: Browser, name: str, **context_options: Any) -> Iterator[Page]:
    """A page in a fresh browser context; its screenshot is saved as `name`.png when the test ends, and an
    uncaught script error fails the test."""
    context = browser.new_context(**{"viewport": DESKTOP, **context_options})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        screenshot(page, name)
        context.close()
    assert not errors, f"script errors on the page: {errors}"


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / (re.sub(r"[^\w.-]+", "-", name).strip("-") + ".png")
    page.screenshot(path=str(path))
    return path


def results(page: Page) -> Locator:
    """The result cards: list items of the list named "Results"."""
    return page.get_by_role("list", name="Results").get_by_role("listitem")


def card(page: Page, alt: str) -> Locator:
    """The result card whose thumbnail has this alt text."""
    return results(page).filter(has=page.get_by_alt_text(alt, exact=True))


def search(page: Page, text: str) -> None:
    box = page.get_by_role("searchbox", name="Search")
    box.fill(text)
    box.press("Enter")


def wait_for_results(page: Page, count: int | None = None) -> int:
    """Waits until the search settled (status "N results", N = count where given) and every thumbnail
    loaded; returns N."""
    from playwright.sync_api import expect

    status = page.get_by_role("status")
    number = r"\d+" if count is None else str(count)
    expect(status).to_have_text(re.compile(rf"^{number} results?\b"))
    n = int(status.inner_text().split()[0])
    expect(results(page)).to_have_count(n)
    wait_for_thumbnails(page)
    return n


def wait_for_thumbnails(page: Page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results img')].every((img) => img.complete && img.naturalWidth > 0)"
    )


def alts(page: Page) -> list[str]:
    """The alt texts of the result thumbnails, in order."""
    values: list[str] = page.locator("#results img").evaluate_all("(images) => images.map((img) => img.alt)")
    return values


def best_matches(page: Page) -> list[str]:
    """The alt texts of the results that share the best score. The tiny random-weight model used in tests gives
    pictures of nearly the same colour the same vector, so a picture's twin may tie with it for first place."""
    scored: list[tuple[str, float]] = page.locator("#results li").evaluate_all(
        "(cards) => cards.map((c) => [c.querySelector('img').alt, Number(c.dataset.score)])"
    )
    assert scored, "no results"
    best = scored[0][1]
    assert all(score <= best + 1e-6 for _, score in scored), scored
    return [alt for alt, score in scored if score >= best - 1e-3]

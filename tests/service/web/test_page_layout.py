"""The page's layout in a real Chromium: desktop and phone widths, light and dark from the system setting.
Each case leaves screenshots of the results and of the viewer under tests/service/web/artifacts."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests.service.web.browser import (
    DESKTOP,
    PHONE,
    opened_page,
    results,
    screenshot,
    wait_for_results,
)
from tests.service.web.conftest import WebStack

# A real Chromium against the whole stack: the system tier.
pytestmark = pytest.mark.system

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

expect = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'").expect


def luminance(css_colour: str) -> float:
    """The relative luminance (WCAG) of an "rgb(r, g, b)" or "rgba(...)" colour."""
    r, g, b = (int(v) / 255 for v in re.findall(r"[\d.]+", css_colour)[:3])

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else float(((c + 0.055) / 1.055) ** 2.4)

    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def colours(locator: Locator) -> tuple[str, str]:
    """The text colour of an element and the first opaque background behind it."""
    found: list[str] = locator.evaluate(
        """(node) => {
            const colour = getComputedStyle(node).color;
            for (let at = node; at; at = at.parentElement) {
                const background = getComputedStyle(at).backgroundColor;
                if (!background.startsWith("rgba(") || !background.endsWith(", 0)")) return [colour, background];
            }
            return [colour, "rgb(255, 255, 255)"];
        }"""
    )
    return found[0], found[1]


def assert_inside_viewport(page: Page, locator: Locator, width: int) -> None:
    box = locator.bounding_box()
    assert box is not None, f"{locator} is not shown"
    assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (locator, box)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_layout_is_readable_and_fits(browser: Browser, web_stack: WebStack, size: str, scheme: str) -> None:
    viewport = DESKTOP if size == "desktop" else PHONE
    name = f"layout-{size}-{scheme}"
    with opened_page(browser, name, viewport=viewport, color_scheme=scheme) as page:
        page.goto(web_stack.base_url + "/")
        page.get_by_label("Search by image").set_input_files(str(web_stack.library.files["trips/海滩 sunset.jpg"]))
        wait_for_results(page)
        width = viewport["width"]
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width  # nothing sideways
        for control in (
            page.get_by_role("searchbox", name="Search"),
            page.locator("label", has=page.get_by_label("Search by image")),
            page.get_by_role("slider", name="Minimum score"),
            page.get_by_role("combobox", name="Collection"),
            page.get_by_role("radiogroup", name="Show"),
            results(page).first.get_by_role("button", name="More like this"),
            results(page).first.get_by_role("button", name="What is this?"),
        ):
            expect(control).to_be_visible()
            assert_inside_viewport(page, control, width)
        # Dark mode follows the system setting; text stays readable on it.
        body = page.locator("body")
        background = luminance(colours(body)[1])
        assert background < 0.05 if scheme == "dark" else background > 0.8, colours(body)
        for text in (body, results(page).first.locator(".card-name"), page.get_by_role("status")):
            assert contrast(*colours(text)) >= 4.5, (text, colours(text))
        top = [box["y"] for box in (item.bounding_box() for item in results(page).all()[:6]) if box]
        columns = sum(y == top[0] for y in top)
        assert columns == 2 if size == "phone" else columns >= 4, top
        screenshot(page, f"{name}-results")

        results(page).first.get_by_role("button", name="Open 海滩 sunset.jpg").click()
        dialog = page.get_by_role("dialog", name="海滩 sunset.jpg")
        expect(dialog).to_be_visible()
        close = dialog.get_by_role("button", name="Close")
        expect(close).to_be_in_viewport()
        assert_inside_viewport(page, close, width)
        assert_inside_viewport(page, dialog.get_by_role("img", name="海滩 sunset.jpg"), width)
        assert contrast(*colours(dialog.get_by_role("heading", name="海滩 sunset.jpg"))) >= 4.5
        page.wait_for_function(
            "() => [...document.querySelectorAll('dialog[open] img')].every((i) => i.complete && i.naturalWidth > 0)"
        )
        screenshot(page, f"{name}-viewer")
        close.click()
        expect(dialog).to_be_hidden()

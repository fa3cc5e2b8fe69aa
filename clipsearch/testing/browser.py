"""Debian's Chromium for the page tests and the web benchmark: where it is and how to start it headless."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Without the background-networking flags Chromium keeps trying hosts that an offline machine refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """Debian's chromium (Playwright drives it through executable_path; no browser download), or None."""
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None

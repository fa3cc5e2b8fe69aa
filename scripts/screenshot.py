"""Makes docs/web.png and docs/web.zh-CN.png: the web page in Chromium, in English and in Simplified Chinese, over
the demo's generated photo and video library."""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.demo import (  # noqa: E402  (the repository root goes on sys.path first)
    VIDEO_PHOTOS,
    DemoError,
    Stack,
    clipsearch_command,
    write_demo_video,
    write_sample_photos,
)

DEFAULT_OUTPUT = REPO / "docs" / "web.png"
DEFAULT_CHECKPOINT = REPO / "checkpoints" / "tiny"
# Searching by this photo shows it, and the moments of the video that show it, first: the random-weight model
# ranks nothing by meaning, but identical pictures still match.
QUERY_PHOTO = "cat.jpg"
WIDTH, HEIGHT = 1280, 800
MAX_PNG_BYTES = 300_000
# Copies of some sample photos, changed a little so that they are new items, under Chinese names in a
# second collection: the page shows non-Latin names as they are.
TRIP_PHOTOS = {"astronaut.jpg": "宇航员.jpg", "coffee.jpg": "咖啡.jpg", "rocket.jpg": "火箭发射.jpg"}
TRIP_COLLECTION = "旅行"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WEB_START_TIMEOUT = 60.0
# The browser languages the page is shown in, and the suffix of each one's picture ("" for the --output file).
LOCALES = {"en-US": "", "zh-CN": ".zh-CN"}


def find_chromium() -> str:
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    raise DemoError("Chromium is missing: install it with `sudo apt-get install chromium`")


def model_dir() -> str:
    """CLIP_MODEL, or the tiny random-weight checkpoint (made here where it is missing)."""
    model = os.environ.get("CLIP_MODEL", "").strip()
    if model:
        return str(Path(model).expanduser().resolve()) if Path(model).expanduser().is_dir() else model
    if not (DEFAULT_CHECKPOINT / "config.json").exists():
        print(f"Writing a random-weight CLIP checkpoint to {DEFAULT_CHECKPOINT}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "embedder_service.checkpoint", str(DEFAULT_CHECKPOINT), "--arch", "tiny"],
            check=True,
            cwd=REPO,
        )
    return str(DEFAULT_CHECKPOINT)


def write_library(workdir: Path) -> tuple[Path, Path, Path]:
    """The demo's photos and video, and a second collection of changed copies with Chinese names."""
    from PIL import Image, ImageOps

    photos = write_sample_photos(workdir / "photos")
    by_name = {path.name: path for path in photos}
    video = workdir / "videos" / "slideshow.mp4"
    write_demo_video(video, [by_name[name] for name in VIDEO_PHOTOS])
    trips = workdir / "trips"
    trips.mkdir(parents=True, exist_ok=True)
    for source, name in TRIP_PHOTOS.items():
        with Image.open(by_name[source]) as opened:
            image = ImageOps.mirror(opened.convert("RGB"))
        image.save(trips / name, quality=90)
    return workdir / "photos", video, trips


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve_args() -> list[str]:
    """Extra `clipsearch serve` options: the page is started apart, on a free port."""
    help_text = subprocess.run(
        [*clipsearch_command(), "serve", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return ["--no-web"] if "--no-web" in help_text else []


def start_web(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with log.open("w") as output:
        process = subprocess.Popen(
            [*clipsearch_command(), "web", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + WEB_START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2):
                return process, url
        except (urllib.error.URLError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise DemoError(f"clipsearch web did not start; its log:\n{log.read_text(errors='replace')}") from None
            time.sleep(0.3)


def localized(output: Path, suffix: str) -> Path:
    """docs/web.png -> docs/web.zh-CN.png."""
    return output.with_name(output.stem + suffix + output.suffix)


def capture(url: str, photo: Path, output: Path, dark: bool, locale: str) -> None:
    """Searches by `photo` on the page in a browser speaking `locale` and saves the window, as a small PNG."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(
                viewport={"width": WIDTH, "height": HEIGHT}, color_scheme="dark" if dark else "light", locale=locale
            )
            page.goto(url)
            page.locator("#image-input").set_input_files(str(photo))
            page.locator("#results > li").first.wait_for()
            page.wait_for_function(
                "() => [...document.querySelectorAll('#results img')].every((img) => img.complete && img.naturalWidth > 0)"
            )
            page.wait_for_function("() => !document.querySelector('#results[aria-busy]')")
            page.evaluate("() => document.activeElement?.blur()")
            page.mouse.move(0, HEIGHT - 1)
            png = page.screenshot()
        finally:
            browser.close()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    output.parent.mkdir(parents=True, exist_ok=True)
    # A palette PNG keeps the page crisp at a fraction of the size; the photos take the dithering.
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
        output, optimize=True
    )
    size = output.stat().st_size
    print(f"wrote {output} ({size // 1024} KB)", flush=True)
    if size > MAX_PNG_BYTES:
        print(f"warning: {output} is over {MAX_PNG_BYTES // 1000} KB", file=sys.stderr)


def screenshot(workdir: Path, output: Path, dark: bool, hold: bool) -> None:
    photos, video, trips = write_library(workdir)
    stack = Stack(workdir, model_dir(), 1)
    stack.args += serve_args()
    web: subprocess.Popen[bytes] | None = None
    try:
        env = {**os.environ, **stack.start()}
        index = [*clipsearch_command(), "index"]
        subprocess.run([*index, str(photos), str(video)], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            [*index, "--collection", TRIP_COLLECTION, str(trips)], env=env, check=True, stdout=subprocess.DEVNULL
        )
        web, url = start_web(env, workdir / "web.log")
        if hold:
            print(f"The page runs at {url}; Ctrl-C stops it.", flush=True)
            web.wait()
        else:
            for locale, suffix in LOCALES.items():
                capture(url, photos / QUERY_PHOTO, localized(output, suffix), dark, locale)
    except KeyboardInterrupt:
        pass
    finally:
        if web is not None and web.poll() is None:
            web.terminate()
            web.wait(30)
        stack.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="PNG to write in English (default: docs/web.png); the Chinese one gets .zh-CN before .png",
    )
    parser.add_argument("--dark", action="store_true", help="the page in dark mode")
    parser.add_argument("--hold", action="store_true", help="keep the page running instead of taking the picture")
    parser.add_argument("--workdir", type=Path, help="where the library and Redis data go (default: temporary)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="clipsearch-screenshot-"))
    try:
        screenshot(workdir, args.output, args.dark, args.hold)
    except (DemoError, subprocess.CalledProcessError) as error:
        print(f"screenshot: {error}", file=sys.stderr)
        return 1
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The web server's speed: HTTP search against the same query through Client, cached and first thumbnails.

python -m bench.web [--json OUT] [--model DIR] [--queries N]. Starts Redis, an embedder and the search
service as processes, indexes 1080p PNG frames and a 1080p H.264 video, starts `clipsearch web` as a process
of its own, and measures from this process over HTTP with keep-alive, as a browser's requests arrive.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from bench import common
from bench.common import percentile_ms, ratio
from client.api import Client, SearchFilter
from client.results import Item
from clipsearch.testing.browser import CHROMIUM_ARGS, chromium_path
from clipsearch.testing.processes import base_env

TEXTS = ("a red car", "a dog on a beach", "a city at night", "a bowl of soup", "mountains in the snow")
GOAL_ADDED_MS = 5.0
GOAL_CACHED_THUMB_MS = 5.0
WARMUP = 20


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.web",
        description="The web server's speed, each figure beside its baseline measured in the same run: the "
        "HTTP search endpoint against the same query through Client, a cached thumbnail, and the first "
        "thumbnail of a 1080p PNG and of a 1080p video frame. A few minutes on 2 cores.",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every figure as JSON to OUT")
    parser.add_argument(
        "--model", type=Path, metavar="DIR", help="CLIP checkpoint (default: the tiny random-weight one, cached)"
    )
    parser.add_argument(
        "--cache", type=Path, default=common.DEFAULT_CACHE, metavar="DIR", help="generated media and checkpoints"
    )
    parser.add_argument("--queries", type=int, default=300, metavar="N", help="searches of each kind (default 300)")
    parser.add_argument("--thumbs", type=int, default=300, metavar="N", help="cached thumbnail fetches (default 300)")
    parser.add_argument("--pngs", type=int, default=8, metavar="N", help="1080p PNG frames to index (default 8)")
    parser.add_argument(
        "--browser-searches", type=int, default=20, metavar="N", help="searches typed in Chromium (default 20)"
    )
    return parser


class Http:
    """One keep-alive HTTP/1.1 connection, as a browser holds to the server."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self._connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)

    def get(self, target: str) -> bytes:
        self._connection.request("GET", target)
        response = self._connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {target}: {response.status} {body[:300]!r}")
        return body

    def close(self) -> None:
        self._connection.close()


class WebProcess:
    """`python -m client.web` on a free port with a cache of its own; url is what it printed."""

    def __init__(self, embedder: str, search: str, cache_dir: Path) -> None:
        command = [sys.executable, "-m", "client.web", "--port", "0", "--embedder", embedder, "--search", search]
        self.process = subprocess.Popen(
            [*command, "--cache-dir", str(cache_dir)],
            cwd=common.REPO,
            env=base_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        line = self.process.stdout.readline() if selector.select(120) else ""
        if not line.startswith("clipsearch web: "):
            self.stop()
            raise RuntimeError(f"clipsearch web did not start: {line!r}")
        self.url = line.removeprefix("clipsearch web: ").strip().rstrip("/")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=60)


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def search_figures(client: Client, web: Http, queries: int) -> dict[str, Any]:
    """The same text searches, alternating between Client (this process) and GET /api/search (the web
    process, which makes the same Client call), so that both see the same load."""
    through_client: list[float] = []
    through_http: list[float] = []
    for n in range(queries + WARMUP):
        text = TEXTS[n % len(TEXTS)]
        target = f"/api/search?q={quote(text)}&top=10"
        # The web server asks for one more hit than it shows (to say whether a page follows), at min_score 0.
        a = timed(partial(client.search_text, text, top=11, min_score=0.0))
        b = timed(partial(web.get, target))
        if n >= WARMUP:
            through_client.append(a)
            through_http.append(b)
    client_p50, http_p50 = percentile_ms(through_client, 50), percentile_ms(through_http, 50)
    return {
        "client_p50_ms": client_p50,
        "client_p95_ms": percentile_ms(through_client, 95),
        "http_p50_ms": http_p50,
        "http_p95_ms": percentile_ms(through_http, 95),
        "added_p50_ms": round(http_p50 - client_p50, 3),
        "http_vs_client": ratio(http_p50, client_p50),
    }


def thumbnail_figures(web: Http, photos: Sequence[Item], frames: Sequence[Item], fetches: int) -> dict[str, Any]:
    """First thumbnails (a cold cache; the first one of a file also checks its content hash) of each PNG
    and of video frames, then one thumbnail fetched again and again from the cache."""

    def thumb(item: Item) -> float:
        return timed(partial(web.get, f"/media/{item.id}/thumb"))

    first_png = [thumb(item) for item in photos]
    # The video's first frame hashes the whole file once; the frames after it seek and decode only.
    first_video = thumb(frames[0])
    other_frames = [thumb(item) for item in frames[1:]]
    # Cached thumbnails of video frames no response listed: the server looks each item up (a gRPC Get).
    looked_up = [thumb(frames[n % len(frames)]) for n in range(fetches + WARMUP)][WARMUP:]
    # Cached thumbnails of photos a search just listed, as a page fetches its grid: no lookup.
    web.get("/api/search?q=a+photo&collection=web-png&top=50&min_score=-1")
    cached = [thumb(photos[n % len(photos)]) for n in range(fetches + WARMUP)][WARMUP:]
    cached_p50 = percentile_ms(cached, 50)
    png_p50 = percentile_ms(first_png, 50)
    frame_p50 = percentile_ms(other_frames, 50)
    return {
        "cached_p50_ms": cached_p50,
        "cached_p95_ms": percentile_ms(cached, 95),
        "cached_looked_up_p50_ms": percentile_ms(looked_up, 50),
        "first_png_p50_ms": png_p50,
        "first_png_max_ms": round(max(first_png) * 1000, 3),
        "first_png_count": len(first_png),
        "first_video_frame_with_hash_ms": round(first_video * 1000, 3),
        "first_video_frame_p50_ms": frame_p50,
        "first_video_frame_count": len(other_frames),
        "first_png_vs_cached": ratio(png_p50, cached_p50),
        "first_video_frame_vs_cached": ratio(frame_p50, cached_p50),
    }


def browser_figures(url: str, web: Http, searches: int) -> dict[str, Any]:
    """Time from Enter in the page's search box to the first page of thumbnails painted (every visible
    thumbnail decoded), in Debian's Chromium; thumbnails are in the server's cache by then."""
    executable = chromium_path()
    if executable is None:
        return {"skipped": "chromium is not installed (apt-get install chromium)"}
    # Texts the page shows results for: a random-weight model scores many texts below the page's 0 minimum.
    texts = [
        text
        for text in (f"{TEXTS[n % len(TEXTS)]} {n}" for n in range(40 * (searches + 2)))
        if json.loads(web.get(f"/api/search?q={quote(text)}&top=1"))["hits"]
    ][: searches + 2]
    if not texts:
        return {"skipped": "no text finds anything above the page's minimum score with this model"}
    from playwright.sync_api import sync_playwright

    # The first row (up to 4 thumbnails) of the answer to this Enter, each decoded.
    painted = """() => {
        const list = document.querySelector('[aria-label="Results"]');
        if (window.__enter === null || list.getAttribute('aria-busy') === 'true') return null;
        const thumbs = [...list.querySelectorAll('img.thumb')].slice(0, 4);
        return thumbs.length > 0 && thumbs.every((img) => img.complete && img.naturalWidth > 0)
            ? performance.now() - window.__enter : null;
    }"""
    times: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            box = page.get_by_role("searchbox", name="Search")
            for number, text in enumerate(texts):
                page.evaluate("() => { window.__enter = null; }")
                box.fill(text)
                page.evaluate(
                    "() => document.querySelector('input[type=search]').addEventListener("
                    "'keydown', (e) => { if (e.key === 'Enter') window.__enter = performance.now(); }, {once: true})"
                )
                box.press("Enter")
                elapsed = page.wait_for_function(painted, timeout=60_000, polling="raf").json_value()
                if number >= 2:  # the first searches warm the page's modules and connections
                    times.append(float(elapsed) / 1000)
        finally:
            browser.close()
    return {"enter_to_thumbnails_p50_ms": percentile_ms(times, 50), "searches": len(times)}


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    cache = common.cache_dir(args.cache)
    model = args.model or common.checkpoint(cache, "tiny")
    pngs = common.png_frames(cache, args.pngs)
    video = common.video(cache, 10, 25)
    services = common.start_services(workdir / "services", model, embedder_threads=max(1, (os.cpu_count() or 2) // 2))
    try:
        with Client(services.embedder, services.search, timeout=600) as client:
            client.index([pngs], collection="web-png")
            client.index([video], collection="web-video", fps=1.0)
            photos = sorted(client.list_items(SearchFilter(collections=("web-png",))), key=lambda i: i.source)
            frames = sorted(
                client.list_items(SearchFilter(collections=("web-video",))), key=lambda i: i.timestamp_seconds or 0
            )
            web = WebProcess(services.embedder, services.search, workdir / "web-cache")
            http = Http(web.url)
            try:
                load_start = common.load_average()
                thumbs = thumbnail_figures(http, photos, frames, args.thumbs)
                search = search_figures(client, http, args.queries)
                page = browser_figures(web.url, http, args.browser_searches)
                load_end = common.load_average()
            finally:
                http.close()
                web.stop()
    finally:
        services.stop()
    return {
        "model": str(model),
        "png": {"files": len(photos), "folder_bytes": common.folder_bytes(pngs)},
        "video": {
            "file": video.name,
            "bytes": video.stat().st_size,
            "frames_indexed": len(frames),
            "keyframe_seconds": keyframe_seconds(video),
        },
        "search": search,
        "thumbnails": thumbs,
        "page": page,
        "load_average": {"start": load_start, "end": load_end},
    }


def keyframe_seconds(video: Path) -> float:
    """The mean time between keyframes: a frame's first thumbnail decodes from the keyframe before it."""
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        times = [float(p.pts * p.time_base) for p in container.demux(stream) if p.is_keyframe and p.pts is not None]
        duration = float(container.duration or 0) / av.time_base
    return round(duration / max(1, len(times)), 2)


def table(results: dict[str, Any]) -> str:
    s, t = results["search"], results["thumbnails"]
    rows = [
        ("figure", "value", "baseline (same run)", "ratio", "goal"),
        (
            "text search p50: HTTP /api/search vs Client",
            f"{s['http_p50_ms']} ms",
            f"{s['client_p50_ms']} ms",
            f"{s['http_vs_client']}x",
            "",
        ),
        ("HTTP search added p50", f"{s['added_p50_ms']} ms", "", "", _goal(s["added_p50_ms"], GOAL_ADDED_MS)),
        (
            "cached thumbnail p50, item listed by a search",
            f"{t['cached_p50_ms']} ms",
            f"{s['client_p50_ms']} ms (Client search)",
            f"{ratio(t['cached_p50_ms'], s['client_p50_ms'])}x",
            _goal(t["cached_p50_ms"], GOAL_CACHED_THUMB_MS),
        ),
        (
            "cached thumbnail p50, item looked up (gRPC Get)",
            f"{t['cached_looked_up_p50_ms']} ms",
            f"{t['cached_p50_ms']} ms (listed)",
            f"{ratio(t['cached_looked_up_p50_ms'], t['cached_p50_ms'])}x",
            "",
        ),
        (
            f"first thumbnail, 1080p PNG (p50 of {t['first_png_count']})",
            f"{t['first_png_p50_ms']} ms",
            f"{t['cached_p50_ms']} ms (cached)",
            f"{t['first_png_vs_cached']}x",
            "",
        ),
        (
            (
                f"first thumbnail, 1080p video frame (p50 of {t['first_video_frame_count']}; "
                f"keyframes {results['video']['keyframe_seconds']} s apart)"
            ),
            f"{t['first_video_frame_p50_ms']} ms",
            f"{t['cached_p50_ms']} ms (cached)",
            f"{t['first_video_frame_vs_cached']}x",
            "",
        ),
        (
            "first thumbnail of the video, hashing the whole file",
            f"{t['first_video_frame_with_hash_ms']} ms",
            f"{results['video']['bytes'] / 2**20:.1f} MiB",
            "",
            "",
        ),
    ]
    page = results["page"]
    if "skipped" in page:
        rows.append(("Enter to first thumbnails painted, Chromium", "skipped", page["skipped"], "", ""))
    else:
        rows.append(
            (
                f"Enter to first thumbnails painted, Chromium (p50 of {page['searches']})",
                f"{page['enter_to_thumbnails_p50_ms']} ms",
                f"{s['http_p50_ms']} ms (HTTP search)",
                f"{ratio(page['enter_to_thumbnails_p50_ms'], s['http_p50_ms'])}x",
                "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    load = results["load_average"]
    lines.append(f"model {Path(results['model']).name}; load average {load['start']} -> {load['end']}")
    return "\n".join(lines)


def _goal(value: float, goal: float) -> str:
    return f"<= {goal:g} ms: {'met' if value <= goal else 'MISSED'}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-web-") as scratch:
        results = run(args, Path(scratch))
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

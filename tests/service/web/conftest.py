"""Fixtures for the web tests: the real stack (tiny embedder, Redis, search service, web app) on loopback.

Fixtures, all on 127.0.0.1 with ports picked by the OS:

- ``web_stack`` (session) -> ``WebStack``: the tiny random-weight CLIP embedder and a search service on the
  session's Redis, a generated library indexed into them, and the web app served by uvicorn in a background
  thread. ``web_stack.base_url`` is ``"http://127.0.0.1:PORT"`` (no trailing slash). The library
  (``web_stack.library``, see tests/service/web/support.py) holds five photos of distinct colours ("red.png",
  "green.jpg", "blue.png", "黄色的花.png" and "trips/海滩 sunset.jpg"), an H.264 MP4 a browser plays
  ("clip.mp4", 6 s, its colour changing each second, indexed at 1 frame per second) and an MPEG-4 Part 2 AVI
  a browser cannot play ("legacy.avi", 3 s). "trips/海滩 sunset.jpg", "clip.mp4" and "legacy.avi" are in
  the collection "假期", the other photos in "photos". ``web_stack.items[name]`` lists the items of a file
  (one for a photo; a video's frames by time); ``web_stack.id_of(name, second)`` gives an id.
- ``web_app_factory`` -> ``start(**settings) -> str``: another web app on the same services with
  WebSettings overrides (password, max_upload_bytes, ...), returning its base URL; stopped after the test.
- ``unused_port`` -> int: a loopback port nothing listens on.
- ``own_web_stack`` -> ``OwnWebStack``: a web app on an embedder and a search service of its own (the search
  service reads the library's index), which the test may stop: ``stop_search()``, ``stop_embedder()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from client import Client
from client.results import Item
from client.uris import display
from client.web import WebSettings, create_app
from clipsearch.testing.web import WebThread
from search_service.config import SearchConfig
from search_service.server import SearchServer, build_server
from tests.service.web.browser import launched_chromium, opened_page
from tests.service.web.support import HOLIDAY, HOLIDAY_FILES, Library, write_library
from tests.support.search import SERVING, drop_search_index, wait_for_health

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

TINY_DIMENSION = 32


@dataclass(frozen=True)
class WebStack:
    """The running stack; see the module docstring."""

    base_url: str
    embedder_address: str
    search_address: str
    library: Library
    client: Client
    cache_dir: Path
    items: dict[str, list[Item]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base_url + path

    def id_of(self, name: str, second: int | None = None) -> str:
        """The id of a photo, or of a video's frame at `second`."""
        found = self.items[name]
        if second is None:
            return found[0].id
        return next(i.id for i in found if i.timestamp_seconds is not None and round(i.timestamp_seconds) == second)

    def settings(self, cache_dir: Path, **overrides: Any) -> WebSettings:
        """WebSettings for another app on this stack's services."""
        services = dataclasses.replace(
            WebSettings().services,
            embedder_addresses=(self.embedder_address,),
            search_address=self.search_address,
            connect_timeout=30,
        )
        overrides.setdefault("services", services)
        return WebSettings(cache_dir=cache_dir, **overrides)


def _search_config(redis_url: str, index_name: str) -> SearchConfig:
    return SearchConfig(
        host="127.0.0.1",
        port=0,
        redis_url=redis_url,
        index_name=index_name,
        key_prefix=f"{index_name}:item:",
        dimension=TINY_DIMENSION,
        health_interval_seconds=0.1,
        grace_seconds=0.0,
    )


def _start_search(config: SearchConfig) -> tuple[SearchServer, str]:
    server = build_server(config)
    server.start()
    address = f"127.0.0.1:{server.port}"
    wait_for_health(address, SERVING)
    return server, address


@pytest.fixture(scope="session")
def web_index(redis_url: str) -> Iterator[SearchConfig]:
    """The library's index: its name, and a search config for it (port 0)."""
    config = _search_config(redis_url, f"web{uuid.uuid4().hex[:12]}")
    yield config
    with contextlib.suppress(redis.RedisError):  # that Redis is gone
        drop_search_index(redis_url, config.index_name)


@pytest.fixture(scope="session")
def web_search_address(web_index: SearchConfig) -> Iterator[str]:
    server, address = _start_search(web_index)
    yield address
    server.stop(0)


def _index_library(client: Client, library: Library) -> dict[str, list[Item]]:
    holiday = [library.files[name] for name in HOLIDAY_FILES]
    others = [path for name, path in library.files.items() if name not in HOLIDAY_FILES]
    for paths, collection in ((others, "photos"), (holiday, HOLIDAY)):
        report = client.index(paths, collection=collection, fps=1.0)
        assert not report.failed, report.failed
    deadline = time.monotonic() + 60
    while (stats := client.stats()).indexing or stats.percent_indexed < 100:
        assert time.monotonic() < deadline, "the index never finished indexing"
        time.sleep(0.05)
    names = {str(path): name for name, path in library.files.items()}
    items: dict[str, list[Item]] = {name: [] for name in library.files}
    for item in client.list_items():
        items[names[display(item.source_uri)]].append(item)
    for found in items.values():
        found.sort(key=lambda i: i.timestamp_seconds or 0.0)
    return items


@pytest.fixture(scope="session")
def web_stack(
    tmp_path_factory: pytest.TempPathFactory, embedder_address: str, web_search_address: str
) -> Iterator[WebStack]:
    library = write_library(tmp_path_factory.mktemp("web-library"))
    with Client(embedder_address, web_search_address, connect_timeout=30) as client:
        items = _index_library(client, library)
        stack = WebStack("", embedder_address, web_search_address, library, client, Path(), items)
        cache_dir = tmp_path_factory.mktemp("web-cache")
        thread = WebThread(create_app(stack.settings(cache_dir)))
        url = thread.start().rstrip("/")
        try:
            yield dataclasses.replace(stack, base_url=url, cache_dir=cache_dir)
        finally:
            thread.stop()


@pytest.fixture
def web_app_factory(web_stack: WebStack, tmp_path: Path) -> Iterator[Callable[..., str]]:
    threads: list[WebThread] = []

    def start(**overrides: Any) -> str:
        cache_dir = overrides.pop("cache_dir", tmp_path / f"cache-{len(threads)}")
        thread = WebThread(create_app(web_stack.settings(cache_dir, **overrides)))
        threads.append(thread)
        return thread.start().rstrip("/")

    yield start
    for thread in threads:
        thread.stop()


@pytest.fixture
def unused_port() -> int:
    """A loopback TCP port nothing listens on (just freed by the OS)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OwnWebStack:
    """A web app on services of its own, which a test may stop."""

    base_url: str
    embedder_address: str
    search_address: str
    _stops: dict[str, Callable[[], None]]

    def stop_search(self) -> None:
        self._stops.pop("search", lambda: None)()

    def stop_embedder(self) -> None:
        self._stops.pop("embedder", lambda: None)()


@pytest.fixture
def own_web_stack(
    web_stack: WebStack, web_index: SearchConfig, tiny_clip_dir: Path, tiny_embedder: object, tmp_path: Path
) -> Iterator[OwnWebStack]:
    from embedder_service.server import build_server as build_embedder
    from tests.support.embedder import embedder_test_config

    embedder = build_embedder(embedder_test_config(tiny_clip_dir), tiny_embedder)  # type: ignore[arg-type]
    embedder.start()
    embedder.set_serving(True)
    search, search_address = _start_search(web_index)
    embedder_address = f"127.0.0.1:{embedder.port}"
    services = dataclasses.replace(
        WebSettings().services, embedder_addresses=(embedder_address,), search_address=search_address
    )
    thread = WebThread(
        create_app(WebSettings(services=services, cache_dir=tmp_path / "cache", probe_timeout=1.0, call_timeout=3.0))
    )
    stops = {"search": lambda: search.stop(0), "embedder": lambda: embedder.stop(0)}
    own = OwnWebStack(thread.start().rstrip("/"), embedder_address, search_address, stops)
    try:
        yield own
    finally:
        thread.stop()
        own.stop_search()
        own.stop_embedder()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per test module (a module may override `page`, e.g. for a phone-sized window)."""
    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh desktop-sized page, its screenshot kept as a test artifact."""
    with opened_page(browser, request.node.name) as opened:
        yield opened

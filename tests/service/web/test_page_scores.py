"""In a real Chromium: with the slider as the page starts, a search whose every score is below 0 shows results."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np
import pytest

from client import Client
from client.web import WebSettings, create_app
from clipsearch.testing.web import WebThread
from clipsearch.v1 import search_pb2, search_pb2_grpc
from tests.service.web.browser import alts, search, wait_for_results
from tests.service.web.support import request, write_photo
from tests.support.search import SearchServerFactory

# A real Chromium against the whole stack: the system tier.
pytestmark = pytest.mark.system

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'").expect

QUERY = "a sunset over the sea"
PHOTOS = {"one.png": (200, 40, 40), "two.png": (40, 200, 40), "three.png": (40, 40, 200)}


@pytest.fixture
def negative_stack(tmp_path: Path, embedder_address: str, search_server_factory: SearchServerFactory) -> Iterator[str]:
    """A web app on an index of three photos whose stored vectors point away from QUERY's: every score < 0."""
    search = search_server_factory()
    for name, colour in PHOTOS.items():
        write_photo(tmp_path / "photos" / name, colour)
    with Client(embedder_address, search.address, connect_timeout=30) as client:
        assert not client.index([tmp_path / "photos"]).failed
        text = client.embed_texts([QUERY])[0]
        with grpc.insecure_channel(search.address) as channel:
            stub = search_pb2_grpc.SearchStub(channel)
            ids = [item.id for item in client.list_items()]
            stored = stub.Get(search_pb2.GetRequest(ids=ids)).items
            rng = np.random.default_rng(0)
            items = []
            for item in stored:
                vector = -text + rng.normal(0, 0.05, text.shape)
                items.append(
                    search_pb2.Item(
                        id=item.id, vector=(vector / np.linalg.norm(vector)).tolist(), metadata=item.metadata
                    )
                )
            stub.Upsert(search_pb2.UpsertRequest(items=items))
        thread = WebThread(create_app(WebSettings(cache_dir=tmp_path / "cache"), client))
        try:
            yield thread.start().rstrip("/")
        finally:
            thread.stop()


def test_default_slider_shows_results_that_all_score_below_zero(page: Page, negative_stack: str) -> None:
    hits = request(negative_stack, "GET", "/api/search?q=" + QUERY.replace(" ", "+")).json()["hits"]
    assert len(hits) == len(PHOTOS) and all(hit["score"] < 0 for hit in hits), hits
    page.goto(negative_stack + "/")
    slider = page.get_by_role("slider", name="Minimum score")
    expect(slider).to_have_attribute("aria-valuetext", "No minimum")
    search(page, QUERY)
    wait_for_results(page, len(PHOTOS))
    assert alts(page) == [hit["name"] for hit in hits]
    assert "min=" not in page.url

"""The JSON API on the real stack: search by text, image and item, paging, filters, items, classify, stats, errors."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from client.api import SearchFilter
from client.web import WebSettings, create_app
from clipsearch.testing.web import WebThread
from tests.service.web.conftest import OwnWebStack, WebStack
from tests.service.web.support import HOLIDAY, HOLIDAY_FILES, PHOTOS, Reply, multipart, request

VIDEO = SearchFilter(media="video")
HIT_FIELDS = {
    "id",
    "score",
    "media",
    "name",
    "source",
    "collection",
    "timestamp_seconds",
    "time",
    "start_seconds",
    "end_seconds",
    "span",
    "frames",
    "thumbnail_url",
    "media_url",
    "playable",
    "mime",
    "duplicates",
    "said_lines",
    "said_words",
}


def get(stack_url: str, path: str, **params: object) -> Reply:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return request(stack_url, "GET", f"{path}?{query}" if query else path)


def upload(base_url: str, data: bytes, name: str = "query.png", **params: object) -> Reply:
    body, content_type = multipart("image", name, data)
    query = urlencode(params)
    return request(base_url, "POST", f"/api/search/image?{query}", body=body, headers={"Content-Type": content_type})


def test_text_search_returns_hits_best_first_with_everything_the_page_needs(web_stack: WebStack) -> None:
    reply = get(web_stack.base_url, "/api/search", q="a red square", top=50, min_score=-1, frames=1)
    assert reply.status == 200, reply.body
    doc = reply.json()
    assert doc["query"] == {"text": "a red square", "like": None, "image": False, "said": None}
    assert (doc["offset"], doc["top"], doc["has_more"]) == (0, 50, False)
    hits = doc["hits"]
    # With no lower bound, every item of the library, each once, by score (the tiny random model ranks
    # them arbitrarily, some below 0).
    assert len(hits) == sum(len(items) for items in web_stack.items.values())
    assert len({h["id"] for h in hits}) == len(hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    for hit in hits:
        assert set(hit) == HIT_FIELDS
        assert hit["thumbnail_url"] == f"/media/{hit['id']}/thumb"
        assert hit["media_url"] == f"/media/{hit['id']}/file"
        assert "/" not in hit["name"] and hit["source"].endswith(hit["name"])
    by_name = {h["name"]: h for h in hits}
    assert by_name["黄色的花.png"]["mime"] == "image/png" and by_name["黄色的花.png"]["media"] == "image"
    assert by_name["黄色的花.png"]["time"] is None and by_name["黄色的花.png"]["timestamp_seconds"] is None
    assert by_name["海滩 sunset.jpg"]["collection"] == HOLIDAY
    frames = [h for h in hits if h["name"] == "clip.mp4"]
    assert sorted(h["timestamp_seconds"] for h in frames) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert all(h["media"] == "video" and h["playable"] and h["mime"] == "video/mp4" for h in frames)
    assert {h["time"] for h in frames} == {f"00:00:0{s}" for s in range(6)}
    legacy = [h for h in hits if h["name"] == "legacy.avi"]
    assert legacy and all(not h["playable"] for h in legacy)


def test_chinese_query_text_is_searched_and_echoed(web_stack: WebStack) -> None:
    reply = request(web_stack.base_url, "GET", "/api/search?frames=1&min_score=-1&top=50&q=" + quote("海滩上的日落"))
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    doc = reply.json()
    assert doc["query"]["text"] == "海滩上的日落"
    expected = web_stack.client.search_text("海滩上的日落", top=50, min_score=-1)
    assert [h["id"] for h in doc["hits"]] == [h.id for h in expected]
    # The body is UTF-8 JSON, names as they are.
    assert "海滩 sunset.jpg".encode() in reply.body and "黄色的花.png".encode() in reply.body


def test_the_same_text_query_through_http_and_client_agree(web_stack: WebStack) -> None:
    doc = get(web_stack.base_url, "/api/search", q="a yellow flower", top=5, frames=1).json()
    hits = web_stack.client.search_text("a yellow flower", top=5)  # neither cuts by score unless asked
    assert [h["id"] for h in doc["hits"]] == [h.id for h in hits]
    assert [h["score"] for h in doc["hits"]] == pytest.approx([h.score for h in hits], abs=1e-6)


def test_pages_follow_each_other_and_say_when_more_follow(web_stack: WebStack) -> None:
    whole = get(web_stack.base_url, "/api/search", q="holiday", top=9, min_score=-1, frames=1).json()
    first = get(web_stack.base_url, "/api/search", q="holiday", top=4, min_score=-1, frames=1).json()
    second = get(web_stack.base_url, "/api/search", q="holiday", top=4, offset=4, min_score=-1, frames=1).json()
    assert first["has_more"] and second["has_more"]
    assert [h["id"] for h in first["hits"] + second["hits"]] == [h["id"] for h in whole["hits"][:8]]
    total = sum(len(items) for items in web_stack.items.values())
    last = get(web_stack.base_url, "/api/search", q="holiday", top=4, offset=total - 2, min_score=-1, frames=1).json()
    assert len(last["hits"]) == 2 and not last["has_more"]


def test_min_score_drops_weaker_hits_and_can_leave_none(web_stack: WebStack) -> None:
    everything = get(web_stack.base_url, "/api/search", q="a dog", top=50, min_score=-1, frames=1).json()["hits"]
    cut = (everything[2]["score"] + everything[3]["score"]) / 2
    kept = get(web_stack.base_url, "/api/search", q="a dog", top=50, min_score=cut, frames=1).json()
    assert [h["id"] for h in kept["hits"]] == [h["id"] for h in everything[:3]]
    assert all(h["score"] >= cut for h in kept["hits"])
    nothing = get(web_stack.base_url, "/api/search", q="a dog", min_score=0.999).json()
    assert nothing["hits"] == [] and not nothing["has_more"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"collection": HOLIDAY}, set(HOLIDAY_FILES)),
        ({"collection": "photos"}, set(PHOTOS) - set(HOLIDAY_FILES)),
        ({"media": "video"}, {"clip.mp4", "legacy.avi"}),
        ({"media": "image"}, set(PHOTOS)),
        ({"media": "image", "collection": HOLIDAY}, {"trips/海滩 sunset.jpg"}),
    ],
)
def test_filters_by_collection_and_media(web_stack: WebStack, params: dict[str, str], expected: set[str]) -> None:
    hits = get(web_stack.base_url, "/api/search", q="anything", top=50, min_score=-1, frames=1, **params).json()["hits"]
    ids = {h["id"] for h in hits}
    assert ids == {i.id for name in expected for i in web_stack.items[name]}


def test_search_by_uploaded_image_finds_that_image_first(web_stack: WebStack) -> None:
    data = web_stack.library.files["黄色的花.png"].read_bytes()
    reply = upload(web_stack.base_url, data, name="花.png", top=3)
    assert reply.status == 200, reply.body
    doc = reply.json()
    assert doc["query"] == {"text": None, "like": None, "image": True, "said": None}
    assert doc["hits"][0]["id"] == web_stack.id_of("黄色的花.png")
    assert doc["hits"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert doc["has_more"]
    strict = upload(web_stack.base_url, data, min_score=0.999).json()
    assert [h["id"] for h in strict["hits"]] == [web_stack.id_of("黄色的花.png")]


def test_a_file_that_is_not_an_image_is_a_clear_400(web_stack: WebStack) -> None:
    reply = upload(web_stack.base_url, b"this is plain text, not a picture", name="notes.txt")
    assert reply.status == 400
    assert "decode" in reply.error or "image" in reply.error
    empty = upload(web_stack.base_url, b"")
    assert empty.status == 400 and "empty" in empty.error
    missing = request(web_stack.base_url, "POST", "/api/search/image")
    assert missing.status == 400 and "image" in missing.error


def test_uploads_over_the_limit_are_413_whether_announced_or_streamed(
    web_stack: WebStack, web_app_factory: Callable[..., str]
) -> None:
    url = web_app_factory(max_upload_bytes=64 << 10)
    big = web_stack.library.files["red.png"].read_bytes() * 4 + b"\0" * (80 << 10)
    announced = upload(url, big)
    assert announced.status == 413 and "limit" in announced.error
    # The same body sent in chunks, without Content-Length: counted as it arrives.
    body, content_type = multipart("image", "big.png", big)
    chunked = _chunked_post(url, "/api/search/image", body, content_type)
    assert chunked.status == 413 and "limit" in chunked.error
    # A stable reason beside the English sentence, which the page says in its own language.
    assert announced.json()["reason"] == chunked.json()["reason"] == "upload_too_large"
    small = upload(url, web_stack.library.files["red.png"].read_bytes())
    assert small.status == 200


def _chunked_post(base_url: str, path: str, body: bytes, content_type: str) -> Reply:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))
        connection.request("POST", path, body=chunks, headers={"Content-Type": content_type}, encode_chunked=True)
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def test_more_like_this_excludes_the_item_itself(web_stack: WebStack) -> None:
    red = web_stack.id_of("red.png")
    doc = get(web_stack.base_url, "/api/search", like=red, top=50, min_score=-1, frames=1).json()
    assert doc["query"] == {"text": None, "like": red, "image": False, "said": None}
    ids = [h["id"] for h in doc["hits"]]
    assert red not in ids
    assert len(ids) == sum(len(items) for items in web_stack.items.values()) - 1
    assert ids[:5] == [h.id for h in web_stack.client.search_like(red, top=5, min_score=-1)]


def test_video_frames_come_back_as_moments_unless_frames_is_asked(web_stack: WebStack) -> None:
    moments = get(web_stack.base_url, "/api/search", q="a clip", top=50, min_score=-1, media="video").json()["hits"]
    frames = get(web_stack.base_url, "/api/search", q="a clip", top=50, min_score=-1, media="video", frames=1)
    raw = frames.json()["hits"]
    clip = [h for h in moments if h["name"] == "clip.mp4"]
    assert len(clip) == 1, clip
    (moment,) = clip
    raw_clip = [h for h in raw if h["name"] == "clip.mp4"]
    assert moment["id"] == raw_clip[0]["id"] and moment["score"] == pytest.approx(raw_clip[0]["score"])
    assert (moment["start_seconds"], moment["end_seconds"], moment["frames"]) == (0.0, 5.0, len(raw_clip))
    assert moment["span"] == "00:00:00–00:00:05"
    assert moment["time"] == raw_clip[0]["time"]
    assert all(h["frames"] == 1 and h["span"] is None for h in raw)
    expected = web_stack.client.search_text("a clip", top=50, min_score=-1, moments=True, filter=VIDEO)
    assert [h["id"] for h in moments] == [h.id for h in expected]


def test_item_gives_every_source_and_no_score(web_stack: WebStack) -> None:
    item_id = web_stack.id_of("clip.mp4", 2)
    reply = request(web_stack.base_url, "GET", f"/api/items/{item_id}")
    assert reply.status == 200
    doc = reply.json()
    assert doc["id"] == item_id and doc["score"] == 0
    assert doc["sources"] == [str(web_stack.library.files["clip.mp4"])]
    assert (doc["time"], doc["timestamp_seconds"], doc["media"]) == ("00:00:02", 2.0, "video")
    flower = request(web_stack.base_url, "GET", f"/api/items/{web_stack.id_of('黄色的花.png')}").json()
    assert flower["name"] == "黄色的花.png"
    unknown = request(web_stack.base_url, "GET", "/api/items/img-00000000000000000000000000000000")
    assert unknown.status == 404 and "img-00000000000000000000000000000000" in unknown.error
    assert request(web_stack.base_url, "GET", "/api/items/..%2F..%2Fetc").status in (400, 404)


def test_classify_gives_probabilities_of_labels_best_first_chinese_included(web_stack: WebStack) -> None:
    body = {"id": web_stack.id_of("red.png"), "labels": ["红色", "a blue sky", " ", "绿色的草"], "template": ""}
    reply = request(
        web_stack.base_url,
        "POST",
        "/api/classify",
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 200, reply.body
    labels = reply.json()["labels"]
    assert sorted(label["label"] for label in labels) == sorted(["红色", "a blue sky", "绿色的草"])
    probabilities = [label["probability"] for label in labels]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    expected = web_stack.client.classify_item(web_stack.id_of("red.png"), ["红色", "a blue sky", "绿色的草"])
    assert [label["label"] for label in labels] == [s.label for s in expected]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"id": "img-00000000000000000000000000000000", "labels": ["cat"]}, 404, "no item"),
        ({"id": "../../etc/passwd", "labels": ["cat"]}, 400, "malformed item id"),
        ({"id": "img-00000000000000000000000000000000", "labels": []}, 400, "labels"),
        ({"id": "img-00000000000000000000000000000000", "labels": [" "]}, 400, "at least one label"),
        ({"labels": ["cat"]}, 400, "id"),
    ],
)
def test_classify_rejects_bad_requests_clearly(
    web_stack: WebStack, body: dict[str, object], status: int, words: str
) -> None:
    reply = request(
        web_stack.base_url,
        "POST",
        "/api/classify",
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == status
    assert words in reply.error


def test_stats_report_the_library_and_both_services(web_stack: WebStack) -> None:
    doc = request(web_stack.base_url, "GET", "/api/stats").json()
    assert doc["items"] == sum(len(items) for items in web_stack.items.values())
    assert doc["collections"] == {"photos": 4, HOLIDAY: 1 + 6 + 3}
    services = doc["services"]
    assert services["embedder"]["up"] and services["search"]["up"]
    assert services["embedder"]["address"] == web_stack.embedder_address
    assert services["search"]["address"] == web_stack.search_address
    assert services["embedder"]["model"]


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("/api/search", "q (a description) or like"),
        ("/api/search?q=x&like=img-0", "q (a description) or like"),
        ("/api/search?q=%20%20", "empty"),
        ("/api/search?q=x&top=0", "top"),
        ("/api/search?q=x&top=100000", "top"),
        ("/api/search?q=x&top=abc", "top"),
        ("/api/search?q=x&offset=-1", "offset"),
        ("/api/search?q=x&offset=990&top=50", "deeper than 1000"),
        ("/api/search?q=x&min_score=2", "min_score"),
        ("/api/search?q=x&media=audio", "media"),
        ("/api/search?like=..%2F..%2Fetc%2Fpasswd", "malformed item id"),
    ],
)
def test_bad_search_parameters_are_400_with_one_sentence(web_stack: WebStack, target: str, words: str) -> None:
    reply = request(web_stack.base_url, "GET", target)
    assert reply.status == 400
    assert words in reply.error


def test_unknown_like_id_is_404_and_unknown_paths_are_json_404(web_stack: WebStack) -> None:
    reply = request(web_stack.base_url, "GET", "/api/search?like=img-00000000000000000000000000000000")
    assert reply.status == 404 and "no item" in reply.error
    missing = request(web_stack.base_url, "GET", "/api/nothing-here")
    assert missing.status == 404 and "/api/nothing-here" in missing.error
    wrong_method = request(web_stack.base_url, "DELETE", "/api/stats")
    assert wrong_method.status == 405 and wrong_method.error


def test_openapi_describes_the_api_and_no_cdn_docs_are_served(web_stack: WebStack) -> None:
    spec = request(web_stack.base_url, "GET", "/openapi.json").json()
    assert {"/api/search", "/api/search/image", "/api/items/{item_id}", "/api/classify", "/api/stats"} <= set(
        spec["paths"]
    )
    assert "/media/{item_id}/thumb" in spec["paths"] and "/media/{item_id}/file" in spec["paths"]
    assert request(web_stack.base_url, "GET", "/docs").status == 404
    assert request(web_stack.base_url, "GET", "/healthz").json() == {"ok": True}


def test_a_service_that_was_never_reachable_is_503_naming_it(
    web_stack: WebStack, web_app_factory: Callable[..., str], unused_port: int
) -> None:
    import dataclasses

    from client.web import WebSettings

    services = dataclasses.replace(
        WebSettings().services,
        embedder_addresses=(web_stack.embedder_address,),
        search_address=f"127.0.0.1:{unused_port}",
        connect_timeout=1.0,
    )
    url = web_app_factory(services=services, probe_timeout=1.0)
    reply = request(url, "GET", "/api/search?q=cat")
    assert reply.status == 503
    assert f"search service at 127.0.0.1:{unused_port}" in reply.error and "clipsearch serve" in reply.error
    stats = request(url, "GET", "/api/stats")
    assert stats.status == 200
    doc = stats.json()
    assert doc["services"]["embedder"]["up"] and not doc["services"]["search"]["up"]
    assert "search service" in doc["services"]["search"]["message"]


def test_a_service_that_stops_is_reported_by_stats_and_searches_fail_clearly(own_web_stack: OwnWebStack) -> None:
    url = own_web_stack.base_url
    assert request(url, "GET", "/api/search?q=cat").status == 200
    own_web_stack.stop_search()
    started = time.monotonic()
    doc = request(url, "GET", "/api/stats").json()
    assert time.monotonic() - started < 10
    assert doc["services"]["embedder"]["up"] and not doc["services"]["search"]["up"]
    message = doc["services"]["search"]["message"]
    assert own_web_stack.search_address in message and "clipsearch serve" in message
    reply = request(url, "GET", "/api/search?q=cat")
    assert reply.status in (503, 504)
    assert "search service" in reply.error and "clipsearch serve" in reply.error
    own_web_stack.stop_embedder()
    doc = request(url, "GET", "/api/stats").json()
    assert not doc["services"]["embedder"]["up"] and "embedder service" in doc["services"]["embedder"]["message"]


def test_a_service_refusing_connections_fails_a_search_at_once_not_at_the_deadline(
    own_web_stack: OwnWebStack, tmp_path: Path
) -> None:
    # A long call deadline: a search that waited for it would answer 504 after a minute.
    services = dataclasses.replace(
        WebSettings().services,
        embedder_addresses=(own_web_stack.embedder_address,),
        search_address=own_web_stack.search_address,
    )
    thread = WebThread(create_app(WebSettings(services=services, cache_dir=tmp_path / "cache", call_timeout=60.0)))
    url = thread.start().rstrip("/")
    try:
        assert request(url, "GET", "/api/search?q=cat").status == 200  # both connected
        own_web_stack.stop_embedder()
        for text in ("a dog", "a cat"):  # the first search meets the refusal; the next one too
            started = time.monotonic()
            reply = request(url, "GET", f"/api/search?q={quote(text)}")
            elapsed = time.monotonic() - started
            assert reply.status == 503, reply.body
            assert f"embedder service at {own_web_stack.embedder_address}" in reply.error
            assert elapsed < 10, f"the refusal took {elapsed:.1f} s to reach the page (deadline 60 s)"
    finally:
        thread.stop()

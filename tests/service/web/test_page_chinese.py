"""The page in Simplified Chinese: chosen from the browser's language, driven by role and accessible name in
Chinese as the English page is in English, the switch between languages, and errors said in Chinese."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import grpc
import pytest

from client import Client
from client.web import WebSettings, create_app
from clipsearch.testing.web import WebThread
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.service.web.browser import alts, best_matches, opened_page, wait_for_thumbnails
from tests.service.web.conftest import OwnWebStack, WebStack
from tests.service.web.support import request, write_photo
from tests.support.search import SearchServerFactory, make_item, random_vectors

# A real Chromium against the whole stack: the system tier.
pytestmark = pytest.mark.system

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

expect = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'").expect

ENGLISH_HEADING = "Find any moment in your photos and videos"
CHINESE_HEADING = "在照片和视频里，找到每一个瞬间"
CATALOGUE_SCRIPT = "**/static/i18n.js"
QUERIES = ("a red square", "a photo", "squares", "colours", "a video frame", "海滩", "blue sky")


@pytest.fixture
def zh_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a browser whose language is Simplified Chinese (navigator.languages and Accept-Language)."""
    with opened_page(browser, request.node.name, locale="zh-CN") as opened:
        yield opened


def api_hits(stack: WebStack, **params: str) -> list[dict[str, Any]]:
    reply = request(stack.base_url, "GET", f"/api/search?{urlencode({'top': '100', **params})}")
    assert reply.status == 200, reply.body
    hits: list[dict[str, Any]] = reply.json()["hits"]
    return hits


def zh_alt(hit: dict[str, Any]) -> str:
    return f"{hit['name']}（{hit['time']}）" if hit["media"] == "video" else str(hit["name"])


def search(page: Page, text: str) -> None:
    box = page.get_by_role("searchbox", name="搜索", exact=True)
    box.fill(text)
    box.press("Enter")


def wait_for_results(page: Page, count: int | None = None) -> int:
    """Waits until the search settled ("N 个结果") and every thumbnail loaded; returns N."""
    status = page.get_by_role("status")
    number = r"\d+" if count is None else str(count)
    expect(status).to_have_text(re.compile(rf"^{number} 个结果"))
    n = int(status.inner_text().split()[0])
    expect(zh_results(page)).to_have_count(n)
    wait_for_thumbnails(page)
    return n


def zh_results(page: Page) -> Any:
    return page.get_by_role("list", name="搜索结果").get_by_role("listitem")


def test_chinese_browser_gets_the_page_in_chinese_and_it_works_the_same(zh_page: Page, web_stack: WebStack) -> None:
    page = zh_page
    query = max(QUERIES, key=lambda q: len(api_hits(web_stack, q=q)))
    hits = api_hits(web_stack, q=query, top="24")
    # The first paint is not English: while the catalogues' script is still on its way, the page already says it
    # is in Chinese and shows nothing of the template's English.
    held: list[Route] = []
    page.route(CATALOGUE_SCRIPT, lambda route: held.append(route))
    with page.expect_request(CATALOGUE_SCRIPT):
        page.goto(web_stack.base_url + "/", wait_until="commit")
    heading = page.locator("h1")
    expect(heading).to_have_text(ENGLISH_HEADING)  # the template's words: not translated yet
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(heading).to_be_hidden()
    for route in held:
        route.continue_()
    page.unroute(CATALOGUE_SCRIPT)
    expect(page.get_by_role("heading", name=CHINESE_HEADING)).to_be_visible()
    page.goto(web_stack.base_url + "/")
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    expect(page.get_by_role("heading", name=CHINESE_HEADING)).to_be_visible()
    expect(page.get_by_role("searchbox", name="搜索", exact=True)).to_have_attribute("placeholder", "搜索照片和视频…")
    expect(page.get_by_role("combobox", name="语言")).to_have_value("zh-CN")
    # The search box and the result cards.
    search(page, query)
    n = wait_for_results(page, len(hits))
    assert alts(page) == [zh_alt(hit) for hit in hits]
    expect(zh_results(page)).to_have_count(n)
    expect(page.get_by_role("button", name="相似图片")).to_have_count(n)
    expect(page.get_by_role("button", name="这是什么？")).to_have_count(n)
    first = hits[0]["name"]
    expect(zh_results(page).first.get_by_role("button", name=f"打开 {first}")).to_be_visible()
    expect(zh_results(page).first.locator(".card-score")).to_have_attribute("title", "相似度")
    # The slider, and the empty state above the best match, with the cut-off that shows it.
    scores = [hit["score"] for hit in api_hits(web_stack, q=query)]
    slider = page.get_by_role("slider", name="最低相似度")
    slider.fill("0.99" if max(scores) < 0.99 else "1")
    expect(page.get_by_role("heading", name="没有达到这个相似度的结果")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^没有相似度不低于 0\.99 的结果"))
    best = math.floor(max(scores) * 100) / 100
    page.get_by_role("button", name=f"把最低相似度降到 {best:.2f}").click()
    wait_for_results(page)
    # A video frame's thumbnail says which file and when, times as hh:mm:ss.
    like = web_stack.id_of("clip.mp4", 3)
    frames = api_hits(web_stack, like=like, media="video", top="24")
    page.goto(web_stack.base_url + f"/?like={like}&media=video")
    wait_for_results(page, len(frames))
    assert all(re.fullmatch(r"(clip\.mp4|legacy\.avi)（00:00:0\d）", alt) for alt in alts(page)), alts(page)
    expect(page.get_by_text("与 clip.mp4（00:00:03） 相似的图片")).to_be_visible()
    expect(page.get_by_role("button", name="清除“相似图片”")).to_be_visible()


def test_the_page_shows_in_english_when_its_catalogues_fail_or_stall(zh_page: Page, web_stack: WebStack) -> None:
    page = zh_page
    page.route(CATALOGUE_SCRIPT, lambda route: route.abort())
    page.goto(web_stack.base_url + "/")
    expect(page.get_by_role("heading", name=ENGLISH_HEADING)).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    # Still on its way: hidden for a moment, then shown as it is rather than left blank; Chinese once it comes.
    page.unroute(CATALOGUE_SCRIPT)
    held: list[Route] = []
    page.route(CATALOGUE_SCRIPT, lambda route: held.append(route))
    with page.expect_request(CATALOGUE_SCRIPT):
        page.goto(web_stack.base_url + "/", wait_until="commit")
    heading = page.get_by_role("heading", name=ENGLISH_HEADING)
    expect(heading).to_be_hidden()
    expect(heading).to_be_visible(timeout=10_000)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    for route in held:
        route.continue_()
    page.unroute(CATALOGUE_SCRIPT)
    expect(page.get_by_role("heading", name=CHINESE_HEADING)).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")


def test_search_by_image_filters_and_empty_state_in_chinese(zh_page: Page, web_stack: WebStack) -> None:
    page = zh_page
    photo = "trips/海滩 sunset.jpg"
    page.goto(web_stack.base_url + "/")
    page.get_by_label("以图搜图", exact=True).set_input_files(str(web_stack.library.files[photo]))
    expect(page.get_by_text("与 海滩 sunset.jpg 相似的图片")).to_be_visible()
    wait_for_results(page)
    assert "海滩 sunset.jpg" in best_matches(page)
    assert page.title() == "相似图片 · clipsearch"
    collection = page.get_by_role("combobox", name="相册")
    expect(collection.get_by_role("option", name="全部相册")).to_have_count(1)
    expect(collection.get_by_role("option", name=re.compile(r"^假期（\d+）$"))).to_have_count(1)
    collection.select_option("假期")
    page.wait_for_url(re.compile(r"[?&]collection=%E5%81%87%E6%9C%9F"))
    wait_for_results(page)
    show = page.get_by_role("radiogroup", name="显示")
    show.get_by_role("radio", name="视频画面").check()
    page.wait_for_url(re.compile(r"[?&]media=video"))
    wait_for_results(page)
    assert all("（" in alt for alt in alts(page))
    show.get_by_role("radio", name="照片").check()
    wait_for_results(page, 1)
    assert alts(page) == ["海滩 sunset.jpg"]
    show.get_by_role("radio", name="全部").check()
    page.get_by_role("checkbox", name="合并重复照片").check()
    page.wait_for_url(re.compile(r"[?&]dups=1"))
    wait_for_results(page)
    # A collection without video frames: the empty state of filters, which clears them.
    page.goto(web_stack.base_url + "/?q=red&collection=photos&media=video")
    expect(page.get_by_role("heading", name="在当前筛选条件下找不到匹配项")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("0 个结果")
    page.get_by_role("button", name="清除筛选条件").click()
    page.wait_for_url(re.compile(r"/\?q=red$"))
    wait_for_results(page)
    # A file that is no image: said in Chinese, by the page itself.
    page.get_by_label("以图搜图", exact=True).set_input_files(
        {"name": "说明.txt", "mimeType": "text/plain", "buffer": b"not a picture"}
    )
    alert = page.get_by_role("alert").filter(has_text="搜索失败")
    expect(alert).to_contain_text("“说明.txt”不是图片。请选择 JPEG、PNG、WebP、GIF、HEIC 或 AVIF 格式的图片。")


def test_viewer_and_what_is_this_in_chinese(zh_page: Page, web_stack: WebStack) -> None:
    page = zh_page
    page.goto(web_stack.base_url + "/")
    page.get_by_label("以图搜图", exact=True).set_input_files(str(web_stack.library.files["red.png"]))
    wait_for_results(page)
    red = zh_results(page).filter(has=page.get_by_alt_text("red.png", exact=True))
    red.get_by_role("button", name="打开 red.png").click()
    dialog = page.get_by_role("dialog", name="red.png")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("img", name="red.png")).to_be_visible()
    expect(dialog.get_by_role("link", name="打开原图")).to_be_visible()
    expect(dialog.locator("dt")).to_contain_text(["相似度", "相册", "文件"])
    expect(dialog.get_by_role("button", name="下一张")).to_be_visible()
    dialog.get_by_role("button", name="关闭").click()
    expect(dialog).to_be_hidden()
    red.get_by_role("button", name="这是什么？").click()
    labels = dialog.get_by_role("textbox", name="标签")
    expect(labels).to_be_focused()
    expect(labels).to_have_attribute("placeholder", "猫，狗，夕阳下的海滩")
    labels.fill("红色")
    dialog.get_by_role("button", name="识别").click()
    expect(dialog.get_by_text("请至少输入两个标签")).to_be_visible()
    labels.fill("红色的方块、绿色的草地，蓝色的天空")
    dialog.get_by_role("button", name="识别").click()
    answers = dialog.get_by_role("list", name="识别结果").get_by_role("listitem")
    expect(answers).to_have_count(3)
    expect(answers.first).to_contain_text(re.compile(r"\d+\.\d%"))


def test_banner_and_failed_search_in_chinese(zh_page: Page, own_web_stack: OwnWebStack) -> None:
    page = zh_page
    page.goto(own_web_stack.base_url + "/")
    expect(page.get_by_text("搜索服务：运行中")).to_be_visible()
    own_web_stack.stop_search()
    search(page, "红色的方块")
    banner = page.get_by_role("alert").filter(has_text=re.compile(r"搜索服务（.*）不可用"))
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(own_web_stack.search_address)
    expect(banner).to_contain_text("所有搜索和图库统计都需要它。")
    failed = page.locator("#message")
    expect(failed.get_by_role("heading", name="搜索失败")).to_be_visible()
    expect(failed).to_contain_text("无法连接搜索服务")
    expect(page.get_by_text("图库：搜索服务不可用，暂时无法统计")).to_be_visible()
    # The API gives the reason the page translates, beside the English sentence.
    reply = request(own_web_stack.base_url, "GET", "/api/search?q=x")
    assert reply.status == 503
    body = reply.json()
    assert body["reason"] == "service_unavailable" and body["params"]["service"] == "search" and body["error"]
    own_web_stack.stop_embedder()
    page.get_by_role("button", name="重新检查").click()
    expect(page.get_by_role("alert").filter(has_text=re.compile(r"嵌入服务（.*）不可用"))).to_be_visible()


def test_model_mismatch_in_chinese(
    zh_page: Page, embedder_address: str, search_server_factory: SearchServerFactory, tmp_path: Path
) -> None:
    other = pb.EmbeddingModel(model_id="OFA-Sys/chinese-clip-vit-base-patch16", family="chinese_clip", dimension=32)
    search_service = search_server_factory()
    photo = write_photo(tmp_path / "照片/微笑的男人.jpg", (200, 160, 120))
    with grpc.insecure_channel(search_service.address) as channel:
        item = make_item("b" * 32, random_vectors(1)[0], sources=[photo.as_uri()], collection="家庭")
        search_pb2_grpc.SearchStub(channel).Upsert(pb.UpsertRequest(items=[item], model=other))
    with Client(embedder_address, search_service.address, connect_timeout=30) as client:
        ours = client.model_info().model_id
    services = dataclasses.replace(
        WebSettings().services,
        embedder_addresses=(embedder_address,),
        search_address=search_service.address,
        connect_timeout=30,
    )
    thread = WebThread(create_app(WebSettings(services=services, cache_dir=tmp_path / "cache")))
    base_url = thread.start().rstrip("/")
    try:
        zh_page.goto(base_url + f"/?q={quote('微笑的男人')}")
        alert = zh_page.get_by_role("alert").filter(has_text="图库是用另一个模型建立索引的")
        expect(alert).to_be_visible()
        expect(alert).to_contain_text("请运行 clipsearch reindex")
        expect(alert.locator("code", has_text="clipsearch reindex").first).to_be_visible()
        # The server's own sentence names both models, under the translation.
        expect(alert.locator(".message-detail")).to_contain_text(other.model_id)
        expect(alert.locator(".message-detail")).to_contain_text(ours)
        expect(zh_page.get_by_text("搜索服务：运行中")).to_be_visible()
        expect(zh_page.get_by_text(re.compile(r"服务.*不可用"))).to_have_count(0)
    finally:
        thread.stop()


def test_switch_changes_the_language_without_reload_and_keeps_it(page: Page, web_stack: WebStack) -> None:
    page.goto(web_stack.base_url + "/?q=red")
    wait_for_results_en = re.compile(r"^\d+ results?\b")
    expect(page.get_by_role("status")).to_have_text(wait_for_results_en)
    assert page.evaluate("document.documentElement.lang") == "en"
    page.evaluate("window.notReloaded = true")
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    expect(page.locator("h1")).to_have_text("在照片和视频里，找到每一个瞬间")
    assert page.evaluate("window.notReloaded") is True
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    n = wait_for_results(page)
    expect(page.get_by_role("button", name="相似图片")).to_have_count(n)
    expect(page.get_by_role("slider", name="最低相似度")).to_be_visible()
    expect(page.get_by_text("搜索服务：运行中")).to_be_visible()
    expect(page.get_by_role("searchbox", name="搜索", exact=True)).to_have_value("red")
    page.reload()
    wait_for_results(page, n)
    expect(page.get_by_role("combobox", name="语言")).to_have_value("zh-CN")
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    # Another tab, its viewer open, follows the switch made in this one.
    other = page.context.new_page()
    other.goto(web_stack.base_url + "/?q=red")
    wait_for_results(other, n)
    other.locator("#results .card-open").first.click()
    dialog = other.get_by_role("dialog")
    expect(dialog.get_by_role("button", name="关闭")).to_be_visible()
    page.get_by_role("combobox", name="语言").select_option("en")
    expect(page.get_by_role("status")).to_have_text(wait_for_results_en)
    expect(page.get_by_role("button", name="More like this")).to_have_count(n)
    expect(dialog.get_by_role("button", name="Close")).to_be_visible()
    expect(dialog.locator("dt").first).to_have_text("Score")
    expect(dialog.get_by_role("link", name=re.compile(r"^Open (original|video)$"))).to_be_visible()
    assert other.evaluate("document.documentElement.lang") == "en"
    page.reload()
    expect(page.get_by_role("combobox", name="Language")).to_have_value("en")


@pytest.mark.parametrize(
    ("locale", "lang"),
    [("zh", "zh-CN"), ("zh-CN", "zh-CN"), ("zh-Hans", "zh-CN"), ("zh-TW", "en"), ("en-US", "en"), ("fr-FR", "en")],
)
def test_language_follows_the_browser(browser: Browser, web_stack: WebStack, locale: str, lang: str) -> None:
    with opened_page(browser, f"language-{locale}", locale=locale) as page:
        page.goto(web_stack.base_url + "/")
        expect(page.locator("html")).to_have_attribute("lang", lang)
        heading = "在照片和视频里，找到每一个瞬间" if lang == "zh-CN" else "Find any moment in your photos and videos"
        expect(page.get_by_role("heading", name=heading)).to_be_visible()

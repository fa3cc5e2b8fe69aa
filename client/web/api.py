"""The JSON API under /api/: search by text, by image upload or by item; an item; classify; stats."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Annotated, Literal, TypeVar

import anyio
from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool

from client.api import Client, SearchFilter, SearchOptions
from client.errors import ClientError, InvalidInput
from client.results import Hit, Item, Stats
from clipsearch.v1.embedder_pb2 import ModelInfo

from .errors import message_of, reason_of, status_of
from .files import MediaProblem, check_id, file_name
from .media import Media, is_video
from .models import (
    ClassifyDoc,
    ClassifyRequestDoc,
    DuplicateDoc,
    ErrorDoc,
    HitDoc,
    ItemDoc,
    LabelDoc,
    QueryDoc,
    SaidLineDoc,
    SearchDoc,
    ServiceDoc,
    ServicesDoc,
    StatsDoc,
)

T = TypeVar("T")
# The search service answers at most this deep (offset + results).
MAX_DEPTH = 1000
MAX_TOP = 200
MAX_QUERY_CHARS = 1000


def page_params(
    top: Annotated[int, Query(ge=1, le=MAX_TOP, description="results per page")] = 24,
    offset: Annotated[int, Query(ge=0, lt=MAX_DEPTH, description="results to skip")] = 0,
    min_score: Annotated[
        float | None, Query(ge=-1.0, le=1.0, description="no result scores below this cosine; default: no cut")
    ] = None,
    collection: Annotated[str | None, Query(max_length=128, description="only this collection")] = None,
    media: Annotated[Literal["image", "video"] | None, Query(description="only photos or only video frames")] = None,
    frames: Annotated[
        bool, Query(description="every video frame as its own result, not frames of one moment as one")
    ] = False,
    collapse_duplicates: Annotated[
        bool, Query(description="near-duplicate photos (resized or re-encoded copies) as one result listing its copies")
    ] = False,
    said: Annotated[
        str | None,
        Query(
            max_length=MAX_QUERY_CHARS,
            description='what is said, in the videos\' subtitles: words, a "phrase", a prefix*, Chinese; alone, or '
            "with q or an image (moments matching both rank first)",
        ),
    ] = None,
) -> SearchOptions:
    if offset + top + 1 > MAX_DEPTH:
        raise InvalidInput(f"results go no deeper than {MAX_DEPTH}: lower offset or top")
    collections = (collection,) if collection and collection.strip() else ()
    filter_ = SearchFilter(collections=collections, media=media)
    return SearchOptions(
        top=top,
        offset=offset,
        filter=filter_,
        min_score=min_score,
        moments=not frames,
        collapse_duplicates=collapse_duplicates,
        said=(said or "").strip(),
    )


PageParams = Annotated[SearchOptions, Depends(page_params)]
_ERRORS: dict[int | str, dict[str, object]] = {status: {"model": ErrorDoc} for status in (400, 404, 409, 413, 503, 504)}


def hit_doc(item: Item, media: Media, score: float = 0.0) -> HitDoc:
    mime, playable = media.mime(item)
    video = is_video(item)
    moment = isinstance(item, Hit) and video and item.start_seconds is not None
    return HitDoc(
        id=item.id,
        score=score,
        media="video" if video else "image",
        name=file_name(item.source_uri) if item.sources else item.id,
        source=item.source,
        collection=item.collection,
        timestamp_seconds=item.timestamp_seconds if video else None,
        time=item.time if video else None,
        start_seconds=item.start_seconds if moment and isinstance(item, Hit) else None,
        end_seconds=item.end_seconds if moment and isinstance(item, Hit) else None,
        span=item.span if moment and isinstance(item, Hit) and item.span != item.time else None,
        frames=item.frames if isinstance(item, Hit) else 1,
        thumbnail_url=f"/media/{item.id}/thumb",
        media_url=f"/media/{item.id}/file",
        playable=playable,
        mime=mime,
        duplicates=[duplicate_doc(d) for d in item.duplicates] if isinstance(item, Hit) else [],
        said_lines=[SaidLineDoc(**asdict(line)) for line in item.said_lines] if isinstance(item, Hit) else [],
        said_words=list(item.said_words) if isinstance(item, Hit) else [],
    )


def duplicate_doc(copy: Hit) -> DuplicateDoc:
    name = file_name(copy.source_uri) if copy.sources else copy.id
    return DuplicateDoc(
        id=copy.id, score=copy.score, name=name, source=copy.source, thumbnail_url=f"/media/{copy.id}/thumb"
    )


def search_doc(hits: list[Hit], page: SearchOptions, media: Media, query: QueryDoc) -> SearchDoc:
    # One more result than the page was asked for says whether another page follows.
    shown = hits[: page.top]
    media.files.remember([*shown, *(d for h in shown for d in h.duplicates)])
    return SearchDoc(
        query=query,
        offset=page.offset,
        top=page.top,
        hits=[hit_doc(h, media, h.score) for h in shown],
        has_more=len(hits) > page.top,
        partial=getattr(hits, "partial", False),
        percent_indexed=getattr(hits, "percent_indexed", 100.0),
    )


def api_router() -> APIRouter:
    router = APIRouter(prefix="/api", tags=["api"], responses=_ERRORS)

    @router.get("/search", summary="Search by text (q) or by an indexed item (like)")
    def search(
        request: Request,
        page: PageParams,
        q: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS, description="a description")] = None,
        like: Annotated[str | None, Query(max_length=256, description="an item id: more like it")] = None,
    ) -> SearchDoc:
        client: Client = request.app.state.client
        media: Media = request.app.state.media
        # One more than the page, to tell whether another page follows.
        options = replace(page, top=page.top + 1)
        if options.said and q is None and like is None:
            hits = client.search_said(options.said, options)
            return search_doc(hits, page, media, QueryDoc(text=None, like=None, image=False, said=options.said))
        if (q is None) == (like is None):
            raise InvalidInput("give q (a description) or like (an item id), one of them, or said (what is said)")
        if q is not None:
            hits = client.search_text(q, options)
        else:
            hits = client.search_like(check_id(like or ""), options)
        return search_doc(hits, page, media, QueryDoc(text=q, like=like, image=False, said=options.said or None))

    @router.post("/search/image", summary="Search by an uploaded image (multipart field `image`)")
    async def search_image(
        request: Request,
        page: PageParams,
        image: Annotated[UploadFile, File(description="an image file")],
    ) -> SearchDoc:
        client: Client = request.app.state.client
        media: Media = request.app.state.media
        limit: int = request.app.state.settings.max_upload_bytes
        data = await image.read(limit + 1)
        if len(data) > limit:
            raise MediaProblem(413, f"the image is larger than the limit of {limit // (1 << 20)} MiB")
        if not data:
            raise InvalidInput("the uploaded image is empty")
        hits = await run_in_threadpool(client.search_image, data, replace(page, top=page.top + 1))
        query = QueryDoc(text=None, like=None, image=True, said=page.said or None)
        return await run_in_threadpool(search_doc, hits, page, media, query)

    @router.get("/items/{item_id}", summary="One indexed item, with every path it was indexed from")
    def item(request: Request, item_id: str) -> ItemDoc:
        media: Media = request.app.state.media
        found = media.files.item(item_id)
        doc = hit_doc(found, media)
        return ItemDoc(**doc.model_dump(), sources=list(found.paths))

    @router.post("/classify", summary="Zero-shot probabilities of labels for an indexed item")
    def classify(request: Request, body: ClassifyRequestDoc) -> ClassifyDoc:
        client: Client = request.app.state.client
        labels = [label.strip() for label in body.labels if label.strip()]
        if not labels:
            raise InvalidInput("give at least one label")
        scores = client.classify_item(check_id(body.id), labels, body.template)
        return ClassifyDoc(labels=[LabelDoc(label=s.label, probability=s.probability) for s in scores])

    @router.get("/stats", summary="Library size and whether each service answers; never an error")
    async def stats(request: Request) -> StatsDoc:
        probe: Client = request.app.state.probe
        model: ModelInfo | ClientError = ClientError("not asked")
        stats: Stats | ClientError = ClientError("not asked")

        async def ask_embedder() -> None:
            nonlocal model
            model = await anyio.to_thread.run_sync(_attempt, lambda: probe.model_info(refresh=True))

        async def ask_search() -> None:
            nonlocal stats
            stats = await anyio.to_thread.run_sync(_attempt, probe.stats)

        async with anyio.create_task_group() as group:
            group.start_soon(ask_embedder)
            group.start_soon(ask_search)
        return stats_doc(probe, model, stats)

    return router


def _attempt(call: Callable[[], T]) -> T | ClientError:
    try:
        return call()
    except ClientError as exc:
        return exc


def down_reason(exc: ClientError) -> str | None:
    return reason_of(exc, status_of(exc))[0]


def stats_doc(probe: Client, model: ModelInfo | ClientError, stats: Stats | ClientError) -> StatsDoc:
    embedder_address = ", ".join(probe.embedder_addresses)
    if isinstance(model, ClientError):
        embedder = ServiceDoc(
            up=False, address=embedder_address, message=message_of(model), reason=down_reason(model), model=None
        )
    else:
        embedder = ServiceDoc(up=True, address=embedder_address, message="", model=model.model_id or None)
    if isinstance(stats, ClientError):
        search = ServiceDoc(
            up=False, address=probe.search_address, message=message_of(stats), reason=down_reason(stats)
        )
        items, collections = 0, {}
    else:
        search = ServiceDoc(up=True, address=probe.search_address, message="")
        items, collections = stats.items, dict(stats.collections)
    loading = ""
    if isinstance(stats, Stats) and stats.loading:
        loading = f"{stats.loading_message}. Searches start once it is loaded."
    elif isinstance(stats, Stats) and stats.indexing and stats.loading_message:
        loading = f"{stats.loading_message}. Searches show what is loaded so far."
    return StatsDoc(
        items=items,
        collections=collections,
        services=ServicesDoc(embedder=embedder, search=search),
        loading=loading,
    )

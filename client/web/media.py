"""Media of indexed items by id: cached thumbnails, and the original file (videos with HTTP Range)."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, Response
from starlette.datastructures import Headers
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable
from starlette.types import Receive, Scope, Send

from client.ingest.media import MediaError, open_regular
from client.results import Item

from .cache import DiskCache, cache_key
from .errors import error_response
from .files import ItemFiles, MediaProblem, file_name, local_path
from .models import ErrorDoc
from .thumbs import (
    VideoInfo,
    VideoInfoCache,
    frame_thumbnail,
    image_mime,
    image_shown,
    image_thumbnail,
    probe_video,
    video_mime,
)

# Served media is never run as a page, whatever it contains.
MEDIA_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}
_THUMB_CACHE_CONTROL = "private, max-age=300"


class MediaFileResponse(FileResponse):
    """FileResponse (which answers Range requests with 206, or 416) with its Range errors as JSON."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        http_range = Headers(scope=scope).get("range")
        if http_range is not None and self.stat_result is not None:
            size = self.stat_result.st_size
            try:
                self._parse_range_header(http_range, size)
            except RangeNotSatisfiable:
                message = f"the range {http_range!r} is outside the file ({size} bytes)"
                response = error_response(416, message, {"Content-Range": f"bytes */{size}"})
                return await response(scope, receive, send)
            except MalformedRangeHeader as exc:
                response = error_response(400, f"bad Range header {http_range!r}: {exc.content or 'malformed'}")
                return await response(scope, receive, send)
        await super().__call__(scope, receive, send)


def is_video(item: Item) -> bool:
    return item.media == "video_frame"


class Media:
    """Thumbnails and files of indexed items, checked by ItemFiles, thumbnails cached in a DiskCache."""

    def __init__(self, files: ItemFiles, cache: DiskCache, thumb_size: int) -> None:
        self.files = files
        self.cache = cache
        self.thumb_size = thumb_size
        self._videos = VideoInfoCache()

    def thumbnail(self, item_id: str) -> bytes:
        item = self.files.item(item_id)
        source, stream = self.files.open(item)
        with stream:
            timestamp = item.timestamp_seconds if is_video(item) else None
            key = cache_key("thumb", source.signature(), item.content_hash, timestamp, self.thumb_size)
            cached = self.cache.get(key)
            if cached is not None:
                return cached
            try:
                if timestamp is not None:
                    data = frame_thumbnail(stream, timestamp, self.thumb_size)
                else:
                    data = image_thumbnail(stream, self.thumb_size)
            except MediaError as exc:
                raise MediaProblem(415, f"cannot make a thumbnail of {source.name}: {exc}") from None
        self.cache.put(key, data)
        return data

    def video_info(self, item: Item) -> VideoInfo:
        """How the item's video is served; probed once per content, from the first source that opens."""
        known = self._videos.get(item.content_hash) if item.content_hash else None
        if known is not None:
            return known
        name = file_name(item.source_uri)
        for uri in item.sources:
            path = local_path(uri)
            if path is None:
                continue
            try:
                stream = open_regular(path)
            except MediaError:
                continue
            with stream:
                info = probe_video(stream, name)
            if item.content_hash:
                self._videos.put(item.content_hash, info)
            return info
        return VideoInfo(video_mime(name), False)  # not there now: not playable, and not remembered

    def mime(self, item: Item) -> tuple[str, bool]:
        """(MIME type, whether browsers play or show it) of the item's file."""
        if is_video(item):
            info = self.video_info(item)
            return info.mime, info.playable
        mime = image_mime(file_name(item.source_uri))
        return mime, image_shown(mime)


ItemId = Annotated[str, Path(description="an item id, as search results give it", max_length=256)]
_ERRORS: dict[int | str, dict[str, object]] = {status: {"model": ErrorDoc} for status in (400, 404, 410, 415, 503)}


def media_router() -> APIRouter:
    router = APIRouter(prefix="/media", tags=["media"])

    @router.get(
        "/{item_id}/thumb",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, **_ERRORS},
        summary="A JPEG thumbnail of an item (a video frame: the frame at its time)",
    )
    def thumbnail(request: Request, item_id: ItemId) -> Response:
        media: Media = request.app.state.media
        data = media.thumbnail(item_id)
        return Response(data, media_type="image/jpeg", headers={**MEDIA_HEADERS, "Cache-Control": _THUMB_CACHE_CONTROL})

    @router.get(
        "/{item_id}/file",
        response_class=MediaFileResponse,
        responses={200: {"content": {"image/*": {}, "video/*": {}}}, 206: {"description": "a byte range"}, **_ERRORS},
        summary="An item's original file; videos support HTTP Range requests",
    )
    def original(request: Request, item_id: ItemId) -> MediaFileResponse:
        media: Media = request.app.state.media
        item = media.files.item(item_id)
        source, stream = media.files.open(item)
        with stream:
            # The checked file's own metadata: what is served is what was hashed, unless it is replaced
            # between this check and the read below.
            stat_result = os.fstat(stream.fileno())
        mime, _ = media.mime(item)
        return MediaFileResponse(
            source.path,
            stat_result=stat_result,
            media_type=mime,
            filename=source.name,
            content_disposition_type="inline",
            headers={**MEDIA_HEADERS, "Cache-Control": "private, no-cache"},
        )

    return router

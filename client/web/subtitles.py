"""A video's stored subtitles for the viewer: its tracks, and each as WebVTT, by item id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from client.api import Client
from client.errors import NotFound
from client.results import SubtitleTrack

from .media import MEDIA_HEADERS, ItemId, Media
from .models import ErrorDoc, SubtitleTrackDoc

_ERRORS: dict[int | str, dict[str, object]] = {status: {"model": ErrorDoc} for status in (400, 404, 503)}


def vtt_time(seconds: float) -> str:
    ms = max(0, round(seconds * 1000))
    return f"{ms // 3_600_000:02}:{ms // 60_000 % 60:02}:{ms // 1000 % 60:02}.{ms % 1000:03}"


def webvtt(track: SubtitleTrack) -> str:
    """The track as a WebVTT file: its text escaped (no markup survives), "-->" never inside a line."""
    out = ["WEBVTT", ""]
    for n, (start, end, text) in enumerate(track.cues, 1):
        safe = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("--&gt;", "→")
        lines = [line for line in safe.splitlines() if line.strip()] or ["…"]
        out += [str(n), f"{vtt_time(start)} --> {vtt_time(end)}", *lines, ""]
    return "\n".join(out)


def _tracks(request: Request, item_id: str) -> list[SubtitleTrack]:
    media: Media = request.app.state.media
    client: Client = request.app.state.client
    return client.subtitles(media.files.item(item_id))


def subtitles_router() -> APIRouter:
    router = APIRouter(prefix="/media", tags=["media"])

    @router.get("/{item_id}/subtitles", responses=_ERRORS, summary="The subtitle tracks stored for a video")
    def tracks(request: Request, item_id: ItemId) -> list[SubtitleTrackDoc]:
        return [
            SubtitleTrackDoc(
                index=n,
                name=t.name,
                language=t.language,
                cues=len(t.cues),
                url=f"/media/{item_id}/subtitles/{n}.vtt",
            )
            for n, t in enumerate(_tracks(request, item_id))
        ]

    @router.get(
        "/{item_id}/subtitles/{number}.vtt",
        response_class=Response,
        responses={200: {"content": {"text/vtt": {}}}, **_ERRORS},
        summary="One subtitle track of a video as WebVTT, from its stored cues (embedded tracks too)",
    )
    def track(
        request: Request, item_id: ItemId, number: Annotated[int, Path(ge=0, lt=64, description="the track's index")]
    ) -> Response:
        found = _tracks(request, item_id)
        if number >= len(found):
            raise NotFound(f"the video has {len(found)} subtitle tracks; there is no track {number}")
        return Response(
            webvtt(found[number]),
            media_type="text/vtt; charset=utf-8",
            headers={**MEDIA_HEADERS, "Cache-Control": "private, no-cache"},
        )

    return router

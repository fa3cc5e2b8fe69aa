"""The ASGI app of the web page and its JSON API: create_app builds it from WebSettings."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from client.api import Client

from . import errors
from .api import api_router
from .cache import DiskCache
from .files import ItemFiles
from .libraries import library_router
from .media import Media, media_router
from .security import MULTIPART_OVERHEAD, UPLOAD_PATH, Guard, is_loopback
from .settings import WebSettings
from .subtitles import subtitles_router

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"


def _clients(settings: WebSettings, client: Client | None) -> tuple[Client, Client]:
    """The client for requests and a second one with short deadlines for /api/stats' checks."""
    # A service that refuses connections is reported to the page at once rather than after the deadline.
    config = dataclasses.replace(settings.services, refused_wait=settings.refused_wait)
    if client is None:
        client = Client(config=dataclasses.replace(config, timeout=settings.call_timeout))
    probe = Client(
        client.embedder_addresses,
        client.search_address,
        timeout=settings.probe_timeout,
        connect_timeout=settings.probe_timeout,
        config=config,
    )
    return client, probe


def create_app(settings: WebSettings, client: Client | None = None) -> FastAPI:
    """The ASGI app. It uses `client` for the services (closed by the caller), or one it makes from
    settings.services (closed when the app shuts down)."""
    owned = client is None
    client, probe = _clients(settings, client)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            probe.close()
            if owned:
                client.close()

    app = FastAPI(
        title="clipsearch",
        summary="Search a photo and video library by text, by image or by example.",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    cache = DiskCache(settings.cache_dir, settings.cache_max_bytes)
    app.state.settings = settings
    app.state.client = client
    app.state.probe = probe
    app.state.media = Media(ItemFiles(client, cache), cache, settings.thumb_size)
    errors.install(app)
    app.include_router(api_router())
    app.include_router(media_router())
    app.include_router(library_router())
    app.include_router(subtitles_router())
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            "index.html",
            {"max_upload_bytes": settings.max_upload_bytes, "thumb_size": settings.thumb_size},
        )

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        return JSONResponse({"ok": True})

    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    app.add_middleware(
        Guard,
        password=settings.password,
        loopback_only=is_loopback(settings.host),
        max_body_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD,
        # A file added to a library is the request's body, up to the larger of its limits.
        large_bodies=((UPLOAD_PATH, max(settings.max_upload_video_bytes, settings.max_upload_photo_bytes)),),
    )
    return app

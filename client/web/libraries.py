"""The library panel's API: list, add (under the allowed roots), rescan, remove and upload into a library."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from client.api import Client
from client.errors import Conflict, NotFound
from client.libraries import Library

from .files import MediaProblem
from .models import ErrorDoc
from .settings import WebSettings
from .uploads import Limits, receive, settle

# The reasons of refusals (ErrorDoc.reason), for the page to say in its own words.
OUTSIDE_ROOTS = "outside_roots"
NOT_A_FOLDER = "not_a_folder"
WRONG_BODY = "wrong_body"
FOLDER_MISSING = "folder_missing"
LIBRARY_NOT_FOUND = "library_not_found"
LIBRARY_CONFLICT = "library_conflict"
_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorDoc} for status in (400, 403, 404, 409, 413, 415, 503, 504)
}


class FailureDoc(BaseModel):
    path: str
    reason: str


class LibraryDoc(BaseModel):
    """A library: a folder kept indexed into a collection, and what its indexer last reported."""

    name: str
    path: str = Field(description="the folder, on the machine where indexing runs")
    collection: str
    items: int = Field(description="items of the collection indexed from files under the folder")
    state: Literal["pending", "idle", "scanning", "indexing", "watching", "error"]
    files_done: int
    files_total: int
    eta_seconds: float | None = Field(description="while indexing: seconds left, as the indexer estimates")
    message: str = Field(description="in the error state: why the folder cannot be watched")
    failed_files: int = Field(description="files that failed in the latest pass")
    failures: list[FailureDoc] = Field(description="up to 100 of them, with why")
    updated_at: float | None = Field(description="when the indexer last reported, seconds since the epoch")
    uploads: bool = Field(description="whether the page may add files to the folder (it is under a root)")


class LibrariesDoc(BaseModel):
    libraries: list[LibraryDoc]
    roots: list[str] = Field(description="folders under which the page may add a library (--library-root)")
    max_upload_photo_bytes: int
    max_upload_video_bytes: int


class AddLibraryDoc(BaseModel):
    path: str = Field(max_length=4096, description="an absolute folder path on the server machine")
    collection: str | None = Field(
        default=None,
        max_length=128,
        description="the collection its files go to; default: the one its files are already in, else `default`",
    )


class RemovedDoc(BaseModel):
    name: str
    removed_items: int


class UploadedDoc(BaseModel):
    name: str = Field(description="the file's name in the folder (made safe, never overwriting)")
    path: str
    media: Literal["photo", "video"]
    bytes: int


def roots_of(settings: WebSettings) -> list[Path]:
    return [Path(os.path.realpath(root)) for root in settings.library_roots]


def under_roots(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _not_a_folder(message: str) -> MediaProblem:
    return MediaProblem(400, message, NOT_A_FOLDER)


def allowed_folder(text: str, roots: list[Path]) -> Path:
    """The folder `text` names with symlinks resolved, if it lies under a root and is a folder: 403 outside
    the roots (before anything else is said about it), 400 for a relative path or what is not a folder."""
    text = text.strip()
    if not text:
        raise _not_a_folder("give the folder's path")
    if "\x00" in text:
        raise _not_a_folder("the path holds a NUL character")
    given = Path(text).expanduser()
    if not given.is_absolute():
        raise _not_a_folder(f"{text}: give the folder's full path (starting with /)")
    resolved = Path(os.path.realpath(given))
    if not under_roots(resolved, roots):
        shown = f"{text} (which leads to {resolved})" if str(resolved) != str(given) else text
        raise MediaProblem(
            403,
            f"{shown} is outside the folders this server may add ({', '.join(map(str, roots))}); "
            "start it with --library-root to allow another",
            OUTSIDE_ROOTS,
        )
    try:
        info = os.stat(resolved)
    except FileNotFoundError:
        raise _not_a_folder(f"{text}: no such folder") from None
    except OSError as exc:
        raise _not_a_folder(f"{text}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise _not_a_folder(f"{text}: not a folder")
    if not os.access(resolved, os.R_OK | os.X_OK):
        raise _not_a_folder(f"{text}: the folder cannot be read (permission denied)")
    return resolved


def library_doc(library: Library, roots: list[Path]) -> LibraryDoc:
    data = library.to_json()
    failures = [FailureDoc(**f) for f in data.pop("failures")]
    fields = {k: v for k, v in data.items() if k in LibraryDoc.model_fields}
    uploads = under_roots(Path(os.path.realpath(library.path)), roots)
    return LibraryDoc(**{**fields, "failures": failures, "uploads": uploads})


def _content_type(request: Request, *expected: str) -> None:
    """Refuses bodies a browser form could send: the page sends JSON, or the file's bytes."""
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if given not in expected:
        raise MediaProblem(415, f"send the body as {' or '.join(expected)}, not {given or 'no type'}", WRONG_BODY)


def json_body(request: Request) -> None:
    _content_type(request, "application/json")


def octet_body(request: Request) -> None:
    _content_type(request, "application/octet-stream")


@contextlib.contextmanager
def named_library() -> Iterator[None]:
    """An unknown library name as a 404 that says so."""
    try:
        yield
    except NotFound as exc:
        raise MediaProblem(404, str(exc), LIBRARY_NOT_FOUND) from None


def library_router() -> APIRouter:
    router = APIRouter(prefix="/api/libraries", tags=["libraries"], responses=_ERRORS)

    def state(request: Request) -> tuple[Client, WebSettings, list[Path]]:
        settings: WebSettings = request.app.state.settings
        return request.app.state.client, settings, roots_of(settings)

    @router.get("", summary="Every library, with its indexer's state and progress")
    def list_libraries(request: Request) -> LibrariesDoc:
        client, settings, roots = state(request)
        return LibrariesDoc(
            libraries=[library_doc(lib, roots) for lib in client.list_libraries()],
            roots=[str(root) for root in roots],
            max_upload_photo_bytes=settings.max_upload_photo_bytes,
            max_upload_video_bytes=settings.max_upload_video_bytes,
        )

    @router.post(
        "", status_code=201, dependencies=[Depends(json_body)], summary="Add a folder under a root as a library"
    )
    def add_library(request: Request, body: AddLibraryDoc) -> LibraryDoc:
        client, _, roots = state(request)
        folder = allowed_folder(body.path, roots)
        collection = body.collection.strip() if body.collection and body.collection.strip() else None
        try:
            return library_doc(client.add_library(folder, collection), roots)
        except Conflict as exc:
            raise MediaProblem(409, str(exc), LIBRARY_CONFLICT) from None

    @router.post("/{name}/rescan", dependencies=[Depends(json_body)], summary="Walk the library's folder again")
    def rescan(request: Request, name: str) -> LibraryDoc:
        client, _, roots = state(request)
        with named_library():
            return library_doc(client.request_rescan(name), roots)

    @router.post(
        "/{name}/remove",
        dependencies=[Depends(json_body)],
        summary="Forget the library and remove its items from the index (never a file)",
    )
    def remove(request: Request, name: str) -> RemovedDoc:
        client, _, _ = state(request)
        with named_library():
            return RemovedDoc(name=name, removed_items=client.remove_library(name))

    @router.post(
        "/{name}/upload",
        status_code=201,
        dependencies=[Depends(octet_body)],
        summary="Add a photo or video to the library's folder: the body is the file's bytes",
    )
    async def upload(
        request: Request,
        name: str,
        filename: Annotated[str, Query(alias="name", min_length=1, max_length=1024, description="the file's name")],
    ) -> JSONResponse:
        client, settings, roots = state(request)
        with named_library():
            library = await run_in_threadpool(client.library, name)
        folder = Path(os.path.realpath(library.path))
        if not under_roots(folder, roots):
            raise MediaProblem(
                403, f"{library.path} is outside the folders this server may add files to", OUTSIDE_ROOTS
            )
        if not folder.is_dir():
            raise MediaProblem(409, f"the library's folder {library.path} is not there", FOLDER_MISSING)
        limits = Limits(settings.max_upload_photo_bytes, settings.max_upload_video_bytes)
        temp, kind, size = await receive(request.stream(), folder, limits)
        final = await run_in_threadpool(settle, temp, kind, filename)
        doc = UploadedDoc(
            name=final.name, path=str(final), media="photo" if kind.media == "photo" else "video", bytes=size
        )
        return JSONResponse(doc.model_dump(), status_code=201)

    return router

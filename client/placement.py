"""One file, one item: the collection an index run uses for its paths (their library's, or the one they are in)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from clipsearch.limits import DEFAULT_COLLECTION, MAX_IDS
from clipsearch.v1 import search_pb2

from . import ids as idmod
from .errors import Conflict, ServiceError
from .libraries import Library, library_of, list_libraries
from .transport import Transport
from .uris import PathLike, absolute, dir_uri, display_path, path_to_uri


@dataclass(frozen=True)
class Placement:
    """The collection to index into, and why when it is not the one asked for (a line to show, or "")."""

    collection: str
    note: str = ""


def _libraries(transport: Transport) -> list[Library]:
    try:
        return list_libraries(transport)
    except ServiceError as exc:
        if exc.code == grpc.StatusCode.UNIMPLEMENTED:
            return []  # a search service from before libraries
        raise


def collections_of(transport: Transport, path: PathLike, collections: Sequence[str]) -> dict[str, int]:
    """Collection -> how many items list a source at `path` (a file) or under it (a folder), where any do."""
    resolved = absolute(path)
    filters: list[search_pb2.Filter] = []
    if resolved.is_dir() or not resolved.exists():
        filters.append(search_pb2.Filter(source_dir=dir_uri(resolved)))
    if not resolved.is_dir():
        filters.append(search_pb2.Filter(sources=[path_to_uri(resolved)]))
    return _count(transport, filters, collections)


def _count(transport: Transport, filters: Sequence[search_pb2.Filter], collections: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for name in collections:
        total = 0
        for f in filters:
            scoped = search_pb2.Filter()
            scoped.CopyFrom(f)
            scoped.collections[:] = [name]
            total += transport.list(search_pb2.ListRequest(filter=scoped, page_size=1)).total
        if total:
            found[name] = total
    return found


def _files_filters(files: Sequence[PathLike]) -> list[search_pb2.Filter]:
    uris = [path_to_uri(p) for p in files]
    return [search_pb2.Filter(sources=uris[i : i + MAX_IDS]) for i in range(0, len(uris), MAX_IDS)]


def _quoted(path: PathLike) -> str:
    return shlex.quote(display_path(path))


def _listing(found: dict[str, int]) -> str:
    return ", ".join(f"{name!r} ({count} item{'s' if count != 1 else ''})" for name, count in found.items())


def choose_collection(transport: Transport, paths: Sequence[PathLike], given: str | None) -> Placement:
    """The one collection for `paths`: a path inside a library uses the library's; files already indexed
    keep their collection. `given` (None: not given) must agree with both, else Conflict in one line naming
    the collection and the command to run."""
    wanted = idmod.normalize_collection(given) if given else None
    libraries = _libraries(transport)
    names = [c.name for c in transport.list_collections().collections]
    chosen: dict[str, str] = {}  # collection -> the path that asks for it
    notes: list[str] = []
    # Folders are looked up one by one, files (often many, from a shell glob) together.
    files = [p for p in paths if not absolute(p).is_dir() and library_of(libraries, os.fsdecode(p)) is None]
    groups: list[tuple[PathLike, str, str, list[search_pb2.Filter] | None]] = [
        (p, display_path(p), _quoted(p), None) for p in paths if not any(p is f for f in files)
    ]
    if len(files) == 1:
        groups.append((files[0], display_path(files[0]), _quoted(files[0]), _files_filters(files)))
    elif files:
        groups.append((files[0], f"{len(files)} of the given files", "FILE...", _files_filters(files)))
    for path, shown, arg, filters in groups:
        library = None if filters is not None else library_of(libraries, os.fsdecode(path))
        if library is not None:
            if wanted is not None and wanted != library.collection:
                raise Conflict(
                    f"{shown} is in the library {library.name!r}, indexed into the collection "
                    f"{library.collection!r}: run `clipsearch index {arg}` (it uses {library.collection!r}), "
                    f"or `clipsearch library remove {shlex.quote(library.name)}` first"
                )
            chosen.setdefault(library.collection, shown)
            if wanted is None and library.collection != DEFAULT_COLLECTION:
                notes.append(f"{shown} is in the library {library.name!r}: indexing into {library.collection!r}")
            continue
        found = _count(transport, filters, names) if filters is not None else collections_of(transport, path, names)
        if wanted is not None:
            others = {name: count for name, count in found.items() if name != wanted}
            if others:
                first = next(iter(others))
                raise Conflict(
                    f"{shown} is already indexed in the collection {_listing(others)}: one file is one item, so "
                    f"run `clipsearch index {arg} --collection {shlex.quote(first)}`, or first "
                    f"`clipsearch delete --source {arg} --collection {shlex.quote(first)}` to move it "
                    f"to {wanted!r}"
                )
            chosen.setdefault(wanted, shown)
        elif len(found) > 1:
            first, *rest = found
            raise Conflict(
                f"{shown} is indexed in several collections, {_listing(found)}: run "
                f"`clipsearch index {arg} --collection {shlex.quote(first)}` and drop the others with "
                + ", ".join(f"`clipsearch delete --source {arg} --collection {shlex.quote(r)}`" for r in rest)
            )
        elif found:
            (collection,) = found
            chosen.setdefault(collection, shown)
            if collection != DEFAULT_COLLECTION:
                notes.append(f"{shown} is indexed in {collection!r} already: indexing into {collection!r}")
    if wanted is not None:
        return Placement(wanted)
    if len(chosen) > 1:
        detail = ", ".join(f"{path} in {name!r}" for name, path in chosen.items())
        raise Conflict(f"the paths belong to different collections ({detail}): index them one command each")
    collection = next(iter(chosen), DEFAULT_COLLECTION)
    return Placement(collection, "; ".join(dict.fromkeys(notes)))

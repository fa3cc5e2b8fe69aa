"""What changed in a library's folder since its last complete pass: files changed since then, indexed files gone."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..api import Client, SearchFilter
from ..ingest.media import Problem, discover
from ..libraries import Library
from ..uris import path_to_uri, uri_to_path

# A file changed this close before the recorded time is looked at again (coarse file system timestamps).
MARGIN_SECONDS = 2.0


@dataclass(frozen=True)
class Changes:
    changed: list[str]  # files new or changed since (paths): to index
    gone: list[str]  # indexed sources (URIs) under the folder whose file is no more
    looked_at: int  # files walked


def changes_since(client: Client, library: Library, since: float) -> Changes:
    """Walks the folder without reading a file: a file is looked at again when the index lists no source at its
    path or its mtime or ctime (a move, a copy keeping its mtime) is not before `since`."""
    indexed: set[str] = set()
    for item in client.list_items(SearchFilter(collections=(library.collection,), source_dir=library.uri)):
        indexed.update(s for s in item.sources if s.startswith(library.uri))
    seen: set[str] = set()
    changed: list[str] = []
    for found in discover([library.path]):
        if isinstance(found, Problem):
            continue
        uri = path_to_uri(found.path)
        seen.add(uri)
        try:
            st = os.stat(found.path)
        except OSError:
            continue  # gone meanwhile: the watch says so
        if uri not in indexed or max(st.st_mtime, st.st_ctime) >= since - MARGIN_SECONDS:
            changed.append(str(found.path))
    gone = sorted(uri for uri in indexed - seen if not _is_file(uri))
    return Changes(changed, gone, len(seen))


def _is_file(uri: str) -> bool:
    try:
        return os.path.isfile(uri_to_path(uri))
    except (ValueError, OSError):
        return False

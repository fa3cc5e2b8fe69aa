"""What changed in a library's folder since its last complete pass: files changed since then, indexed files gone."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..api import Client, SearchFilter
from ..ingest.media import Problem, discover
from ..libraries import Library
from ..uris import dir_uri, uri_to_path

# A file changed this close before the recorded time is looked at again (coarse file system timestamps).
MARGIN_SECONDS = 2.0


@dataclass(frozen=True)
class Changes:
    changed: list[str]  # files new or changed since (paths): to index
    gone: list[str]  # indexed sources (URIs) under the folder whose file is no more
    looked_at: int  # files walked
    folders_listed: int  # folders changed since, whose indexed sources were listed to find the gone ones


def changes_since(client: Client, library: Library, since: float) -> Changes:
    """Walks the folder without reading a file or listing the index where nothing changed.

    Every file changed before `since` is indexed as it is (the indexer records it so), so a file is looked at
    again only when its mtime or ctime (a move, a copy that keeps the mtime) is not before `since`. A file
    removed or moved away changes its folder's mtime: only the indexed sources under such folders are listed,
    to find those gone.
    """
    threshold = since - MARGIN_SECONDS
    changed: list[str] = []
    looked_at = 0
    for found in discover([library.path]):
        if isinstance(found, Problem):
            continue
        looked_at += 1
        try:
            st = os.stat(found.path)
        except OSError:
            continue  # gone meanwhile: the watch says so
        if max(st.st_mtime, st.st_ctime) >= threshold:
            changed.append(str(found.path))
    folders = _changed_folders(library.path, threshold)
    gone: set[str] = set()
    for folder in folders:
        scope = dir_uri(folder)
        for item in client.list_items(SearchFilter(collections=(library.collection,), source_dir=scope)):
            gone.update(s for s in item.sources if s.startswith(scope) and not _is_file(s))
    return Changes(changed, sorted(gone), looked_at, len(folders))


def _changed_folders(root: str, threshold: float) -> list[str]:
    """The folders (the root included) whose entries changed since `threshold`, none inside another listed."""
    found: list[str] = []
    for folder, subfolders, _ in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))  # as the ingest walk skips them
        try:
            st = os.stat(folder)
        except OSError:
            continue
        if max(st.st_mtime, st.st_ctime) >= threshold:
            found.append(folder)
            subfolders[:] = []  # its listing covers everything under it
    return found


def _is_file(uri: str) -> bool:
    try:
        return os.path.isfile(uri_to_path(uri))
    except (ValueError, OSError):
        return False

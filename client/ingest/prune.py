"""Listing stored items page by page, and pruning the sources whose files are gone or changed."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence

from clipsearch.limits import MAX_IDS
from clipsearch.v1 import search_pb2

from ..transport import Transport
from ..uris import PathLike, absolute, dir_uri, is_within, path_to_uri, uri_to_path
from .reports import Tally
from .shard import Shard


def list_all(
    transport: Transport, filter_: search_pb2.Filter, *, with_vectors: bool = False, page_size: int = 1000
) -> Iterator[search_pb2.Item]:
    """Every item matching the filter, page by page."""
    token = ""
    while True:
        response = transport.list(
            search_pb2.ListRequest(filter=filter_, page_size=page_size, page_token=token, with_vectors=with_vectors)
        )
        yield from response.items
        token = response.next_page_token
        if not token:
            return


def prune(
    transport: Transport,
    paths: Sequence[PathLike],
    *,
    recursive: bool,
    hash_by_uri: Mapping[str, str],
    tally: Tally,
    shard: Shard | None = None,
) -> None:
    """Removes, within the given paths, sources whose files are gone or changed, in every collection.

    hash_by_uri holds the content each source had in this run; with a shard, only its own sources are
    considered, so the shards of one library together prune what one run would. A gone file leaves every item
    listing it, whatever its collection (one file is one item, so an earlier run into another collection is
    pruned too); a changed file only the items holding its old content (a Delete scoped to their ids).
    The search service changes each item atomically, so an interrupted prune cannot lose an item that
    keeps a source.
    """
    gone: set[str] = set()
    changed: dict[str, tuple[frozenset[str], set[str]]] = {}  # item id -> (its sources, those to remove)
    for scope, filter_ in _scopes(paths):
        for item in list_all(transport, filter_):
            for source in item.metadata.sources:
                if shard is not None and not shard.holds_source(source):
                    continue
                if not is_within(source, scope) or (
                    not recursive and scope.endswith("/") and "/" in source[len(scope) :]
                ):
                    continue
                if not _is_file(source):
                    gone.add(source)
                elif _content_changed(item, source, hash_by_uri):
                    changed.setdefault(item.id, (frozenset(item.metadata.sources), set()))[1].add(source)
    requests = [search_pb2.DeleteRequest(sources=chunk) for chunk in _chunks(sorted(gone), MAX_IDS)]
    requests += [
        search_pb2.DeleteRequest(ids=ids, sources=sources) for ids, sources in removal_batches(changed, MAX_IDS)
    ]
    counted: set[str] = set()
    for request in requests:
        response = transport.delete(request)
        new = set(request.sources) - counted
        counted |= new
        tally.pruned(len(new), response.deleted)
    tally.pruned_sources(len(counted))


def removal_batches(
    changed: Mapping[str, tuple[frozenset[str], set[str]]], limit: int
) -> Iterator[tuple[list[str], list[str]]]:
    """Groups (item id -> its sources, those to remove) into Delete calls of ids and sources.

    A call removes every one of its sources from every one of its items, so an item joins a call only
    when it keeps none of the call's sources and no other item of the call keeps one it loses.
    """
    ids: list[str] = []
    sources: set[str] = set()
    kept: set[str] = set()
    for item_id, (listed, remove) in changed.items():
        keeps = listed - remove
        if ids and (remove & kept or keeps & sources or len(ids) == limit or len(sources | remove) > limit):
            yield ids, sorted(sources)
            ids, sources, kept = [], set(), set()
        if len(remove) > limit:  # one item losing more sources than a call takes: calls of its own
            for chunk in _chunks(sorted(remove), limit):
                yield [item_id], chunk
            continue
        ids.append(item_id)
        sources |= remove
        kept |= keeps
    if ids:
        yield ids, sorted(sources)


def _content_changed(item: search_pb2.Item, source: str, hash_by_uri: Mapping[str, str]) -> bool:
    """This run found other content at the source than the item holds."""
    current = hash_by_uri.get(source)
    return current is not None and current != item.metadata.content_hash


def _scopes(paths: Sequence[PathLike]) -> Iterator[tuple[str, search_pb2.Filter]]:
    for given in paths:
        path = absolute(given)
        if path.is_dir() or not path.exists():
            scope = dir_uri(path)
            yield scope, search_pb2.Filter(source_dir=scope)
        if not path.is_dir():
            scope = path_to_uri(path)
            yield scope, search_pb2.Filter(sources=[scope])


def _chunks(values: list[str], size: int) -> list[list[str]]:
    return [values[start : start + size] for start in range(0, len(values), size)]


def _is_file(uri: str) -> bool:
    try:
        return os.path.isfile(uri_to_path(uri))
    except (ValueError, OSError):
        return False

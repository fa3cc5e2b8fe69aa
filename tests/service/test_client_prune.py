"""Prune and scoped deletes through the client and the CLI: one scoped Delete per removal, no rewrites."""

from __future__ import annotations

import functools
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client import Client, InvalidInput, SearchFilter, ServiceError
from client.cli import main
from client.ingest.prune import removal_batches
from client.uris import path_to_uri
from clipsearch.serving import ServerOptions, ServiceBinding, create_server
from clipsearch.v1 import search_pb2_grpc
from search_service.server import SERVICE_NAME, SearchServer, build_index, connect
from search_service.servicer import SearchServicer
from tests.support.client import CallCounter, write_images
from tests.support.search import SERVING, drop_search_index, search_test_config, wait_for_health


class FailingDelete(grpc.ServerInterceptor):
    """Fails the n-th Delete call with INTERNAL before it reaches the service (0: none), as a crash would."""

    def __init__(self) -> None:
        self.fail_call = 0
        self._seen = 0
        self._lock = threading.Lock()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method.endswith("/Delete"):
            with self._lock:
                self._seen += 1
                fail = self._seen == self.fail_call
            if fail:

                def abort(request: bytes, context: grpc.ServicerContext) -> None:
                    context.abort(grpc.StatusCode.INTERNAL, "the connection broke")

                return grpc.unary_unary_rpc_method_handler(abort)
        return continuation(handler_call_details)


@dataclass
class CountedSearch:
    address: str
    counter: CallCounter
    failing: FailingDelete


@pytest.fixture
def counted_search(redis_url: str) -> Iterator[CountedSearch]:
    """A search server on an index of its own whose calls are counted, and whose Deletes can be failed."""
    config = search_test_config(redis_url)
    counter, failing = CallCounter(), FailingDelete()
    index = build_index(config, connect(redis_url, 5.0), "test Redis")
    register = functools.partial(search_pb2_grpc.add_SearchServicer_to_server, SearchServicer(index))
    base = create_server(
        config.address, [ServiceBinding(SERVICE_NAME, register)], ServerOptions(interceptors=(counter, failing))
    )
    server = SearchServer(base, index, config.health_interval_seconds)
    server.start()
    try:
        address = f"127.0.0.1:{server.port}"
        wait_for_health(address, SERVING)
        yield CountedSearch(address, counter, failing)
    finally:
        server.stop(0)
        drop_search_index(redis_url, config.index_name)


def snapshot(client: Client, collection: str) -> dict[str, tuple[str, ...]]:
    """Item id -> sorted sources, of one collection."""
    return {i.id: tuple(sorted(i.sources)) for i in client.list_items(SearchFilter(collections=(collection,)))}


@pytest.fixture
def album(tmp_path: Path) -> dict[str, Path]:
    """Photos where each kind of prune shows: a gone file with a copy kept, a gone file alone, a changed
    file whose old content stays at another path, and an unchanged one."""
    folder = tmp_path / "album"
    dup_source, alone, changed, unchanged = write_images(folder, 4)
    paths = {
        "dup": folder / "dup.png",
        "dup_source": dup_source,
        "alone": alone,
        "changed": changed,
        "changed_copy": folder / "copy.png",
        "unchanged": unchanged,
    }
    shutil.copy(dup_source, paths["dup"])
    shutil.copy(changed, paths["changed_copy"])
    return paths


def test_prune_removes_gone_files_from_every_collection_and_never_rewrites(
    embedder_address: str, counted_search: CountedSearch, album: dict[str, Path], tmp_path: Path
) -> None:
    folder = album["dup"].parent
    with Client(embedder_address, counted_search.address, connect_timeout=30) as client:
        # Two collections holding the same files, as runs from before one file was one item could leave.
        client.index([folder], collection="a", one_item_per_file=False)
        client.index([folder], collection="b", one_item_per_file=False)
        old_changed = client.search_image(album["changed"], top=1, filter=SearchFilter(collections=("a",)))[0].id

        album["dup"].unlink()  # its item keeps dup_source
        album["alone"].unlink()  # its item has no other path: deleted
        write_images(tmp_path / "new", 1, seed=99)[0].replace(album["changed"])  # its old item keeps the copy
        first = client.index([folder], collection="a", one_item_per_file=False)  # the new content: one upsert
        assert first.images == 1
        upserts = counted_search.counter.calls["Upsert"]

        report = client.index([folder], collection="a", prune=True, one_item_per_file=False)

        assert counted_search.counter.calls["Upsert"] == upserts  # nothing read back and rewritten
        assert (report.pruned_sources, report.pruned_items) == (3, 2)
        uri = {name: path_to_uri(path) for name, path in album.items()}
        a_after = snapshot(client, "a")
        assert a_after[old_changed] == (uri["changed_copy"],)
        assert sorted(a_after.values()) == sorted(
            [(uri["dup_source"],), (uri["changed_copy"],), (uri["changed"],), (uri["unchanged"],)]
        )
        # The other collection loses the gone files and the changed one's old content too.
        assert sorted(snapshot(client, "b").values()) == sorted(
            [(uri["dup_source"],), (uri["changed_copy"],), (uri["unchanged"],)]
        )


def test_an_interrupted_prune_loses_no_item_and_a_rerun_finishes_it(
    embedder_address: str, counted_search: CountedSearch, album: dict[str, Path], tmp_path: Path
) -> None:
    folder = album["dup"].parent
    with Client(embedder_address, counted_search.address, connect_timeout=30) as client:
        client.index([folder])
        album["dup"].unlink()
        album["alone"].unlink()
        write_images(tmp_path / "new", 1, seed=99)[0].replace(album["changed"])
        client.index([folder])
        before = snapshot(client, "default")
        uri = {name: path_to_uri(path) for name, path in album.items()}

        # Gone files go first, then the changed one: fail that second call, as if the client died there.
        counted_search.failing.fail_call = counted_search.counter.calls["Delete"] + 2
        with pytest.raises(ServiceError, match="the connection broke"):
            client.index([folder], prune=True)

        midway = snapshot(client, "default")
        assert set(midway) == set(before) - {i for i, s in before.items() if s == (uri["alone"],)}
        assert all(set(midway[i]) <= set(before[i]) and midway[i] for i in midway)
        assert uri["dup"] not in {s for sources in midway.values() for s in sources}
        assert len(midway) == len(before) - 1

        report = client.index([folder], prune=True)
        assert (report.pruned_sources, report.pruned_items) == (1, 0)
        assert sorted(snapshot(client, "default").values()) == sorted(
            [(uri["dup_source"],), (uri["changed_copy"],), (uri["changed"],), (uri["unchanged"],)]
        )


def test_client_delete_scopes_sources_to_a_collection_and_ids(client: Client, tmp_path: Path) -> None:
    photos = write_images(tmp_path / "photos", 3)
    client.index([photos[0].parent], collection="a", one_item_per_file=False)
    client.index([photos[0].parent], collection="b", one_item_per_file=False)

    one = client.delete(sources=[photos[0]], collection="a")
    assert (one.deleted, one.updated) == (1, 0)
    assert len(snapshot(client, "a")) == 2 and len(snapshot(client, "b")) == 3

    # A folder with a collection and ids: only those of the ids in that collection lose its files.
    a_ids, b_ids = sorted(snapshot(client, "a")), sorted(snapshot(client, "b"))
    some = client.delete(sources=[photos[0].parent], collection="b", ids=[*a_ids, b_ids[0]])
    assert (some.deleted, some.updated) == (1, 0)
    assert sorted(snapshot(client, "a")) == a_ids and sorted(snapshot(client, "b")) == b_ids[1:]

    with pytest.raises(InvalidInput, match="ids and a collection"):
        client.delete(ids=a_ids, collection="a")
    with pytest.raises(InvalidInput):
        client.delete()


def test_cli_delete_source_with_a_collection(
    cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = write_images(tmp_path / "photos", 2)
    assert main(["index", str(photos[0].parent), "--collection", "a", "--json"]) == 0
    # The same files in a second collection, as runs from before one file was one item could leave them.
    with Client(connect_timeout=30) as client:
        client.index([photos[0].parent], collection="b", one_item_per_file=False)
    assert main(["index", str(photos[0].parent), "--collection", "a"]) == 1
    assert "already indexed in the collection 'b' (2 items)" in capsys.readouterr().err

    assert main(["delete", "--source", str(photos[0]), str(photos[1]), "--collection", "a"]) == 0
    assert capsys.readouterr().out.strip() == "deleted 2 items"
    assert main(["collections", "--json"]) == 0
    assert '"name": "a"' not in capsys.readouterr().out

    for args in (["delete"], ["delete", "--id", "x", "--collection", "b"]):
        code = main(args)
        _, err = capsys.readouterr()
        assert code != 0 and err.count("\n") == 1 and "Traceback" not in err, (args, err)
    assert main(["collections", "--json"]) == 0
    assert '"items": 2' in capsys.readouterr().out


_items = st.dictionaries(
    st.sampled_from([f"id{n}" for n in range(12)]),
    st.sets(st.sampled_from([f"file:///{n}.jpg" for n in range(6)]), min_size=1).flatmap(
        lambda listed: st.tuples(st.just(frozenset(listed)), st.sets(st.sampled_from(sorted(listed)), min_size=1))
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(changed=_items, limit=st.integers(1, 4))
def test_removal_batches_remove_exactly_what_each_item_loses(
    changed: dict[str, tuple[frozenset[str], set[str]]], limit: int
) -> None:
    left = {item_id: set(listed) for item_id, (listed, _) in changed.items()}
    for ids, sources in removal_batches(changed, limit):
        assert 1 <= len(ids) <= limit and 1 <= len(sources) <= limit
        for item_id in ids:  # what the service does with one scoped Delete
            left[item_id] -= set(sources)
    assert left == {item_id: set(listed - remove) for item_id, (listed, remove) in changed.items()}

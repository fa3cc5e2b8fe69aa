"""Search's library RPCs over real gRPC and a real Redis: add, list, rescan, report, remove."""

from __future__ import annotations

import grpc
import pytest

from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.support.search import RunningSearch, SearchServerFactory, make_item, random_vectors


def code_of(call: object) -> grpc.StatusCode:
    assert isinstance(call, grpc.RpcError)
    return call.code()


def test_add_normalizes_names_and_lists(search_stub: search_pb2_grpc.SearchStub) -> None:
    added = search_stub.AddLibrary(pb.AddLibraryRequest(path="/photos/./2024/../Holidays/", collection="trips"))

    assert (added.name, added.path, added.uri, added.collection) == (
        "Holidays",
        "/photos/Holidays",
        "file:///photos/Holidays/",
        "trips",
    )
    assert added.status.state == pb.LIBRARY_STATE_UNSPECIFIED
    second = search_stub.AddLibrary(pb.AddLibraryRequest(path="/other/Holidays"))
    assert (second.name, second.collection) == ("Holidays-2", "default")
    spaced = search_stub.AddLibrary(pb.AddLibraryRequest(path="/data/My Photos é"))
    assert spaced.uri == "file:///data/My%20Photos%20%C3%A9/"
    listed = search_stub.ListLibraries(pb.ListLibrariesRequest()).libraries
    assert [lib.name for lib in listed] == ["Holidays", "Holidays-2", "My Photos é"]


def test_libraries_are_shared_by_services_of_the_same_index_and_survive_a_restart(
    search_server_factory: SearchServerFactory,
) -> None:
    first: RunningSearch = search_server_factory()
    with grpc.insecure_channel(first.address) as channel:
        search_pb2_grpc.SearchStub(channel).AddLibrary(pb.AddLibraryRequest(path="/photos", collection="home"))
    first.server.stop(0)
    second = search_server_factory(index_name=first.config.index_name)
    with grpc.insecure_channel(second.address) as channel:
        listed = search_pb2_grpc.SearchStub(channel).ListLibraries(pb.ListLibrariesRequest()).libraries
    assert [(lib.name, lib.path, lib.collection) for lib in listed] == [("photos", "/photos", "home")]


@pytest.mark.parametrize(
    ("path", "name", "code", "words"),
    [
        ("/photos", "", grpc.StatusCode.ALREADY_EXISTS, "already the library 'photos'"),
        ("/photos/2024", "", grpc.StatusCode.ALREADY_EXISTS, "inside the library 'photos'"),
        ("/", "", grpc.StatusCode.ALREADY_EXISTS, "contains the library 'photos'"),
        ("/music", "photos", grpc.StatusCode.ALREADY_EXISTS, "named 'photos' exists"),
        ("relative/dir", "", grpc.StatusCode.INVALID_ARGUMENT, "not absolute"),
        ("", "", grpc.StatusCode.INVALID_ARGUMENT, "path is empty"),
        ("/a\0b", "", grpc.StatusCode.INVALID_ARGUMENT, "NUL"),
        ("/" + "x" * 5000, "", grpc.StatusCode.INVALID_ARGUMENT, "at most 4096"),
        ("/music", "a/b", grpc.StatusCode.INVALID_ARGUMENT, "bad library name"),
        ("/music", "tab\there", grpc.StatusCode.INVALID_ARGUMENT, "bad library name"),
    ],
)
def test_bad_or_overlapping_folders_are_refused_and_write_nothing(
    search_stub: search_pb2_grpc.SearchStub, path: str, name: str, code: grpc.StatusCode, words: str
) -> None:
    search_stub.AddLibrary(pb.AddLibraryRequest(path="/photos"))
    with pytest.raises(grpc.RpcError) as caught:
        search_stub.AddLibrary(pb.AddLibraryRequest(path=path, name=name))
    assert code_of(caught.value) == code
    assert words in (caught.value.details() or "")
    assert [lib.path for lib in search_stub.ListLibraries(pb.ListLibrariesRequest()).libraries] == ["/photos"]


def test_report_rescan_and_unknown_names(search_stub: search_pb2_grpc.SearchStub) -> None:
    search_stub.AddLibrary(pb.AddLibraryRequest(path="/photos"))
    status = pb.LibraryStatus(
        state=pb.LIBRARY_STATE_INDEXING,
        files_done=3,
        files_total=10,
        eta_seconds=42.0,
        failures=[pb.LibraryFailure(path="/photos/bad.jpg", reason="cannot identify image file")],
        indexer="host:1",
    )
    assert search_stub.ReportLibraryStatus(pb.ReportLibraryStatusRequest(name="photos", status=status)).known
    (lib,) = search_stub.ListLibraries(pb.ListLibrariesRequest()).libraries
    s = lib.status
    assert (s.state, s.files_done, s.files_total, s.eta_seconds, s.failed_files) == (
        pb.LIBRARY_STATE_INDEXING,
        3,
        10,
        42.0,
        1,
    )
    assert s.failures[0].reason == "cannot identify image file"
    assert s.updated_at > 0

    assert search_stub.RequestLibraryRescan(pb.RequestLibraryRescanRequest(name="photos")).rescan_requests == 1
    assert search_stub.RequestLibraryRescan(pb.RequestLibraryRescanRequest(name="photos")).rescan_requests == 2

    reply = search_stub.ReportLibraryStatus(pb.ReportLibraryStatusRequest(name="gone", status=status))
    assert not reply.known
    for call in (
        lambda: search_stub.RequestLibraryRescan(pb.RequestLibraryRescanRequest(name="gone")),
        lambda: search_stub.RemoveLibrary(pb.RemoveLibraryRequest(name="gone")),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert code_of(caught.value) == grpc.StatusCode.NOT_FOUND
        assert "no library named 'gone' (libraries: 'photos')" in (caught.value.details() or "")
    bad = pb.LibraryStatus(state=99)  # type: ignore[arg-type]
    with pytest.raises(grpc.RpcError) as caught:
        search_stub.ReportLibraryStatus(pb.ReportLibraryStatusRequest(name="photos", status=bad))
    assert code_of(caught.value) == grpc.StatusCode.INVALID_ARGUMENT


def test_remove_deletes_its_items_only_and_counts_them(search_stub: search_pb2_grpc.SearchStub) -> None:
    v = random_vectors(5, seed=3)
    search_stub.Upsert(
        pb.UpsertRequest(
            items=[
                make_item("cat", v[0], sources=["file:///photos/cat.jpg"], collection="home"),
                make_item("dog", v[1], sources=["file:///photos/sub/dog.jpg"], collection="home"),
                make_item("both", v[2], sources=["file:///photos/b.jpg", "file:///elsewhere/b.jpg"], collection="home"),
                make_item("other-collection", v[3], sources=["file:///photos/cat.jpg"], collection="work"),
                make_item("outside", v[4], sources=["file:///photosynthesis/x.jpg"], collection="home"),
            ]
        )
    )
    added = search_stub.AddLibrary(pb.AddLibraryRequest(path="/photos", collection="home"))
    assert added.items == 3

    reply = search_stub.RemoveLibrary(pb.RemoveLibraryRequest(name="photos"))

    assert (reply.library.name, reply.deleted_items, reply.updated_items) == ("photos", 2, 1)
    left = {i.id: list(i.metadata.sources) for i in search_stub.List(pb.ListRequest(page_size=100)).items}
    assert left == {
        "both": ["file:///elsewhere/b.jpg"],
        "other-collection": ["file:///photos/cat.jpg"],
        "outside": ["file:///photosynthesis/x.jpg"],
    }
    assert list(search_stub.ListLibraries(pb.ListLibrariesRequest()).libraries) == []
    # A report from an indexer that has not noticed yet does not bring it back.
    status = pb.LibraryStatus(state=pb.LIBRARY_STATE_WATCHING)
    assert not search_stub.ReportLibraryStatus(pb.ReportLibraryStatusRequest(name="photos", status=status)).known
    assert list(search_stub.ListLibraries(pb.ListLibrariesRequest()).libraries) == []

"""The library RPCs' refusals carry ErrorInfo reasons, and the Python client acts on the reason: it raises its
error from it whatever the message says, and sends a call refused with LIBRARY_CHANGED again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import NoReturn

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status as grpc_rpc_status

from client import Client, Conflict, LibraryChanged, LibraryTaken, NotFound, ServiceError
from client import libraries as client_libraries
from clipsearch import rpc_status
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.support.libraries import Meddler
from tests.support.search import SearchServerFactory


def refusal(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def error_info(call: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """The one ErrorInfo in the status details, read here with grpcio-status alone."""
    assert isinstance(call, grpc.Call)
    status = grpc_rpc_status.from_call(call)
    assert status is not None
    (detail,) = status.details
    info = error_details_pb2.ErrorInfo()
    assert detail.Unpack(info)
    return info


PHOTOS = {"name": "photos", "path": "/photos", "collection": "home"}


@pytest.mark.parametrize(
    ("path", "name", "reason", "metadata"),
    [
        ("/photos", "", rpc_status.LIBRARY_EXISTS, PHOTOS),
        ("/music", "photos", rpc_status.LIBRARY_EXISTS, PHOTOS),
        ("/photos/2024", "", rpc_status.LIBRARY_OVERLAPS, {**PHOTOS, "overlap": "inside"}),
        ("/", "", rpc_status.LIBRARY_OVERLAPS, {**PHOTOS, "overlap": "contains"}),
    ],
)
def test_a_refused_folder_or_name_names_its_reason_and_the_other_library(
    search_stub: search_pb2_grpc.SearchStub, path: str, name: str, reason: str, metadata: dict[str, str]
) -> None:
    search_stub.AddLibrary(pb.AddLibraryRequest(path="/photos", collection="home"))
    refused = refusal(lambda: search_stub.AddLibrary(pb.AddLibraryRequest(path=path, name=name)))
    assert refused.code() == grpc.StatusCode.ALREADY_EXISTS
    info = error_info(refused)
    assert (info.domain, info.reason, dict(info.metadata)) == (rpc_status.DOMAIN, reason, metadata)


def test_an_unknown_name_names_its_reason(search_stub: search_pb2_grpc.SearchStub) -> None:
    for call in (
        lambda: search_stub.RequestLibraryRescan(pb.RequestLibraryRescanRequest(name="gone")),
        lambda: search_stub.RemoveLibrary(pb.RemoveLibraryRequest(name="gone")),
    ):
        refused = refusal(call)
        assert refused.code() == grpc.StatusCode.NOT_FOUND
        info = error_info(refused)
        assert (info.domain, info.reason, dict(info.metadata)) == (
            rpc_status.DOMAIN,
            rpc_status.LIBRARY_NOT_FOUND,
            {"name": "gone"},
        )


def test_libraries_changing_throughout_a_call_abort_it_and_it_writes_nothing(
    search_stub: search_pb2_grpc.SearchStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    search_stub.AddLibrary(pb.AddLibraryRequest(path="/photos"))
    meddler = Meddler(times=10**6).install(monkeypatch)
    for call in (
        lambda: search_stub.AddLibrary(pb.AddLibraryRequest(path="/music")),
        lambda: search_stub.RequestLibraryRescan(pb.RequestLibraryRescanRequest(name="photos")),
    ):
        refused = refusal(call)
        assert refused.code() == grpc.StatusCode.ABORTED
        assert rpc_status.reason_of(refused) == rpc_status.LIBRARY_CHANGED
        assert "kept changing" in (refused.details() or "")
    assert meddler.meddled == 20  # the service tried each call 10 times
    (photos,) = search_stub.ListLibraries(pb.ListLibrariesRequest()).libraries
    assert (photos.name, photos.rescan_requests) == ("photos", 0)


def test_the_client_sends_a_changed_call_again_and_it_counts_once(
    search_server_factory: SearchServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = search_server_factory()
    with Client("127.0.0.1:1", running.address, connect_timeout=10) as client:
        meddler = Meddler(times=10).install(monkeypatch)  # the first call's 10 tries
        added = client.add_library("/photos", "home", must_exist=False)
        assert meddler.meddled == 10 and added.name == "photos"
        meddler.times = 20
        assert client.request_rescan("photos").rescan_requests == 1  # the aborted call wrote nothing
        assert meddler.meddled == 20
        assert [(lib.name, lib.rescan_requests) for lib in client.list_libraries()] == [("photos", 1)]


def test_the_client_gives_up_on_libraries_that_keep_changing(
    search_server_factory: SearchServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = search_server_factory()
    monkeypatch.setattr(client_libraries, "CHANGED_FIRST_DELAY", 0.01)
    with Client("127.0.0.1:1", running.address, connect_timeout=10) as client:
        meddler = Meddler(times=10**6).install(monkeypatch)
        with pytest.raises(LibraryChanged, match="cannot add /photos: libraries kept changing") as caught:
            client.add_library("/photos", "home", must_exist=False)
        assert isinstance(caught.value, Conflict)  # as before the reason: the web page answers 409
        assert meddler.meddled == 10 * client_libraries.CHANGED_ATTEMPTS
        meddler.times = 0
        assert client.list_libraries() == []


class Refusing(search_pb2_grpc.SearchServicer):
    """A search service whose library calls always fail with one status, counted, its message saying nothing
    of the reason."""

    MESSAGE = "computer says no"

    def __init__(self, code: grpc.StatusCode, reason: str | None, metadata: dict[str, str]) -> None:
        self.code, self.reason, self.metadata = code, reason, metadata
        self.calls = 0

    def _refuse(self, context: grpc.ServicerContext) -> NoReturn:
        self.calls += 1
        if self.reason is not None:
            status = rpc_status.status_with_reason(self.code, self.MESSAGE, self.reason, self.metadata)
            context.abort_with_status(status)
        context.abort(self.code, self.MESSAGE)

    def AddLibrary(self, request: pb.AddLibraryRequest, context: grpc.ServicerContext) -> pb.Library:
        self._refuse(context)

    def RequestLibraryRescan(
        self, request: pb.RequestLibraryRescanRequest, context: grpc.ServicerContext
    ) -> pb.Library:
        self._refuse(context)


@contextmanager
def refusing_client(
    code: grpc.StatusCode, reason: str | None, metadata: dict[str, str] | None = None
) -> Iterator[tuple[Client, Refusing]]:
    servicer = Refusing(code, reason, metadata or {})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    search_pb2_grpc.add_SearchServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with Client("127.0.0.1:1", f"127.0.0.1:{port}", connect_timeout=10) as client:
            yield client, servicer
    finally:
        server.stop(0)


@pytest.mark.parametrize("reason", [rpc_status.LIBRARY_EXISTS, rpc_status.LIBRARY_OVERLAPS])
def test_the_client_raises_library_taken_from_the_reason_and_its_metadata(reason: str) -> None:
    other = {"name": "photos", "path": "/photos", "collection": "home", "overlap": "inside"}
    with (
        refusing_client(grpc.StatusCode.ALREADY_EXISTS, reason, other) as (client, _),
        pytest.raises(LibraryTaken) as caught,
    ):
        client.add_library("/photos/2024", "home", must_exist=False)
    taken = caught.value
    assert (taken.library, taken.path, taken.collection, taken.overlap) == ("photos", "/photos", "home", "inside")
    assert str(taken) == f"cannot add /photos/2024: {Refusing.MESSAGE}"


def test_the_client_raises_not_found_from_the_reason() -> None:
    # FAILED_PRECONDITION would not be NotFound by its code: only the reason makes it one.
    with (
        refusing_client(grpc.StatusCode.FAILED_PRECONDITION, rpc_status.LIBRARY_NOT_FOUND) as (client, _),
        pytest.raises(NotFound, match=Refusing.MESSAGE),
    ):
        client.request_rescan("gone")


def test_the_client_retries_only_for_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_libraries, "CHANGED_FIRST_DELAY", 0.01)
    with refusing_client(grpc.StatusCode.ABORTED, rpc_status.LIBRARY_CHANGED) as (client, servicer):
        with pytest.raises(LibraryChanged, match=Refusing.MESSAGE):
            client.request_rescan("photos")
        assert servicer.calls == client_libraries.CHANGED_ATTEMPTS
    with refusing_client(grpc.StatusCode.ABORTED, None) as (client, servicer):
        with pytest.raises(ServiceError) as caught:
            client.request_rescan("photos")
        assert servicer.calls == 1 and caught.value.code == grpc.StatusCode.ABORTED
        assert not isinstance(caught.value, Conflict)


@pytest.mark.parametrize(
    ("code", "error"), [(grpc.StatusCode.ALREADY_EXISTS, Conflict), (grpc.StatusCode.NOT_FOUND, NotFound)]
)
def test_a_service_without_reasons_is_read_by_its_codes(code: grpc.StatusCode, error: type[Exception]) -> None:
    with refusing_client(code, None) as (client, _), pytest.raises(error, match=Refusing.MESSAGE) as caught:
        client.add_library("/photos", "home", must_exist=False)
    assert not isinstance(caught.value, LibraryTaken)

"""Error statuses carry a google.rpc.ErrorInfo reason, and the Python client acts on the reason, not the words."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
import pytest

from client import Client
from client.errors import ModelMismatch, ServiceError
from clipsearch import rpc_status
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.support.search import SearchServerFactory, make_item, random_vectors

MODEL_A = pb.EmbeddingModel(model_id="models/a", family="clip", dimension=32, fingerprint="sha256:aaaa")
MODEL_B = pb.EmbeddingModel(model_id="models/b", family="clip", dimension=16, fingerprint="sha256:bbbb")
OTHER = pb.EmbeddingModel(model_id="models/c", family="clip", dimension=32, fingerprint="sha256:cccc")


def refusal(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_each_refusal_a_caller_must_handle_names_its_reason(search_server_factory: SearchServerFactory) -> None:
    running = search_server_factory()
    with grpc.insecure_channel(running.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        vectors = random_vectors(2, 32)
        items = [make_item(f"item{i}", v, sources=[f"file:///p/{i}.jpg"]) for i, v in enumerate(vectors)]
        stub.Upsert(pb.UpsertRequest(items=items, model=MODEL_A))
        assert stub.Stats(pb.StatsRequest()).settings.model == MODEL_A

        mismatch = refusal(lambda: stub.Query(pb.QueryRequest(vector=vectors[0], model=OTHER)))
        assert mismatch.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert rpc_status.reason_of(mismatch) == rpc_status.MODEL_MISMATCH
        other_dimension = pb.EmbeddingModel(model_id="models/a", dimension=16)
        dimension = refusal(lambda: stub.Query(pb.QueryRequest(vector=vectors[0], model=other_dimension)))
        assert rpc_status.reason_of(dimension) == rpc_status.MODEL_MISMATCH

        nothing = refusal(lambda: stub.FinishReindex(pb.FinishReindexRequest(model=MODEL_B)))
        assert nothing.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert rpc_status.reason_of(nothing) == rpc_status.NO_REINDEX_IN_PROGRESS
        staged = refusal(lambda: stub.StagedIds(pb.StagedIdsRequest(ids=["item0"])))
        assert rpc_status.reason_of(staged) == rpc_status.NO_REINDEX_IN_PROGRESS

        stub.BeginReindex(pb.BeginReindexRequest(model=MODEL_B))
        try:
            another = refusal(lambda: stub.BeginReindex(pb.BeginReindexRequest(model=OTHER)))
            assert another.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert rpc_status.reason_of(another) == rpc_status.REINDEX_MODEL_MISMATCH
            finish = refusal(lambda: stub.FinishReindex(pb.FinishReindexRequest(model=OTHER)))
            assert rpc_status.reason_of(finish) == rpc_status.REINDEX_MODEL_MISMATCH
        finally:
            stub.AbortReindex(pb.AbortReindexRequest())

        # A malformed request is the caller's mistake, with nothing more to read than its code.
        malformed = refusal(lambda: stub.Query(pb.QueryRequest(vector=[*vectors[0], 0.5])))
        assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert rpc_status.reason_of(malformed) is None


def test_the_client_raises_model_mismatch_for_the_reason(search_server_factory: SearchServerFactory) -> None:
    running = search_server_factory()
    with Client("127.0.0.1:1", running.address, connect_timeout=10) as client:
        client.search_vector(random_vectors(1, 32)[0], model=MODEL_A)  # an empty index takes any model
        stub_items = [make_item("a", random_vectors(1, 32)[0], sources=["file:///p/a.jpg"])]
        with grpc.insecure_channel(running.address) as channel:
            stub = search_pb2_grpc.SearchStub(channel)
            stub.Upsert(pb.UpsertRequest(items=stub_items, model=MODEL_A))
            assert stub.Stats(pb.StatsRequest()).settings.model == MODEL_A
        with pytest.raises(ModelMismatch) as caught:
            client.search_vector(random_vectors(1, 32)[0], model=OTHER)
    assert caught.value.reason == rpc_status.MODEL_MISMATCH
    assert "models/c" in str(caught.value) and not str(caught.value).startswith("search service at")


class Refusing(search_pb2_grpc.SearchServicer):
    """A search service whose Query always fails with FAILED_PRECONDITION, with or without a reason."""

    def __init__(self, message: str, reason: str | None) -> None:
        self.message = message
        self.reason = reason

    def Query(self, request: pb.QueryRequest, context: grpc.ServicerContext) -> pb.QueryResponse:
        code = grpc.StatusCode.FAILED_PRECONDITION
        if self.reason is not None:
            context.abort_with_status(rpc_status.status_with_reason(code, self.message, self.reason))
        context.abort(code, self.message)


@contextmanager
def refusing_server(message: str, reason: str | None) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    search_pb2_grpc.add_SearchServicer_to_server(Refusing(message, reason), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


@pytest.mark.parametrize(
    ("reason", "mismatch"),
    [
        (None, False),  # the words alone no longer make a model mismatch
        (rpc_status.REINDEX_IN_PROGRESS, False),
        (rpc_status.MODEL_MISMATCH, True),
        (rpc_status.REINDEX_MODEL_MISMATCH, True),
    ],
)
def test_the_client_reads_the_reason_not_the_message(reason: str | None, mismatch: bool) -> None:
    message = "another reindex began at the same time; run clipsearch reindex again"
    with (
        refusing_server(message, reason) as address,
        Client("127.0.0.1:1", address, connect_timeout=10) as client,
        pytest.raises(ServiceError) as caught,
    ):
        client.search_vector([1.0, 0.0])
    assert isinstance(caught.value, ModelMismatch) is mismatch
    assert caught.value.reason == reason
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION and message in str(caught.value)


def test_an_unknown_reason_is_refused_where_the_status_is_made() -> None:
    with pytest.raises(ValueError, match="unknown ErrorInfo reason"):
        rpc_status.status_with_reason(grpc.StatusCode.FAILED_PRECONDITION, "x", "SOMETHING_ELSE")

"""How client and gRPC errors become HTTP statuses and one-sentence messages."""

from __future__ import annotations

import grpc
import pytest

from client.errors import ClientError, InvalidInput, ModelMismatch, NotFound, ServiceError, ServiceUnavailable
from client.web.errors import message_of, reason_of, status_of
from client.web.files import MediaProblem, check_id


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 503),
        (grpc.StatusCode.FAILED_PRECONDITION, 503),
        (grpc.StatusCode.UNAUTHENTICATED, 502),
        (grpc.StatusCode.PERMISSION_DENIED, 502),
        (grpc.StatusCode.INTERNAL, 502),
    ],
)
def test_service_errors_map_to_gateway_statuses(code: grpc.StatusCode, status: int) -> None:
    assert status_of(ServiceError("search", "127.0.0.1:1", code, "details")) == status


def test_client_errors_map_to_the_caller_or_the_service() -> None:
    assert status_of(InvalidInput("bad")) == 400
    assert status_of(NotFound("no item")) == 404
    assert status_of(MediaProblem(410, "gone")) == 410
    assert status_of(ServiceUnavailable("embedder", "127.0.0.1:50051", "connection failed")) == 503
    assert status_of(ClientError("the embedder returned no scores")) == 502
    # Both services answer, but the index holds another model's vectors: a conflict, not a service down.
    mismatch = ModelMismatch("127.0.0.1:50052", "the index holds 'a'; run `clipsearch reindex`")
    assert status_of(mismatch) == 409 and message_of(mismatch) == "the index holds 'a'; run `clipsearch reindex`"


def test_messages_name_the_service_and_what_to_do() -> None:
    down = ServiceUnavailable("search", "127.0.0.1:50052", "connection failed")
    assert "search service at 127.0.0.1:50052" in message_of(down) and "clipsearch serve" in message_of(down)
    slow = ServiceError("embedder", "127.0.0.1:50051", grpc.StatusCode.DEADLINE_EXCEEDED, "deadline")
    text = message_of(slow)
    assert "embedder service at 127.0.0.1:50051 did not answer in time" in text
    assert "EMBEDDER_ADDR" in text and "clipsearch serve" in text


@pytest.mark.parametrize(
    "item_id",
    ["img-0123456789abcdef0123456789abcdef", "vid-0123456789abcdef0123456789abcdef-1500000", "node:item_7.b"],
)
def test_ids_of_the_index_pass(item_id: str) -> None:
    assert check_id(item_id) == item_id


@pytest.mark.parametrize(
    "item_id", ["", ".", "..", "../x", "a/b", "a\\b", "a%2Fb", ".hidden", "a b", "a\x00", "猫", "a" * 257]
)
def test_anything_else_is_a_malformed_id(item_id: str) -> None:
    with pytest.raises(MediaProblem) as caught:
        check_id(item_id)
    assert caught.value.status == 400


def test_errors_carry_a_stable_reason_for_the_page_to_translate() -> None:
    down = ServiceUnavailable("search", "127.0.0.1:50052", "connection failed")
    assert reason_of(down, status_of(down)) == (
        "service_unavailable",
        {"service": "search", "address": "127.0.0.1:50052"},
    )
    late = ServiceError("embedder", "127.0.0.1:1", grpc.StatusCode.DEADLINE_EXCEEDED, "late")
    assert reason_of(late, status_of(late)) == ("service_timeout", {"service": "embedder", "address": "127.0.0.1:1"})
    refused = ServiceError("search", "127.0.0.1:2", grpc.StatusCode.UNAUTHENTICATED, "bad token")
    assert reason_of(refused, status_of(refused))[0] == "service_refused"
    mismatch = ModelMismatch("127.0.0.1:50052", "another model")
    assert reason_of(mismatch, status_of(mismatch)) == ("model_mismatch", {})
    bad = ServiceError("embedder", "127.0.0.1:1", grpc.StatusCode.INVALID_ARGUMENT, "cannot decode the image")
    assert reason_of(bad, status_of(bad)) == ("invalid_request", {})
    assert reason_of(MediaProblem(410, "gone"), 410) == ("file_unavailable", {})
    assert reason_of(MediaProblem(413, "too large"), 413) == ("upload_too_large", {})
    assert reason_of(ClientError("no scores"), 502) == (None, {})

"""Client parts that need no server: ids, source URIs, batching, addresses, timestamps."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client import ids
from client.errors import ServiceError
from client.ingest.engine import decode_workers, marker_tag
from client.ingest.media import format_timestamp
from client.ingest.pipeline import Batcher, send_in_halves
from client.targets import embedder_target, split_host_port
from client.uris import display, is_within, path_to_uri, uri_to_path

PRINTABLE_ID = re.compile(r"^[!-~]{1,256}$")


def test_image_ids_depend_on_content_and_collection_only() -> None:
    h1, h2 = ids.sha256_bytes(b"one"), ids.sha256_bytes(b"two")
    assert ids.image_id("default", h1) == ids.image_id("", h1) == ids.image_id(None, h1)
    assert ids.image_id("a", h1) != ids.image_id("b", h1)
    assert ids.image_id("a", h1) != ids.image_id("a", h2)
    assert ids.image_id("a", h1).startswith("img-")
    assert PRINTABLE_ID.match(ids.image_id("ünïcode collection", h1))


def test_frame_ids_depend_on_video_collection_and_time() -> None:
    video = ids.sha256_bytes(b"video")
    first, second = ids.frame_id("c", video, 0.0), ids.frame_id("c", video, 1.0)
    assert first != second
    assert ids.frame_id("c", video, 1.0) == ids.frame_id("c", video, 1.0000000001)
    assert ids.frame_id("d", video, 1.0) != second
    assert first.startswith(ids.video_key("c", video)) and second.startswith(ids.video_key("c", video))
    assert PRINTABLE_ID.match(ids.frame_id("c", video, 3 * 3600.5))


def test_collection_parts_cannot_be_shifted_into_the_hash() -> None:
    assert ids.image_id("ab", "c") != ids.image_id("a", "bc")


def test_uri_escapes_everything_but_unreserved_and_slash(tmp_path: Path) -> None:
    path = tmp_path / "a b%#?é~_.-x.jpg"
    uri = path_to_uri(path)
    assert uri.startswith("file:///")
    assert re.fullmatch(r"file://(/|[A-Za-z0-9._~-]|%[0-9A-F]{2})+", uri)
    assert "a%20b%25%23%3F%C3%A9~_.-x.jpg" in uri
    assert uri_to_path(uri) == path.resolve()


def test_non_utf8_names_round_trip_and_display(tmp_path: Path) -> None:
    name = b"caf\xe9 \xff.jpg"  # Latin-1, not valid UTF-8
    raw_path = os.fsencode(tmp_path) + b"/" + name
    uri = path_to_uri(raw_path)
    assert uri.endswith("/caf%E9%20%FF.jpg")
    assert os.fsencode(uri_to_path(uri)) == os.fsencode(Path(os.fsdecode(raw_path)).resolve())
    shown = display(uri)
    assert shown.endswith("caf\\xe9 \\xff.jpg")
    shown.encode("utf-8")  # printable on any UTF-8 terminal


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.binary(min_size=1, max_size=40).filter(
            lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
        ),
        min_size=1,
        max_size=4,
    )
)
def test_any_byte_path_round_trips(parts: list[bytes]) -> None:
    path = b"/" + b"/".join(parts)
    uri = path_to_uri(path)
    assert uri.isascii() and " " not in uri
    assert os.fsencode(uri_to_path(uri)) == path


def test_is_within_directory_scopes() -> None:
    assert is_within("file:///photos/a.jpg", "file:///photos/")
    assert is_within("file:///photos/2024/a.jpg", "file:///photos/")
    assert not is_within("file:///photos2/a.jpg", "file:///photos/")
    assert is_within("file:///photos/a.jpg", "file:///photos/a.jpg")
    assert not is_within("file:///photos/a.jpgx", "file:///photos/a.jpg")


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(1, 100), max_size=60), max_count=st.integers(1, 8), max_bytes=st.integers(100, 400))
def test_batches_respect_count_and_byte_limits_in_order(sizes: list[int], max_count: int, max_bytes: int) -> None:
    batcher: Batcher[int] = Batcher(max_count, max_bytes)
    batches: list[list[int]] = []
    for index, size in enumerate(sizes):
        full = batcher.add(index, size)
        if full:
            batches.append(full)
    last = batcher.flush()
    if last:
        batches.append(last)
    assert [i for batch in batches for i in batch] == list(range(len(sizes)))
    for number, batch in enumerate(batches):
        assert 1 <= len(batch) <= max_count
        assert sum(sizes[i] for i in batch) <= max_bytes
        if number + 1 < len(batches):  # a batch closes only when the next entry does not fit
            following = sizes[batches[number + 1][0]]
            assert len(batch) == max_count or sum(sizes[i] for i in batch) + following > max_bytes


@settings(max_examples=100, deadline=None)
@given(count=st.integers(0, 80), max_count=st.integers(1, 32), first_count=st.integers(1, 40))
def test_batches_start_small_and_double_up_to_the_limit(count: int, max_count: int, first_count: int) -> None:
    batcher: Batcher[int] = Batcher(max_count, 10**9, first_count=first_count)
    batches = [full for index in range(count) if (full := batcher.add(index, 1))]
    if last := batcher.flush():
        batches.append(last)
    assert [i for batch in batches for i in batch] == list(range(count))
    for number, batch in enumerate(batches):
        limit = min(max_count, first_count * 2**number)
        assert len(batch) == limit or (number == len(batches) - 1 and len(batch) < limit)


def test_batcher_refuses_an_entry_larger_than_a_batch() -> None:
    batcher: Batcher[str] = Batcher(4, 10)
    with pytest.raises(ValueError):
        batcher.add("huge", 11)
    assert batcher.flush() == []


@settings(max_examples=150, deadline=None)
@given(bad=st.lists(st.booleans(), max_size=40), code=st.sampled_from(["INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"]))
def test_a_refused_batch_is_halved_until_each_bad_entry_is_alone(bad: list[bool], code: str) -> None:
    calls: list[list[int]] = []
    refused: list[int] = []

    def send(batch: Sequence[int]) -> list[int]:
        calls.append(list(batch))
        if any(bad[i] for i in batch):
            raise ServiceError("search", "127.0.0.1:1", grpc.StatusCode[code], "refused")
        return list(batch)

    sent = send_in_halves(list(range(len(bad))), send, lambda entry, exc: refused.append(entry))
    assert sent == [i for i, is_bad in enumerate(bad) if not is_bad]
    assert refused == [i for i, is_bad in enumerate(bad) if is_bad]
    assert len(calls) <= 1 + 2 * max(1, len(bad)).bit_length() * max(1, len(refused))


def test_a_batch_failing_otherwise_is_not_split() -> None:
    calls: list[list[int]] = []

    def send(batch: Sequence[int]) -> list[int]:
        calls.append(list(batch))
        raise ServiceError("embedder", "127.0.0.1:1", grpc.StatusCode.INTERNAL, "broken")

    with pytest.raises(ServiceError, match="INTERNAL: broken"):
        send_in_halves([1, 2, 3, 4], send, lambda entry, exc: pytest.fail(f"{entry} reported as refused"))
    assert calls == [[1, 2, 3, 4]]


def test_embedder_targets_spread_over_replicas() -> None:
    assert embedder_target(["embedder:50051"]) == "dns:///embedder:50051"
    assert embedder_target(["127.0.0.1:1", "127.0.0.2:2"]) == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert embedder_target(["localhost:7", "127.0.0.1:7"]).startswith("ipv4:127.0.0.1:7")
    assert embedder_target(["[::1]:5", "[::1]:6"]) == "ipv6:[::1]:5,[::1]:6"
    with pytest.raises(ValueError):
        split_host_port("no-port")
    with pytest.raises(ValueError):
        split_host_port("host:99999")


def test_timestamps_print_as_hours_minutes_seconds() -> None:
    assert format_timestamp(0) == "00:00:00"
    assert format_timestamp(3725) == "01:02:05"
    assert format_timestamp(1.5) == "00:00:01.5"
    assert format_timestamp(59.99) == "00:01:00"


def test_marker_tag_names_the_frame_count_and_rate() -> None:
    assert marker_tag(2400, 1.0) == "clipsearch:frames=2400@1fps"
    assert marker_tag(3, 0.5) == "clipsearch:frames=3@0.5fps"


@pytest.mark.parametrize(("cpus", "workers"), [(1, 2), (2, 2), (3, 2), (4, 3), (5, 4), (64, 4)])
def test_decode_threads_are_at_least_two_and_leave_a_core_where_there_are_more(
    monkeypatch: pytest.MonkeyPatch, cpus: int, workers: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert decode_workers() == workers


def test_the_client_needs_no_model_or_database_libraries() -> None:
    code = (
        "import sys, client, client.cli, client.api, client.ingest.engine, client.ingest.media, client.cli.output\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'redis'})\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == ""

"""Dynamic batching: merged forward passes give every caller the vectors it would get alone."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from clipsearch.envconfig import ConfigError
from clipsearch.testing.probes import wait_for
from clipsearch.v1 import embedder_pb2 as pb
from clipsearch.v1 import embedder_pb2_grpc
from embedder_service.batching import BatcherClosed, BatchingEmbedder, BatchingOptions, length_groups
from embedder_service.config import EmbedderConfig
from embedder_service.metrics import EmbedderMetrics
from embedder_service.model import ClipEmbedder
from embedder_service.preprocess import Preprocessor, decode_image
from embedder_service.server import EmbedderServer
from tests.support.embedder import cosine, embedder_test_config, encode_image, running_embedder, sample_photo

TEXTS = [
    "a",
    "a photo of a cat",
    "一只猫在沙发上睡觉",
    "🚀",
    "a diagram of " + "very " * 40 + "long words",
    "the quick brown fox jumps over the lazy dog",
    "x y",
    "ein Hund im Schnee, der einen Ball fängt",
]
# Texts of one token length, so that a merged batch of them is one forward pass.
SAME_LENGTH = [f"a photo of a {animal}" for animal in ("cat", "dog", "owl", "elk", "fox", "cow", "pig", "ant")]
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket"]
LONG_WAIT_MS = 30_000.0  # batches then close only when full: merging is deterministic
QUEUED_ALONE = "the text queue never held the one waiting request within 60 s"


@pytest.fixture(scope="module")
def image_files() -> list[bytes]:
    """Small PNGs of differently sized photos."""
    files = []
    for i, name in enumerate(PHOTOS):
        photo = sample_photo(name)
        photo.thumbnail((96 + 24 * i, 96 + 24 * i))
        files.append(encode_image(photo, "PNG"))
    return files


def alone_text(embedder: ClipEmbedder, text: str) -> np.ndarray:
    """The vector of one text embedded by itself: a batch of one, no padding."""
    return embedder.embed_texts([text])[0]


def alone_image(embedder: ClipEmbedder, data: bytes) -> np.ndarray:
    pixels = Preprocessor(embedder.preprocess_spec)(decode_image(data, 10**8).image)
    return embedder.embed_images(pixels[None])[0]


def assert_same_vector(got: np.ndarray, expected: np.ndarray) -> None:
    assert cosine(got, expected) >= 0.9999
    np.testing.assert_allclose(got, expected, atol=1e-5)


def values(embedding: pb.Embedding) -> np.ndarray:
    return np.asarray(embedding.values, dtype=np.float32)


def run_together(calls: Sequence[Callable[..., object]]) -> list[Any]:
    """Runs the calls in threads released at once by a barrier; returns results (or exceptions) in order."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def work(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as error:  # noqa: BLE001 - reported to the test, which checks each result
            results[index] = error

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def batch_sizes(registry: CollectorRegistry, kind: str) -> tuple[float, float]:
    """(forward passes, rows) of `kind` recorded in the batch-size histogram."""
    count = registry.get_sample_value("embedder_batch_size_count", {"kind": kind}) or 0.0
    total = registry.get_sample_value("embedder_batch_size_sum", {"kind": kind}) or 0.0
    return count, total


@contextmanager
def embedder_stub(
    tiny_clip_dir: Path, tiny_embedder: ClipEmbedder, **overrides: object
) -> Iterator[tuple[embedder_pb2_grpc.EmbedderStub, EmbedderServer]]:
    config = embedder_test_config(tiny_clip_dir, workers=16, **overrides)
    with (
        running_embedder(config, tiny_embedder) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield embedder_pb2_grpc.EmbedderStub(channel), server


# --- over gRPC ---------------------------------------------------------------------------------------


def test_concurrent_callers_get_the_vectors_of_direct_calls(
    tiny_clip_dir: Path, tiny_embedder: ClipEmbedder, image_files: list[bytes]
) -> None:
    """12 callers, 3 rounds each, of texts of many lengths and of images, merged into shared passes."""
    expected_texts = {text: alone_text(tiny_embedder, text) for text in TEXTS}
    expected_images = [alone_image(tiny_embedder, data) for data in image_files]

    def caller(seed: int) -> Callable[[], list[tuple[str, int, object]]]:
        def run() -> list[tuple[str, int, object]]:
            out: list[tuple[str, int, object]] = []
            for round_ in range(3):
                n = seed + round_
                if n % 3 == 2:
                    chosen = [n % len(image_files), (n + 1) % len(image_files)]
                    response = stub.EmbedImages(
                        pb.EmbedImagesRequest(images=[pb.Image(encoded=image_files[i]) for i in chosen])
                    )
                    out += [
                        ("image", i, values(result.embedding))
                        for i, result in zip(chosen, response.results, strict=True)
                    ]
                else:
                    chosen = [n % len(TEXTS)] if n % 3 == 0 else [n % len(TEXTS), (n + 3) % len(TEXTS)]
                    response = stub.EmbedTexts(pb.EmbedTextsRequest(texts=[TEXTS[i] for i in chosen]))
                    out += [
                        ("text", i, values(embedding)) for i, embedding in zip(chosen, response.embeddings, strict=True)
                    ]
            return out

        return run

    with embedder_stub(tiny_clip_dir, tiny_embedder, batch_max_wait_ms=1000.0, batch_max_size=8) as (stub, server):
        results = run_together([caller(seed) for seed in range(12)])
        text_passes, text_rows = batch_sizes(server.registry, "text")
        image_passes, image_rows = batch_sizes(server.registry, "image")
    checked = 0
    for result in results:
        assert isinstance(result, list), result
        for kind, index, got in result:
            assert_same_vector(got, expected_images[index] if kind == "image" else expected_texts[TEXTS[index]])
            checked += 1
    assert checked == text_rows + image_rows
    assert text_rows > text_passes or image_rows > image_passes  # some passes were shared


@pytest.mark.parametrize("kind", ["text", "image"])
def test_eight_callers_at_once_share_one_forward_pass(
    tiny_clip_dir: Path, tiny_embedder: ClipEmbedder, image_files: list[bytes], kind: str
) -> None:
    with embedder_stub(tiny_clip_dir, tiny_embedder, batch_max_wait_ms=LONG_WAIT_MS, batch_max_size=8) as (
        stub,
        server,
    ):
        if kind == "text":
            calls = [
                lambda text=text: values(stub.EmbedTexts(pb.EmbedTextsRequest(texts=[text])).embeddings[0])
                for text in SAME_LENGTH
            ]
            expected = [alone_text(tiny_embedder, text) for text in SAME_LENGTH]
        else:
            calls = [
                lambda i=i: values(
                    stub.EmbedImages(pb.EmbedImagesRequest(images=[pb.Image(encoded=image_files[i % 4])]))
                    .results[0]
                    .embedding
                )
                for i in range(8)
            ]
            expected = [alone_image(tiny_embedder, image_files[i % 4]) for i in range(8)]
        results = run_together(calls)
        assert batch_sizes(server.registry, kind) == (1.0, 8.0)
    for got, want in zip(results, expected, strict=True):
        assert isinstance(got, np.ndarray), got
        assert_same_vector(got, want)


def test_with_batching_off_every_forward_pass_has_one_request(
    tiny_clip_dir: Path, tiny_embedder: ClipEmbedder, image_files: list[bytes]
) -> None:
    with embedder_stub(tiny_clip_dir, tiny_embedder, dynamic_batching=False) as (stub, server):
        calls = [
            lambda i=i: values(stub.EmbedTexts(pb.EmbedTextsRequest(texts=[TEXTS[i]])).embeddings[0]) for i in range(8)
        ]
        calls += [
            lambda i=i: values(
                stub.EmbedImages(pb.EmbedImagesRequest(images=[pb.Image(encoded=image_files[i])])).results[0].embedding
            )
            for i in range(4)
        ]
        results = run_together(calls)
        assert not server.batcher.running  # no worker thread: each caller runs its own pass
        assert batch_sizes(server.registry, "text") == (8.0, 8.0)
        assert batch_sizes(server.registry, "image") == (4.0, 4.0)
        assert server.registry.get_sample_value("embedder_batch_size_bucket", {"kind": "text", "le": "1.0"}) == 8.0
    for got, text in zip(results[:8], TEXTS, strict=True):
        assert_same_vector(got, alone_text(tiny_embedder, text))
    for got, data in zip(results[8:], image_files, strict=True):
        assert_same_vector(got, alone_image(tiny_embedder, data))


def test_classify_labels_are_batched_and_score_as_unbatched(
    tiny_clip_dir: Path, tiny_embedder: ClipEmbedder, image_files: list[bytes]
) -> None:
    labels = ["cat", "dog", "owl", "elk"]  # one token length: the 8 prompts make one pass
    vector = alone_image(tiny_embedder, image_files[1])
    expected = tiny_embedder.classify(vector, labels, "a photo of {}")
    request = pb.ClassifyRequest(
        embedding=pb.Embedding(values=vector.tolist()), labels=labels, prompt_template="a photo of {}"
    )
    with embedder_stub(tiny_clip_dir, tiny_embedder, batch_max_wait_ms=LONG_WAIT_MS, batch_max_size=8) as (
        stub,
        server,
    ):
        responses = run_together([lambda: stub.Classify(request)] * 2)  # 2 calls x 4 labels fill one pass
        assert batch_sizes(server.registry, "text") == (1.0, 8.0)
    for response in responses:
        assert isinstance(response, pb.ClassifyResponse), response
        np.testing.assert_allclose([s.probability for s in response.scores], expected.probabilities, atol=1e-5)
        np.testing.assert_allclose([s.cosine for s in response.scores], expected.cosines, atol=1e-5)


def test_a_stopped_batcher_answers_unavailable_and_its_thread_ends(
    tiny_clip_dir: Path, tiny_embedder: ClipEmbedder
) -> None:
    with embedder_stub(tiny_clip_dir, tiny_embedder, batch_max_wait_ms=LONG_WAIT_MS, batch_max_size=8) as (
        stub,
        server,
    ):
        assert server.batcher.running
        waiting = stub.EmbedTexts.future(pb.EmbedTextsRequest(texts=["queued alone, waiting for company"]))
        wait_for(
            lambda: server.registry.get_sample_value("embedder_queue_depth", {"kind": "text"}) == 1.0,
            60.0,
            QUEUED_ALONE,
            interval=0.01,
        )
        server.batcher.close()
        with pytest.raises(grpc.RpcError) as error:
            waiting.result(timeout=60)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in error.value.details()  # type: ignore[operator]
        assert not server.batcher.running
    assert not server.batcher.running


def test_stopping_the_server_stops_its_batcher(tiny_clip_dir: Path, tiny_embedder: ClipEmbedder) -> None:
    with embedder_stub(tiny_clip_dir, tiny_embedder) as (stub, server):
        assert len(stub.EmbedTexts(pb.EmbedTextsRequest(texts=["hello"])).embeddings) == 1
        assert server.batcher.running
    assert not server.batcher.running
    with pytest.raises(BatcherClosed):
        server.batcher.embed_texts(["after the end"])


# --- the batcher itself ------------------------------------------------------------------------------


def test_texts_of_very_different_lengths_go_through_separate_passes() -> None:
    assert length_groups([20, 20, 20]) == [[0, 1, 2]]
    # 3 texts padded from 17 to 21 tokens cost less than a pass; 4 padded from 21 to 35 cost more.
    assert length_groups([35, 17, 36, 17, 21, 17, 35, 36], pass_overhead=32) == [[1, 3, 5, 4], [0, 6, 2, 7]]
    assert length_groups([5, 77], pass_overhead=32) == [[0], [1]]
    assert length_groups([5, 77], pass_overhead=100) == [[0, 1]]
    assert length_groups([]) == []


def test_texts_split_by_length_keep_their_vectors_and_order(tiny_embedder: ClipEmbedder) -> None:
    texts = ["a", "a much longer caption: " + "words " * 30, "b", "medium length text here"]
    registry = CollectorRegistry()
    with started(BatchingEmbedder(tiny_embedder, observer=EmbedderMetrics(registry))) as batcher:
        got = batcher.embed_texts(texts)
    passes, rows = batch_sizes(registry, "text")
    assert rows == 4 and passes > 1
    for vector, text in zip(got, texts, strict=True):
        assert_same_vector(vector, alone_text(tiny_embedder, text))


@contextmanager
def started(batcher: BatchingEmbedder) -> Iterator[BatchingEmbedder]:
    batcher.start()
    try:
        yield batcher
    finally:
        batcher.close()
        assert not batcher.running


def test_one_bad_request_fails_alone(tiny_embedder: ClipEmbedder, image_files: list[bytes]) -> None:
    """A merged pass that fails is rerun request by request: only the bad one gets the error."""
    preprocess = Preprocessor(tiny_embedder.preprocess_spec)
    good = [preprocess(decode_image(data, 10**8).image)[None] for data in image_files[:2]]
    wrong_size = np.zeros((1, 3, 32, 32), dtype=np.float32)  # the model takes 64x64
    registry = CollectorRegistry()
    options = BatchingOptions(max_images=3, max_wait_seconds=LONG_WAIT_MS / 1000)
    with started(BatchingEmbedder(tiny_embedder, options, observer=EmbedderMetrics(registry))) as batcher:
        results = run_together(
            [
                lambda: batcher.embed_images(good[0]),
                lambda: batcher.embed_images(wrong_size),
                lambda: batcher.embed_images(good[1]),
            ]
        )
    assert isinstance(results[1], Exception) and "64" in str(results[1])
    for got, data in zip((results[0], results[2]), image_files[:2], strict=True):
        assert isinstance(got, np.ndarray) and got.shape == (1, 32)
        assert_same_vector(got[0], alone_image(tiny_embedder, data))
    # The merged pass failed before the model ran; then 2 passes succeeded (the third raised).
    assert batch_sizes(registry, "image") == (2.0, 2.0)


def test_a_request_larger_than_the_merge_limit_runs_whole(tiny_embedder: ClipEmbedder) -> None:
    registry = CollectorRegistry()
    texts = [f"caption number {i}" for i in range(7)]
    with started(
        BatchingEmbedder(
            tiny_embedder, BatchingOptions(max_texts=4, max_wait_seconds=0.0), observer=EmbedderMetrics(registry)
        )
    ) as batcher:
        got = batcher.embed_texts(texts)
    assert batch_sizes(registry, "text") == (1.0, 7.0)
    for vector, text in zip(got, texts, strict=True):
        assert_same_vector(vector, alone_text(tiny_embedder, text))


def test_closing_fails_queued_requests_and_refuses_new_ones(tiny_embedder: ClipEmbedder) -> None:
    registry = CollectorRegistry()
    batcher = BatchingEmbedder(
        tiny_embedder,
        BatchingOptions(max_texts=8, max_wait_seconds=LONG_WAIT_MS / 1000),
        observer=EmbedderMetrics(registry),
    )
    batcher.start()
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(_capture(lambda: batcher.embed_texts(["waiting"]))))
    thread.start()
    wait_for(
        lambda: registry.get_sample_value("embedder_queue_depth", {"kind": "text"}) == 1.0,
        60.0,
        QUEUED_ALONE,
        interval=0.01,
    )
    batcher.close()
    thread.join()
    assert isinstance(outcome[0], BatcherClosed)
    assert not batcher.running
    with pytest.raises(BatcherClosed):
        batcher.embed_texts(["too late"])
    with pytest.raises(BatcherClosed):
        batcher.start()
    batcher.close()  # twice is fine


def _capture(call: Callable[[], object]) -> object:
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - handed to the test, which checks its type
        return error


_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=60).filter(
    str.strip
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(st.lists(_text, min_size=1, max_size=3), min_size=2, max_size=6))
def test_any_texts_merged_in_any_grouping_equal_their_lone_vectors(
    tiny_embedder: ClipEmbedder, requests: list[list[str]]
) -> None:
    rows = sum(len(texts) for texts in requests)
    with started(
        BatchingEmbedder(tiny_embedder, BatchingOptions(max_texts=rows, max_wait_seconds=LONG_WAIT_MS / 1000))
    ) as batcher:
        results = run_together([functools.partial(batcher.embed_texts, texts) for texts in requests])
    for texts, got in zip(requests, results, strict=True):
        assert isinstance(got, np.ndarray), got
        for text, vector in zip(texts, got, strict=True):
            assert_same_vector(vector, alone_text(tiny_embedder, text))


# --- configuration -----------------------------------------------------------------------------------


def test_batching_settings_come_from_the_environment() -> None:
    default = EmbedderConfig.from_env({})
    assert (default.dynamic_batching, default.batch_max_size, default.batch_max_wait_ms) == (True, 32, 5.0)
    config = EmbedderConfig.from_env(
        {"EMBEDDER_DYNAMIC_BATCHING": "off", "EMBEDDER_BATCH_MAX_SIZE": "16", "EMBEDDER_BATCH_MAX_WAIT_MS": "2.5"}
    )
    assert (config.dynamic_batching, config.batch_max_size, config.batch_max_wait_ms) == (False, 16, 2.5)
    for name, value in [
        ("EMBEDDER_DYNAMIC_BATCHING", "sometimes"),
        ("EMBEDDER_BATCH_MAX_SIZE", "0"),
        ("EMBEDDER_BATCH_MAX_WAIT_MS", "-1"),
        ("EMBEDDER_BATCH_MAX_WAIT_MS", "inf"),
    ]:
        with pytest.raises(ConfigError, match=name):
            EmbedderConfig.from_env({name: value})


def test_merged_passes_stay_within_the_call_limits(tiny_clip_dir: Path, tiny_embedder: ClipEmbedder) -> None:
    from embedder_service.config import Limits

    config = embedder_test_config(
        tiny_clip_dir, batch_max_size=100, limits=Limits(max_batch_images=4, max_batch_texts=6)
    )
    with running_embedder(config, tiny_embedder) as server:
        options = server.batcher.options
    assert (options.max_images, options.max_texts) == (4, 6)


IDLE_WINDOW_S = 2.0  # long enough that waiting it out is unmistakable


def test_after_an_idle_spell_a_lone_request_does_not_wait_out_the_window(tiny_embedder: ClipEmbedder) -> None:
    with started(BatchingEmbedder(tiny_embedder, BatchingOptions(max_wait_seconds=IDLE_WINDOW_S))) as batcher:
        time.sleep(IDLE_WINDOW_S * 1.05)  # the model idle for longer than the window
        start = time.monotonic()
        vectors = batcher.embed_texts(["a lone query"])
        took = time.monotonic() - start
    assert_same_vector(vectors[0], alone_text(tiny_embedder, "a lone query"))
    # It waits a fifth of the window for company (0.4 s), not the whole window (2 s).
    assert took < IDLE_WINDOW_S * 0.75, took


def test_after_an_idle_spell_a_burst_still_shares_one_forward_pass(tiny_embedder: ClipEmbedder) -> None:
    registry = CollectorRegistry()
    options = BatchingOptions(max_texts=8, max_wait_seconds=IDLE_WINDOW_S)
    with started(BatchingEmbedder(tiny_embedder, options, observer=EmbedderMetrics(registry))) as batcher:
        time.sleep(IDLE_WINDOW_S * 1.05)
        results = run_together([functools.partial(batcher.embed_texts, [text]) for text in SAME_LENGTH])
    assert batch_sizes(registry, "text") == (1.0, 8.0)
    for got, text in zip(results, SAME_LENGTH, strict=True):
        assert isinstance(got, np.ndarray), got
        assert_same_vector(got[0], alone_text(tiny_embedder, text))

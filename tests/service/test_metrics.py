"""Prometheus metrics of both services, scraped over HTTP from /metrics while real calls are made."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from clipsearch.envconfig import ConfigError
from clipsearch.metrics import MetricsEndpoint, MetricsPortError, metrics_endpoint_beside, start_metrics_endpoint
from clipsearch.testing.probes import wait_for
from clipsearch.v1 import embedder_pb2 as epb
from clipsearch.v1 import embedder_pb2_grpc, search_pb2_grpc
from clipsearch.v1 import search_pb2 as spb
from embedder_service.config import EmbedderConfig
from embedder_service.model import ClipEmbedder
from search_service.config import SearchConfig
from search_service.redis_server import LocalRedis
from tests.support.embedder import embedder_test_config, encode_image, running_embedder, sample_photo
from tests.support.search import TEST_DIMENSION, SearchServerFactory, make_item, random_vectors

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample at `url`, keyed by (name, labels)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        text = response.read().decode("utf-8")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def handled(samples: Samples, service: str, method: str, code: str) -> float:
    return value(samples, "grpc_server_handled_total", grpc_service=service, grpc_method=method, grpc_code=code)


EMBEDDER = "clipsearch.v1.Embedder"
SEARCH = "clipsearch.v1.Search"


def test_embedder_metrics_move_with_calls(tiny_clip_dir: Path, tiny_embedder: ClipEmbedder) -> None:
    photo = sample_photo("coffee")
    photo.thumbnail((80, 80))
    image = epb.Image(encoded=encode_image(photo, "PNG"))
    config = embedder_test_config(tiny_clip_dir, metrics_port=0)
    with (
        running_embedder(config, tiny_embedder) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        assert server.metrics is not None and server.metrics.host == "127.0.0.1"
        url = server.metrics.url
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        before = scrape(url)
        stub.EmbedTexts(epb.EmbedTextsRequest(texts=["one", "two"]))
        stub.EmbedTexts(epb.EmbedTextsRequest(texts=["three"]))
        stub.EmbedImages(epb.EmbedImagesRequest(images=[image, image, image]))
        with pytest.raises(grpc.RpcError) as error:
            stub.EmbedTexts(epb.EmbedTextsRequest(texts=["fine", "   "]))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        after = scrape(url)

    assert handled(after, EMBEDDER, "EmbedTexts", "OK") - handled(before, EMBEDDER, "EmbedTexts", "OK") == 2
    assert handled(after, EMBEDDER, "EmbedTexts", "INVALID_ARGUMENT") == 1
    assert handled(before, EMBEDDER, "EmbedTexts", "INVALID_ARGUMENT") == 0
    assert handled(after, EMBEDDER, "EmbedImages", "OK") == 1
    method = {"grpc_service": EMBEDDER, "grpc_method": "EmbedTexts"}
    assert value(after, "grpc_server_started_total", **method) == 3
    assert value(after, "grpc_server_handling_seconds_count", **method) == 3
    assert value(after, "grpc_server_handling_seconds_sum", **method) > 0
    assert value(after, "grpc_server_in_flight_requests", **method) == 0
    # The invalid call never reached the model: 3 texts and 3 images were embedded.
    assert value(after, "embedder_embedded_total", kind="text") == 3
    assert value(after, "embedder_embedded_total", kind="image") == 3
    assert value(after, "embedder_batch_size_sum", kind="image") == 3
    assert value(after, "embedder_batch_size_count", kind="text") >= 1
    assert ("embedder_queue_depth", frozenset({("kind", "text")})) in after
    assert value(after, "embedder_queue_depth", kind="text") == 0


def test_each_server_counts_only_its_own_calls(tiny_clip_dir: Path, tiny_embedder: ClipEmbedder) -> None:
    """Two servers in one process keep separate registries: no clash, no shared counts."""
    with (
        running_embedder(embedder_test_config(tiny_clip_dir), tiny_embedder) as first,
        running_embedder(embedder_test_config(tiny_clip_dir), tiny_embedder) as second,
        grpc.insecure_channel(f"127.0.0.1:{first.port}") as channel,
    ):
        embedder_pb2_grpc.EmbedderStub(channel).GetModelInfo(epb.GetModelInfoRequest())
        labels = {"grpc_service": EMBEDDER, "grpc_method": "GetModelInfo", "grpc_code": "OK"}
        assert first.registry.get_sample_value("grpc_server_handled_total", labels) == 1
        assert second.registry.get_sample_value("grpc_server_handled_total", labels) is None
        assert first.metrics is None  # no port configured, no endpoint


def test_search_metrics_move_with_calls(search_server_factory: SearchServerFactory) -> None:
    running = search_server_factory(metrics_port=0)
    url = cast(MetricsEndpoint, running.server.metrics).url
    with grpc.insecure_channel(running.address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        vectors = random_vectors(3, seed=3)
        stub.Upsert(spb.UpsertRequest(items=[make_item(f"item-{i}", v) for i, v in enumerate(vectors)]))
        stub.Upsert(spb.UpsertRequest(items=[make_item("item-0", vectors[0])]))  # replaced: still upserted
        assert len(stub.Query(spb.QueryRequest(vector=vectors[1], k=2)).matches) == 2
        with pytest.raises(grpc.RpcError) as error:
            stub.Query(spb.QueryRequest(vector=[1.0] * (TEST_DIMENSION + 1), k=2))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        samples = scrape(url)
    assert value(samples, "search_items_upserted_total") == 4
    assert handled(samples, SEARCH, "Upsert", "OK") == 2
    assert handled(samples, SEARCH, "Query", "OK") == 1
    assert handled(samples, SEARCH, "Query", "INVALID_ARGUMENT") == 1
    assert value(samples, "grpc_server_handling_seconds_count", grpc_service=SEARCH, grpc_method="Query") == 2
    assert value(samples, "search_redis_up") == 1


def test_search_redis_up_falls_to_zero_when_redis_stops(
    search_server_factory: SearchServerFactory, redis_data_dir: Path
) -> None:
    with LocalRedis(redis_data_dir) as local:
        running = search_server_factory(redis_url=local.url, metrics_port=0)
        url = cast(MetricsEndpoint, running.server.metrics).url
        assert value(scrape(url), "search_redis_up") == 1
        local.stop()
        wait_for(
            lambda: value(scrape(url), "search_redis_up") == 0, 60.0, "search_redis_up never fell to 0 within 60 s"
        )


def test_a_taken_metrics_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsPortError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            start_metrics_endpoint("127.0.0.1", port, CollectorRegistry())


class FakeServer:
    def __init__(self) -> None:
        self.stopped_with: list[float] = []

    def stop(self, grace: float) -> None:
        self.stopped_with.append(grace)


def test_a_taken_metrics_port_stops_the_server_beside_it() -> None:
    server = FakeServer()
    assert metrics_endpoint_beside(server, "127.0.0.1", None, CollectorRegistry()) is None  # type: ignore[arg-type]
    endpoint = metrics_endpoint_beside(server, "127.0.0.1", 0, CollectorRegistry())  # type: ignore[arg-type]
    assert endpoint is not None
    endpoint.close()
    assert server.stopped_with == []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(MetricsPortError):
            port = taken.getsockname()[1]
            metrics_endpoint_beside(server, "127.0.0.1", port, CollectorRegistry())  # type: ignore[arg-type]
    assert server.stopped_with == [0]


def test_the_endpoint_closes_and_frees_its_port() -> None:
    endpoint = start_metrics_endpoint("127.0.0.1", 0, CollectorRegistry())
    assert scrape(endpoint.url) == {}  # an empty registry
    endpoint.close()
    endpoint.close()  # twice is fine
    with socket.socket() as probe:
        # Address reuse only lets the bind past the scrape's TIME_WAIT, never past a listening socket.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", endpoint.port))
        probe.listen()


@pytest.mark.parametrize(
    ("read", "variable"),
    [(EmbedderConfig.from_env, "EMBEDDER_METRICS_PORT"), (SearchConfig.from_env, "SEARCH_METRICS_PORT")],
)
def test_metrics_port_comes_from_the_environment(read: Callable[..., Any], variable: str) -> None:
    assert read({}).metrics_port is None
    assert read({variable: "0"}).metrics_port is None
    assert read({variable: "9464"}).metrics_port == 9464
    for bad in ("-1", "70000", "http"):
        with pytest.raises(ConfigError, match=variable):
            read({variable: bad})

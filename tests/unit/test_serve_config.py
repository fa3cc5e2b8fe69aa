"""`clipsearch serve` option handling: port planning, port conflicts, missing extras, REDIS_URL."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client import serve
from tests.support.certificates import make_pki, openssl_available


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(list(argv))


def no_free_ports(count: int) -> list[int]:
    raise AssertionError(f"asked for {count} free ports where every port was fixed")


def test_replicas_take_consecutive_ports_skipping_the_search_and_redis_ports() -> None:
    embedders, search, redis = serve.plan_ports(50051, 4, 50052, 50054, no_free_ports)
    assert (embedders, search, redis) == ((50051, 50053, 50055, 50056), 50052, 50054)


@settings(max_examples=60, deadline=None)
@given(
    first=st.integers(1, 65000),
    count=st.integers(1, 8),
    search=st.integers(0, 65535),
    redis=st.one_of(st.none(), st.integers(0, 65535)),
)
def test_planned_ports_are_distinct_and_respect_fixed_choices(
    first: int, count: int, search: int, redis: int | None
) -> None:
    if redis is not None and redis != 0 and redis == search:
        return
    handed_out = iter(range(20000, 30000))
    embedders, search_port, redis_port = serve.plan_ports(
        first, count, search, redis, lambda n: [next(handed_out) for _ in range(n)]
    )
    assert len(embedders) == count
    assert list(embedders) == sorted(embedders) and embedders[0] >= first
    assert search_port not in embedders and redis_port not in embedders
    assert search_port != redis_port
    assert search_port == (search or search_port) and (redis in (None, 0) or redis_port == redis)
    assert (redis is None) == (redis_port is None)


def test_free_ports_are_picked_for_port_zero() -> None:
    embedders, search, redis = serve.plan_ports(0, 3, 0, 0, lambda n: serve._reserve_free_ports("127.0.0.1", n))
    ports = [*embedders, search, redis]
    assert len(set(ports)) == 5 and all(1024 <= p <= 65535 for p in ports)


def test_a_port_in_use_is_refused_naming_the_option(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        with pytest.raises(serve.ServeError, match=rf"port {busy} is in use.*--embedder-port") as caught:
            serve.build_config(
                parse("--embedder-port", str(busy), "--search-port", "0", "--data-dir", str(tmp_path)), {}
            )
    assert caught.value.exit_code == serve.EXIT_USAGE


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--embedders", "0"), "--embedders 0 is out of range"),
        (("--search-port", "70000"), "--search-port 70000 is not a port number"),
        (("--start-timeout", "0"), "--start-timeout must be positive"),
        (("--host", "192.0.2.1"), "--host 192.0.2.1 is not an address this machine can listen on"),
    ],
)
def test_bad_options_are_one_line_errors(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(serve.ServeError, match=message):
        serve.build_config(parse(*argv), {})


def test_redis_url_replaces_the_local_redis(tmp_path: Path) -> None:
    config = serve.build_config(
        parse("--embedder-port", "0", "--search-port", "0", "--data-dir", str(tmp_path)),
        {"REDIS_URL": "redis://:s3cret@db.example:6380/0"},
    )
    assert config.redis_port is None and config.redis_url == "redis://:s3cret@db.example:6380/0"
    assert serve.search_spec(config, 32).env["REDIS_URL"] == config.redis_url
    assert serve.redact_url(config.redis_url) == "redis://:***@db.example:6380/0"


def test_children_get_the_model_dtype_ports_and_dimension(tmp_path: Path) -> None:
    config = serve.build_config(
        parse(
            "--model",
            "/models/clip",
            "--dtype",
            "fp32",
            "--embedders",
            "2",
            "--embedder-port",
            "0",
            "--search-port",
            "0",
            "--data-dir",
            str(tmp_path),
        ),
        {"EMBEDDER_THREADS": "3"},
    )
    first, second = serve.embedder_specs(config)
    ports = [first.env["EMBEDDER_PORT"], second.env["EMBEDDER_PORT"]]
    assert ports == [str(port) for port in config.embedder_ports]
    assert first.env["CLIP_MODEL"] == "/models/clip" and first.env["EMBEDDER_DTYPE"] == "fp32"
    assert first.env["EMBEDDER_THREADS"] == "3"  # the user's choice wins over the per-replica share
    search = serve.search_spec(config, 32)
    assert search.env["SEARCH_DIM"] == "32" and search.env["SEARCH_PORT"] == str(config.search_port)
    assert serve.redis_spec(config).argv[-4:] == ("--data", str(tmp_path / "redis"), "--port", str(config.redis_port))


def test_missing_extras_name_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails, as without the extra
    assert serve.run(parse()) == serve.EXIT_USAGE
    error = capsys.readouterr().err
    assert "cannot import torch" in error and "pip install 'clipsearch[all]'" in error


def test_the_shared_token_is_read_for_serves_own_calls(tmp_path: Path) -> None:
    config = serve.build_config(
        parse("--embedder-port", "0", "--search-port", "0", "--data-dir", str(tmp_path)),
        {"CLIPSEARCH_AUTH_TOKEN": "s3cret-token"},
    )
    assert config.token == "s3cret-token"
    with pytest.raises(serve.ServeError, match="CLIPSEARCH_AUTH_TOKEN_FILE"):
        serve.build_config(
            parse("--data-dir", str(tmp_path)), {"CLIPSEARCH_AUTH_TOKEN_FILE": str(tmp_path / "missing")}
        )


def test_tls_settings_reach_the_children_and_serve_checks_them_as_a_client(tmp_path: Path) -> None:
    if not openssl_available():
        pytest.skip("the openssl command is needed to make the test certificates")
    pki = make_pki(tmp_path / "pki")
    server = {
        f"{prefix}_TLS_{name}": str(path)
        for prefix in ("EMBEDDER", "SEARCH")
        for name, path in (("CERT", pki.server.cert), ("KEY", pki.server.key))
    }
    with pytest.raises(serve.ServeError, match="the services use TLS .*set CLIPSEARCH_TLS_CA") as caught:
        serve.build_config(parse("--data-dir", str(tmp_path)), server)
    assert caught.value.exit_code == serve.EXIT_USAGE
    config = serve.build_config(
        parse("--embedder-port", "0", "--search-port", "0", "--data-dir", str(tmp_path)),
        {**server, "CLIPSEARCH_TLS_CA": str(pki.ca.cert)},
    )
    assert config.security.ca_file == pki.ca.cert
    assert serve.search_spec(config, 32).env["SEARCH_TLS_CERT"] == str(pki.server.cert)
    assert serve.embedder_specs(config)[0].env["EMBEDDER_TLS_KEY"] == str(pki.server.key)

"""`clipsearch serve` option handling: port planning, port conflicts, missing extras, REDIS_URL."""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client import serve
from client.cli.serve import add_arguments
from client.serve.banner import banner
from client.serve.children import embedder_specs, indexer_spec, redis_spec, search_spec, web_spec
from client.serve.ports import plan_ports, reserve_free_ports
from client.serve.process import SERVICE_GRACE_SECONDS
from client.serve.ready_file import ready_document, remove_ready_file, write_ready_file
from clipsearch.urls import redact_url
from clipsearch.v1 import embedder_pb2
from search_service.redis_server import AOF_REWRITE_TIMEOUT_SECONDS
from tests.support.certificates import make_pki, openssl_available


def parse(*argv: str) -> argparse.Namespace:
    """serve's options; the web page on a free port unless argv says otherwise (8080 may be taken here)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--web-port", "0", *argv])


def no_free_ports(count: int) -> list[int]:
    raise AssertionError(f"asked for {count} free ports where every port was fixed")


def test_replicas_take_consecutive_ports_skipping_the_search_and_redis_ports() -> None:
    embedders, search, redis = plan_ports(50051, 4, 50052, 50054, no_free_ports)
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
    embedders, search_port, redis_port = plan_ports(
        first, count, search, redis, lambda n: [next(handed_out) for _ in range(n)]
    )
    assert len(embedders) == count
    assert list(embedders) == sorted(embedders) and embedders[0] >= first
    assert search_port not in embedders and redis_port not in embedders
    assert search_port != redis_port
    assert search_port == (search or search_port) and (redis in (None, 0) or redis_port == redis)
    assert (redis is None) == (redis_port is None)


def test_free_ports_are_picked_for_port_zero() -> None:
    embedders, search, redis = plan_ports(0, 3, 0, 0, lambda n: reserve_free_ports("127.0.0.1", n))
    assert redis is not None
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
    assert search_spec(config, 32).env["REDIS_URL"] == config.redis_url
    assert redact_url(config.redis_url) == "redis://:***@db.example:6380/0"
    # Not serve's own Redis: the search service leaves its index defined there when it stops, whatever the
    # environment says.
    owned = serve.build_config(
        parse("--embedder-port", "0", "--search-port", "0", "--data-dir", str(tmp_path)),
        {"REDIS_URL": "redis://db.example:6380/0", "SEARCH_REDIS_OWNED": "true"},
    )
    assert search_spec(owned, 32).env["SEARCH_REDIS_OWNED"] == "false"


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
    first, second = embedder_specs(config)
    ports = [first.env["EMBEDDER_PORT"], second.env["EMBEDDER_PORT"]]
    assert ports == [str(port) for port in config.embedder_ports]
    assert first.env["CLIP_MODEL"] == "/models/clip" and first.env["EMBEDDER_DTYPE"] == "fp32"
    assert first.env["EMBEDDER_THREADS"] == "3"  # the user's choice wins over the per-replica share
    search = search_spec(config, 32)
    assert search.env["SEARCH_DIM"] == "32" and search.env["SEARCH_PORT"] == str(config.search_port)
    # serve's own Redis, stopped right after the search service: that readies it for a quick start, and is
    # given the time its AOF rewrite may take.
    assert search.env["SEARCH_REDIS_OWNED"] == "true"
    assert search.stop_seconds >= SERVICE_GRACE_SECONDS + AOF_REWRITE_TIMEOUT_SECONDS
    assert redis_spec(config).argv[-4:] == ("--data", str(tmp_path / "redis"), "--port", str(config.redis_port))


def test_missing_extras_name_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails, as without the extra
    assert serve.run(parse()) == serve.EXIT_USAGE
    error = capsys.readouterr().err
    assert "cannot import torch" in error and "pip install 'clipsearch[all]'" in error


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("missing/ready.json", "cannot write a file in .*missing: No such file or directory"),
        ("a-file/ready.json", "cannot write a file in .*a-file: Not a directory"),
        (".", "is a directory; name a file to write"),
    ],
)
def test_a_ready_file_that_cannot_be_written_is_a_usage_error_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, problem: str
) -> None:
    (tmp_path / "a-file").write_text("")
    data = tmp_path / "data"
    argv = ("--embedder-port", "0", "--search-port", "0", "--data-dir", str(data))
    assert serve.run(parse(*argv, "--ready-file", str(tmp_path / where))) == serve.EXIT_USAGE
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in error, error
    assert re.fullmatch(f"clipsearch serve: --ready-file .*{problem}", error), error
    assert not data.exists()  # nothing started


def test_the_ready_file_says_where_the_services_are_as_the_banner_does(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("a-token")
    argv = ("--embedders", "2", "--embedder-port", "0", "--search-port", "0", "--data-dir", str(tmp_path / "data"))
    config = serve.build_config(
        parse(*argv, "--ready-file", str(tmp_path / "ready.json")),
        {"REDIS_URL": "redis://:s3cret@db.example:6380/0", "CLIPSEARCH_AUTH_TOKEN_FILE": str(tmp_path / "token")},
    )
    assert config.ready_file == tmp_path / "ready.json"
    info = embedder_pb2.ModelInfo(model_id="/models/clip", dimension=32, dtype="float32", device="cpu")
    write_ready_file(config.ready_file, ready_document(config, info, pid=4321))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ready.json", "token"]  # no temporary file left
    ready = json.loads(config.ready_file.read_text())
    addresses = [f"127.0.0.1:{port}" for port in config.embedder_ports]
    assert ready == {
        "version": 1,
        "pid": 4321,
        "embedder_addresses": addresses,
        "search_address": f"127.0.0.1:{config.search_port}",
        "redis_url": "redis://:***@db.example:6380/0",
        "model": "/models/clip",
        "dimension": 32,
        "dtype": "float32",
        "device": "cpu",
        "data_dir": str(tmp_path / "data"),
        "web_url": f"http://127.0.0.1:{config.web_port}/",
        "client_env": {
            "EMBEDDER_ADDR": ",".join(addresses),
            "SEARCH_ADDR": f"127.0.0.1:{config.search_port}",
            "CLIPSEARCH_AUTH_TOKEN_FILE": str(tmp_path / "token"),
        },
    }
    exports = [line.split()[1] for line in banner(config, info).splitlines() if line.startswith("  export ")]
    assert exports == [f"{name}={value}" for name, value in ready["client_env"].items()]
    assert "a-token" not in config.ready_file.read_text()
    remove_ready_file(config.ready_file)
    assert not config.ready_file.exists()


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
    assert search_spec(config, 32).env["SEARCH_TLS_CERT"] == str(pki.server.cert)
    assert embedder_specs(config)[0].env["EMBEDDER_TLS_KEY"] == str(pki.server.key)


def test_the_web_page_runs_beside_the_services_as_one_more_client(tmp_path: Path) -> None:
    config = serve.build_config(
        parse("--embedders", "2", "--embedder-port", "0", "--search-port", "0", "--data-dir", str(tmp_path)),
        {"CLIPSEARCH_AUTH_TOKEN": "s3cret-token"},
    )
    assert config.web_port is not None
    assert config.web_port not in (*config.embedder_ports, config.search_port, config.redis_port)
    spec = web_spec(config)
    assert spec.argv[1:3] == ("-m", "client.web")
    options = dict(zip(spec.argv[3::2], spec.argv[4::2], strict=True))
    assert options == {
        "--host": "127.0.0.1",
        "--port": str(config.web_port),
        "--embedder": ",".join(config.embedder_addresses()),
        "--search": config.search_address(),
    }
    assert spec.env["CLIPSEARCH_AUTH_TOKEN"] == "s3cret-token"  # its calls carry the services' token
    assert spec.address == config.web_url() == f"http://127.0.0.1:{config.web_port}/"
    info = embedder_pb2.ModelInfo(model_id="m", dimension=32, dtype="float32", device="cpu")
    assert f"  web       {config.web_url()}  (open it in a browser)" in banner(config, info).splitlines()


def test_no_web_leaves_the_page_out(tmp_path: Path) -> None:
    config = serve.build_config(
        parse("--no-web", "--embedder-port", "0", "--search-port", "0", "--data-dir", str(tmp_path)), {}
    )
    assert config.web_port is None and config.web_url() is None
    info = embedder_pb2.ModelInfo(model_id="m", dimension=32, dtype="float32", device="cpu")
    assert not [line for line in banner(config, info).splitlines() if line.startswith("  web ")]
    assert ready_document(config, info, pid=1)["web_url"] is None


def test_the_indexer_runs_beside_the_services_unless_no_watch(tmp_path: Path) -> None:
    info = embedder_pb2.ModelInfo(model_id="m", dimension=32, dtype="float32", device="cpu")
    args = ("--no-web", "--embedder-port", "0", "--search-port", "0", "--data-dir", str(tmp_path))
    config = serve.build_config(parse(*args), {"CLIPSEARCH_AUTH_TOKEN": "s3cret-token"})
    assert config.watch
    spec = indexer_spec(config)
    assert spec.argv[1:3] == ("-m", "client.indexer")
    options = dict(zip(spec.argv[3::2], spec.argv[4::2], strict=True))
    assert options == {"--embedder": ",".join(config.embedder_addresses()), "--search": config.search_address()}
    assert spec.env["CLIPSEARCH_AUTH_TOKEN"] == "s3cret-token"
    assert "  indexer   keeps the libraries indexed (clipsearch library add PATH)" in banner(config, info).splitlines()

    config = serve.build_config(parse(*args, "--no-watch"), {})
    assert not config.watch
    assert not [line for line in banner(config, info).splitlines() if line.startswith("  indexer ")]


def test_a_web_port_in_use_is_refused_naming_the_way_out(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        with pytest.raises(serve.ServeError, match=rf"port {busy} is in use.*--web-port.*--no-web") as caught:
            serve.build_config(
                parse(
                    "--web-port", str(busy), "--embedder-port", "0", "--search-port", "0", "--data-dir", str(tmp_path)
                ),
                {},
            )
    assert caught.value.exit_code == serve.EXIT_USAGE


def test_the_page_beyond_loopback_needs_a_password_or_the_token(tmp_path: Path) -> None:
    argv = ("--host", "0.0.0.0", "--embedder-port", "0", "--search-port", "0", "--data-dir", str(tmp_path))
    with pytest.raises(
        serve.ServeError, match="the web page: listening on 0.0.0.0 .*CLIPSEARCH_WEB_PASSWORD.*--no-web"
    ):
        serve.build_config(parse(*argv), {})
    assert serve.build_config(parse(*argv), {"CLIPSEARCH_WEB_PASSWORD": "open sesame"}).web_port is not None
    assert serve.build_config(parse(*argv), {"CLIPSEARCH_AUTH_TOKEN": "s3cret-token"}).web_port is not None
    assert serve.build_config(parse("--no-web", *argv), {}).web_port is None


def test_the_page_gets_serves_library_roots_and_upload_limits(tmp_path: Path) -> None:
    roots = [tmp_path / "photos", tmp_path / "films"]
    config = serve.build_config(
        parse(
            "--embedder-port",
            "0",
            "--search-port",
            "0",
            "--data-dir",
            str(tmp_path),
            "--library-root",
            str(roots[0]),
            "--library-root",
            str(roots[1]),
            "--max-upload-video",
            "1G",
        ),
        {},
    )
    argv = list(web_spec(config).argv)
    given = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--library-root"]
    assert given == [str(root.resolve()) for root in roots]
    assert argv[argv.index("--max-upload-video") + 1] == f"{1 << 30}B"
    assert "--max-upload-photo" not in argv  # the default, left to the page

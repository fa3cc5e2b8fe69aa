"""The client, the CLI, `clipsearch serve` and the container health probe with TLS, mutual TLS and a token."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client import Client, ClientConfig, ServiceError, ServiceUnavailable
from client.cli import main as cli_main
from client.security import ChannelSecurity
from clipsearch.envconfig import ConfigError
from clipsearch.tls import ServerTls
from embedder_service.server import build_server as build_embedder
from tests.support.certificates import TestPki, issue, make_pki, openssl_available
from tests.support.client import CallCounter, write_images
from tests.support.e2e import REPO, run_cli, start_serve
from tests.support.embedder import embedder_test_config
from tests.support.search import SearchServerFactory

TOKEN = "s3cret-shared.token~7"
# Every variable the client or the services read for security; tests start from none of them.
SECURITY_VARIABLES = (
    "CLIPSEARCH_AUTH_TOKEN",
    "CLIPSEARCH_AUTH_TOKEN_FILE",
    "CLIPSEARCH_TLS_CA",
    "CLIPSEARCH_TLS_CERT",
    "CLIPSEARCH_TLS_KEY",
    "CLIPSEARCH_TLS_SERVER_NAME",
    *(f"{p}_TLS_{n}" for p in ("EMBEDDER", "SEARCH") for n in ("CERT", "KEY", "CLIENT_CA")),
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECURITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    if not openssl_available():
        pytest.skip("the openssl command is needed to make the test certificates")
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "token"
    path.write_text(TOKEN + "\n")
    return path


@dataclass(frozen=True)
class Stack:
    """An embedder and a search service started with the same security settings."""

    embedder: str
    search: str

    def env(self, **security: str | Path) -> dict[str, str]:
        """The CLI's environment: these addresses plus CLIPSEARCH_<NAME> security variables."""
        return {
            "EMBEDDER_ADDR": self.embedder,
            "SEARCH_ADDR": self.search,
            "CLIPSEARCH_CONNECT_TIMEOUT": "10",
            **{f"CLIPSEARCH_{name.upper()}": str(value) for name, value in security.items()},
        }


def start_embedder(model_dir: Path, embedder: Any, *, interceptors: tuple[Any, ...] = (), **overrides: Any) -> Any:
    server = build_embedder(
        embedder_test_config(model_dir, workers=4, **overrides), embedder, interceptors=interceptors
    )
    server.start()
    server.set_serving(True)
    return server


@pytest.fixture(scope="module")
def mtls_embedder(pki: TestPki, tiny_clip_dir: Path, tiny_embedder: Any) -> Iterator[str]:
    """An embedder requiring a client certificate signed by the test CA, and the token."""
    tls = ServerTls.load(pki.server.cert, pki.server.key, pki.ca.cert)
    server = start_embedder(tiny_clip_dir, tiny_embedder, tls=tls, auth_token=TOKEN)
    yield f"127.0.0.1:{server.port}"
    server.stop(0)


@pytest.fixture(scope="module")
def token_embedder(tiny_clip_dir: Path, tiny_embedder: Any) -> Iterator[str]:
    """A plaintext embedder requiring the token."""
    server = start_embedder(tiny_clip_dir, tiny_embedder, auth_token=TOKEN)
    yield f"127.0.0.1:{server.port}"
    server.stop(0)


@pytest.fixture
def mtls_stack(pki: TestPki, mtls_embedder: str, search_server_factory: SearchServerFactory) -> Stack:
    tls = ServerTls.load(pki.server.cert, pki.server.key, pki.ca.cert)
    search = search_server_factory(wait=False, tls=tls, auth_token=TOKEN)
    return Stack(mtls_embedder, search.address)


@pytest.fixture
def token_stack(token_embedder: str, search_server_factory: SearchServerFactory) -> Stack:
    return Stack(token_embedder, search_server_factory(auth_token=TOKEN).address)


def member(pki: TestPki, **overrides: Any) -> ClientConfig:
    """Settings of a client the mutual-TLS stack lets in."""
    values = {"tls_ca": pki.ca.cert, "tls_cert": pki.client.cert, "tls_key": pki.client.key, "token": TOKEN}
    return ClientConfig(connect_timeout=10, **{**values, **overrides})


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clipsearch: error: "), err
    assert "Traceback" not in err and TOKEN not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --- the Python client ------------------------------------------------------------------------------------


def test_the_client_indexes_and_searches_over_mutual_tls_with_a_token(
    pki: TestPki, mtls_stack: Stack, tmp_path: Path
) -> None:
    photos = write_images(tmp_path / "photos", 3)
    with Client(mtls_stack.embedder, mtls_stack.search, config=member(pki)) as client:
        report = client.index([tmp_path / "photos"], collection="secure")
        assert (report.images, report.failed) == (3, [])
        hits = client.search_image(photos[0], top=3)
        assert hits[0].source.endswith(photos[0].name) and len(hits) == 3
        assert client.stats().items == 3


def test_the_client_reads_its_security_settings_from_the_environment(
    pki: TestPki, mtls_stack: Stack, token_file: Path
) -> None:
    env = mtls_stack.env(
        tls_ca=pki.ca.cert, tls_cert=pki.client.cert, tls_key=pki.client.key, auth_token_file=token_file
    )
    config = ClientConfig.from_env(env)
    assert (config.token, config.tls_ca, config.tls_cert, config.tls_key) == (
        TOKEN,
        pki.ca.cert,
        pki.client.cert,
        pki.client.key,
    )
    assert TOKEN not in repr(config)
    with Client(config=config) as client:
        assert client.embed_texts(["a locked door"]).shape == (1, client.model_info().dimension)
        assert client.stats().items == 0


def test_a_token_over_plaintext(token_stack: Stack) -> None:
    with Client(token_stack.embedder, token_stack.search, config=ClientConfig(token=TOKEN)) as client:
        assert client.embed_texts(["a cat"]).shape[0] == 1 and client.stats().items == 0
    for token, remedy in (
        (None, "set CLIPSEARCH_AUTH_TOKEN or CLIPSEARCH_AUTH_TOKEN_FILE (or --token-file)"),
        ("not-the-token", "is not the services' token"),
    ):
        with (
            Client(token_stack.embedder, token_stack.search, config=ClientConfig(token=token)) as client,
            pytest.raises(ServiceError) as caught,
        ):
            client.stats()
        message = str(caught.value)
        assert "UNAUTHENTICATED: authentication failed" in message and remedy in message, message
        assert "\n" not in message and TOKEN not in message


def test_replicas_listed_by_address_share_one_certificate_name(
    pki: TestPki, tiny_clip_dir: Path, tiny_embedder: Any
) -> None:
    tls = ServerTls.load(pki.server.cert, pki.server.key, pki.ca.cert)
    counters = [CallCounter(), CallCounter()]
    servers = [
        start_embedder(tiny_clip_dir, tiny_embedder, tls=tls, auth_token=TOKEN, interceptors=(counter,))
        for counter in counters
    ]
    try:
        ports = [server.port for server in servers]
        # Round-robin over both, each certificate checked against the replicas' common host name.
        with Client([f"127.0.0.1:{port}" for port in ports], "127.0.0.1:1", config=member(pki)) as client:
            for n in range(6):
                client.embed_texts([f"text {n}"])
        assert all(counter.calls["EmbedTexts"] >= 1 for counter in counters), counters
        mixed = [f"localhost:{ports[0]}", f"127.0.0.1:{ports[1]}"]
        with pytest.raises(ConfigError, match="different hosts .*need CLIPSEARCH_TLS_SERVER_NAME"):
            Client(mixed, "127.0.0.1:1", config=member(pki))
        with Client(mixed, "127.0.0.1:1", config=member(pki, tls_server_name="localhost")) as client:
            assert client.embed_texts(["a dog"]).shape[0] == 1
    finally:
        for server in servers:
            server.stop(0)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("plaintext to TLS", "it speaks TLS; set CLIPSEARCH_TLS_CA (--tls-ca)"),
        ("no client certificate", "it requires a client certificate (mutual TLS); set CLIPSEARCH_TLS_CERT"),
        ("a stranger's certificate", "it refused the client certificate"),
        ("another CA", "its certificate is not trusted"),
        ("another name", "its certificate does not name 'elsewhere.example'"),
        ("TLS to plaintext", "it speaks plaintext, not TLS; unset CLIPSEARCH_TLS_CA"),
    ],
)
def test_a_tls_mismatch_is_explained(
    case: str, expected: str, pki: TestPki, mtls_embedder: str, token_embedder: str
) -> None:
    configs = {
        "plaintext to TLS": ClientConfig(token=TOKEN),
        "no client certificate": member(pki, tls_cert=None, tls_key=None),
        "a stranger's certificate": member(pki, tls_cert=pki.stranger.cert, tls_key=pki.stranger.key),
        "another CA": member(pki, tls_ca=pki.other_ca.cert),
        "another name": member(pki, tls_server_name="elsewhere.example"),
        "TLS to plaintext": member(pki),
    }
    address = token_embedder if case == "TLS to plaintext" else mtls_embedder
    config = dataclasses.replace(configs[case], connect_timeout=5)
    with Client(address, "127.0.0.1:1", config=config) as client, pytest.raises(ServiceUnavailable) as caught:
        client.model_info()
    message = str(caught.value)
    assert message.startswith(f"cannot reach the embedder service at {address} (") and expected in message, message
    assert "\n" not in message


# --- the CLI, in process ------------------------------------------------------------------------------------


def test_the_cli_with_options_or_variables(
    pki: TestPki,
    mtls_stack: Stack,
    token_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_images(tmp_path / "photos", 2)
    for name, value in mtls_stack.env().items():
        monkeypatch.setenv(name, value)
    options = [
        "--tls-ca",
        str(pki.ca.cert),
        "--tls-cert",
        str(pki.client.cert),
        "--tls-key",
        str(pki.client.key),
        "--token-file",
        str(token_file),
    ]
    code, out, err = cli(["index", str(tmp_path / "photos"), "--json", *options], capsys)
    assert code == 0, err
    assert json.loads(out)["images"] == 2

    for name, value in mtls_stack.env(
        tls_ca=pki.ca.cert, tls_cert=pki.client.cert, tls_key=pki.client.key, auth_token=TOKEN
    ).items():
        monkeypatch.setenv(name, value)
    code, out, err = cli(["search", "--text", "colours", "--json"], capsys)
    assert code == 0, err
    assert len(json.loads(out)["results"]) == 2

    # An option wins over its variable: the wrong token from a file is refused.
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token\n")
    code, out, err = cli(["stats", "--token-file", str(wrong)], capsys)
    assert_one_line_error(code, err, "UNAUTHENTICATED: authentication failed", "is not the services' token")
    monkeypatch.delenv("CLIPSEARCH_AUTH_TOKEN")
    code, out, err = cli(["stats"], capsys)
    assert_one_line_error(code, err, "authentication failed", "missing credentials", "set CLIPSEARCH_AUTH_TOKEN")
    assert out == ""


def test_the_cli_without_a_ca_on_a_tls_stack(
    mtls_stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in mtls_stack.env(auth_token=TOKEN, connect_timeout="5").items():
        monkeypatch.setenv(name, value)
    code, _, err = cli(["stats"], capsys)
    assert_one_line_error(
        code,
        err,
        f"cannot reach the search service at {mtls_stack.search}",
        "it speaks TLS; set CLIPSEARCH_TLS_CA (--tls-ca)",
    )


def test_bad_security_settings_are_one_line_errors(
    pki: TestPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    text = tmp_path / "notes.txt"
    text.write_text("not a certificate\n")
    ca, cert, key = str(pki.ca.cert), str(pki.client.cert), str(pki.client.key)
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", key, "-aes256", "-passout", "pass:secret", "-out", str(encrypted)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    cases: list[tuple[dict[str, str], list[str], str]] = [
        ({}, ["--tls-cert", cert, "--tls-key", key], "CLIPSEARCH_TLS_CERT (--tls-cert) needs CLIPSEARCH_TLS_CA"),
        (
            {},
            ["--tls-ca", ca, "--tls-cert", cert],
            "CLIPSEARCH_TLS_CERT (--tls-cert) is set but CLIPSEARCH_TLS_KEY (--tls-key) is not",
        ),
        ({"CLIPSEARCH_TLS_KEY": key}, ["--tls-ca", ca], "CLIPSEARCH_TLS_KEY (--tls-key) is set but"),
        ({"CLIPSEARCH_TLS_SERVER_NAME": "a.example"}, [], "CLIPSEARCH_TLS_SERVER_NAME needs CLIPSEARCH_TLS_CA"),
        (
            {},
            ["--tls-ca", str(tmp_path / "missing.pem")],
            f"CLIPSEARCH_TLS_CA (--tls-ca): '{tmp_path / 'missing.pem'}' cannot be read: No such file",
        ),
        ({"CLIPSEARCH_TLS_CA": str(text)}, [], f"CLIPSEARCH_TLS_CA (--tls-ca): '{text}' is not a PEM file"),
        ({}, ["--tls-ca", key], "holds no PEM CA certificate"),
        (
            {},
            ["--tls-ca", ca, "--tls-cert", cert, "--tls-key", str(pki.server.key)],
            "the private key does not belong to the certificate",
        ),
        ({}, ["--token-file", str(empty)], f"--token-file='{empty}' is empty"),
        ({}, ["--token-file", str(tmp_path / "nope")], "--token-file="),
        ({"CLIPSEARCH_AUTH_TOKEN_FILE": str(tmp_path / "nope")}, [], "CLIPSEARCH_AUTH_TOKEN_FILE="),
        ({"CLIPSEARCH_AUTH_TOKEN": "two words"}, [], "CLIPSEARCH_AUTH_TOKEN must be printable ASCII"),
        (
            {},
            ["--tls-ca", ca, "--tls-cert", cert, "--tls-key", str(encrypted)],
            "CLIPSEARCH_TLS_KEY (--tls-key): the private key is encrypted",
        ),
    ]
    for env, options, message in cases:
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            # Nothing listens at 127.0.0.1:1: a setting that got through would fail differently.
            code, out, err = cli(["stats", "--search", "127.0.0.1:1", *options], capsys)
        assert code == 2 and out == "", (env, options, err)
        assert_one_line_error(code, err, message)


# --- real processes ------------------------------------------------------------------------------------------


@pytest.mark.system  # the `clipsearch` command runs as a process
def test_the_clipsearch_command_with_a_token_file_and_mutual_tls(
    pki: TestPki, mtls_stack: Stack, token_file: Path, tmp_path: Path
) -> None:
    base = {**os.environ, **mtls_stack.env(tls_ca=pki.ca.cert, tls_cert=pki.client.cert, tls_key=pki.client.key)}
    stats = run_cli(["stats", "--json", "--token-file", str(token_file)], base, tmp=tmp_path).json()
    assert stats["items"] == 0
    refused = run_cli(["stats"], base, tmp=tmp_path, check=False)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip().count("\n") == 0 and "Traceback" not in refused.stderr
    assert "authentication failed" in refused.stderr and "missing credentials" in refused.stderr
    # A failed handshake is one line too, without gRPC's own log lines around it (importing the client here
    # set GRPC_VERBOSITY: the command must do without it).
    quiet = {name: value for name, value in base.items() if name != "GRPC_VERBOSITY"}
    untrusted = run_cli(
        ["stats", "--token-file", str(token_file), "--tls-ca", str(pki.other_ca.cert)],
        {**quiet, "CLIPSEARCH_CONNECT_TIMEOUT": "5"},
        tmp=tmp_path,
        check=False,
    )
    assert untrusted.returncode == 1 and untrusted.stdout == ""
    assert untrusted.stderr.startswith("clipsearch: error: cannot reach the search service")
    assert untrusted.stderr.strip().count("\n") == 0 and "its certificate is not trusted" in untrusted.stderr


@pytest.mark.system  # `clipsearch serve` and the services it starts run as processes
def test_clipsearch_serve_with_a_token_and_mutual_tls(
    pki: TestPki, token_file: Path, tmp_path: Path, tiny_clip_dir: Path
) -> None:
    server = {
        f"{prefix}_{name}": str(value)
        for prefix in ("EMBEDDER_TLS", "SEARCH_TLS")
        for name, value in (("CERT", pki.server.cert), ("KEY", pki.server.key), ("CLIENT_CA", pki.ca.cert))
    }
    env = {
        **{k: v for k, v in os.environ.items() if k not in SECURITY_VARIABLES},
        **server,
        "CLIPSEARCH_AUTH_TOKEN_FILE": str(token_file),
        "CLIPSEARCH_TLS_CA": str(pki.ca.cert),
        "CLIPSEARCH_TLS_CERT": str(pki.client.cert),
        "CLIPSEARCH_TLS_KEY": str(pki.client.key),
    }
    stack = start_serve(tmp_path, tiny_clip_dir, env=env)
    try:
        stack.wait_ready()
        assert "  security  mutual TLS, bearer token required" in stack.lines
        assert stack.exports["CLIPSEARCH_TLS_CA"] == str(pki.ca.cert)
        assert stack.exports["CLIPSEARCH_AUTH_TOKEN_FILE"] == str(token_file)
        client_env = stack.client_env({k: v for k, v in os.environ.items() if k not in SECURITY_VARIABLES})
        client_env.update(
            {
                name: stack.exports[name]
                for name in (
                    "CLIPSEARCH_TLS_CA",
                    "CLIPSEARCH_TLS_CERT",
                    "CLIPSEARCH_TLS_KEY",
                    "CLIPSEARCH_AUTH_TOKEN_FILE",
                )
            }
        )
        write_images(tmp_path / "photos", 3)
        report = run_cli(["index", str(tmp_path / "photos"), "--json"], client_env, tmp=tmp_path).json()
        assert (report["images"], report["failed"]) == (3, [])
        assert run_cli(["stats", "--json"], client_env, tmp=tmp_path).json()["items"] == 3
    finally:
        code = stack.stop(signal.SIGTERM)
    assert code == 0, stack.log[-3000:]
    assert "Traceback" not in stack.log and TOKEN not in stack.log and TOKEN not in "\n".join(stack.lines)


# --- the container health probe ------------------------------------------------------------------------------


def _health_probe() -> Callable[..., int]:
    spec = importlib.util.spec_from_file_location("grpc_health_check", REPO / "docker" / "grpc_health_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_the_health_probe_speaks_the_services_tls(
    pki: TestPki, tiny_clip_dir: Path, tiny_embedder: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    probe = _health_probe()
    # A server certificate that also allows client authentication can probe its own mutual-TLS server.
    dual = issue(pki.ca.cert.parent, pki.ca, "dual", usage="serverAuth,clientAuth", alt_names="IP:127.0.0.1")
    own = {"EMBEDDER_TLS_CERT": str(dual.cert), "EMBEDDER_TLS_KEY": str(dual.key)}
    one_way = start_embedder(tiny_clip_dir, tiny_embedder, tls=ServerTls.load(dual.cert, dual.key), auth_token=TOKEN)
    mutual = start_embedder(
        tiny_clip_dir, tiny_embedder, tls=ServerTls.load(dual.cert, dual.key, pki.ca.cert), auth_token=TOKEN
    )
    try:
        one_way_address, mutual_address = f"127.0.0.1:{one_way.port}", f"127.0.0.1:{mutual.port}"
        service = "clipsearch.v1.Embedder"

        def run(address: str, env: dict[str, str], *options: str) -> tuple[int, str]:
            code = probe([address, service, "--timeout", "10", *options], env)
            captured = capsys.readouterr()
            return code, captured.out + captured.err

        assert run(one_way_address, {**own, "CLIPSEARCH_TLS_CA": str(pki.ca.cert)})[0] == 0
        assert run(one_way_address, own, "--ca", str(pki.ca.cert))[0] == 0
        code, output = run(one_way_address, own)
        assert code == 1 and "EMBEDDER_TLS_CERT is set: give --ca or CLIPSEARCH_TLS_CA" in output
        code, output = run(one_way_address, {})  # plaintext to a TLS port
        assert code == 1 and "UNAVAILABLE" in output

        with_client_ca = {**own, "EMBEDDER_TLS_CLIENT_CA": str(pki.ca.cert)}
        code, output = run(mutual_address, with_client_ca)  # trusts the client CA, presents its own certificate
        assert (code, output.strip()) == (0, f"{mutual_address} {service}: SERVING")
        code, output = run(
            mutual_address, with_client_ca, "--cert", str(pki.stranger.cert), "--key", str(pki.stranger.key)
        )
        assert code == 1 and "UNAVAILABLE" in output
        code, output = run(mutual_address, {**with_client_ca, "CLIPSEARCH_TLS_SERVER_NAME": "elsewhere.example"})
        assert code == 1 and "UNAVAILABLE" in output
    finally:
        one_way.stop(0)
        mutual.stop(0)


def test_serve_security_settings(pki: TestPki, tmp_path: Path) -> None:
    from client import serve

    def security(env: dict[str, str]) -> ChannelSecurity:
        return serve.serve_security(env)

    server = {
        f"{p}_TLS_{n}": str(v)
        for p in ("EMBEDDER", "SEARCH")
        for n, v in (("CERT", pki.server.cert), ("KEY", pki.server.key))
    }
    client = {"CLIPSEARCH_TLS_CA": str(pki.ca.cert)}
    assert security({}) == ChannelSecurity()
    assert security({**server, **client, "CLIPSEARCH_AUTH_TOKEN": TOKEN}) == ChannelSecurity(
        ca_file=pki.ca.cert, token=TOKEN
    )
    mutual = {**server, "SEARCH_TLS_CLIENT_CA": str(pki.ca.cert)}
    refusals = [
        (
            {"EMBEDDER_TLS_CERT": server["EMBEDDER_TLS_CERT"], "EMBEDDER_TLS_KEY": server["EMBEDDER_TLS_KEY"]},
            "EMBEDDER_TLS_CERT is set but SEARCH_TLS_CERT is not: under clipsearch serve both services use TLS",
        ),
        (server, "the services use TLS (EMBEDDER_TLS_CERT, SEARCH_TLS_CERT): set CLIPSEARCH_TLS_CA"),
        (
            {**mutual, **client},
            "require client certificates (SEARCH_TLS_CLIENT_CA): set CLIPSEARCH_TLS_CERT and CLIPSEARCH_TLS_KEY",
        ),
        (client, "CLIPSEARCH_TLS_CA is set but the services run without TLS"),
    ]
    for env, message in refusals:
        with pytest.raises(serve.ServeError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
            security(env)
        assert caught.value.exit_code == serve.EXIT_USAGE
    with pytest.raises(ConfigError, match="SEARCH_TLS_KEY is set but SEARCH_TLS_CERT is not"):
        security({"SEARCH_TLS_KEY": str(pki.server.key)})
    with pytest.raises(ConfigError, match="CLIPSEARCH_TLS_CA \\(--tls-ca\\): .* cannot be read"):
        security({**server, "CLIPSEARCH_TLS_CA": str(tmp_path / "missing.pem")})
    full = security(
        {**mutual, **client, "CLIPSEARCH_TLS_CERT": str(pki.client.cert), "CLIPSEARCH_TLS_KEY": str(pki.client.key)}
    )
    assert (full.tls, full.mutual) == (True, True)

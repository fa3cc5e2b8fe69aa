"""Optional shared-token authentication and TLS / mutual TLS on both services, their settings from the
environment, and listening on loopback unless told otherwise."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from clipsearch.auth import BearerTokenInterceptor, TokenAuthInterceptor, bearer_metadata, token_from_env
from clipsearch.envconfig import ConfigError
from clipsearch.serving import ServerOptions, ServiceBinding, create_server
from clipsearch.testing.probes import health_status, wait_for
from clipsearch.tls import ServerTls, channel_credentials
from clipsearch.v1 import embedder_pb2, embedder_pb2_grpc, search_pb2, search_pb2_grpc
from embedder_service.config import EmbedderConfig
from embedder_service.server import build_server as build_embedder
from search_service.config import SearchConfig
from search_service.server import build_server as build_search
from tests.support.certificates import TestPki, make_pki, openssl_available
from tests.support.embedder import embedder_test_config
from tests.support.search import SearchServerFactory, unique_index_name

TOKEN = "c0rrect-h0rse.battery_staple~42"
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    if not openssl_available():
        pytest.skip("the openssl command is needed to make the test certificates")
    return make_pki(tmp_path_factory.mktemp("pki"))


# --- how a client connects --------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """How a test client dials: plaintext or TLS (trusting `ca`), a client certificate, a token."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    token: str | None = None

    @contextmanager
    def channel(self, address: str) -> Iterator[grpc.Channel]:
        if self.ca is None:
            channel = grpc.insecure_channel(address)
            if self.token is not None:
                channel = grpc.intercept_channel(channel, BearerTokenInterceptor(self.token))
        else:
            channel = grpc.secure_channel(
                address, channel_credentials(ca_file=self.ca, cert_file=self.cert, key_file=self.key, token=self.token)
            )
        with channel:
            yield channel


def tls_client(
    pki: TestPki, *, identity: str | None = None, token: str | None = None, ca: Path | None = None
) -> Client:
    chosen = getattr(pki, identity) if identity else None
    return Client(
        ca=ca or pki.ca.cert, cert=chosen.cert if chosen else None, key=chosen.key if chosen else None, token=token
    )


# --- both services, started with given security settings --------------------------------------------


@dataclass(frozen=True)
class Service:
    """One of the two services: how to start it, and one cheap real call."""

    name: str  # the proto service
    start: Callable[..., Any]  # (ExitStack, **config overrides) -> address

    def call(self, channel: grpc.Channel, **kwargs: Any) -> Any:
        if self.name == "clipsearch.v1.Embedder":
            return embedder_pb2_grpc.EmbedderStub(channel).GetModelInfo(
                embedder_pb2.GetModelInfoRequest(), timeout=30, **kwargs
            )
        return search_pb2_grpc.SearchStub(channel).Stats(search_pb2.StatsRequest(), timeout=30, **kwargs)


def wait_until_serving(client: Client, address: str, within: float = 60.0) -> None:
    with client.channel(address) as channel:
        wait_for(
            lambda: health_status(channel, timeout=5) == "SERVING",
            within,
            f"{address} did not report SERVING within {within:.0f}s",
        )


@pytest.fixture(params=["embedder", "search"])
def service(request: pytest.FixtureRequest) -> Service:
    if request.param == "embedder":
        model_dir = request.getfixturevalue("tiny_clip_dir")
        embedder = request.getfixturevalue("tiny_embedder")

        def start_embedder(stack: ExitStack, **overrides: Any) -> str:
            server = build_embedder(embedder_test_config(model_dir, **overrides), embedder)
            server.start()
            server.set_serving(True)
            stack.callback(server.stop, 0)
            return f"127.0.0.1:{server.port}"

        return Service("clipsearch.v1.Embedder", start_embedder)

    factory: SearchServerFactory = request.getfixturevalue("search_server_factory")

    def start_search(_stack: ExitStack, **overrides: Any) -> str:
        return factory(wait=False, **overrides).address  # the factory stops it

    return Service("clipsearch.v1.Search", start_search)


@contextmanager
def started(service: Service, probe: Client, **overrides: Any) -> Iterator[str]:
    """The service started with `overrides`, once `probe` sees it SERVING."""
    with ExitStack() as stack:
        address = service.start(stack, **overrides)
        wait_until_serving(probe, address)
        yield address


def status_of(service: Service, client: Client, address: str, **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    with client.channel(address) as channel:
        try:
            service.call(channel, **kwargs)
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as error:
            return error.code(), error.details() or ""


# --- authentication ---------------------------------------------------------------------------------


def test_a_token_is_required_when_configured(service: Service) -> None:
    plain = Client()
    with started(service, plain, auth_token=TOKEN) as address:
        code, details = status_of(service, plain, address)
        assert code == UNAUTHENTICATED
        assert "missing credentials" in details and "authorization: Bearer <token>" in details
        assert "CLIPSEARCH_AUTH_TOKEN" in details

        code, details = status_of(service, Client(token="not-the-token"), address)
        assert (code, details.endswith("invalid bearer token")) == (UNAUTHENTICATED, True)
        assert "not-the-token" not in details and TOKEN not in details

        for value in (f"Basic {TOKEN}", TOKEN, "Bearer", "Bearer "):
            code, details = status_of(service, plain, address, metadata=(("authorization", value),))
            assert code == UNAUTHENTICATED and "must be 'Bearer <token>'" in details, value
        code, details = status_of(service, plain, address, metadata=bearer_metadata(TOKEN) * 2)
        assert code == UNAUTHENTICATED and "once" in details
        code, _ = status_of(service, plain, address, metadata=bearer_metadata(TOKEN + "x"))
        assert code == UNAUTHENTICATED

        assert status_of(service, Client(token=TOKEN), address) == (grpc.StatusCode.OK, "")
        lower_case_scheme = (("authorization", f"bearer {TOKEN}"),)
        assert status_of(service, plain, address, metadata=lower_case_scheme)[0] == grpc.StatusCode.OK

        with plain.channel(address) as channel:
            # Orchestrators probe health without credentials; reflection describes the (public) schema.
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", service.name):
                assert health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status == SERVING
            assert service.name in set(ProtoReflectionDescriptorDatabase(channel).get_services())
            # A method that does not exist looks the same as one that does to a caller without the token.
            unknown = channel.unary_unary(f"/{service.name}/NoSuchMethod")  # type: ignore[call-arg]
            with pytest.raises(grpc.RpcError) as error:
                unknown(b"", timeout=10)
            assert error.value.code() == UNAUTHENTICATED
        with Client(token=TOKEN).channel(address) as channel:
            with pytest.raises(grpc.RpcError) as error:
                channel.unary_unary(f"/{service.name}/NoSuchMethod")(b"", timeout=10)  # type: ignore[call-arg]
            assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_refused_call_writes_nothing(search_server_factory: SearchServerFactory) -> None:
    address = search_server_factory(wait=False, auth_token=TOKEN).address
    wait_until_serving(Client(), address)
    item = search_pb2.Item(id="intruder", vector=[1.0] * 32)
    with Client(token="wrong").channel(address) as channel:
        with pytest.raises(grpc.RpcError) as error:
            search_pb2_grpc.SearchStub(channel).Upsert(search_pb2.UpsertRequest(items=[item]), timeout=30)
        assert error.value.code() == UNAUTHENTICATED
    with Client(token=TOKEN).channel(address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        assert stub.Stats(search_pb2.StatsRequest(), timeout=30).items == 0
        assert stub.Upsert(search_pb2.UpsertRequest(items=[item]), timeout=30).created == 1


def test_without_a_token_configured_any_caller_is_served(embedder_stub: embedder_pb2_grpc.EmbedderStub) -> None:
    for metadata in ((), bearer_metadata("whatever-they-send"), (("authorization", "Basic eDp5"),)):
        assert embedder_stub.GetModelInfo(embedder_pb2.GetModelInfoRequest(), metadata=metadata).dimension == 32


def _echo_server(interceptor: grpc.ServerInterceptor, calls: list[str]) -> Any:
    """A server with one method of each kind (unary or streaming, in and out) that echo bytes."""

    def record(name: str, value: Any) -> Any:
        calls.append(name)
        return value

    handlers = {
        "UnaryUnary": grpc.unary_unary_rpc_method_handler(lambda request, _: record("UnaryUnary", request)),
        "UnaryStream": grpc.unary_stream_rpc_method_handler(
            lambda request, _: iter([record("UnaryStream", request)] * 2)
        ),
        "StreamUnary": grpc.stream_unary_rpc_method_handler(
            lambda requests, _: record("StreamUnary", b"".join(requests))
        ),
        "StreamStream": grpc.stream_stream_rpc_method_handler(
            lambda requests, _: (record("StreamStream", r) for r in requests)
        ),
    }

    def register(server: grpc.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))

    return create_server(
        "127.0.0.1:0",
        [ServiceBinding("test.Echo", register)],
        ServerOptions(max_workers=4, interceptors=(interceptor,)),
    )


def test_every_kind_of_method_is_guarded_and_never_runs_unauthenticated() -> None:
    calls: list[str] = []
    # Nothing exempt here: health (a unary and a server-streaming method) and reflection (a bidirectional
    # stream) are guarded too.
    server = _echo_server(TokenAuthInterceptor(TOKEN, exempt_services=()), calls)
    server.start()
    server.set_serving(True)
    try:
        address = f"127.0.0.1:{server.port}"

        def invoke(channel: grpc.Channel, kind: str) -> Any:
            method = f"/test.Echo/{kind}"
            if kind == "UnaryUnary":
                return channel.unary_unary(method)(b"hi", timeout=10)  # type: ignore[call-arg]
            if kind == "UnaryStream":
                return b"".join(channel.unary_stream(method)(b"hi", timeout=10))  # type: ignore[call-arg]
            if kind == "StreamUnary":
                return channel.stream_unary(method)(iter([b"h", b"i"]), timeout=10)  # type: ignore[call-arg]
            return b"".join(channel.stream_stream(method)(iter([b"h", b"i"]), timeout=10))  # type: ignore[call-arg]

        kinds = ["UnaryUnary", "UnaryStream", "StreamUnary", "StreamStream"]
        with Client().channel(address) as channel:
            for kind in kinds:
                with pytest.raises(grpc.RpcError) as error:
                    invoke(channel, kind)
                assert error.value.code() == UNAUTHENTICATED, kind
            with pytest.raises(grpc.RpcError) as error:
                next(health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=10))
            assert error.value.code() == UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as error:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert error.value.code() == UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as error:
                ProtoReflectionDescriptorDatabase(channel).get_services()
            assert error.value.code() == UNAUTHENTICATED
        assert calls == []
        with Client(token=TOKEN).channel(address) as channel:
            assert [invoke(channel, kind) for kind in kinds] == [b"hi", b"hihi", b"hi", b"hi"]
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=10)
            assert next(watch).status == SERVING
            watch.cancel()
        assert calls == ["UnaryUnary", "UnaryStream", "StreamUnary", "StreamStream", "StreamStream"]
    finally:
        server.stop(0)


# --- TLS ----------------------------------------------------------------------------------------------


def server_tls(pki: TestPki, *, mutual: bool = False) -> ServerTls:
    return ServerTls.load(pki.server.cert, pki.server.key, pki.ca.cert if mutual else None)


def test_tls(service: Service, pki: TestPki) -> None:
    trusted = tls_client(pki)
    with started(service, trusted, tls=server_tls(pki)) as address:
        assert status_of(service, trusted, address) == (grpc.StatusCode.OK, "")
        assert status_of(service, tls_client(pki, identity="client"), address)[0] == grpc.StatusCode.OK
        assert status_of(service, Client(), address)[0] == UNAVAILABLE  # plaintext to a TLS port
        assert status_of(service, tls_client(pki, ca=pki.other_ca.cert), address)[0] == UNAVAILABLE  # untrusted


def test_mutual_tls_with_a_token(service: Service, pki: TestPki) -> None:
    member = tls_client(pki, identity="client", token=TOKEN)
    with started(service, member, tls=server_tls(pki, mutual=True), auth_token=TOKEN) as address:
        assert status_of(service, member, address) == (grpc.StatusCode.OK, "")
        # No client certificate, one from another CA, or plaintext: the handshake fails, token or not.
        for outsider in (
            tls_client(pki, token=TOKEN),
            tls_client(pki, identity="stranger", token=TOKEN),
            Client(token=TOKEN),
        ):
            assert status_of(service, outsider, address)[0] == UNAVAILABLE, outsider
        # A certificate gets a client through the handshake; the token is still required.
        assert status_of(service, tls_client(pki, identity="client"), address)[0] == UNAUTHENTICATED


# --- settings from the environment --------------------------------------------------------------------


CONFIGS = [pytest.param(EmbedderConfig, "EMBEDDER", id="embedder"), pytest.param(SearchConfig, "SEARCH", id="search")]


@pytest.mark.parametrize(("config_class", "prefix"), CONFIGS)
def test_security_settings_from_the_environment(config_class: Any, prefix: str, pki: TestPki, tmp_path: Path) -> None:
    plain = config_class.from_env({})
    assert (plain.auth_token, plain.tls) == (None, None)

    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    env = {
        "CLIPSEARCH_AUTH_TOKEN_FILE": str(token_file),
        f"{prefix}_TLS_CERT": str(pki.server.cert),
        f"{prefix}_TLS_KEY": str(pki.server.key),
        f"{prefix}_TLS_CLIENT_CA": str(pki.ca.cert),
    }
    config = config_class.from_env(env)
    assert config.auth_token == TOKEN
    assert (config.tls.cert_file, config.tls.key_file, config.tls.client_ca_file, config.tls.mutual) == (
        pki.server.cert,
        pki.server.key,
        pki.ca.cert,
        True,
    )
    assert config.tls.private_key == pki.server.key.read_bytes()
    shown = repr(config)
    assert TOKEN not in shown and "PRIVATE KEY" not in shown  # configs get logged

    one_way = config_class.from_env(
        {
            "CLIPSEARCH_AUTH_TOKEN": TOKEN,
            f"{prefix}_TLS_CERT": str(pki.server.cert),
            f"{prefix}_TLS_KEY": str(pki.server.key),
        }
    )
    assert (one_way.auth_token, one_way.tls.mutual) == (TOKEN, False)


@pytest.mark.parametrize(("config_class", "prefix"), CONFIGS)
def test_bad_security_settings_name_the_variable(config_class: Any, prefix: str, pki: TestPki, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    cert, key = str(pki.server.cert), str(pki.server.key)
    cases = [
        ({"CLIPSEARCH_AUTH_TOKEN": "a", "CLIPSEARCH_AUTH_TOKEN_FILE": str(empty)}, "set only one of"),
        ({"CLIPSEARCH_AUTH_TOKEN_FILE": str(empty)}, "CLIPSEARCH_AUTH_TOKEN_FILE='" + str(empty) + "' is empty"),
        ({"CLIPSEARCH_AUTH_TOKEN_FILE": str(tmp_path / "missing")}, "cannot be read"),
        ({"CLIPSEARCH_AUTH_TOKEN": "two words"}, "CLIPSEARCH_AUTH_TOKEN must be printable ASCII without spaces"),
        ({"CLIPSEARCH_AUTH_TOKEN": "naïve"}, "printable ASCII"),
        ({f"{prefix}_TLS_CERT": cert}, f"{prefix}_TLS_CERT is set but {prefix}_TLS_KEY is not"),
        ({f"{prefix}_TLS_KEY": key}, f"{prefix}_TLS_KEY is set but {prefix}_TLS_CERT is not"),
        ({f"{prefix}_TLS_CLIENT_CA": str(pki.ca.cert)}, f"{prefix}_TLS_CLIENT_CA needs {prefix}_TLS_CERT"),
        (
            {f"{prefix}_TLS_CERT": cert, f"{prefix}_TLS_KEY": str(pki.client.key)},
            "the private key does not belong to the certificate",
        ),
        (
            {f"{prefix}_TLS_CERT": str(tmp_path / "nope.pem"), f"{prefix}_TLS_KEY": key},
            f"{prefix}_TLS_CERT='{tmp_path / 'nope.pem'}' cannot be read",
        ),
        ({f"{prefix}_TLS_CERT": cert, f"{prefix}_TLS_KEY": str(empty)}, f"{prefix}_TLS_KEY='{empty}' is not a PEM"),
        (
            {f"{prefix}_TLS_CERT": cert, f"{prefix}_TLS_KEY": key, f"{prefix}_TLS_CLIENT_CA": key},
            f"{prefix}_TLS_CLIENT_CA='{key}' holds no PEM CA certificate",
        ),
    ]
    for env, message in cases:
        with pytest.raises(ConfigError) as error:
            config_class.from_env(env)
        assert message in str(error.value), (env, str(error.value))
        assert TOKEN not in str(error.value)


def test_an_encrypted_key_is_refused(pki: TestPki, tmp_path: Path) -> None:
    import subprocess

    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(pki.server.key), "-aes256", "-passout", "pass:secret", "-out", str(encrypted)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with pytest.raises(ConfigError, match="the private key is encrypted"):
        ServerTls.load(pki.server.cert, encrypted)


def test_token_from_env_ignores_surrounding_whitespace(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(f"  {TOKEN}\r\n")
    assert token_from_env({"CLIPSEARCH_AUTH_TOKEN_FILE": str(secret)}) == TOKEN
    assert token_from_env({"CLIPSEARCH_AUTH_TOKEN": f" {TOKEN} "}) == TOKEN
    assert token_from_env({"CLIPSEARCH_AUTH_TOKEN": "  "}) is None


def test_a_bad_tls_setting_stops_either_service_with_one_line(
    pki: TestPki, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedder_service.server import main as embedder_main
    from search_service.server import main as search_main

    with pytest.raises(SystemExit) as stopped:
        embedder_main({"EMBEDDER_TLS_CERT": str(pki.server.cert), "EMBEDDER_TLS_KEY": str(pki.client.key)})
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embedder: EMBEDDER_TLS_CERT=") and "does not belong" in lines[0]

    monkeypatch.setenv("SEARCH_TLS_KEY", str(pki.server.key))
    monkeypatch.delenv("SEARCH_TLS_CERT", raising=False)
    with pytest.raises(SystemExit) as stopped:
        search_main()
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["search service: SEARCH_TLS_KEY is set but SEARCH_TLS_CERT is not: TLS needs both"]


# --- where the services listen -------------------------------------------------------------------------


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than loopback (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the outgoing interface
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5):
            return True
    except OSError:
        return False


def test_both_services_listen_on_loopback_unless_told_otherwise(
    tiny_clip_dir: Path, tiny_embedder: Any, redis_url: str
) -> None:
    outside = non_loopback_address()
    if outside is None:
        pytest.skip("this machine has no non-loopback IPv4 address to test from")
    index = unique_index_name()
    embedder_config = EmbedderConfig.from_env(
        {"EMBEDDER_PORT": "0", "CLIP_MODEL": str(tiny_clip_dir), "EMBEDDER_DEVICE": "cpu", "EMBEDDER_DTYPE": "fp32"}
    )
    search_config = SearchConfig.from_env(
        {"SEARCH_PORT": "0", "REDIS_URL": redis_url, "SEARCH_INDEX": index, "SEARCH_DIM": "32"}
    )
    assert (embedder_config.host, search_config.host) == ("127.0.0.1", "127.0.0.1")
    everywhere = dataclasses.replace(embedder_config, host="0.0.0.0")
    servers = [
        build_embedder(embedder_config, tiny_embedder),
        build_search(search_config),
        build_embedder(everywhere, tiny_embedder),
    ]
    try:
        for server in servers:
            server.start()
        loopback_only = [server.port for server in servers[:2]]
        for port in loopback_only:
            assert reachable("127.0.0.1", port)
            assert not reachable(outside, port), f"port {port} answers on {outside}"
        # Told otherwise, it listens there too (so the refusals above are the binding, not a firewall).
        assert reachable(outside, servers[2].port) and reachable("127.0.0.1", servers[2].port)
    finally:
        for server in servers:
            server.stop(0)
        import redis

        # The index may never have been created.
        with redis.Redis.from_url(redis_url) as client, contextlib.suppress(redis.ResponseError):
            client.execute_command("FT.DROPINDEX", index, "DD")


def test_a_busy_port_is_a_clear_start_up_error(tiny_clip_dir: Path, tiny_embedder: Any, pki: TestPki) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for tls in (None, server_tls(pki)):
            config = embedder_test_config(tiny_clip_dir, port=port, tls=tls)
            with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}: address in use"):
                build_embedder(config, tiny_embedder)

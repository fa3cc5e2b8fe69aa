"""gRPC channels and stubs for the embedder (round-robin over replicas) and the search service."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import grpc

from clipsearch.envconfig import ConfigError
from clipsearch.v1 import embedder_pb2, embedder_pb2_grpc, search_pb2, search_pb2_grpc

from .errors import ServiceError, ServiceUnavailable
from .security import SERVER_NAME_VARIABLE, TOKEN_SETTING, ChannelSecurity

EMBEDDER = "embedder"
SEARCH = "search"

Response = TypeVar("Response")


def _service_config(service: str) -> str:
    # round_robin sends consecutive calls to different ready replicas and skips ones that are down;
    # UNAVAILABLE (a replica starting or stopping) is retried by gRPC itself, on another replica.
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [
                {
                    "name": [{"service": service}],
                    "retryPolicy": {
                        "maxAttempts": 5,
                        "initialBackoff": "0.2s",
                        "maxBackoff": "3s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
        }
    )


def _channel_options(service: str) -> list[tuple[str, Any]]:
    return [
        ("grpc.service_config", _service_config(service)),
        ("grpc.max_send_message_length", -1),
        ("grpc.max_receive_message_length", -1),
        # Retries need the request buffered; the defaults (256 KiB) would exclude image batches.
        ("grpc.per_rpc_retry_buffer_size", 128 << 20),
        ("grpc.retry_buffer_size", 512 << 20),
        ("grpc.enable_retries", 1),
        # gRPC's reconnect backoff grows to 120 s by default: a service back after a minute's outage could
        # wait that long for the next attempt, past the calls' deadlines, so an index run would fail.
        ("grpc.max_reconnect_backoff_ms", int(_MAX_RETRY_SECONDS * 1000)),
    ]


def split_host_port(address: str) -> tuple[str, str]:
    address = address.strip()
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
        if not sep:
            raise ValueError(f"bad address {address!r}: expected [IPv6]:PORT")
    else:
        host, sep, port = address.rpartition(":")
        if not sep:
            raise ValueError(f"bad address {address!r}: expected HOST:PORT")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad address {address!r}: expected HOST:PORT")
    return host, port


_TARGET_SCHEMES = ("dns", "ipv4", "ipv6", "unix")


def is_explicit_target(address: str) -> bool:
    """A gRPC target naming its resolver ("dns:///host:port", "ipv4:10.0.0.1:50051,10.0.0.2:50051",
    "unix:/run/embedder.sock"), used as given, rather than HOST:PORT ("dns:50051" is the host "dns")."""
    scheme, sep, rest = address.strip().partition(":")
    return bool(sep) and scheme in _TARGET_SCHEMES and not rest.isdigit()


def check_target(target: str) -> str:
    """An explicit gRPC target, unchanged; ValueError says what is malformed."""
    target = target.strip()
    scheme, _, rest = target.partition(":")
    forms = {
        "dns": "dns:[//AUTHORITY/]HOST:PORT",
        "ipv4": "ipv4:IP:PORT[,IP:PORT…]",
        "ipv6": "ipv6:[IP]:PORT[,[IP]:PORT…]",
        "unix": "unix:PATH or unix:///ABSOLUTE/PATH",
    }
    problem = ValueError(f"bad target {target!r}: expected {forms.get(scheme, 'HOST:PORT')}")
    if scheme == "unix":
        if not rest.strip("/"):
            raise problem
        return target
    try:
        if scheme == "dns":
            name = rest
            if rest.startswith("//"):
                _, slash, name = rest[2:].partition("/")
                if not slash:
                    raise problem
            split_host_port(name)
            return target
        version = 4 if scheme == "ipv4" else 6
        for entry in rest.split(","):
            host, _ = split_host_port(entry)
            if ipaddress.ip_address(host).version != version or entry.strip() != entry:
                raise problem
    except ValueError:
        raise problem from None
    return target


def check_addresses(addresses: Sequence[str]) -> None:
    """Rejects a malformed HOST:PORT or target, or an explicit target listed beside other addresses."""
    explicit = [a for a in addresses if is_explicit_target(a)]
    if explicit and len(addresses) > 1:
        raise ValueError(
            f"the gRPC target {explicit[0]!r} must be the only address: list the replicas inside "
            "one target (ipv4:10.0.0.1:50051,10.0.0.2:50051) or give HOST:PORT addresses"
        )
    for address in addresses:
        if is_explicit_target(address):
            check_target(address)
        else:
            split_host_port(address)


def search_target(address: str) -> str:
    """The gRPC target of the search service: an explicit target as given, else a DNS name."""
    check_addresses([address])
    return address if is_explicit_target(address) else f"dns:///{address}"


def embedder_target(addresses: Sequence[str]) -> str:
    """One gRPC target that spreads calls over every replica.

    An explicit target (dns:, ipv4:, ipv6:, unix:) is used as given. One HOST:PORT address stays a DNS
    name (dns:///), so a name with several A records, such as a scaled docker-compose service, is balanced
    too. Several addresses are resolved once here into a static ipv4:/ipv6: target list. Either way gRPC's
    round_robin policy spreads calls over the replicas and fails over between them.
    """
    if not addresses:
        raise ValueError("no embedder address given")
    check_addresses(addresses)
    if is_explicit_target(addresses[0]):
        return addresses[0].strip()
    if len(addresses) == 1:
        host, port = split_host_port(addresses[0])
        return f"dns:///{_bracket(host)}:{port}"
    v4: list[str] = []
    v6: list[str] = []
    for address in addresses:
        host, port = split_host_port(address)
        for ip in _resolve(host, port):
            bucket = v4 if isinstance(ipaddress.ip_address(ip), ipaddress.IPv4Address) else v6
            entry = f"{ip}:{port}" if bucket is v4 else f"[{ip}]:{port}"
            if entry not in bucket:
                bucket.append(entry)
    if v4:  # a gRPC target holds one address family; IPv4 is what every replica is likely to have
        return "ipv4:" + ",".join(v4)
    return "ipv6:" + ",".join(v6)


def endpoints(addresses: Sequence[str]) -> list[tuple[str, int]]:
    """The (host, port) pairs named by HOST:PORT addresses or an explicit dns:, ipv4: or ipv6: target."""
    found: list[tuple[str, int]] = []
    for address in addresses:
        entries = [address]
        if is_explicit_target(address):
            scheme, _, rest = address.strip().partition(":")
            if scheme == "dns":
                entries = [rest[2:].partition("/")[2] if rest.startswith("//") else rest]
            elif scheme in ("ipv4", "ipv6"):
                entries = rest.split(",")
            else:
                entries = []
        for entry in entries:
            host, port = split_host_port(entry)
            found.append((host, int(port)))
    return found


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _resolve(host: str, port: str) -> list[str]:
    try:
        return [ipaddress.ip_address(host).compressed]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServiceUnavailable(EMBEDDER, f"{host}:{port}", f"cannot resolve {host}: {exc.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# A channel that keeps failing to connect for this long is reported as down without waiting for the
# whole connect timeout (which is there for a service that accepts connections slowly).
_FAIL_FAST_SECONDS = 2.0
_FIRST_RETRY_SECONDS = 0.25
_MAX_RETRY_SECONDS = 4.0


def _wait_until_ready(channel: grpc.Channel, timeout: float) -> str:
    """Waits for the channel to connect; returns "" when ready, else why not."""
    states: list[grpc.ChannelConnectivity] = []
    changed = threading.Condition()

    def on_change(state: grpc.ChannelConnectivity) -> None:
        with changed:
            states.append(state)
            changed.notify_all()

    channel.subscribe(on_change, try_to_connect=True)
    try:
        start = time.monotonic()
        failing_since: float | None = None
        with changed:
            while True:
                state = states[-1] if states else None
                now = time.monotonic()
                if state == grpc.ChannelConnectivity.READY:
                    return ""
                if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                    failing_since = failing_since if failing_since is not None else now
                    if now - failing_since >= min(_FAIL_FAST_SECONDS, timeout):
                        return "connection failed"
                if state == grpc.ChannelConnectivity.SHUTDOWN:
                    return "channel closed"
                if now - start >= timeout:
                    return f"no connection within {timeout:g}s"
                changed.wait(0.05)
    finally:
        channel.unsubscribe(on_change)


class Transport:
    """The two channels, with readiness checks and gRPC errors turned into ClientErrors.

    Every call waits for the channel to be ready (wait_for_ready) and carries a deadline. Before a
    service's first call, the channel must become ready within connect_timeout, so a service that is
    down is reported quickly instead of after a full call deadline.
    """

    def __init__(
        self,
        embedder_addresses: Sequence[str],
        search_address: str,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        security: ChannelSecurity | None = None,
    ) -> None:
        self.embedder_addresses = tuple(a.strip() for a in embedder_addresses if a.strip())
        self.search_address = search_address.strip()
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        if not self.embedder_addresses:
            raise ValueError("no embedder address given")
        # A malformed address is reported before anything connects.
        check_addresses(self.embedder_addresses)
        self._targets = {SEARCH: search_target(self.search_address)}
        self.security = security or ChannelSecurity()
        # Reads the certificate files now, so a bad one is reported before anything connects.
        self._channel_factory = self.security.load()
        self._embedder_server_name = self._replicas_server_name()
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._ready: set[str] = set()
        self._closed = False

    def _channel(self, service: str) -> grpc.Channel:
        with self._lock:
            if self._closed:
                raise RuntimeError("client is closed")
            channel = self._channels.get(service)
            if channel is None:
                if service == EMBEDDER:
                    target = embedder_target(self.embedder_addresses)
                    options = _channel_options("clipsearch.v1.Embedder")
                else:
                    target = self._targets[SEARCH]
                    options = _channel_options("clipsearch.v1.Search")
                channel = self._channel_factory.open(
                    target, options, server_name=self._embedder_server_name if service == EMBEDDER else None
                )
                self._channels[service] = channel
            return channel

    def _replicas_server_name(self) -> str | None:
        """The name the embedder replicas' certificates must hold when one target lists several of them:
        gRPC would check the whole list against each certificate."""
        replicas = endpoints(self.embedder_addresses)
        if len(replicas) < 2 or not self.security.tls or self.security.server_name:
            return None
        hosts = {host for host, _ in replicas}
        if len(hosts) > 1:
            raise ConfigError(
                f"with TLS, embedder replicas on different hosts ({', '.join(sorted(hosts))}) need "
                f"{SERVER_NAME_VARIABLE}: a name each replica's certificate holds"
            )
        return hosts.pop()

    def address(self, service: str) -> str:
        return ", ".join(self.embedder_addresses) if service == EMBEDDER else self.search_address

    def ensure_ready(self, service: str) -> grpc.Channel:
        channel = self._channel(service)
        if service in self._ready:
            return channel
        failure = _wait_until_ready(channel, self.connect_timeout)
        if failure:
            raise ServiceUnavailable(service, self.address(service), failure, hint=self._diagnose(service))
        self._ready.add(service)
        return channel

    @property
    def embedder(self) -> embedder_pb2_grpc.EmbedderStub:
        return embedder_pb2_grpc.EmbedderStub(self.ensure_ready(EMBEDDER))

    @property
    def search(self) -> search_pb2_grpc.SearchStub:
        return search_pb2_grpc.SearchStub(self.ensure_ready(SEARCH))

    def call(self, service: str, method: str, request: Any, timeout: float | None = None) -> Any:
        """Calls `method` of a service's stub, raising ServiceUnavailable or ServiceError on failure."""
        stub = self.embedder if service == EMBEDDER else self.search
        deadline = time.monotonic() + (timeout or self.timeout)
        delay = _FIRST_RETRY_SECONDS
        while True:
            remaining = deadline - time.monotonic()
            try:
                return getattr(stub, method)(request, timeout=max(remaining, 0.001), wait_for_ready=True)
            except grpc.RpcError as exc:
                # gRPC's own retries cover a replica that blinks; this covers a service that restarts or
                # waits for Redis ("UNAVAILABLE: retry with backoff"), within the call's deadline.
                if exc.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() + delay < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, _MAX_RETRY_SECONDS)
                    continue
                raise self.translate(service, exc) from None

    def _diagnose(self, service: str) -> str | None:
        """Why the service's TLS (or plaintext) does not match this client's, if that is the trouble."""
        addresses = self.embedder_addresses if service == EMBEDDER else (self.search_address,)
        name = self._embedder_server_name if service == EMBEDDER else None
        for host, port in endpoints(addresses)[:3]:
            problem = self._channel_factory.diagnose(host, port, server_name=name)
            if problem:
                return problem
        return None

    def translate(self, service: str, exc: grpc.RpcError) -> ServiceError | ServiceUnavailable:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        details = (exc.details() if hasattr(exc, "details") else "") or code.name.lower()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            details = f"no answer within the deadline ({details})"
        if code == grpc.StatusCode.UNAVAILABLE:
            return ServiceUnavailable(service, self.address(service), f"{code.name}: {details}")
        if code == grpc.StatusCode.UNAUTHENTICATED:
            remedy = (
                f"the token in {TOKEN_SETTING} is not the services' token"
                if self.security.token
                else f"set {TOKEN_SETTING} to the services' token"
            )
            details = f"authentication failed: {details}; {remedy}"
        return ServiceError(service, self.address(service), code, details)

    # Typed shorthands for the calls the client makes.
    def model_info(self) -> embedder_pb2.ModelInfo:
        return self.call(EMBEDDER, "GetModelInfo", embedder_pb2.GetModelInfoRequest())

    def embed_images(
        self, request: embedder_pb2.EmbedImagesRequest, timeout: float | None = None
    ) -> embedder_pb2.EmbedImagesResponse:
        return self.call(EMBEDDER, "EmbedImages", request, timeout)

    def embed_texts(self, request: embedder_pb2.EmbedTextsRequest) -> embedder_pb2.EmbedTextsResponse:
        return self.call(EMBEDDER, "EmbedTexts", request)

    def classify(self, request: embedder_pb2.ClassifyRequest) -> embedder_pb2.ClassifyResponse:
        return self.call(EMBEDDER, "Classify", request)

    def upsert(self, request: search_pb2.UpsertRequest) -> search_pb2.UpsertResponse:
        return self.call(SEARCH, "Upsert", request)

    def query(self, request: search_pb2.QueryRequest) -> search_pb2.QueryResponse:
        return self.call(SEARCH, "Query", request)

    def get(self, request: search_pb2.GetRequest) -> search_pb2.GetResponse:
        return self.call(SEARCH, "Get", request)

    def list(self, request: search_pb2.ListRequest) -> search_pb2.ListResponse:
        return self.call(SEARCH, "List", request)

    def delete(self, request: search_pb2.DeleteRequest) -> search_pb2.DeleteResponse:
        return self.call(SEARCH, "Delete", request)

    def stats(self) -> search_pb2.StatsResponse:
        return self.call(SEARCH, "Stats", search_pb2.StatsRequest())

    def list_collections(self) -> search_pb2.ListCollectionsResponse:
        return self.call(SEARCH, "ListCollections", search_pb2.ListCollectionsRequest())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()

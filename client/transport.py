"""gRPC channels to the embedder (round-robin over replicas) and the search service, and typed calls."""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.message import Message

from clipsearch import rpc_status
from clipsearch.envconfig import ConfigError
from clipsearch.v1 import embedder_pb2, search_pb2

from .errors import MODEL_MISMATCHES, LibraryLoading, ModelMismatch, ServiceError, ServiceUnavailable
from .retry import RetryPolicy
from .security import SERVER_NAME_VARIABLE, TOKEN_SETTING, ChannelSecurity
from .targets import EMBEDDER, SEARCH, check_addresses, embedder_target, endpoints, search_target

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)

_PROTO_SERVICES = {EMBEDDER: "clipsearch.v1.Embedder", SEARCH: "clipsearch.v1.Search"}


@dataclass(frozen=True)
class _Method(Generic[Request, Response]):
    """One unary method of a service, with its message types."""

    service: str
    name: str
    request: type[Request]
    response: type[Response]

    @property
    def path(self) -> str:
        return f"/{_PROTO_SERVICES[self.service]}/{self.name}"


_GET_MODEL_INFO = _Method(EMBEDDER, "GetModelInfo", embedder_pb2.GetModelInfoRequest, embedder_pb2.ModelInfo)
_EMBED_IMAGES = _Method(EMBEDDER, "EmbedImages", embedder_pb2.EmbedImagesRequest, embedder_pb2.EmbedImagesResponse)
_EMBED_TEXTS = _Method(EMBEDDER, "EmbedTexts", embedder_pb2.EmbedTextsRequest, embedder_pb2.EmbedTextsResponse)
_CLASSIFY = _Method(EMBEDDER, "Classify", embedder_pb2.ClassifyRequest, embedder_pb2.ClassifyResponse)
_UPSERT = _Method(SEARCH, "Upsert", search_pb2.UpsertRequest, search_pb2.UpsertResponse)
_QUERY = _Method(SEARCH, "Query", search_pb2.QueryRequest, search_pb2.QueryResponse)
_GET = _Method(SEARCH, "Get", search_pb2.GetRequest, search_pb2.GetResponse)
_LIST = _Method(SEARCH, "List", search_pb2.ListRequest, search_pb2.ListResponse)
_DELETE = _Method(SEARCH, "Delete", search_pb2.DeleteRequest, search_pb2.DeleteResponse)
_STATS = _Method(SEARCH, "Stats", search_pb2.StatsRequest, search_pb2.StatsResponse)
_BEGIN_REINDEX = _Method(SEARCH, "BeginReindex", search_pb2.BeginReindexRequest, search_pb2.ReindexStatus)
_STAGED_IDS = _Method(SEARCH, "StagedIds", search_pb2.StagedIdsRequest, search_pb2.StagedIdsResponse)
_FINISH_REINDEX = _Method(SEARCH, "FinishReindex", search_pb2.FinishReindexRequest, search_pb2.FinishReindexResponse)
_ABORT_REINDEX = _Method(SEARCH, "AbortReindex", search_pb2.AbortReindexRequest, search_pb2.AbortReindexResponse)
_LIST_COLLECTIONS = _Method(
    SEARCH, "ListCollections", search_pb2.ListCollectionsRequest, search_pb2.ListCollectionsResponse
)
_CUE_WRITE = _Method(SEARCH, "CueWrite", search_pb2.CueWriteRequest, search_pb2.CueWriteResponse)
_CUE_LIST = _Method(SEARCH, "CueList", search_pb2.CueListRequest, search_pb2.CueListResponse)
Method = _Method  # for modules that define calls of their own (client/libraries.py)

RETRY = RetryPolicy()


def _channel_options(service: str) -> list[tuple[str, Any]]:
    # round_robin sends consecutive calls to different ready replicas and skips ones that are down.
    config = {"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": [RETRY.method_config(service)]}
    return [
        ("grpc.service_config", json.dumps(config)),
        ("grpc.max_send_message_length", -1),
        ("grpc.max_receive_message_length", -1),
        *RETRY.channel_options(),
    ]


# A channel that keeps failing to connect for this long is reported as down without waiting for the
# whole connect timeout (which is there for a service that accepts connections slowly).
_FAIL_FAST_SECONDS = 2.0


def _wait_until_ready(
    channel: grpc.Channel,
    timeout: float,
    fail_fast: float | None = None,
    diagnose: Callable[[], str | None] | None = None,
) -> str:
    """Waits for the channel to connect; returns "" when ready, else why not.

    `diagnose` is asked once, at the first failed attempt, why connecting fails; a mismatch it names (TLS
    against plaintext, an untrusted certificate) does not pass with time, so the wait ends at once.
    """
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
                    if failing_since is None and diagnose is not None:
                        changed.release()  # the probe takes up to seconds; connectivity callbacks go on
                        try:
                            if diagnose():
                                return "connection failed"
                        finally:
                            changed.acquire()
                        now = time.monotonic()
                    failing_since = failing_since if failing_since is not None else now
                    if now - failing_since >= min(fail_fast or _FAIL_FAST_SECONDS, timeout):
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
        refused_wait: float | None = None,
    ) -> None:
        self.embedder_addresses = tuple(a.strip() for a in embedder_addresses if a.strip())
        self.search_address = search_address.strip()
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        # How long a call waits for a service that is not connected (refused, unreachable) before it is
        # reported as down; None: the call's whole deadline, riding over a restart.
        self.refused_wait = refused_wait
        self._states: dict[str, grpc.ChannelConnectivity] = {}
        if not self.embedder_addresses:
            raise ValueError("no embedder address given")
        # A malformed address is reported before anything connects.
        check_addresses(self.embedder_addresses)
        self._search_target = search_target(self.search_address)
        self.security = security or ChannelSecurity()
        # Reads the certificate files now, so a bad one is reported before anything connects.
        self._channel_factory = self.security.load()
        self._embedder_server_name = self._replicas_server_name()
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._ready: set[str] = set()
        self._closed = False
        # The embedder's model, once model_info() fetched it: every upsert names it, so the search service
        # refuses to mix it with another model's vectors.
        self.embedding_model: search_pb2.EmbeddingModel | None = None

    def _channel(self, service: str) -> grpc.Channel:
        with self._lock:
            if self._closed:
                raise RuntimeError("client is closed")
            channel = self._channels.get(service)
            if channel is None:
                target = embedder_target(self.embedder_addresses) if service == EMBEDDER else self._search_target
                channel = self._channel_factory.open(
                    target,
                    _channel_options(_PROTO_SERVICES[service]),
                    server_name=self._embedder_server_name if service == EMBEDDER else None,
                )
                self._channels[service] = channel
                if self.refused_wait is not None:
                    channel.subscribe(functools.partial(self._states.__setitem__, service), try_to_connect=False)
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
        found: list[str | None] = []

        def diagnose() -> str | None:
            found.append(self._diagnose(service))
            return found[-1]

        failure = _wait_until_ready(channel, self.connect_timeout, self.refused_wait, diagnose)
        if failure:
            hint = found[-1] if found and found[-1] else self._diagnose(service)
            raise ServiceUnavailable(service, self.address(service), failure, hint=hint)
        self._ready.add(service)
        return channel

    def call(self, method: _Method[Request, Response], request: Request, timeout: float | None = None) -> Response:
        """Calls a method of a service, raising ServiceUnavailable or ServiceError on failure.

        The call waits for the channel to be ready and is retried by RETRY within its deadline.
        """
        channel = self.ensure_ready(method.service)
        rpc: grpc.UnaryUnaryMultiCallable[Request, Response] = channel.unary_unary(
            method.path,
            request_serializer=method.request.SerializeToString,
            response_deserializer=method.response.FromString,
        )
        start = time.monotonic()
        deadline = start + (timeout or self.timeout)
        refused_wait = self.refused_wait
        if refused_wait is None:
            try:
                return RETRY.run(lambda seconds: rpc(request, timeout=seconds, wait_for_ready=True), deadline)
            except grpc.RpcError as exc:
                raise self.translate(method.service, exc) from None

        def attempt(seconds: float) -> Response:
            # Not connected now: fail at once (no wait_for_ready) and retry only within refused_wait.
            if self._states.get(method.service) == grpc.ChannelConnectivity.READY:
                return rpc(request, timeout=seconds, wait_for_ready=False)
            left = start + refused_wait - time.monotonic()
            return rpc(request, timeout=max(0.05, min(seconds, left)), wait_for_ready=False)

        try:
            return RETRY.run(attempt, deadline, unavailable_until=start + refused_wait)
        except grpc.RpcError as exc:
            state = self._states.get(method.service)
            lost = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            if lost and state != grpc.ChannelConnectivity.READY:
                refused = state == grpc.ChannelConnectivity.TRANSIENT_FAILURE
                why = "connection refused or failed" if refused else "not connected"
                raise ServiceUnavailable(
                    method.service, self.address(method.service), f"{why} ({exc.code().name})"
                ) from None
            raise self.translate(method.service, exc) from None

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
        info = rpc_status.error_info(exc)  # the status details, parsed once
        reason = None if info is None else str(info.reason)
        if code == grpc.StatusCode.UNAVAILABLE:
            if service == SEARCH and reason == rpc_status.INDEX_LOADING:
                return LibraryLoading(self.address(service), details)
            return ServiceUnavailable(service, self.address(service), f"{code.name}: {details}")
        if reason in MODEL_MISMATCHES and service == SEARCH:
            return ModelMismatch(self.address(service), details, reason=reason)
        if code == grpc.StatusCode.UNAUTHENTICATED:
            remedy = (
                f"the token in {TOKEN_SETTING} is not the services' token"
                if self.security.token
                else f"set {TOKEN_SETTING} to the services' token"
            )
            details = f"authentication failed: {details}; {remedy}"
        metadata = {} if info is None else {str(k): str(v) for k, v in info.metadata.items()}
        return ServiceError(service, self.address(service), code, details, reason=reason, metadata=metadata)

    # Typed shorthands for the calls the client makes.
    def model_info(self) -> embedder_pb2.ModelInfo:
        info = self.call(_GET_MODEL_INFO, embedder_pb2.GetModelInfoRequest())
        self.embedding_model = search_pb2.EmbeddingModel(
            model_id=info.model_id, family=info.family, dimension=info.dimension, fingerprint=info.fingerprint
        )
        return info

    def embed_images(
        self, request: embedder_pb2.EmbedImagesRequest, timeout: float | None = None
    ) -> embedder_pb2.EmbedImagesResponse:
        return self.call(_EMBED_IMAGES, request, timeout)

    def embed_texts(self, request: embedder_pb2.EmbedTextsRequest) -> embedder_pb2.EmbedTextsResponse:
        return self.call(_EMBED_TEXTS, request)

    def classify(self, request: embedder_pb2.ClassifyRequest) -> embedder_pb2.ClassifyResponse:
        return self.call(_CLASSIFY, request)

    def upsert(self, request: search_pb2.UpsertRequest) -> search_pb2.UpsertResponse:
        if self.embedding_model is not None and not request.HasField("model"):
            request.model.CopyFrom(self.embedding_model)
        return self.call(_UPSERT, request)

    def query(self, request: search_pb2.QueryRequest) -> search_pb2.QueryResponse:
        return self.call(_QUERY, request)

    def get(self, request: search_pb2.GetRequest) -> search_pb2.GetResponse:
        return self.call(_GET, request)

    def list(self, request: search_pb2.ListRequest) -> search_pb2.ListResponse:
        return self.call(_LIST, request)

    def delete(self, request: search_pb2.DeleteRequest) -> search_pb2.DeleteResponse:
        return self.call(_DELETE, request)

    def stats(self) -> search_pb2.StatsResponse:
        return self.call(_STATS, search_pb2.StatsRequest())

    def begin_reindex(self, request: search_pb2.BeginReindexRequest) -> search_pb2.ReindexStatus:
        return self.call(_BEGIN_REINDEX, request)

    def staged_ids(self, request: search_pb2.StagedIdsRequest) -> search_pb2.StagedIdsResponse:
        return self.call(_STAGED_IDS, request)

    def finish_reindex(self, request: search_pb2.FinishReindexRequest) -> search_pb2.FinishReindexResponse:
        return self.call(_FINISH_REINDEX, request)

    def abort_reindex(self) -> search_pb2.AbortReindexResponse:
        return self.call(_ABORT_REINDEX, search_pb2.AbortReindexRequest())

    def list_collections(self) -> search_pb2.ListCollectionsResponse:
        return self.call(_LIST_COLLECTIONS, search_pb2.ListCollectionsRequest())

    def cue_write(self, request: search_pb2.CueWriteRequest) -> search_pb2.CueWriteResponse:
        return self.call(_CUE_WRITE, request)

    def cue_list(self, request: search_pb2.CueListRequest) -> search_pb2.CueListResponse:
        return self.call(_CUE_LIST, request)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()

"""Where the client finds the services and how it secures its calls, from the environment.

  EMBEDDER_ADDR               embedder replicas, comma-separated HOST:PORT, or one gRPC target such as
                              dns:///embedder:50051 (default 127.0.0.1:50051)
  SEARCH_ADDR                 the search service (default 127.0.0.1:50052)
  CLIPSEARCH_TIMEOUT          deadline of each call, seconds (default 60)
  CLIPSEARCH_CONNECT_TIMEOUT  how long a service may take to accept a connection, seconds (default 10)
  CLIPSEARCH_AUTH_TOKEN       the services' shared token, sent as `authorization: Bearer <token>` on every
                              call; or CLIPSEARCH_AUTH_TOKEN_FILE, a file holding it (the CLI also takes
                              --token-file; never the token itself on a command line, where `ps` shows it)
  CLIPSEARCH_TLS_CA           PEM CA certificate(s) that signed the services' certificates; setting it turns
                              TLS on for both services (CLI: --tls-ca)
  CLIPSEARCH_TLS_CERT         PEM client certificate, for services that require one (mutual TLS: their
                              *_TLS_CLIENT_CA signed it); with CLIPSEARCH_TLS_KEY, its unencrypted key
                              (CLI: --tls-cert, --tls-key)
  CLIPSEARCH_TLS_SERVER_NAME  the name the services' certificates must hold, where it differs from the host
                              dialled (default: that host; it must be the same for replicas listed by address)

The services read the same token variables, and EMBEDDER_TLS_* / SEARCH_TLS_* for their side of TLS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from clipsearch.envconfig import env_float, env_str, environ

from .security import ChannelSecurity
from .targets import is_explicit_target

DEFAULT_EMBEDDER_ADDR = "127.0.0.1:50051"
DEFAULT_SEARCH_ADDR = "127.0.0.1:50052"


def split_addresses(value: str) -> tuple[str, ...]:
    """ "a:1, b:2" -> ("a:1", "b:2"); an explicit gRPC target ("ipv4:10.0.0.1:1,10.0.0.2:1") stays whole."""
    if is_explicit_target(value.partition(",")[0]):
        return (value.strip(),)
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class ClientConfig:
    """The services' addresses, call deadlines, and TLS and token settings (see the module docstring)."""

    embedder_addresses: tuple[str, ...] = (DEFAULT_EMBEDDER_ADDR,)
    search_address: str = DEFAULT_SEARCH_ADDR
    timeout: float = 60.0
    connect_timeout: float = 10.0
    token: str | None = field(default=None, repr=False)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_server_name: str | None = None
    # How long a call waits for a service it cannot connect to before reporting it down; None: the whole
    # deadline (a batch job rides over a restart; a page reports a refused connection at once).
    refused_wait: float | None = None

    @property
    def security(self) -> ChannelSecurity:
        return ChannelSecurity(
            ca_file=self.tls_ca,
            cert_file=self.tls_cert,
            key_file=self.tls_key,
            server_name=self.tls_server_name,
            token=self.token,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientConfig:
        env = environ() if env is None else env
        security = ChannelSecurity.from_env(env)
        return cls(
            embedder_addresses=split_addresses(env_str(env, "EMBEDDER_ADDR", DEFAULT_EMBEDDER_ADDR))
            or (DEFAULT_EMBEDDER_ADDR,),
            search_address=env_str(env, "SEARCH_ADDR", DEFAULT_SEARCH_ADDR),
            timeout=env_float(env, "CLIPSEARCH_TIMEOUT", 60.0, minimum=0.1),
            connect_timeout=env_float(env, "CLIPSEARCH_CONNECT_TIMEOUT", 10.0, minimum=0.1),
            token=security.token,
            tls_ca=security.ca_file,
            tls_cert=security.cert_file,
            tls_key=security.key_file,
            tls_server_name=security.server_name,
        )

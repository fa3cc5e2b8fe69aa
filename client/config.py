"""Where the client finds the services, from the environment."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from clipsearch.envconfig import env_float, env_str, environ

from .transport import is_explicit_target

DEFAULT_EMBEDDER_ADDR = "127.0.0.1:50051"
DEFAULT_SEARCH_ADDR = "127.0.0.1:50052"


def split_addresses(value: str) -> tuple[str, ...]:
    """"a:1, b:2" -> ("a:1", "b:2"); an explicit gRPC target ("ipv4:10.0.0.1:1,10.0.0.2:1") stays whole."""
    if is_explicit_target(value.partition(",")[0]):
        return (value.strip(),)
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class ClientConfig:
    """EMBEDDER_ADDR (comma-separated replicas, or one gRPC target such as dns:///embedder:50051), SEARCH_ADDR
    and call deadlines."""

    embedder_addresses: tuple[str, ...] = (DEFAULT_EMBEDDER_ADDR,)
    search_address: str = DEFAULT_SEARCH_ADDR
    timeout: float = 60.0
    connect_timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientConfig:
        env = environ() if env is None else env
        return cls(
            embedder_addresses=split_addresses(env_str(env, "EMBEDDER_ADDR", DEFAULT_EMBEDDER_ADDR))
            or (DEFAULT_EMBEDDER_ADDR,),
            search_address=env_str(env, "SEARCH_ADDR", DEFAULT_SEARCH_ADDR),
            timeout=env_float(env, "CLIPSEARCH_TIMEOUT", 60.0, minimum=0.1),
            connect_timeout=env_float(env, "CLIPSEARCH_CONNECT_TIMEOUT", 10.0, minimum=0.1),
        )

"""The lines serve prints once everything is serving: where the services are and how to reach them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clipsearch.auth import TOKEN_FILE_VARIABLE, TOKEN_VARIABLE
from clipsearch.urls import redact_url

from .config import ServeConfig

if TYPE_CHECKING:
    from clipsearch.v1.embedder_pb2 import ModelInfo


def banner(config: ServeConfig, info: ModelInfo) -> str:
    embedders = config.embedder_addresses()
    lines = ["clipsearch is serving:"]
    if config.redis_port is not None:
        lines.append(f"  redis     {config.redis_url}  (data in {config.data_dir / 'redis'})")
    else:
        lines.append(f"  redis     {redact_url(config.redis_url)}  (REDIS_URL)")
    model = f"{info.model_id}, {info.dimension}-d, {info.dtype} on {info.device}"
    for address in embedders:
        lines.append(f"  embedder  {address}  ({model})")
    lines.append(f"  search    {config.search_address()}")
    web_url = config.web_url()
    if web_url is not None:
        lines.append(f"  web       {web_url}  (open it in a browser)")
    if config.watch:
        lines.append("  indexer   keeps the libraries indexed (clipsearch library add PATH)")
    security = config.security
    transport = "plaintext" if not security.tls else ("mutual TLS" if config.mutual_tls else "TLS")
    lines.append(f"  security  {transport}, {'bearer token required' if security.token else 'no token'}")
    lines.append("Point the client at them (in another shell):")
    # Addresses and paths only, never the token itself.
    exports = config.client_exports()
    lines += [f"  export {name}={value}" for name, value in exports.items()]
    if security.token and TOKEN_FILE_VARIABLE not in exports:
        lines.append(f"  and the same {TOKEN_VARIABLE} as here")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)

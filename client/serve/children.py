"""What serve runs: the child specs of Redis, the embedder replicas and the search service."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from .config import ServeConfig
from .probes import AliveProbe, GrpcProbe, RedisProbe, WebProbe
from .process import SERVICE_GRACE_SECONDS, ChildSpec

# The search service's stop may rewrite Redis's append-only file (SEARCH_INDEX_AFTER_LOAD), waiting up to
# search_service.redis_server.AOF_REWRITE_TIMEOUT_SECONDS for it: cut short, the next start is slower.
SEARCH_STOP_SECONDS = SERVICE_GRACE_SECONDS + 300.0


def _child_env(config: ServeConfig, overrides: Mapping[str, str]) -> dict[str, str]:
    env = dict(config.env)
    env["PYTHONUNBUFFERED"] = "1"
    # Run from a source checkout, the children import the same code as serve.
    root = Path(__file__).resolve().parents[2]
    if (root / "embedder_service").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    env.update(overrides)
    return env


def redis_spec(config: ServeConfig) -> ChildSpec:
    assert config.redis_port is not None
    redis_dir = config.data_dir / "redis"
    return ChildSpec(
        name="redis",
        argv=(
            sys.executable,
            "-m",
            "search_service.redis_server",
            "--data",
            str(redis_dir),
            "--port",
            str(config.redis_port),
        ),
        env=_child_env(config, {}),
        address=config.redis_url,
        make_probe=lambda: RedisProbe("127.0.0.1", config.redis_port or 0),
    )


def embedder_specs(config: ServeConfig) -> list[ChildSpec]:
    overrides = {"EMBEDDER_HOST": config.host}
    if config.model:
        overrides["CLIP_MODEL"] = config.model
    if config.dtype:
        overrides["EMBEDDER_DTYPE"] = config.dtype
    if config.runtime:
        overrides["EMBEDDER_RUNTIME"] = config.runtime
    if "EMBEDDER_THREADS" not in config.env:
        # Replicas share the cores rather than each claiming all of them.
        overrides["EMBEDDER_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(config.embedder_ports)))
    specs = []
    for number, (port, address) in enumerate(zip(config.embedder_ports, config.embedder_addresses(), strict=False), 1):
        name = "embedder" if len(config.embedder_ports) == 1 else f"embedder-{number}"
        specs.append(
            ChildSpec(
                name=name,
                argv=(sys.executable, "-m", "embedder_service"),
                env=_child_env(config, {**overrides, "EMBEDDER_PORT": str(port)}),
                address=address,
                make_probe=functools.partial(GrpcProbe, address, "embedder", config.security),
            )
        )
    return specs


def search_spec(config: ServeConfig, dimension: int) -> ChildSpec:
    address = config.search_address()
    return ChildSpec(
        name="search",
        argv=(sys.executable, "-m", "search_service"),
        env=_child_env(
            config,
            {
                "SEARCH_HOST": config.host,
                "SEARCH_PORT": str(config.search_port),
                "REDIS_URL": config.redis_url,
                # serve's own Redis, stopped right after the service: a clean stop readies it for a quick start.
                "SEARCH_REDIS_OWNED": "false" if config.redis_port is None else "true",
                "SEARCH_DATA_DIR": str(config.data_dir / "redis"),
                # The index must hold the vectors of the model the embedder serves.
                "SEARCH_DIM": str(dimension),
            },
        ),
        address=address,
        make_probe=lambda: GrpcProbe(address, "search", config.security),
        hint=(
            f". Under clipsearch serve SEARCH_DIM follows the model ({dimension}): for this model, use "
            "another --data-dir, or name a new index with SEARCH_INDEX"
        ),
        stop_seconds=SEARCH_STOP_SECONDS,
    )


def web_spec(config: ServeConfig) -> ChildSpec:
    """`clipsearch web` on --web-port, a client of the services serve runs, with serve's environment (the
    token, TLS client settings and the web password)."""
    assert config.web_port is not None
    url = config.web_url()
    assert url is not None
    exports = config.client_exports()
    return ChildSpec(
        name="web",
        argv=(
            sys.executable,
            "-m",
            "client.web",
            "--host",
            config.host,
            "--port",
            str(config.web_port),
            "--embedder",
            exports["EMBEDDER_ADDR"],
            "--search",
            exports["SEARCH_ADDR"],
            *config.web_args,
        ),
        env=_child_env(config, exports),
        address=url,
        make_probe=lambda: WebProbe(url),
    )


def indexer_spec(config: ServeConfig) -> ChildSpec:
    """The indexer (`clipsearch watch`): keeps the libraries indexed, a client of the services serve runs."""
    exports = config.client_exports()
    return ChildSpec(
        name="indexer",
        argv=(
            sys.executable,
            "-m",
            "client.indexer",
            "--embedder",
            exports["EMBEDDER_ADDR"],
            "--search",
            exports["SEARCH_ADDR"],
        ),
        env=_child_env(config, exports),
        address="the libraries",
        make_probe=AliveProbe,
    )

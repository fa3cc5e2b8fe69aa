"""What `clipsearch serve` runs: ServeConfig, resolved from the options and the environment."""

from __future__ import annotations

import argparse
import importlib.util
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from clipsearch.auth import TOKEN_FILE_VARIABLE
from clipsearch.envconfig import ConfigError
from clipsearch.tls import ServerTls

from .. import weboptions
from ..security import CA_VARIABLE, CERT_VARIABLE, KEY_VARIABLE, SERVER_NAME_VARIABLE, ChannelSecurity
from .errors import EXIT_USAGE, ServeError
from .ports import plan_ports, port_is_free, reserve_free_ports
from .ready_file import check_ready_path

# Modules the children import, and the extra that provides each.
REQUIRED_MODULES = (
    ("torch", "embedder"),
    ("transformers", "embedder"),
    ("redis", "search"),
    ("grpc_health", "embedder,search"),
    ("embedder_service", "embedder"),
    ("search_service", "search"),
)

SERVICE_PREFIXES = ("EMBEDDER", "SEARCH")

log = logging.getLogger("clipsearch.serve")


@dataclass(frozen=True)
class ServeConfig:
    """What `clipsearch serve` runs, resolved from the command line and the environment."""

    host: str
    embedder_ports: tuple[int, ...]
    search_port: int
    redis_port: int | None  # None: REDIS_URL names an external Redis
    redis_url: str
    data_dir: Path
    model: str | None
    dtype: str | None
    runtime: str | None
    start_timeout: float
    env: Mapping[str, str]
    # How serve's own calls reach the services: their token and, when they use TLS, the client side of it.
    security: ChannelSecurity = field(default_factory=ChannelSecurity)
    # Where serve says, in JSON, that it is serving and at which addresses (--ready-file).
    ready_file: Path | None = None
    # The web page's port; None: no page (--no-web, or the web extra is not installed).
    web_port: int | None = None
    # The page's library options, passed on to it (--library-root, --max-upload-video, --max-upload-photo).
    web_args: tuple[str, ...] = ()
    # Run the indexer that keeps the libraries indexed (not with --no-watch).
    watch: bool = True

    @property
    def token(self) -> str | None:
        """CLIPSEARCH_AUTH_TOKEN[_FILE]: the services require it on every call but health checks."""
        return self.security.token

    @property
    def probe_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::", "[::]") else self.host

    @property
    def mutual_tls(self) -> bool:
        """The services require client certificates."""
        return any(self.env.get(f"{prefix}_TLS_CLIENT_CA", "").strip() for prefix in SERVICE_PREFIXES)

    def embedder_addresses(self) -> list[str]:
        return [f"{self.probe_host}:{port}" for port in self.embedder_ports]

    def search_address(self) -> str:
        return f"{self.probe_host}:{self.search_port}"

    def web_url(self) -> str | None:
        """The page's address as a browser on this machine opens it; None without the page."""
        if self.web_port is None:
            return None
        host = self.probe_host
        return f"http://[{host}]:{self.web_port}/" if ":" in host else f"http://{host}:{self.web_port}/"

    def client_exports(self) -> dict[str, str]:
        """The variables a client in another shell sets to reach the services: their addresses and, where
        the services need them, the paths of the CA, the client certificate and the token file (never the
        token itself)."""
        security = self.security
        exports = {"EMBEDDER_ADDR": ",".join(self.embedder_addresses()), "SEARCH_ADDR": self.search_address()}
        paths = [(CA_VARIABLE, security.ca_file)]
        if self.mutual_tls:
            paths += [(CERT_VARIABLE, security.cert_file), (KEY_VARIABLE, security.key_file)]
        token_file = self.env.get(TOKEN_FILE_VARIABLE, "").strip()
        paths.append((TOKEN_FILE_VARIABLE, Path(token_file) if token_file else None))
        exports.update({name: str(path.expanduser().resolve()) for name, path in paths if path is not None})
        if security.server_name:
            exports[SERVER_NAME_VARIABLE] = security.server_name
        return exports


def default_data_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".local" / "share") / "clipsearch"


def missing_modules(find: Callable[[str], object] = importlib.util.find_spec) -> list[tuple[str, str]]:
    """The (module, extra) pairs of REQUIRED_MODULES that cannot be imported."""
    missing = []
    for module, extra in REQUIRED_MODULES:
        try:
            found = find(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append((module, extra))
    return missing


def _check_port(value: int, option: str) -> None:
    if not 0 <= value <= 65535:
        raise ServeError(f"{option} {value} is not a port number (0 to 65535)", EXIT_USAGE)


def build_config(args: argparse.Namespace, env: Mapping[str, str]) -> ServeConfig:
    """Checks the options and picks the ports; raises ServeError with a one-line message."""
    if not 1 <= args.embedders <= 64:
        raise ServeError(f"--embedders {args.embedders} is out of range (1 to 64)", EXIT_USAGE)
    if args.start_timeout <= 0:
        raise ServeError("--start-timeout must be positive", EXIT_USAGE)
    for value, option in (
        (args.embedder_port, "--embedder-port"),
        (args.search_port, "--search-port"),
        (args.redis_port, "--redis-port"),
    ):
        _check_port(value, option)
    try:
        reserve_free_ports(args.host, 1)
    except OSError as error:
        raise ServeError(
            f"--host {args.host} is not an address this machine can listen on: {error.strerror or error}", EXIT_USAGE
        ) from None
    ready_file = None if args.ready_file is None else check_ready_path(args.ready_file)
    try:
        security = serve_security(env)
    except ConfigError as error:
        raise ServeError(str(error), EXIT_USAGE) from None
    external_redis = env.get("REDIS_URL", "").strip()
    embedder_ports, search_port, redis_port = plan_ports(
        args.embedder_port,
        args.embedders,
        args.search_port,
        None if external_redis else args.redis_port,
        lambda count: reserve_free_ports(args.host, count),
    )
    named = [(p, "--embedder-port") for p in embedder_ports if args.embedder_port]
    named += [(search_port, "--search-port")] if args.search_port else []
    named += [(redis_port, "--redis-port")] if redis_port and args.redis_port else []
    for port, option in named:
        if not port_is_free(args.host, port):
            raise ServeError(
                f"port {port} is in use (another clipsearch serve?); choose another with {option} (0 picks a free one)",
                EXIT_USAGE,
            )
    web_port = _plan_web(args, env, security.token, [*embedder_ports, search_port, redis_port])
    data_dir = (args.data_dir or default_data_dir(env)).expanduser().resolve()
    return ServeConfig(
        host=args.host,
        embedder_ports=embedder_ports,
        search_port=search_port,
        redis_port=redis_port,
        redis_url=external_redis or f"redis://127.0.0.1:{redis_port}",
        data_dir=data_dir,
        model=args.model,
        dtype=args.dtype,
        runtime=args.runtime,
        start_timeout=args.start_timeout,
        env=dict(env),
        security=security,
        ready_file=ready_file,
        web_port=web_port,
        web_args=weboptions.library_argv(args) if hasattr(args, "library_root") else (),
        watch=not getattr(args, "no_watch", False),
    )


def web_missing(find: Callable[[str], object] = importlib.util.find_spec) -> bool:
    """Whether the web extra (FastAPI, uvicorn) is missing."""
    try:
        return any(find(module) is None for module in ("fastapi", "uvicorn", "multipart"))
    except (ImportError, ValueError):
        return True


def _plan_web(
    args: argparse.Namespace, env: Mapping[str, str], token: str | None, taken: list[int | None]
) -> int | None:
    """The web page's port, or None when it does not run; ServeError for a setting that cannot work."""
    if args.no_web:
        return None
    _check_port(args.web_port, "--web-port")
    if web_missing():
        log.warning("the web page is off: it needs the web extra (pip install 'clipsearch[web]')")
        return None
    from client.web.security import binding_password, resolve_password

    try:
        binding_password(args.host, resolve_password(env, None, token), token, insecure=False)
    except ConfigError as error:
        raise ServeError(f"the web page: {error}; or --no-web", EXIT_USAGE) from None
    if args.web_port == 0:
        return next(p for p in reserve_free_ports(args.host, len(taken) + 1) if p not in taken)
    if args.web_port in taken or not port_is_free(args.host, args.web_port):
        raise ServeError(
            f"port {args.web_port} is in use (another clipsearch serve or web?); choose another with --web-port "
            "(0 picks a free one), or --no-web",
            EXIT_USAGE,
        )
    return int(args.web_port)


def serve_security(env: Mapping[str, str]) -> ChannelSecurity:
    """How serve calls its children, which read the same environment: a client like any other, with
    CLIPSEARCH_TLS_CA (and CLIPSEARCH_TLS_CERT/_KEY when they require client certificates) where they use TLS.
    Raises ServeError or ConfigError with a one-line message naming what to set."""
    servers = {prefix: ServerTls.from_env(env, prefix) for prefix in SERVICE_PREFIXES}
    security = ChannelSecurity.from_env(env)
    with_tls = [prefix for prefix, tls in servers.items() if tls is not None]
    if len(with_tls) == 1:
        (on,) = with_tls
        (off,) = set(SERVICE_PREFIXES) - {on}
        raise ServeError(
            f"{on}_TLS_CERT is set but {off}_TLS_CERT is not: under clipsearch serve both services "
            "use TLS or neither, as a client speaks TLS to both or to neither",
            EXIT_USAGE,
        )
    if not with_tls:
        if security.tls:
            raise ServeError(
                f"{CA_VARIABLE} is set but the services run without TLS: set EMBEDDER_TLS_CERT, "
                f"EMBEDDER_TLS_KEY, SEARCH_TLS_CERT and SEARCH_TLS_KEY, or unset {CA_VARIABLE}",
                EXIT_USAGE,
            )
    elif not security.tls:
        raise ServeError(
            f"the services use TLS (EMBEDDER_TLS_CERT, SEARCH_TLS_CERT): set {CA_VARIABLE} to the CA "
            "that signed their certificates, for serve's own readiness checks as for any client",
            EXIT_USAGE,
        )
    mutual = [f"{prefix}_TLS_CLIENT_CA" for prefix, tls in servers.items() if tls is not None and tls.mutual]
    if mutual and not security.mutual:
        raise ServeError(
            f"the services require client certificates ({', '.join(mutual)}): set {CERT_VARIABLE} "
            f"and {KEY_VARIABLE} to one that CA signed, for serve's own calls",
            EXIT_USAGE,
        )
    security.load()  # reads the files now: a bad one is a start-up error, not a child that never gets ready
    return security

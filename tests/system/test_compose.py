"""docker-compose.yml and the Dockerfiles agree with the code: modules, env names, ports, installs, health."""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import importlib
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clipsearch.v1 import embedder_pb2, search_pb2

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
HEALTH_SCRIPT = ROOT / "docker" / "grpc_health_check.py"
PROJECT_PACKAGES = ("clipsearch", "client", "embedder_service", "search_service")

# The compose services built from this repository: the package each runs and the gRPC service it serves.
GRPC_SERVICES = {
    "embedder": ("embedder_service", embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name),
    "search": ("search_service", search_pb2.DESCRIPTOR.services_by_name["Search"].full_name),
}
# The client image runs the CLI and the web page (`clipsearch web`, the web extra); the embedder image has
# OpenVINO and ONNX Runtime (the fast extra, which includes the embedder's) for EMBEDDER_RUNTIME=auto.
EXTRAS = {"embedder": "fast", "search": "search", "cli": "web"}
# Services that run the client image with a command of its own: the page and the indexer.
CLI_IMAGE_SERVICES = ("web", "indexer")
# Variables read by libraries rather than by the project, and the module whose source reads each.
LIBRARY_ENV = {"HF_HOME": "huggingface_hub.constants"}
# Variables read by Python and pip themselves.
INTERPRETER_ENV = {
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "PIP_ROOT_USER_ACTION",
}


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


COMPOSE = load_compose()
SERVICES: dict = COMPOSE["services"]


def interpolate(value: object) -> str:
    """A compose value as `docker compose` sees it with no variables set: ${X:-default} gives default."""
    text = str(value)
    text = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", text.replace("$$", "\0"))
    return text.replace("\0", "$")


def compose_env(service: str) -> dict[str, str]:
    raw = SERVICES[service].get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {name: interpolate(value) for name, value in raw.items()}


@dataclasses.dataclass
class Dockerfile:
    path: Path
    instructions: list[tuple[str, str]]

    def all(self, keyword: str) -> list[str]:
        return [args for instruction, args in self.instructions if instruction == keyword]

    def one(self, keyword: str) -> str:
        found = self.all(keyword)
        assert len(found) == 1, f"{self.path.name}: expected one {keyword}, found {len(found)}"
        return found[0]

    def arg_defaults(self) -> dict[str, str]:
        return dict(arg.split("=", 1) for arg in self.all("ARG") if "=" in arg)

    def env(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for args in self.all("ENV"):
            for name, value in re.findall(r"(\w+)=(\S+)", args):
                names[name] = value
        return names


def parse_dockerfile(path: Path) -> Dockerfile:
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += " " + stripped[:-1] if stripped.endswith("\\") else " " + stripped
        if stripped.endswith("\\"):
            continue
        keyword, _, args = pending.strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, f"{path}: a line continuation runs past the end of the file"
    return Dockerfile(path, instructions)


def dockerfile_of(service: str) -> Dockerfile:
    build = SERVICES[service]["build"]
    context = ROOT / build.get("context", ".")
    return parse_dockerfile(context / build.get("dockerfile", "Dockerfile"))


def exec_form(args: str) -> list[str]:
    value = yaml.safe_load(args)  # exec form is a JSON array, which YAML reads too
    assert isinstance(value, list), f"use the exec form (a JSON array) so signals reach the process: {args}"
    return value


def container_ports(service: str) -> set[int]:
    ports = {int(str(port)) for port in SERVICES[service].get("expose", [])}
    for port in SERVICES[service].get("ports", []):
        ports.add(int(str(port).rsplit(":", 1)[-1].split("/")[0]))
    return ports


def source_files(packages: tuple[str, ...]) -> Iterator[Path]:
    for package in packages:
        yield from (ROOT / package).rglob("*.py")


def config_class(package: str) -> Any:
    """The service's configuration: the dataclass in PACKAGE.config with a from_env classmethod."""
    module = importlib.import_module(f"{package}.config")
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and dataclasses.is_dataclass(value)
        and hasattr(value, "from_env")
        and value.__module__ == module.__name__
    ]
    assert len(found) == 1, f"{package}.config: expected one dataclass with from_env, found {found}"
    return found[0]


# ---------------------------------------------------------------------------------------------------


def compose_command() -> list[str] | None:
    """`docker compose` (the plugin) or a stand-alone Compose v2 binary, if either is installed."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        version = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, check=False)
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2"):
            return command
    return None


def test_docker_compose_validates_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("Docker Compose v2 is not installed (neither `docker compose` nor `docker-compose`)")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "--profile", "cli", "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    # --quiet prints nothing for a valid file (some wrappers lose the exit status, so both are checked).
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_redis_has_the_query_engine_persistence_and_a_healthcheck() -> None:
    redis = SERVICES["redis"]
    pinned = r"redis:8\.\d+\.\d+(-\w+)?|redis/redis-stack-server:\d+\.\d+\.\d+-v\d+"
    assert re.fullmatch(pinned, redis["image"]), (
        f"pin Redis 8 (query engine built in) or redis-stack-server to an exact version: {redis['image']}"
    )
    command = [str(part) for part in redis["command"]]
    assert command[command.index("--appendonly") + 1] == "yes"
    volume = next(v.split(":")[0] for v in redis["volumes"] if v.split(":")[1] == "/data")
    assert volume in COMPOSE["volumes"], "Redis's /data must be a named volume"
    test = " ".join(redis["healthcheck"]["test"])
    assert "search" in test, "the healthcheck must see the query engine loaded, not only PING"
    assert SERVICES["search"]["depends_on"]["redis"]["condition"] == "service_healthy"
    url = compose_env("search")["REDIS_URL"]
    assert re.fullmatch(r"rediss?://redis:6379(/\d+)?", url), url


@pytest.mark.parametrize("service", sorted(GRPC_SERVICES))
def test_service_runs_its_python_module(service: str) -> None:
    package, _ = GRPC_SERVICES[service]
    dockerfile = dockerfile_of(service)
    command = SERVICES[service].get("command") or exec_form(dockerfile.one("CMD"))
    assert command[:2] == ["python", "-m"], command
    assert command[2] == package, command
    assert importlib.util.find_spec(f"{package}.__main__") is not None, f"python -m {package} has no __main__"


def test_cli_runs_the_installed_console_script() -> None:
    dockerfile = dockerfile_of("cli")
    assert exec_form(dockerfile.one("ENTRYPOINT")) == ["clipsearch"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["clipsearch"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize("service", CLI_IMAGE_SERVICES)
def test_the_page_and_the_indexer_run_commands_of_the_client_image(service: str) -> None:
    from client.cli import web as web_command
    from client.cli.main import build_parser

    spec = SERVICES[service]
    assert spec["image"] == SERVICES["cli"]["image"] and "build" not in spec, "the cli service builds the image"
    assert set(spec["depends_on"]) == {"embedder", "search"}
    args = build_parser(web_module=web_command).parse_args(spec["command"])
    assert args.command == {"web": "web", "indexer": "watch"}[service]
    mounts = {interpolate(volume).split(":")[1]: interpolate(volume) for volume in spec["volumes"]}
    assert "/media" in mounts, "the page plays and the indexer reads the files under /media"
    if service == "web":
        assert args.host == "0.0.0.0" and args.library_root == [Path("/media")]
        assert not mounts["/media"].endswith(":ro"), "the page uploads into the libraries under /media"
        assert container_ports(service) == {args.port}
        assert compose_env(service)["CLIPSEARCH_WEB_PASSWORD"] == "", "the password comes from the user's env"


def test_the_page_in_a_container_refuses_to_start_without_a_password() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPSEARCH_")}
    done = subprocess.run(
        [sys.executable, "-m", "client", *SERVICES["web"]["command"], "--port", "0"],
        env=env | compose_env("web") | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "password" in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("service", ["embedder", "search", "cli", "web", "indexer"])
def test_every_variable_set_is_read_by_the_code(service: str) -> None:
    packages = ("clipsearch", GRPC_SERVICES[service][0] if service in GRPC_SERVICES else "client")
    read = {
        name for path in source_files(packages) for name in re.findall(r"[\"']([A-Z][A-Z0-9_]+)[\"']", path.read_text())
    }
    image = "cli" if service in CLI_IMAGE_SERVICES else service
    names = set(compose_env(service)) | set(dockerfile_of(image).env())
    assert names, f"{service} sets no variables"
    for name in sorted(names - INTERPRETER_ENV):
        if name in LIBRARY_ENV:
            spec = importlib.util.find_spec(LIBRARY_ENV[name])
            assert spec and spec.origin and f'"{name}"' in Path(spec.origin).read_text(), (
                f"{name}: not read by {LIBRARY_ENV[name]}"
            )
        else:
            assert name in read, f"{service} sets {name}, which no module of {packages} reads"


@pytest.mark.parametrize("service", sorted(GRPC_SERVICES))
def test_ports_and_addresses_match_the_code(service: str) -> None:
    package, _ = GRPC_SERVICES[service]
    config_type = config_class(package)
    default = config_type.from_env({})
    in_compose = config_type.from_env(compose_env(service))
    in_image = config_type.from_env(dockerfile_of(service).env())
    assert in_compose.port == in_image.port == default.port
    assert in_compose.host == in_image.host == "0.0.0.0", "in a container, listen on all interfaces"
    assert default.host == "127.0.0.1", "outside a container the default stays on loopback"
    assert container_ports(service) == {default.port}
    assert dockerfile_of(service).one("EXPOSE") == str(default.port)


def test_embedder_scales_and_clients_reach_every_replica() -> None:
    from client import ClientConfig
    from client.targets import embedder_target

    embedder = SERVICES["embedder"]
    assert "container_name" not in embedder, "a fixed container name prevents --scale"
    for port in embedder.get("ports", []):
        host_part = str(port).rsplit(":", 1)[0]
        host_port = host_part.rsplit(":", 1)[-1] if ":" in host_part else ""
        assert host_port == "", f"a fixed host port prevents --scale: {port}"
    port = config_class("embedder_service").from_env({}).port
    client_config = ClientConfig.from_env(compose_env("cli"))
    # One DNS name, which the client keeps as a dns:/// target so gRPC sees every replica's address.
    assert client_config.embedder_addresses == (f"embedder:{port}",)
    assert embedder_target(client_config.embedder_addresses) == f"dns:///embedder:{port}"
    assert client_config.search_address == f"search:{config_class('search_service').from_env({}).port}"


def test_client_reaches_the_services_by_name(embedder_address: str, search_address: str) -> None:
    from client import Client, ClientConfig

    # As in compose, host names rather than IP addresses: "localhost" stands in for "embedder" and "search".
    env = compose_env("cli")
    env["EMBEDDER_ADDR"] = "localhost:" + embedder_address.rsplit(":", 1)[1]
    env["SEARCH_ADDR"] = "localhost:" + search_address.rsplit(":", 1)[1]
    with Client(config=ClientConfig.from_env(env)) as client:
        assert client.embed_texts(["a cat"]).shape == (1, client.model_info().dimension)
        assert client.stats().items == 0


@pytest.mark.parametrize("service", sorted(GRPC_SERVICES))
def test_healthchecks_probe_the_grpc_service(service: str) -> None:
    _, grpc_name = GRPC_SERVICES[service]
    compose_test = SERVICES[service]["healthcheck"]["test"]
    assert compose_test[0] == "CMD-SHELL"
    probe = interpolate(compose_test[1]).split()
    image_probe = dockerfile_of(service).one("HEALTHCHECK").split("CMD", 1)[1].split()
    for argv, env in ((probe, compose_env(service)), (image_probe, dockerfile_of(service).env())):
        assert argv[0] == "grpc-health-check" and argv[2] == grpc_name, argv
        host, port = argv[1].strip('"').rsplit(":", 1)
        assert host == "127.0.0.1"
        variable = re.fullmatch(r"\$\{(\w+)\}", port)
        assert variable and variable.group(1) in env, f"the probe's port must follow the service's: {argv}"
    copies = [copy.split() for copy in dockerfile_of(service).all("COPY")]
    assert ["docker/grpc_health_check.py", "/usr/local/bin/grpc-health-check"] in [c[-2:] for c in copies]


def test_health_check_script_with_running_services(embedder_address: str, search_address: str) -> None:
    def probe(address: str, service: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(HEALTH_SCRIPT), address, service, "--timeout", "10"],
            capture_output=True,
            text=True,
            check=False,
        )

    for address, service in (
        (embedder_address, GRPC_SERVICES["embedder"][1]),
        (search_address, GRPC_SERVICES["search"][1]),
    ):
        result = probe(address, service)
        assert result.returncode == 0 and "SERVING" in result.stdout, result.stdout + result.stderr
    unknown = probe(embedder_address, "clipsearch.v1.NoSuchService")
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = probe(f"127.0.0.1:{sock.getsockname()[1]}", "")
    assert closed.returncode == 1 and "UNAVAILABLE" in closed.stderr


@pytest.mark.parametrize("service", sorted(EXTRAS))
def test_dockerfile_pins_its_base_and_installs(service: str) -> None:
    dockerfile = dockerfile_of(service)
    args = dockerfile.arg_defaults()
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], dockerfile.one("FROM"))
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), f"pin python:3.11.N-slim: {base}"
    installs = [run for run in dockerfile.all("RUN") if "pip install" in run]
    project_install = [run for run in installs if "-c constraints.txt" in run]
    assert len(project_install) == 1, installs
    extra = EXTRAS[service]
    target = f"'.[{extra}]'" if extra else " . "
    assert target in project_install[0] + " ", f"{service} must install {target.strip()}"
    keywords = [keyword for keyword, _ in dockerfile.instructions]
    users = dockerfile.all("USER")
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    last = max(i for i, keyword in enumerate(keywords) if keyword in ("CMD", "ENTRYPOINT"))
    assert max(i for i, keyword in enumerate(keywords) if keyword == "USER") < last
    if service in GRPC_SERVICES:
        assert dockerfile.all("HEALTHCHECK"), "no HEALTHCHECK"


def test_embedder_image_gets_the_pinned_torch_cpu_build() -> None:
    dockerfile = dockerfile_of("embedder")
    torch_version = dockerfile.arg_defaults()["TORCH_VERSION"]
    found = re.search(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), re.MULTILINE)
    assert found is not None
    pinned = found.group(1)
    assert torch_version == f"{pinned}+cpu", f"constraints.txt pins torch {pinned}, the image {torch_version}"
    assert "download.pytorch.org/whl/cpu" in dockerfile.arg_defaults()["TORCH_INDEX_URL"]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore patterns leave `path` (or a folder above it) out of the build context."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


def imported_project_packages(package: str) -> set[str]:
    found: set[str] = set()
    for path in source_files((package,)):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found.update(name.split(".")[0] for name in names if name.split(".")[0] in PROJECT_PACKAGES)
    return found


@pytest.mark.parametrize("service", sorted(EXTRAS))
def test_dockerfile_copies_what_exists_and_is_not_ignored(service: str) -> None:
    dockerfile = dockerfile_of(service)
    context = ROOT / SERVICES[service]["build"].get("context", ".")
    ignore = [
        line.strip()
        for line in (context / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(p.startswith("!") for p in ignore), "exceptions are not checked here"
    copied: set[str] = set()
    for copy in dockerfile.all("COPY"):
        words = [word for word in copy.split() if not word.startswith("--")]
        assert "--from" not in copy
        for source in words[:-1]:
            assert (context / source).exists(), f"{dockerfile.path.name}: COPY {source}: no such file"
            assert not dockerignored(source, ignore), f"{dockerfile.path.name}: {source} is in .dockerignore"
            copied.add(source.rstrip("/"))
    package = GRPC_SERVICES[service][0] if service in GRPC_SERVICES else "client"
    needed = imported_project_packages(package) | {package, "clipsearch"}
    assert needed <= copied, f"{service}'s image lacks {sorted(needed - copied)}, which {package} imports"
    assert {"pyproject.toml", "constraints.txt"} <= copied
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("readme")
    assert readme is None or readme in copied, f"pyproject.toml's readme {readme} must be copied to build"

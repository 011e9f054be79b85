"""The Kubernetes manifests (deploy/k8s): every overlay rendered by `kubectl kustomize`, each document
validated against Kubernetes' own schemas (kubernetes-validate, strict: an unknown field is an
error), and what matters checked against the code the manifests deploy: the settings the services
really read, the metric the encoder really exports, the images deploy/Dockerfile really builds, the
router's shard list against the StatefulSet's pods. Offline: kubectl (`make test` installs it when
missing), the schemas ship in the package, and promtool evaluates the autoscaler's query.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import typing
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from encoder_service.metrics import QUEUE_SECONDS
from encoder_service.settings import EncoderSettings
from search_service.settings import SearchSettings
from server_toolkit.grpc_server import EXIT_MARGIN_SECONDS

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["cpu", "gpu", "sharded"]
# The oldest release the manifests support: gRPC probes, the newest feature they use, are GA from
# 1.27 (beta from 1.24, so older schemas have the field too and cannot draw the line). Checked too
# against the newest kubernetes-validate ships, which would catch a field since removed.
KUBERNETES = "1.27"
KUBERNETES_VERSIONS = [KUBERNETES, kubernetes_validate.latest_version()]
KUBECTL = shutil.which("kubectl")
PROMTOOL = shutil.which("promtool")
WORKLOADS = ("Deployment", "StatefulSet")
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
# Which settings a container reads follows from its image's entry point (deploy/Dockerfile).
SETTINGS_OF_COMMAND = {"serve-encoder": EncoderSettings, "serve-search": SearchSettings}

_rendered: dict[Path, list[dict]] = {}


def render(directory: Path) -> list[dict]:
    if KUBECTL is None:
        pytest.fail("kubectl is missing: `make test` installs it (Debian's kubernetes-client)")
    if directory not in _rendered:
        done = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        _rendered[directory] = [document for document in yaml.safe_load_all(done.stdout) if document]
    return _rendered[directory]


@pytest.fixture(params=OVERLAYS)
def documents(request) -> list[dict]:
    return render(K8S / "overlays" / request.param)


def the(documents: list[dict], kind: str, name: str) -> dict:
    found = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def workloads(documents: list[dict]) -> list[dict]:
    return [d for d in documents if d["kind"] in WORKLOADS]


def containers(documents: list[dict]):
    for workload in workloads(documents):
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            yield workload, pod, container


@dataclasses.dataclass
class Stage:
    workdir: Path = Path("/")
    command: str = ""  # the service its ENTRYPOINT serves (`serve-encoder`...)


def dockerfile_stages() -> dict[str, Stage]:
    """The targets of deploy/Dockerfile, each with the working directory and command it inherits or sets."""
    stages: dict[str, Stage] = {}
    for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines():
        if match := re.match(r"FROM (\S+) AS (\S+)", line):
            stage = stages[match.group(2)] = dataclasses.replace(stages.get(match.group(1), Stage()))
        elif line.startswith("WORKDIR"):
            stage.workdir = Path(line.split()[1])
        elif line.startswith("ENTRYPOINT"):
            stage.command = yaml.safe_load(line.removeprefix("ENTRYPOINT"))[-1]
    return stages


def dockerfile_user() -> int:
    return int(re.search(r"^USER (\d+):", (ROOT / "deploy" / "Dockerfile").read_text(), re.M).group(1))


def image_stage(container: dict) -> Stage:
    repository = container["image"].rsplit(":", 1)[0]
    stage = dockerfile_stages().get(repository.removeprefix("lookalike/"))
    assert repository.startswith("lookalike/") and stage and stage.command, f"{container['image']} is not an image deploy/build.sh makes"
    return stage


def settings_of(container: dict) -> type:
    return SETTINGS_OF_COMMAND[image_stage(container).command]


def env_values(documents: list[dict], container: dict) -> dict[str, str]:
    """The container's environment with ConfigMap references resolved (the Downward API's are left out)."""
    values = {}
    for variable in container.get("env", []):
        if "value" in variable:
            values[variable["name"]] = variable["value"]
        elif reference := variable["valueFrom"].get("configMapKeyRef"):
            values[variable["name"]] = the(documents, "ConfigMap", reference["name"])["data"][reference["key"]]
    return values


def settings_from(monkeypatch, settings: type, environment: dict[str, str]):
    """The settings object the process would build from this environment (and no other)."""
    prefix = settings.model_config["env_prefix"]
    for name in [*os.environ]:
        if name.startswith(prefix):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return settings()


def port_named(container: dict, name: str) -> int:
    return next(port["containerPort"] for port in container["ports"] if port["name"] == name)


def render_with_encoder_patch(tmp_path: Path, container_fields: str) -> list[dict]:
    """The cpu overlay with `container_fields` (YAML at the container's indentation) merged into the encoder."""
    (tmp_path / "kustomization.yaml").write_text(
        f"bases: [{os.path.relpath(K8S / 'overlays' / 'cpu', tmp_path)}]\npatchesStrategicMerge: [patch.yaml]\n"
    )
    (tmp_path / "patch.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: encoder}\nspec:\n  template:\n    spec:\n      containers:\n"
        f"        - name: encoder\n{container_fields}"
    )
    return render(tmp_path)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_document_passes_the_kubernetes_schema_strictly(documents, version):
    kinds = set()
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)  # raises on any error, or an unknown kind
        kinds.add(document["kind"])
    assert {"Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"} <= kinds


def test_a_misspelt_field_fails_validation(tmp_path):
    """The check is live: a misspelt field, which would leave the root writable, is an error here."""
    documents = render_with_encoder_patch(tmp_path, "          securityContext: {readOnlyRootFileSystem: true}\n")
    with pytest.raises(kubernetes_validate.ValidationError) as refused:
        kubernetes_validate.validate(the(documents, "Deployment", "encoder"), KUBERNETES, strict=True)
    assert "readOnlyRootFileSystem" in refused.value.message


def test_every_container_runs_locked_down(documents):
    for workload, pod, container in containers(documents):
        where = f"{workload['metadata']['name']}/{container['name']}"
        security = {**pod.get("securityContext", {}), **container["securityContext"]}
        assert security["runAsNonRoot"] is True and security["runAsUser"] == dockerfile_user(), where
        assert security["readOnlyRootFilesystem"] is True, where
        assert security["allowPrivilegeEscalation"] is False, where
        assert security["capabilities"]["drop"] == ["ALL"] and "add" not in security["capabilities"], where
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod["automountServiceAccountToken"] is False, where
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{where}: {bound}"
        tmp = next(mount for mount in container["volumeMounts"] if mount["mountPath"] == "/tmp")
        assert "emptyDir" in next(volume for volume in pod["volumes"] if volume["name"] == tmp["name"]), where


def probe_faults(container: dict, settings) -> list[str]:
    """What keeps the kubelet's probes from asking the plaintext health port that these settings open.
    The kubelet's gRPC probe speaks plaintext (`mode: TLS` is alpha, 1.37), and the serving port of
    a server with a certificate speaks TLS only: a probe there fails and no pod becomes ready."""
    health = settings.health_port
    declared = {port["name"]: port["containerPort"] for port in container["ports"]}
    faults = []
    if health is None or declared.get("health") != health:
        faults.append(f"the container's port `health` is {declared.get('health')}, the settings' health_port {health}")
    if health in (settings.port, settings.metrics_port):
        faults.append(f"health_port {health} is also the serving or the metrics port")
    for probe in PROBES:
        grpc = container.get(probe, {}).get("grpc")
        if grpc != {"port": health}:  # no `mode`, no service name: the server's overall status
            faults.append(f"{probe} is {grpc}, not a plaintext gRPC probe of the health port {health}")
        if grpc and grpc.get("port") == settings.port and settings.tls_cert_file is not None:
            faults.append(f"{probe} asks the TLS serving port {settings.port}, where a plaintext probe fails")
    return faults


def test_probes_ask_the_plaintext_health_port_not_the_tls_serving_port(documents, monkeypatch):
    for workload, pod, container in containers(documents):
        where = f"{workload['metadata']['name']}/{container['name']}"
        settings = settings_from(monkeypatch, settings_of(container), env_values(documents, container))
        assert settings.tls_cert_file is not None, f"{where}: serves without TLS"
        assert port_named(container, "grpc") == settings.port, where
        assert probe_faults(container, settings) == [], where
        if settings.metrics_port is not None:
            assert port_named(container, "metrics") == settings.metrics_port, where
            assert workload["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(settings.metrics_port), where


def test_a_probe_of_the_tls_serving_port_is_caught(tmp_path, monkeypatch):
    """The check is live: the encoder's readiness probe back on its TLS port, as it was with
    `mode: TLS`, is a fault, and the schema of the oldest supported release has no `mode`."""
    documents = render_with_encoder_patch(tmp_path, "          readinessProbe: {grpc: {port: 50051, mode: TLS}}\n")
    container = the(documents, "Deployment", "encoder")["spec"]["template"]["spec"]["containers"][0]
    settings = settings_from(monkeypatch, EncoderSettings, env_values(documents, container))
    faults = probe_faults(container, settings)
    assert len(faults) == 2 and faults[0].startswith("readinessProbe is {"), faults  # the others still pass
    assert faults[1] == f"readinessProbe asks the TLS serving port {settings.port}, where a plaintext probe fails"
    with pytest.raises(kubernetes_validate.ValidationError) as refused:
        kubernetes_validate.validate(the(documents, "Deployment", "encoder"), KUBERNETES, strict=True)
    assert "mode" in refused.value.message


def test_only_the_kubelet_reaches_the_health_port(documents, monkeypatch):
    """It is in no Service and no NetworkPolicy rule: the probes come from the pod's node, which
    NetworkPolicy always lets in, and a peer that floods it could get healthy pods restarted."""
    for workload, pod, container in containers(documents):
        name, labels = workload["metadata"]["name"], workload["spec"]["template"]["metadata"]["labels"]
        health = settings_from(monkeypatch, settings_of(container), env_values(documents, container)).health_port
        for service in (d for d in documents if d["kind"] == "Service"):
            if service["spec"]["selector"].items() <= labels.items():
                assert all(port["targetPort"] not in ("health", health) for port in service["spec"]["ports"]), name
        policies = [d for d in documents if d["kind"] == "NetworkPolicy" and d["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
        assert policies, f"{name}: no NetworkPolicy selects it"
        for rule in (rule for policy in policies for rule in policy["spec"]["ingress"]):
            assert "ports" in rule, f"{name}: a rule without ports admits every port"  # the health port too
            assert all(port["port"] not in ("health", health) for port in rule["ports"]), name


def test_every_setting_is_one_the_service_reads_and_is_valid(documents, monkeypatch):
    for workload, pod, container in containers(documents):
        where = f"{workload['metadata']['name']}/{container['name']}"
        settings = settings_of(container)
        prefix = settings.model_config["env_prefix"]
        environment = env_values(documents, container)
        for variable in container["env"]:
            name = variable["name"]
            if name.startswith(prefix):
                assert name.removeprefix(prefix).lower() in settings.model_fields, f"{where}: {name} is read by nobody"
            else:  # only helpers of the settings, such as the namespace in the encoder's address
                assert any(f"$({name})" in value for value in environment.values()), f"{where}: {name} is used by nothing"
        # Every value parses, and together they pass the settings' own checks.
        settings_from(monkeypatch, settings, environment)


def test_every_file_a_setting_names_is_mounted(documents, monkeypatch):
    """A path setting (a relative one from the image's working directory) lies on a volume, since
    the root is read-only; a file in a projected secret is one of its items."""
    for workload, pod, container in containers(documents):
        settings = settings_from(monkeypatch, settings_of(container), env_values(documents, container))
        volumes = {volume["name"]: volume for volume in pod["volumes"]}  # the claim templates' are not here
        mounts = {Path(mount["mountPath"]): mount["name"] for mount in container["volumeMounts"]}
        for field, info in type(settings).model_fields.items():
            value = getattr(settings, field)
            if Path not in (info.annotation, *typing.get_args(info.annotation)) or value is None:
                continue
            path = image_stage(container).workdir / value  # an absolute value stays as it is
            where = f"{workload['metadata']['name']}/{container['name']}: {field}={path}"
            mounted_at = next((parent for parent in [path, *path.parents] if parent in mounts), None)
            assert mounted_at is not None, f"{where} is on the read-only root"
            if projected := volumes.get(mounts[mounted_at], {}).get("projected"):
                files = {item["path"] for source in projected["sources"] for item in source["secret"]["items"]}
                assert str(path.relative_to(mounted_at)) in files, where


def test_services_are_headless_and_select_a_workload(documents):
    pods = {w["metadata"]["name"]: w for w in workloads(documents)}
    for service in (d for d in documents if d["kind"] == "Service"):
        # gRPC keeps its connections: clients must see every pod to spread calls (round_robin).
        assert service["spec"]["clusterIP"] == "None", service["metadata"]["name"]
        selected = [w for w in pods.values() if service["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(selected) == 1, service["metadata"]["name"]
        container = selected[0]["spec"]["template"]["spec"]["containers"][0]
        for port in service["spec"]["ports"]:
            assert port["port"] == port_named(container, port["targetPort"])
    assert {s["metadata"]["name"] for s in documents if s["kind"] == "Service"} == {"encoder", "search", "search-shard"}


def test_shards_keep_their_data_and_drain_before_they_are_killed(documents, monkeypatch):
    shards = the(documents, "StatefulSet", "search-shard")
    container = shards["spec"]["template"]["spec"]["containers"][0]
    settings = settings_from(monkeypatch, SearchSettings, env_values(documents, container))
    (claim,) = shards["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert {"name": claim["metadata"]["name"], "mountPath": str(settings.data_dir)} in container["volumeMounts"]
    assert the(documents, "Service", shards["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    for workload, pod, container in containers(documents):
        settings = settings_from(monkeypatch, settings_of(container), env_values(documents, container))
        assert pod["terminationGracePeriodSeconds"] > settings.grace_seconds + EXIT_MARGIN_SECONDS, workload["metadata"]["name"]


def test_the_router_names_every_shard_pod_once_in_a_layout_that_survives_scaling(documents, monkeypatch):
    shards = the(documents, "StatefulSet", "search-shard")
    shard_port = port_named(shards["spec"]["template"]["spec"]["containers"][0], "grpc")
    router = the(documents, "Deployment", "search-router")["spec"]["template"]["spec"]["containers"][0]
    settings = settings_from(monkeypatch, SearchSettings, env_values(documents, router))
    assert settings.mode == "router"
    layout = []
    for replicas in settings.shard_addresses():
        pods = []
        for address in replicas:
            host, port = address.rsplit(":", 1)
            name, service = host.split(".")
            assert int(port) == shard_port and service == shards["spec"]["serviceName"], address
            assert name.startswith(f"{shards['metadata']['name']}-"), address
            pods.append(int(name.rsplit("-", 1)[1]))
        layout.append(pods)
    count, per_shard = len(layout), len(layout[0])
    assert shards["spec"]["replicas"] == count * per_shard
    # Shard s is pods s, s+S, ...: a StatefulSet grows and shrinks at its end, so S pods more or
    # less is a replica more or less of every shard, and no pod changes shard.
    assert layout == [[replica * count + shard for replica in range(per_shard)] for shard in range(count)]


def test_the_encoder_scales_on_a_metric_it_exports(documents):
    hpa = the(documents, "HorizontalPodAutoscaler", "encoder")
    target = hpa["spec"]["scaleTargetRef"]
    assert the(documents, target["kind"], target["name"])["apiVersion"] == target["apiVersion"]
    assert "replicas" not in the(documents, target["kind"], target["name"])["spec"], "the HPA owns the count"
    (pods,) = [metric["pods"] for metric in hpa["spec"]["metrics"] if metric["type"] == "Pods"]
    (rule,) = [r for r in adapter_rules() if r["name"]["as"] == pods["metric"]["name"]]
    exported = QUEUE_SECONDS.describe()[0].name
    assert re.fullmatch(rule["name"]["matches"], f"{exported}_sum")
    assert rule["seriesQuery"].startswith(f"{exported}_sum{{")
    assert f"{exported}_count{{" in rule["metricsQuery"]


def adapter_rules() -> list[dict]:
    return yaml.safe_load((K8S / "prometheus-adapter-rules.yaml").read_text())["rules"]


@pytest.mark.skipif(PROMTOOL is None, reason="Debian's `prometheus` (promtool) is not installed (`make test` installs it with apt)")
def test_the_adapter_query_is_the_mean_queue_time_per_pod_and_zero_when_idle(tmp_path):
    (rule,) = adapter_rules()

    def query(pod: str) -> str:  # as prometheus-adapter fills the template for an HPA's Pods metric
        return rule["metricsQuery"].replace("<<.LabelMatchers>>", f'namespace="lookalike",pod="{pod}"').replace("<<.GroupBy>>", "pod")

    exported = QUEUE_SECONDS.describe()[0].name
    waited, images = 0.3, 20  # per minute on encoder-a, over two models; encoder-b is idle

    def series(suffix: str, pod: str, model: str, per_minute: float) -> dict:
        labels = f'namespace="lookalike",pod="{pod}",model="{model}",version="1"'
        return {"series": f"{exported}_{suffix}{{{labels}}}", "values": f"0+{per_minute}x10"}

    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    series("sum", "encoder-a", "digits", waited / 2),
                    series("count", "encoder-a", "digits", images / 2),
                    series("sum", "encoder-a", "colour", waited / 2),
                    series("count", "encoder-a", "colour", images / 2),
                    series("sum", "encoder-b", "digits", 0),
                    series("count", "encoder-b", "digits", 0),
                ],
                "promql_expr_test": [
                    # promtool compares exactly: the mean, to within rounding, is 1.
                    {"expr": f"abs(({query('encoder-a')}) - {waited / images}) < bool 1e-12", "eval_time": "10m", "exp_samples": [{"labels": '{pod="encoder-a"}', "value": 1}]},
                    # No observations: 0 rather than NaN, or the autoscaler could not scale down.
                    {"expr": query("encoder-b"), "eval_time": "10m", "exp_samples": [{"labels": '{pod="encoder-b"}', "value": 0}]},
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    done = subprocess.run([PROMTOOL, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_gpu_overlay_puts_the_encoder_on_a_gpu(monkeypatch):
    documents = render(K8S / "overlays" / "gpu")
    encoder = the(documents, "Deployment", "encoder")["spec"]["template"]["spec"]["containers"][0]
    assert encoder["image"].startswith("lookalike/encoder-gpu:")
    assert encoder["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert settings_from(monkeypatch, EncoderSettings, env_values(documents, encoder)).device == "cuda"
    cpu = the(render(K8S / "overlays" / "cpu"), "Deployment", "encoder")["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"] and cpu["image"].startswith("lookalike/encoder:")


def test_only_the_router_may_call_the_shards(documents):
    policy = the(documents, "NetworkPolicy", "search-shard")
    shard_labels = the(documents, "StatefulSet", "search-shard")["spec"]["template"]["metadata"]["labels"]
    router_labels = the(documents, "Deployment", "search-router")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= shard_labels.items()
    (grpc_rule,) = [rule for rule in policy["spec"]["ingress"] if {"port": 50052} in rule["ports"]]
    (peer,) = grpc_rule["from"]
    assert set(peer) == {"podSelector"} and peer["podSelector"]["matchLabels"].items() <= router_labels.items()

"""deploy/charts/vigil, checked offline with the real helm 3 (no cluster, no network).

- ``helm lint --strict`` and ``helm template`` for the default values and every documented
  combination (shards 1 and 3, HA and single remediator, persistence off, existing
  Secrets, monitoring objects off, everything set, the examples/ values, another release
  name and namespace); every rendered built-in object passes ``kubernetes-validate``
  strict for Kubernetes 1.32 and every Prometheus Operator object its CRD's schema.
- values.schema.json refuses unknown keys and wrong types, naming the key.
- ``helm package`` makes the archive, and the archive renders as the directory does.
- The RBAC is what ``vigil-remediator rbac`` prints for the shipped playbooks (for a
  subset of them: test_chart_rbac.py); the copied files are those of deploy/config,
  playbooks/ and docs/runbooks (regenerate and diff).
- The detector's ClusterRole and service-account token follow its Kubernetes enrichment;
  the NetworkPolicies' API-server egress narrows to networkPolicy.apiServerCIDRs.
- The default objects are picked up by a default kube-prometheus-stack release (the
  selectors carried in deploy/cluster/chart-data/kube-prometheus-stack-88.5.3/).
- The pieces fit: shards and replicas, webhooks, Secrets, configs Vigil's loaders accept.

- ``lookup`` keeps the tokens on upgrade: ``helm template --dry-run=server`` against a
  minimal fake API server (discovery and GET Secret) reads the install's Secrets back.

Not checked here (no cluster): the upgrade itself, scheduling, PVC provisioning,
NetworkPolicy enforcement.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
import subprocess
import sys
import tarfile
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
import yaml

from deploy.charts import generate as chart_generate
from deploy.cluster import generate as cluster_generate
from deploy.config import render
from tests.deploy.test_cluster import (
    CLUSTER,
    KUBERNETES_VERSION,
    OPERATOR_GROUP,
    ROOT,
    SHOP_ONLY,
    WORKLOAD_KINDS,
    _snake,
    _tool,
    builtin_problems,
    crd_errors,
    crd_schemas,
    find,
    ident,
    is_custom,
    load,
    load_all,
    of_kind,
)

CHART = ROOT / "deploy/charts/vigil"
STACK = load(CLUSTER / "chart-data/kube-prometheus-stack-88.5.3/selectors.yaml")
RELEASE = "vigil"
NAMESPACE = "monitoring"

Obj = dict[str, Any]

INLINE_PLAYBOOK = SHOP_ONLY  # acts in namespace shop only
DIGEST = "sha256:" + "ab" * 32

# name -> (values, release, namespace): every combination the chart documents
COMBINATIONS: dict[str, tuple[Obj, str, str]] = {
    "default": ({}, RELEASE, NAMESPACE),
    "shards-3": ({"detector": {"shards": 3}}, RELEASE, NAMESPACE),
    "ha-remediator": ({"remediator": {"replicas": 3}}, RELEASE, NAMESPACE),
    "single-remediator": ({"remediator": {"replicas": 1}}, RELEASE, NAMESPACE),
    "persistence-off": (
        {
            "detector": {"persistence": {"enabled": False}},
            "remediator": {"persistence": {"enabled": False}},
        },
        RELEASE,
        NAMESPACE,
    ),
    "existing-secrets": (
        {
            "detector": {"auth": {"existingSecret": "my-detector-token"}},
            "remediator": {"auth": {"existingSecret": "my-remediator-tokens"}},
        },
        RELEASE,
        NAMESPACE,
    ),
    "monitoring-off": (
        {
            "serviceMonitor": {"enabled": False},
            "prometheusRule": {"enabled": False},
            "alertmanagerConfig": {"enabled": False},
            "dashboards": {"enabled": False},
            "networkPolicy": {"enabled": False},
        },
        RELEASE,
        NAMESPACE,
    ),
    "everything": (
        {
            "image": {"repository": "registry.example.com/vigil", "digest": DIGEST},
            "commonLabels": {"team": "sre"},
            "stack": {"otlpEndpoint": "http://otel.monitoring.svc:4318"},
            "detector": {
                "shards": 2,
                "nodeSelector": {"pool": "monitoring"},
                "tolerations": [
                    {
                        "key": "dedicated",
                        "operator": "Equal",
                        "value": "monitoring",
                        "effect": "NoSchedule",
                    }
                ],
                "priorityClassName": "monitoring-critical",
                "persistence": {"storageClassName": "fast", "size": "20Gi"},
                "podAnnotations": {"example.com/owner": "sre"},
            },
            "remediator": {
                "replicas": 2,
                "existingConfigMap": "my-remediator-config",
                "extraPlaybookConfigMaps": ["team-playbooks"],
                "shippedPlaybooks": {"exclude": ["node-drain"]},
                "rbac": {"actInNamespaces": ["default", "shop", "kube-system"]},
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "pool", "operator": "In", "values": ["monitoring"]}
                                    ]
                                }
                            ]
                        }
                    }
                },
            },
            "playbooks": {"shop-restart": INLINE_PLAYBOOK},
            "alertmanagerConfig": {"extraAlertnames": ["TeamAlert"]},
            "probe": {"enabled": True},
            "networkPolicy": {
                "lokiNamespace": "logging",
                "apiServerCIDRs": ["10.96.0.1/32", "192.168.10.0/28", "fd00::1/128"],
                "extraEgress": [
                    {
                        "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
                        "ports": [{"protocol": "TCP", "port": 443}],
                    }
                ],
            },
        },
        RELEASE,
        NAMESPACE,
    ),
    "enrichment-off": (
        {"detector": {"config": {"enrichment": {"kubernetes": {"enabled": False}}}}},
        RELEASE,
        NAMESPACE,
    ),
    "example": (load(CHART / "examples/vigil.yaml"), RELEASE, NAMESPACE),
    "other-release": ({}, "watch", "observability"),
}


def helm(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("helm"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def template(
    values: Obj,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    chart: Path = CHART,
    tmp: Path,
) -> subprocess.CompletedProcess[str]:
    path = tmp / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return helm(
        "template",
        release,
        str(chart),
        "--namespace",
        namespace,
        "--values",
        str(path),
        "--kube-version",
        KUBERNETES_VERSION,
    )


@functools.cache
def _render(name: str, tmp: str) -> tuple[Obj, ...]:
    values, release, namespace = COMBINATIONS[name]
    folder = Path(tmp) / name
    folder.mkdir(parents=True, exist_ok=True)
    done = template(values, release=release, namespace=namespace, tmp=folder)
    assert done.returncode == 0, done.stderr
    return tuple(load_all(done.stdout))


@pytest.fixture(scope="session")
def render_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chart")


@pytest.fixture
def rendered(render_dir: Path) -> Any:
    def get(name: str) -> list[Obj]:
        return copy.deepcopy(list(_render(name, str(render_dir))))

    return get


def fullname(name: str) -> str:
    release = COMBINATIONS[name][1]
    return release if "vigil" in release else f"{release}-vigil"


def container(objects: list[Obj], name: str) -> Obj:
    c: Obj = find(objects, "StatefulSet", name)["spec"]["template"]["spec"]["containers"][0]
    return c


def args_of(c: Obj) -> dict[str, str]:
    args = [a for a in c["args"] if a != "--in-cluster"]
    return {args[i]: args[i + 1] for i in range(1, len(args) - 1, 2)}


# --- lint, render, validate ------------------------------------------------------------------


@pytest.mark.parametrize("name", COMBINATIONS)
def test_helm_lint_strict(name: str, tmp_path: Path) -> None:
    values, _, namespace = COMBINATIONS[name]
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    done = helm("lint", "--strict", str(CHART), "--namespace", namespace, "--values", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("name", COMBINATIONS)
def test_every_object_lands_in_the_release_namespace(name: str, rendered: Any) -> None:
    _, _, namespace = COMBINATIONS[name]
    act_in = set(
        ((COMBINATIONS[name][0].get("remediator") or {}).get("rbac") or {}).get(
            "actInNamespaces", ["default"]
        )
    )
    for obj in rendered(name):
        assert {"apiVersion", "kind", "metadata"} <= obj.keys(), obj
        where = obj["metadata"].get("namespace")
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            assert where is None, ident(obj)
        elif obj["kind"] in ("Role", "RoleBinding") and not obj["metadata"]["name"].endswith(
            "-coordination"
        ):
            assert where in act_in, ident(obj)  # the namespaces it acts in
        else:
            assert where == namespace, ident(obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "vigil", ident(obj)


@pytest.mark.parametrize("name", COMBINATIONS)
def test_builtin_objects_pass_kubernetes_validate_strict(name: str, rendered: Any) -> None:
    problems = builtin_problems(rendered(name))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", COMBINATIONS)
def test_custom_resources_match_their_crd(name: str, rendered: Any) -> None:
    problems = [p for obj in rendered(name) if is_custom(obj) for p in crd_errors(obj)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", COMBINATIONS)
def test_workloads_are_locked_down(name: str, rendered: Any) -> None:
    workloads = [o for o in rendered(name) if o["kind"] in WORKLOAD_KINDS]
    assert {o["kind"] for o in workloads} == {"StatefulSet"} and len(workloads) == 2
    for obj in workloads:
        pod = obj["spec"]["template"]["spec"]
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001, ident(obj)
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, ident(obj)
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), ident(obj)
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, ident(obj)
            assert sc["allowPrivilegeEscalation"] is False, ident(obj)
            assert sc["capabilities"] == {"drop": ["ALL"]}, ident(obj)
            assert {"cpu", "memory"} <= c["resources"]["requests"].keys(), ident(obj)
            assert "memory" in c["resources"]["limits"], ident(obj)
            assert c["livenessProbe"] and c["readinessProbe"], ident(obj)
            image = c["image"]
            assert ("@sha256:" in image) or (":" in image.rsplit("/", 1)[-1]), image
        for volume in pod.get("volumes") or ():
            assert "hostPath" not in volume, ident(obj)


@pytest.mark.parametrize("name", COMBINATIONS)
def test_references_resolve(name: str, rendered: Any) -> None:
    """What a pod mounts exists (or is named in the values as existing), Services, PDBs
    and NetworkPolicies select pods that exist, on ports those pods open."""
    values = COMBINATIONS[name][0]
    external = {
        (values.get(c) or {}).get("auth", {}).get("existingSecret")
        for c in ("detector", "remediator")
    } - {None}
    external_maps = {
        (values.get("remediator") or {}).get("existingConfigMap"),
        *((values.get("remediator") or {}).get("extraPlaybookConfigMaps") or ()),
    }
    objects = rendered(name)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    pods = []
    for obj in of_kind(objects, "StatefulSet"):
        spec = obj["spec"]["template"]["spec"]
        labels = obj["spec"]["template"]["metadata"]["labels"]
        pods.append(
            (
                labels,
                {p["containerPort"]: p["name"] for c in spec["containers"] for p in c["ports"]},
            )
        )
        assert ("ServiceAccount", spec["serviceAccountName"]) in names
        assert ("Service", obj["spec"]["serviceName"]) in names
        claims = {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates") or ()}
        volumes = {v["name"] for v in spec["volumes"]} | claims
        assert not {v["name"] for v in spec["volumes"]} & claims, ident(obj)
        maps = [v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v]
        maps += [
            s["configMap"]["name"]
            for v in spec["volumes"]
            if "projected" in v
            for s in v["projected"]["sources"]
        ]
        for m in maps:
            assert ("ConfigMap", m) in names or m in external_maps, (ident(obj), m)
        for v in spec["volumes"]:
            if "secret" in v:
                secret = v["secret"]["secretName"]
                assert ("Secret", secret) in names or secret in external, (ident(obj), secret)
        for c in spec["containers"]:
            for mount in c["volumeMounts"]:
                assert mount["name"] in volumes, (ident(obj), mount)

    def selected(selector: Mapping[str, Any]) -> list[dict[int, str]]:
        plain = selector.get("matchLabels", selector if "matchExpressions" not in selector else {})
        return [
            ports for labels, ports in pods if all(labels.get(k) == v for k, v in plain.items())
        ]

    for service in of_kind(objects, "Service"):
        matched = selected(service["spec"]["selector"])
        assert len(matched) == 1, ident(service)
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in matched[0].values(), (ident(service), port)
    for pdb in of_kind(objects, "PodDisruptionBudget"):
        assert len(selected(pdb["spec"]["selector"])) == 1, ident(pdb)
    for policy in of_kind(objects, "NetworkPolicy"):
        assert len(selected(policy["spec"]["podSelector"])) == 1, ident(policy)
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}


# --- the documented combinations, one by one ----------------------------------------------


@pytest.mark.parametrize(
    "name,shards", [("default", 1), ("shards-3", 3), ("everything", 2), ("example", 2)]
)
def test_one_detector_pod_per_shard_each_told_its_shard(
    name: str, shards: int, rendered: Any
) -> None:
    objects = rendered(name)
    detector = find(objects, "StatefulSet", f"{fullname(name)}-detector")
    assert detector["spec"]["replicas"] == shards
    assert detector["spec"]["podManagementPolicy"] == "Parallel"
    env = {e["name"]: e for e in detector["spec"]["template"]["spec"]["containers"][0]["env"]}
    # the StatefulSet controller labels each pod with its ordinal (Kubernetes >= 1.28)
    assert (
        env["VIGIL_SHARD"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    assert env["VIGIL_SHARDS"]["value"] == str(shards)
    headless = find(objects, "Service", detector["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    pdbs = [
        p
        for p in of_kind(objects, "PodDisruptionBudget")
        if p["metadata"]["name"] == f"{fullname(name)}-detector"
    ]
    assert len(pdbs) == (1 if shards > 1 else 0)


@pytest.mark.parametrize(
    "name,replicas", [("default", 2), ("ha-remediator", 3), ("single-remediator", 1)]
)
def test_every_remediator_replica_gets_every_notification(
    name: str, replicas: int, rendered: Any
) -> None:
    objects = rendered(name)
    remediator = find(objects, "StatefulSet", "vigil-remediator")
    assert remediator["spec"]["replicas"] == replicas
    route = find(objects, "AlertmanagerConfig", "vigil-remediator")
    hooks = route["spec"]["receivers"][0]["webhookConfigs"]
    assert [h["url"] for h in hooks] == [
        f"http://vigil-remediator-{i}.vigil-remediator-headless.{NAMESPACE}.svc:9421/webhook"
        for i in range(replicas)
    ]
    assert route["spec"]["route"]["continue"] is True
    regex = route["spec"]["route"]["matchers"][0]["value"]
    for alertname in ("KubePodCrashLooping", "VigilAnomaly", "KubePodEvicted"):
        assert re.fullmatch(regex, alertname)
    assert not re.fullmatch(regex, "Watchdog")
    pdbs = [
        p
        for p in of_kind(objects, "PodDisruptionBudget")
        if p["metadata"]["name"] == "vigil-remediator"
    ]
    assert len(pdbs) == (1 if replicas > 1 else 0)


def test_persistence_on_gives_each_pod_a_claim_off_an_empty_dir(rendered: Any) -> None:
    for name, durable in (("default", True), ("persistence-off", False)):
        for workload, size in (("vigil-detector", "5Gi"), ("vigil-remediator", "1Gi")):
            sts = find(rendered(name), "StatefulSet", workload)
            volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
            if durable:
                (claim,) = sts["spec"]["volumeClaimTemplates"]
                assert claim["metadata"]["name"] == "state" and "state" not in volumes
                assert claim["spec"]["resources"]["requests"]["storage"] == size
                # helm uninstall and scaling down keep the learned state and the audit DB
                assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
                    "whenDeleted": "Retain",
                    "whenScaled": "Retain",
                }
            else:
                assert "volumeClaimTemplates" not in sts["spec"]
                assert "emptyDir" in volumes["state"]
    claim = find(rendered("everything"), "StatefulSet", "vigil-detector")["spec"][
        "volumeClaimTemplates"
    ][0]["spec"]
    assert claim["storageClassName"] == "fast"


def test_existing_secrets_replace_the_generated_ones(rendered: Any) -> None:
    objects = rendered("existing-secrets")
    assert not of_kind(objects, "Secret")
    pods = {
        o["metadata"]["name"]: o["spec"]["template"]["spec"]
        for o in of_kind(objects, "StatefulSet")
    }
    secrets = {
        n: {v["secret"]["secretName"] for v in p["volumes"] if "secret" in v}
        for n, p in pods.items()
    }
    assert secrets == {
        "vigil-detector": {"my-detector-token"},
        "vigil-remediator": {"my-detector-token", "my-remediator-tokens"},
    }
    route = find(objects, "AlertmanagerConfig", "vigil-remediator")
    assert route["spec"]["receivers"][0]["webhookConfigs"][0]["httpConfig"]["authorization"][
        "credentials"
    ] == {"name": "my-remediator-tokens", "key": "webhook-token"}


def test_generated_secrets_are_random_and_survive_uninstall(
    rendered: Any, render_dir: Path
) -> None:
    """Without existingSecret: random tokens (two renders differ; helm template cannot
    look up the cluster's), kept by helm on uninstall, read back by `lookup` on upgrade."""
    first = of_kind(rendered("default"), "Secret")
    second_dir = render_dir / "again"
    second_dir.mkdir(exist_ok=True)
    again = template({}, tmp=second_dir)
    assert again.returncode == 0, again.stderr
    second = of_kind(load_all(again.stdout), "Secret")
    assert {s["metadata"]["name"] for s in first} == {
        "vigil-detector-token",
        "vigil-remediator-tokens",
    }
    for a in first:
        b = find(second, "Secret", a["metadata"]["name"])
        assert a["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        for key, value in a["data"].items():
            assert len(base64.b64decode(value)) == 64 and value != b["data"][key]
    source = (CHART / "templates/secrets.yaml").read_text(encoding="utf-8")
    assert source.count('lookup "v1" "Secret" .Release.Namespace $name') == 2


class _SecretsApi(BaseHTTPRequestHandler):
    """Just enough of an API server for `helm template --dry-run=server`: discovery of the
    core group and GET of a Secret (what the chart's `lookup` asks)."""

    # shared by the per-request handler instances: the test seeds and reads them
    secrets: ClassVar[dict[tuple[str, str], dict[str, str]]] = {}
    asked: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _send(self, code: int, obj: Obj) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        parts = path.strip("/").split("/")
        if path == "/version":
            self._send(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
        elif path == "/api":
            self._send(
                200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            )
        elif path == "/apis":
            self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        elif path == "/api/v1":
            self._send(
                200,
                {
                    "kind": "APIResourceList",
                    "groupVersion": "v1",
                    "resources": [
                        {
                            "name": "secrets",
                            "singularName": "secret",
                            "namespaced": True,
                            "kind": "Secret",
                            "verbs": ["get"],
                        }
                    ],
                },
            )
        elif len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "secrets":
            self.asked.append(f"{parts[3]}/{parts[5]}")
            data = self.secrets.get((parts[3], parts[5]))
            if data is not None:
                self._send(
                    200,
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "data": data,
                        "metadata": {"name": parts[5], "namespace": parts[3]},
                    },
                )
                return
            self._send(
                404,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "NotFound",
                    "code": 404,
                },
            )
        else:
            self._send(
                404,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "NotFound",
                    "code": 404,
                },
            )


def test_an_upgrade_keeps_the_tokens_the_cluster_has(tmp_path: Path) -> None:
    """`lookup`, as helm runs it against a cluster (`--dry-run=server`): the Secrets the
    release made on install are read back, a key that is missing is made afresh."""
    old = base64.b64encode(b"token-made-at-install").decode()
    _SecretsApi.secrets = {
        (NAMESPACE, "vigil-detector-token"): {"token": old},
        (NAMESPACE, "vigil-remediator-tokens"): {"webhook-token": old},
    }
    _SecretsApi.asked = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SecretsApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "fake",
                    "clusters": [
                        {
                            "name": "fake",
                            "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"},
                        }
                    ],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}],
                    "users": [{"name": "u", "user": {}}],
                }
            )
        )
        done = subprocess.run(
            [
                _tool("helm"),
                "template",
                RELEASE,
                str(CHART),
                "--namespace",
                NAMESPACE,
                "--dry-run=server",
                "--kubeconfig",
                str(kubeconfig),
                "--show-only",
                "templates/secrets.yaml",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    assert done.returncode == 0, done.stderr
    secrets = {s["metadata"]["name"]: s["data"] for s in load_all(done.stdout)}
    assert sorted(_SecretsApi.asked) == [
        f"{NAMESPACE}/vigil-detector-token",
        f"{NAMESPACE}/vigil-remediator-tokens",
    ]
    assert secrets["vigil-detector-token"] == {"token": old}
    assert secrets["vigil-remediator-tokens"]["webhook-token"] == old
    admin = base64.b64decode(secrets["vigil-remediator-tokens"]["admin-token"])
    assert len(admin) == 64 and admin != b"token-made-at-install"


def test_monitoring_objects_can_each_be_switched_off(rendered: Any) -> None:
    objects = rendered("monitoring-off")
    assert not [o for o in objects if is_custom(o)]
    assert not [o for o in objects if "grafana_dashboard" in o["metadata"]["labels"]]
    assert not of_kind(objects, "NetworkPolicy")
    kinds = {o["kind"] for o in rendered("default") if is_custom(o)}
    assert kinds == {"ServiceMonitor", "PrometheusRule", "AlertmanagerConfig"}
    assert {o["kind"] for o in rendered("everything") if is_custom(o)} == kinds | {"Probe"}


def test_pod_placement_and_image_values_reach_the_pods(rendered: Any) -> None:
    objects = rendered("everything")
    detector = find(objects, "StatefulSet", "vigil-detector")["spec"]["template"]
    pod = detector["spec"]
    assert pod["nodeSelector"] == {"pool": "monitoring"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert pod["priorityClassName"] == "monitoring-critical"
    assert detector["metadata"]["annotations"]["example.com/owner"] == "sre"
    assert detector["metadata"]["labels"]["team"] == "sre"
    for c in (container(objects, "vigil-detector"), container(objects, "vigil-remediator")):
        assert c["image"] == f"registry.example.com/vigil@{DIGEST}"
    remediator = find(objects, "StatefulSet", "vigil-remediator")["spec"]["template"]["spec"]
    assert "nodeAffinity" in remediator["affinity"]
    default = find(rendered("default"), "StatefulSet", "vigil-remediator")
    anti = default["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert (
        anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"]
        == "kubernetes.io/hostname"
    )
    chart = load(CHART / "Chart.yaml")
    assert (
        container(rendered("default"), "vigil-detector")["image"] == f"vigil:{chart['appVersion']}"
    )


def test_another_release_name_keeps_the_job_labels_the_rules_use(rendered: Any) -> None:
    objects = rendered("other-release")
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    assert "watch-vigil-detector" in services
    for monitor in of_kind(objects, "ServiceMonitor"):
        # job = the Service's vigil.dev/job label: deploy/config/rules/vigil.yaml's jobs
        assert monitor["spec"]["jobLabel"] == "vigil.dev/job"
        chosen = [
            s
            for s in services.values()
            if all(
                s["metadata"]["labels"].get(k) == v
                for k, v in monitor["spec"]["selector"]["matchLabels"].items()
            )
            and "vigil.dev/headless" not in s["metadata"]["labels"]
        ]
        assert len(chosen) == 1
        assert chosen[0]["metadata"]["labels"]["vigil.dev/job"] in (
            "vigil-detector",
            "vigil-remediator",
        )
    # what the rules' comments promise and the overview dashboard selects (job=~"vigil-.+")
    rules = (ROOT / "deploy/config/rules/vigil.yaml").read_text(encoding="utf-8")
    assert "Scrape jobs are named after their Service: `vigil-detector`" in rules
    overview = (ROOT / "deploy/config/dashboards/vigil-overview.json").read_text()
    assert 'job=~\\"vigil-.+\\"' in overview


# --- the detector's API access, the API-server egress --------------------------------------


def _detector_access(objects: list[Obj], base: str = "vigil") -> tuple[bool, set[str]]:
    """(automountServiceAccountToken, the detector's RBAC objects as kind/name)."""
    pod = find(objects, "StatefulSet", f"{base}-detector")["spec"]["template"]["spec"]
    rbac = {
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objects
        if o["apiVersion"].startswith("rbac.") and o["metadata"]["name"] == f"{base}-detector"
    }
    return pod["automountServiceAccountToken"], rbac


def test_the_detector_reads_the_api_only_for_its_kubernetes_enrichment(
    rendered: Any, tmp_path: Path
) -> None:
    from detector.config import load_config as load_detector

    both = {"ClusterRole/vigil-detector", "ClusterRoleBinding/vigil-detector"}
    for name, enrich in (("default", True), ("enrichment-off", False)):
        objects = rendered(name)
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            find(objects, "ConfigMap", "vigil-detector-config")["data"]["detector.yaml"],
            encoding="utf-8",
        )
        # what the detector will do, read by its own loader, and what the chart gave it
        assert load_detector(path).enrichment.kubernetes.enabled is enrich
        assert _detector_access(objects) == (enrich, both if enrich else set()), name
        if enrich:
            role = find(objects, "ClusterRole", "vigil-detector")
            assert {v for r in role["rules"] for v in r["verbs"]} <= {"get", "list"}
    # the loader's lax booleans (YAML strings, 0/1) read the same way; absent (null
    # deletes a default in helm) is off
    cases = [("yes", True), ("off", False), ("1", True), (0, False), (None, False)]
    for i, (value, enrich) in enumerate(cases):
        kube = {"enabled": value}
        done = template(
            {"detector": {"config": {"enrichment": {"kubernetes": kube}}}},
            tmp=_fresh(tmp_path / str(i)),
        )
        assert done.returncode == 0, done.stderr
        objects = load_all(done.stdout)
        config = find(objects, "ConfigMap", "vigil-detector-config")["data"]["detector.yaml"]
        if value is None:
            assert "enabled" not in yaml.safe_load(config)["enrichment"]["kubernetes"]
        path = tmp_path / str(i) / "detector.yaml"
        path.write_text(config, encoding="utf-8")
        assert load_detector(path).enrichment.kubernetes.enabled is enrich, value
        assert _detector_access(objects)[0] is enrich, value
    # an existing ConfigMap's content is not the chart's to read: access stays as it was
    done = template(
        {
            "detector": {
                "existingConfigMap": "mine",
                "config": {"enrichment": {"kubernetes": {"enabled": False}}},
            }
        },
        tmp=_fresh(tmp_path / "cm"),
    )
    assert done.returncode == 0, done.stderr
    assert _detector_access(load_all(done.stdout)) == (True, both)
    # and detector.rbac.create=false leaves the rules to the operator, not the token
    done = template({"detector": {"rbac": {"create": False}}}, tmp=_fresh(tmp_path / "rc"))
    assert done.returncode == 0, done.stderr
    assert _detector_access(load_all(done.stdout)) == (True, set())


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _api_server_rules(policy: Obj, ports: list[int]) -> list[Obj]:
    want = [{"protocol": "TCP", "port": p} for p in ports]
    return [r for r in policy["spec"]["egress"] if r.get("ports") == want]


def test_api_server_egress_is_ports_only_unless_its_cidrs_are_given(rendered: Any) -> None:
    for name in ("default", "everything"):
        for component in ("detector", "remediator"):
            policy = find(rendered(name), "NetworkPolicy", f"vigil-{component}")
            (rule,) = _api_server_rules(policy, [443, 6443])
            if name == "default":  # the fallback: the API server's address is unknown
                assert rule == {"ports": rule["ports"]}
                assert not [r for r in policy["spec"]["egress"] if "ipBlock" in str(r)]
                continue
            assert rule["to"] == [
                {"ipBlock": {"cidr": c}} for c in ("10.96.0.1/32", "192.168.10.0/28", "fd00::1/128")
            ]
            # nothing else leaves on those ports to any address, but extraEgress
            extra = {
                "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
                "ports": [{"protocol": "TCP", "port": 443}],
            }
            assert extra in policy["spec"]["egress"]
            for r in policy["spec"]["egress"]:
                if {p["port"] for p in r.get("ports", ())} & {443, 6443}:
                    assert r.get("to"), (component, r)


# --- configuration, playbooks, rules --------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "everything", "other-release"])
def test_the_rendered_configs_load_with_vigils_loaders(
    name: str, rendered: Any, tmp_path: Path
) -> None:
    from detector.config import load_config as load_detector
    from remediator.config import load_config as load_remediator

    objects = rendered(name)
    namespace = COMBINATIONS[name][2]
    base = fullname(name)
    path = tmp_path / "detector.yaml"
    path.write_text(
        find(objects, "ConfigMap", f"{base}-detector-config")["data"]["detector.yaml"],
        encoding="utf-8",
    )
    detector = load_detector(path)
    c = container(objects, f"{base}-detector")
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert detector.auth.bearer_token_file is not None
    assert str(detector.auth.bearer_token_file.parent) in mounts
    if name == "everything":  # an existing ConfigMap: the chart writes none
        assert not [o for o in objects if o["metadata"]["name"] == f"{base}-remediator-config"]
        return
    path = tmp_path / "remediator.yaml"
    path.write_text(
        find(objects, "ConfigMap", f"{base}-remediator-config")["data"]["remediator.yaml"],
        encoding="utf-8",
    )
    remediator = load_remediator(path)
    assert remediator.cluster.namespace == namespace  # the Lease, the shared state
    assert remediator.detector.url == f"http://{base}-detector.{namespace}.svc:9420"
    c = container(objects, f"{base}-remediator")
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    for token in (
        remediator.auth.bearer_token_file,
        remediator.auth.admin_token_file,
        remediator.detector.bearer_token_file,
    ):
        assert token is not None and str(token.parent) in mounts


@pytest.mark.parametrize("name", ["default", "everything"])
def test_the_playbooks_configmap_passes_vigil_remediator_check(
    name: str, rendered: Any, tmp_path: Path
) -> None:
    data = find(rendered(name), "ConfigMap", "vigil-playbooks")["data"]
    shipped = {p.name for p in cluster_generate.playbook_files(ROOT)}
    if name == "default":
        assert set(data) == shipped
        for key, text in data.items():
            assert text == (ROOT / "playbooks" / key).read_text(encoding="utf-8")
    else:
        assert set(data) == (shipped - {"node-drain.yaml"}) | {"shop-restart.yaml"}
        route = find(rendered(name), "AlertmanagerConfig", "vigil-remediator")
        regex = route["spec"]["route"]["matchers"][0]["value"]
        for alertname in ("ShopSlow", "TeamAlert", "VigilAnomaly"):
            assert re.fullmatch(regex, alertname), alertname
        assert not re.fullmatch(regex, "KubeNodeNotReady")  # node-drain left out
    for key, text in data.items():
        (tmp_path / key).write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "remediator", "check", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_inline_playbooks_are_routed_as_the_generator_routes_the_shipped_ones(
    rendered: Any, tmp_path: Path
) -> None:
    """The template reads an inline playbook's alertname constraints (labels, `=` and
    `=~` matchers) as deploy/charts/generate.py reads the shipped ones with the
    remediator's own matcher parser: the same playbooks inline give the same route."""
    inline = {p.stem: p.read_text(encoding="utf-8") for p in cluster_generate.playbook_files(ROOT)}
    done = template(
        {"remediator": {"shippedPlaybooks": {"enabled": False}}, "playbooks": inline}, tmp=tmp_path
    )
    assert done.returncode == 0, done.stderr

    def alternatives(objects: list[Obj]) -> set[str]:
        route = find(objects, "AlertmanagerConfig", "vigil-remediator")["spec"]["route"]
        return set(route["matchers"][0]["value"].split("|"))

    assert alternatives(load_all(done.stdout)) == alternatives(rendered("default"))


def test_an_inline_playbook_may_not_shadow_a_shipped_one(tmp_path: Path) -> None:
    done = template({"playbooks": {"node-drain": INLINE_PLAYBOOK}}, tmp=tmp_path)
    assert done.returncode != 0
    assert "playbooks.node-drain: a shipped playbook has this name" in done.stderr


def test_an_inline_playbook_that_is_not_yaml_is_refused_naming_it(tmp_path: Path) -> None:
    done = template({"playbooks": {"broken": "spec: [unclosed"}}, tmp=tmp_path)
    assert done.returncode != 0
    assert "playbooks.broken: not a YAML mapping (a playbook file)" in done.stderr


def test_prometheus_rules_pass_promtool_and_link_their_runbooks(
    rendered: Any, tmp_path: Path
) -> None:
    objects = rendered("other-release")
    rules = of_kind(objects, "PrometheusRule")
    assert {r["metadata"]["name"] for r in rules} == {
        f"watch-vigil-{p.stem}" for p in cluster_generate.rule_files(ROOT)
    }
    runbooks = find(objects, "ConfigMap", "watch-vigil-runbooks")["data"]
    files = []
    for rule in rules:
        path = tmp_path / f"{rule['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False), encoding="utf-8")
        files.append(str(path))
        stem = rule["metadata"]["labels"]["vigil.dev/rules"]
        source = load(ROOT / "deploy/config/rules" / f"{stem}.yaml")
        want = render.with_runbook_urls(
            source, "http://watch-vigil-detector.observability.svc:9420/runbooks"
        )
        assert rule["spec"]["groups"] == want["groups"]
        for group in rule["spec"]["groups"]:
            for r in group["rules"]:
                if "alert" in r:
                    assert f"{r['alert']}.md" in runbooks
    done = subprocess.run(
        [_tool("promtool"), "check", "rules", *files],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboards_are_the_deploy_config_ones(rendered: Any) -> None:
    maps = [
        o
        for o in of_kind(rendered("default"), "ConfigMap")
        if o["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    sources = sorted((ROOT / "deploy/config/dashboards").glob("*.json"))
    assert len(maps) == len(sources)
    got = {k: v for m in maps for k, v in m["data"].items()}
    for path in sources:
        assert json.loads(got[path.name]) == json.loads(path.read_text(encoding="utf-8"))
    assert all(m["metadata"]["annotations"]["grafana_folder"] == "Vigil" for m in maps)


# --- RBAC: the renderer's --------------------------------------------------------------------


def rbac_tool(playbooks: Path, namespace: str, namespaces: list[str]) -> list[Obj]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "remediator",
            "rbac",
            "--playbooks",
            str(playbooks),
            "--namespace",
            namespace,
            "--namespaces",
            ",".join(namespaces),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return load_all(done.stdout)


def _essence(objects: list[Obj]) -> list[tuple[Any, ...]]:
    """RBAC objects without the chart's labels: kind, namespace, name, grants, bindings."""
    return sorted(
        (
            o["kind"],
            o["metadata"].get("namespace") or "",
            o["metadata"]["name"],
            json.dumps(o["metadata"].get("annotations") or {}, sort_keys=True),
            json.dumps(o.get("rules"), sort_keys=True),
            json.dumps(o.get("roleRef"), sort_keys=True),
            json.dumps(o.get("subjects"), sort_keys=True),
        )
        for o in objects
    )


def remediator_rbac(objects: list[Obj]) -> list[Obj]:
    return [
        o
        for o in objects
        if o["apiVersion"].startswith("rbac.")
        and o["metadata"]["name"].startswith("vigil-remediator")
    ]


@pytest.mark.parametrize(
    "namespace,act_in",
    [
        ("monitoring", ["default"]),
        ("monitoring", ["default", "kube-system", "monitoring", "shop"]),
        ("vigil", ["kube-public", "payments"]),
    ],
)
def test_the_rbac_is_what_vigil_remediator_rbac_prints(
    namespace: str, act_in: list[str], tmp_path: Path
) -> None:
    done = template(
        {"remediator": {"rbac": {"actInNamespaces": act_in}}}, namespace=namespace, tmp=tmp_path
    )
    assert done.returncode == 0, done.stderr
    got = remediator_rbac(load_all(done.stdout))
    want = rbac_tool(ROOT / "playbooks", namespace, act_in)
    assert _essence(got) == _essence(want)


def test_rbac_manifests_in_values_replace_the_generated_rbac(tmp_path: Path) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks/shop-restart.yaml").write_text(INLINE_PLAYBOOK, encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "remediator",
            "rbac",
            "--playbooks",
            str(tmp_path / "playbooks"),
            "--namespace",
            NAMESPACE,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    rendered_ = template(
        {
            "remediator": {
                "rbac": {"manifests": done.stdout},
                "shippedPlaybooks": {"enabled": False},
            },
            "playbooks": {"shop-restart": INLINE_PLAYBOOK},
        },
        tmp=tmp_path,
    )
    assert rendered_.returncode == 0, rendered_.stderr
    got = [
        o
        for o in load_all(rendered_.stdout)
        if o["apiVersion"].startswith("rbac.")
        and o["metadata"]["name"].startswith("vigil-remediator")
    ]
    assert _essence(got) == _essence(load_all(done.stdout))
    assert {o["metadata"].get("namespace") for o in got if o["kind"] == "Role"} == {
        "shop",
        NAMESPACE,
    }


# --- the values schema ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "values,message",
    [
        ({"detectr": {}}, "Additional property detectr is not allowed"),
        ({"detector": {"shardz": 2}}, "detector: Additional property shardz is not allowed"),
        (
            {"detector": {"shards": "two"}},
            "detector.shards: Invalid type. Expected: integer, given: string",
        ),
        ({"detector": {"shards": 0}}, "detector.shards: Must be greater than or equal to 1"),
        (
            {"remediator": {"persistence": {"enabled": "yes"}}},
            "remediator.persistence.enabled: Invalid type. Expected: boolean, given: string",
        ),
        ({"image": {"digest": "sha256:short"}}, "image.digest: Does not match pattern"),
        (
            {"serviceMonitor": {"interval": "15 seconds"}},
            "serviceMonitor.interval: Does not match pattern",
        ),
        (
            {"serviceMonitor": {"additionalLabels": {"release": 1}}},
            "serviceMonitor.additionalLabels.release: Invalid type. Expected: string",
        ),
        ({"playbooks": {"Bad Name": "x: 1"}}, "playbooks: Does not match pattern"),
        (
            {"remediator": {"rbac": {"actInNamespaces": ["Kube_System"]}}},
            "remediator.rbac.actInNamespaces.0: Does not match pattern",
        ),
        (
            {"networkPolicy": {"apiServerPorts": [0]}},
            "networkPolicy.apiServerPorts.0: Must be greater than or equal to 1",
        ),
        (
            {"networkPolicy": {"apiServerCIDRs": ["10.0.0.1"]}},
            "networkPolicy.apiServerCIDRs.0: Does not match pattern",
        ),
        (
            {"networkPolicy": {"apiServerCIDRs": ["10.0.0.0/33"]}},
            "networkPolicy.apiServerCIDRs.0: Does not match pattern",
        ),
        (
            {"networkPolicy": {"apiServerCIDRs": "10.0.0.0/8"}},
            "networkPolicy.apiServerCIDRs: Invalid type. Expected: array, given: string",
        ),
    ],
)
def test_the_values_schema_refuses_bad_values_naming_them(
    values: Obj, message: str, tmp_path: Path
) -> None:
    done = template(values, tmp=tmp_path)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert message in done.stderr, done.stderr


def test_every_object_in_the_schema_is_closed() -> None:
    """additionalProperties: false wherever the schema lists properties (Kubernetes objects
    passed through and the services' own configs are typed as objects and validated where
    they land: the API server, Vigil's loaders)."""
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    open_ = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                open_.append(where)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(schema, "#")
    assert not open_
    # and the chart's own defaults pass it
    assert not list(jsonschema.Draft7Validator(schema).iter_errors(load(CHART / "values.yaml")))


# --- packaging and generated files ---------------------------------------------------------


def test_helm_package_makes_an_archive_that_renders_the_same(tmp_path: Path) -> None:
    done = helm("package", str(CHART), "--destination", str(tmp_path))
    assert done.returncode == 0, done.stderr
    chart = load(CHART / "Chart.yaml")
    archive = tmp_path / f"vigil-{chart['version']}.tgz"
    assert archive.is_file()
    # Helm keeps the chart and the rendered manifest in the release's Secret (1 MiB in
    # etcd): the dashboards and runbooks carried in files/ must leave room
    assert archive.stat().st_size < 256 * 1024
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {
        "vigil/Chart.yaml",
        "vigil/values.yaml",
        "vigil/values.schema.json",
        "vigil/templates/NOTES.txt",
        "vigil/files/rbac.yaml",
        "vigil/files/rbac/node-drain.yaml",
        "vigil/examples/kube-prometheus-stack.yaml",
    } <= names
    assert not [n for n in names if n.endswith(".py")]
    values = {
        "detector": {"auth": {"existingSecret": "t"}},
        "remediator": {"auth": {"existingSecret": "u"}},
    }
    from_dir = template(values, tmp=tmp_path)
    from_archive = template(values, chart=archive, tmp=tmp_path)
    assert from_dir.returncode == from_archive.returncode == 0
    assert from_dir.stdout == from_archive.stdout


def test_the_chart_files_are_up_to_date() -> None:
    stale = chart_generate.stale(chart_generate.build())
    assert not stale, f"stale (run .venv/bin/python deploy/charts/generate.py): {stale}"


def test_regenerating_writes_the_same_and_notices_leftovers(tmp_path: Path) -> None:
    files = chart_generate.build()
    chart_generate.write(files, tmp_path)
    assert not chart_generate.stale(files, tmp_path)
    (tmp_path / "files/rules/leftover.yaml").write_text("x", encoding="utf-8")
    (tmp_path / "files/rbac.yaml").write_text("x", encoding="utf-8")
    (tmp_path / "files/rbac/leftover.yaml").write_text("x", encoding="utf-8")
    assert chart_generate.stale(files, tmp_path) == [
        "files/rbac.yaml",
        "files/rbac/leftover.yaml",
        "files/rules/leftover.yaml",
    ]


# --- a default kube-prometheus-stack picks Vigil up ---------------------------------------


def _matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector ({} selects everything)."""
    ok = all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
    for e in selector.get("matchExpressions") or ():
        present = e["key"] in labels
        ok = (
            ok
            and {
                "In": present and labels.get(e["key"]) in e.get("values", ()),
                "NotIn": labels.get(e["key"]) not in e.get("values", ()),
                "Exists": present,
                "DoesNotExist": not present,
            }[e["operator"]]
        )
    return ok


def test_a_default_kube_prometheus_stack_selects_every_vigil_object(rendered: Any) -> None:
    objects = rendered("default")
    prometheus, alertmanager = STACK["prometheus"], STACK["alertmanager"]
    selectors = {
        "ServiceMonitor": "serviceMonitorSelector",
        "PodMonitor": "podMonitorSelector",
        "Probe": "probeSelector",
        "PrometheusRule": "ruleSelector",
    }
    found = set()
    for obj in rendered("everything") + objects:
        labels = obj["metadata"]["labels"]
        if obj["kind"] in selectors:
            assert _matches(prometheus[selectors[obj["kind"]]], labels), ident(obj)
            found.add(obj["kind"])
        elif obj["kind"] == "AlertmanagerConfig":
            assert _matches(alertmanager["alertmanagerConfigSelector"], labels)
            found.add(obj["kind"])
        elif obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith("vigil-dashboard-"):
            sidecar = STACK["grafana"]["sidecar"]["dashboards"]
            assert labels.get(sidecar["label"]) == sidecar["labelValue"], ident(obj)
            found.add("dashboard")
    assert found == {"ServiceMonitor", "Probe", "PrometheusRule", "AlertmanagerConfig", "dashboard"}
    # the namespace selectors are {} (every namespace), Grafana searches ALL
    assert all(prometheus[k] == {} for k in prometheus if k.endswith("NamespaceSelector"))
    assert alertmanager["alertmanagerConfigNamespaceSelector"] == {}
    assert STACK["grafana"]["sidecar"]["dashboards"]["searchNamespace"] == "ALL"


def test_vigil_talks_to_the_stacks_services_and_admits_its_pods(rendered: Any) -> None:
    objects = rendered("default")
    namespace = STACK["namespace"]
    prom = (
        f"http://{STACK['prometheus']['service']['name']}.{namespace}.svc:"
        f"{STACK['prometheus']['service']['port']}"
    )
    am = (
        f"http://{STACK['alertmanager']['service']['name']}.{namespace}.svc:"
        f"{STACK['alertmanager']['service']['port']}"
    )
    for workload in ("vigil-detector", "vigil-remediator"):
        args = args_of(container(objects, workload))
        assert args["--prometheus"] == prom and args["--alertmanager"] == am
    policy = find(objects, "NetworkPolicy", "vigil-remediator")
    peer = policy["spec"]["ingress"][0]["from"][0]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": namespace}
    assert _matches(peer["podSelector"], STACK["alertmanager"]["podLabels"])
    policy = find(objects, "NetworkPolicy", "vigil-detector")
    peer = policy["spec"]["ingress"][0]["from"][0]
    for pod in ("prometheus", "grafana"):
        assert _matches(peer["podSelector"], STACK[pod]["podLabels"])


# --- the kube-prometheus-stack example -------------------------------------------------------


def example_stack() -> Obj:
    doc: Obj = load(CHART / chart_generate.EXAMPLE_STACK)
    return doc


def test_the_example_sends_each_shard_its_hashmod_share(rendered: Any) -> None:
    spec = example_stack()["prometheus"]["prometheusSpec"]
    objects = rendered("example")
    detector = find(objects, "StatefulSet", "vigil-detector")
    shards = detector["spec"]["replicas"]
    assert shards == load(CHART / "examples/vigil.yaml")["detector"]["shards"] == 2
    headless = detector["spec"]["serviceName"]
    urls = [
        f"http://vigil-detector-{i}.{headless}.{NAMESPACE}.svc:9420/api/v1/write"
        for i in range(shards)
    ]
    entries = spec["remoteWrite"]
    assert [e["url"] for e in entries] == urls
    assert [_snake(e) for e in entries] == json.loads(json.dumps(render.remote_write(urls)))
    for i, entry in enumerate(entries):
        hashmod = [r for r in entry["writeRelabelConfigs"] if r.get("action") == "hashmod"]
        assert [r["modulus"] for r in hashmod] == [shards]
        keep = entry["writeRelabelConfigs"][-2]
        assert keep == {"sourceLabels": ["__tmp_vigil_shard"], "regex": str(i), "action": "keep"}
        # the token of the Secret the chart makes (or existingSecret) in Prometheus' namespace
        assert entry["authorization"]["credentials"] == {
            "name": "vigil-detector-token",
            "key": "token",
        }
    find(objects, "Secret", "vigil-detector-token")
    assert spec["enableRemoteWriteReceiver"] is True  # the detector's write-back


def test_the_example_values_match_the_prometheus_crd() -> None:
    spec = crd_schemas()[(f"{OPERATOR_GROUP}/v1", "Prometheus")]["properties"]["spec"]
    values = example_stack()["prometheus"]["prometheusSpec"]
    validator = jsonschema.Draft202012Validator({**spec, "required": []})
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(values)]
    assert not errors, "\n".join(errors)


def test_the_example_lets_vigils_route_see_every_namespace() -> None:
    """The operator's default strategy (OnNamespace) would add namespace="monitoring" to
    Vigil's route: KubePodCrashLooping from `shop` would never reach the remediator."""
    assert STACK["alertmanager"]["alertmanagerConfigMatcherStrategy"] == {"type": "OnNamespace"}
    strategy = example_stack()["alertmanager"]["alertmanagerSpec"][
        "alertmanagerConfigMatcherStrategy"
    ]
    assert strategy == {"type": "OnNamespaceExceptForAlertmanagerNamespace"}
    # ... which is enough because the example installs Vigil in Alertmanager's namespace
    assert chart_generate.EXAMPLE_NAMESPACE == STACK["namespace"] == NAMESPACE


# --- NOTES.txt -------------------------------------------------------------------------------


def test_notes_say_what_to_add_to_prometheus(tmp_path: Path) -> None:
    """NOTES.txt rendered through tpl in a copy of the chart (helm template never prints
    it and helm install --dry-run wants a cluster)."""
    import shutil

    copy_ = tmp_path / "vigil"
    shutil.copytree(CHART, copy_)
    (copy_ / "files/NOTES.txt").write_text((CHART / "templates/NOTES.txt").read_text())
    (copy_ / "templates/zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ tpl (.Files.Get "files/NOTES.txt") . | quote }}\n'
    )
    done = template(
        {"detector": {"shards": 3}, "playbooks": {"shop-restart": INLINE_PLAYBOOK}},
        chart=copy_,
        tmp=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    notes = find(load_all(done.stdout), "ConfigMap", "notes")["data"]["notes"]
    for i in range(3):
        assert (
            f"shard {i}: http://vigil-detector-{i}.vigil-detector-headless."
            f"{NAMESPACE}.svc:9420/api/v1/write"
        ) in notes
    assert "modulus 3" in notes and "enableRemoteWriteReceiver: true" in notes
    assert "kubectl -n monitoring port-forward svc/vigil-remediator 9421" in notes
    assert "Your playbooks (shop-restart)" in notes
    assert "keeps the PVCs" in notes


def test_the_values_for_your_own_stack_come_from_the_same_generator() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "deploy/charts/generate.py", "--kube-prometheus-stack", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    same = run("--shards", "2")
    assert same.returncode == 0, same.stderr
    assert same.stdout == (CHART / chart_generate.EXAMPLE_STACK).read_text(encoding="utf-8")
    other = run("--shards", "3", "--fullname", "watch-vigil", "--namespace", "vigil")
    assert other.returncode == 0, other.stderr
    doc = yaml.safe_load(other.stdout)
    entries = doc["prometheus"]["prometheusSpec"]["remoteWrite"]
    assert [e["url"] for e in entries] == [
        f"http://watch-vigil-detector-{i}.watch-vigil-detector-headless.vigil.svc:9420/api/v1/write"
        for i in range(3)
    ]
    # outside Alertmanager's namespace only `None` lets the route see every namespace
    assert doc["alertmanager"]["alertmanagerSpec"]["alertmanagerConfigMatcherStrategy"] == {
        "type": "None"
    }
    assert "copy it there from vigil" in other.stdout
    bad = run("--shards", "0")
    assert bad.returncode == 2 and "shards: 0 is not in 1..64" in bad.stderr

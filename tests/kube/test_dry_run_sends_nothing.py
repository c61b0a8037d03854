"""Every action the app offers, run with ``dry_run=True``, sends nothing that changes
anything: no HTTP write, no Alertmanager write, no chat message, and Kubernetes writes only
with ``dryRun=All`` (the API server admits the change and stores nothing).

The actions come from the registry as the app builds it (``build_registry``), never from
a hand-written list: a new action without an example here fails
``test_every_registered_action_has_an_example``, and one that sends in a dry run fails
``test_a_dry_run_sends_no_change``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from remediator.actions.registry import ActionContext, DryRun, DryRunStyle, Executed
from remediator.app import build_registry
from remediator.cluster.kube import Kube
from remediator.redaction import Redactor
from remediator.webhook import alert_from_json
from tests.unit.remediator.test_app import notification

pytestmark = pytest.mark.kube
NS = "shop"
REGISTRY = build_registry()
JOB_SPEC = {
    "template": {
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "fix", "image": "busybox:1.36", "command": ["true"]}],
        }
    }
}

# Valid params per action (several where the way it sends differs). Keyed by action name.
EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "http.request": [
        {
            "url": "https://hooks.example/tickets",
            "json": {"title": "disk"},
            "headers": {"Authorization": {"secret": "ticket-token"}, "X-Source": "vigil"},
        },
        {"url": "https://hooks.example/tickets/7", "method": "DELETE"},
        {"url": "https://hooks.example/ping", "method": "GET"},
    ],
    "alertmanager.silence": [{"matchers": ['alertname="DiskFlapping"'], "duration_s": 600}],
    "alertmanager.expire_silence": [{"silence_id": "4f1c-77"}],
    "alertmanager.escalate": [{"summary": "could not fix it", "labels": {"team": "db"}}],
    "notify": [
        {"url": {"secret": "slack-webhook"}, "text": "restarting web"},
        {"url": "https://hooks.example/chat", "text": "restarting web"},
    ],
    "promql.check": [{"query": "up == 1"}, {"query": "up == 0", "expect": "empty"}],
    "wait": [{"seconds": 30}],
    "vigil.verify": [{"selector": 'job="web"'}],
    "kubernetes.rollout_restart": [{"namespace": NS, "name": "web"}],
    "kubernetes.scale": [
        {"namespace": NS, "name": "web", "delta": 1},
        {"namespace": NS, "name": "web", "replicas": 1},
    ],
    "kubernetes.rollout_undo": [{"namespace": NS, "name": "web"}],
    "kubernetes.delete_pod": [{"namespace": NS, "name": "victim"}],
    "kubernetes.evict_pod": [{"namespace": NS, "name": "victim"}],
    "kubernetes.cordon": [{"node": "node-1"}],
    "kubernetes.uncordon": [{"node": "node-2"}],
    "kubernetes.drain": [{"node": "node-1"}],
    "kubernetes.run_job": [{"namespace": NS, "name_prefix": "vacuum", "spec": JOB_SPEC}],
    "kubernetes.delete_job": [
        {"namespace": NS, "name": "old-job"},
        {"namespace": NS, "name": "never-was"},
    ],
    "kubernetes.annotate": [
        {"namespace": NS, "name": "web", "annotations": {"vigil.dev/note": "restarted"}},
        {"kind": "node", "name": "node-1", "annotations": {"vigil.dev/note": None}},
    ],
}

# Calls that only read. The detector's POST /api/v1/verify judges a change from Prometheus
# data and stores nothing (detector/verify/verdict.py), so it counts as a read.
READS = (("prometheus",), ("alertmanager", "GET"), ("detector", "POST", "/api/v1/verify"))
KUBE_READS = {"get", "list", "watch"}
KINDS = ("Deployment", "ReplicaSet", "Pod", "Node", "Job")


class RecordingServices:
    """The Services sink: records every call, answers as a healthy peer would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.redactor = Redactor()

    async def alertmanager(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        self.calls.append(("alertmanager", method, path))
        if method == "POST" and path == "/api/v2/silences":
            return 200, {"silenceID": "s-1"}
        return 200, [] if method == "GET" else None

    async def prometheus_query(self, query: str) -> list[dict[str, Any]]:
        self.calls.append(("prometheus", query))
        return [] if query == "up == 0" else [{"metric": {}, "value": [0, "1"]}]

    async def http(self, method: str, url: str, *, headers, body, timeout_s) -> tuple[int, str]:
        self.calls.append(("http", method, url))
        return 200, "ok"

    async def detector(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        self.calls.append(("detector", method, path))
        return 200, {"verdict": "pass", "queries": []}

    def secret(self, name: str) -> str:
        self.calls.append(("secret", name))  # a local file: not sending
        value = f"https://hooks.example/{name}/T0/B0/xoxb-secret-value"
        self.redactor.register(name, value)
        return value

    def url_allowed(self, url: str) -> bool:
        return url.startswith("https://hooks.example/")

    def redact(self, text: str) -> str:
        return self.redactor.text(text)

    def sends(self) -> list[tuple[str, ...]]:
        return [
            c for c in self.calls if c[0] != "secret" and not any(c[: len(r)] == r for r in READS)
        ]


def _seed(d) -> None:
    d.seed_namespace(NS)
    d.seed_node("node-1")
    d.seed_node("node-2", unschedulable=True)
    d.seed_deployment("web", NS, images=["shop/web:1.0", "shop/web:1.1"])
    d.seed_pod("victim", NS, node="node-1")
    d.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "old-job", "namespace": NS},
            "spec": JOB_SPEC,
        }
    )


def _snapshot(d) -> dict[str, Any]:
    return {kind: copy.deepcopy(d.objects(kind)) for kind in KINDS}


def test_every_registered_action_has_an_example():
    assert sorted(EXAMPLES) == REGISTRY.names(), (
        "add valid example params for the new action to EXAMPLES, so its dry run is proven"
    )
    for name, examples in EXAMPLES.items():
        spec = REGISTRY.get(name)
        assert spec is not None and examples
        for example in examples:
            spec.params.model_validate(example)


@pytest.mark.parametrize("name", REGISTRY.names())
async def test_a_dry_run_sends_no_change(name, kube_double):
    d = kube_double.double
    _seed(d)
    kube = Kube(await kube_double.api_client())
    spec = REGISTRY.get(name)
    assert spec is not None
    alert = alert_from_json(notification(namespace=NS, pod="victim")["alerts"][0])
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)  # a fake sleep: recorded, never waited

    for example in EXAMPLES.get(name, []):
        services = RecordingServices()
        ctx = ActionContext(
            run_id="0000000000001-abcd",
            run_url="http://vigil/run",
            dry_run=True,
            services=services,
            alert=alert,
            kube=kube,
            log=logging.LoggerAdapter(logging.getLogger("test"), {}),
            clock=lambda: 1_795_734_000.0,
            sleep=sleep,
        )
        before = _snapshot(d)
        d.clear_requests()
        outcome = await spec.func(ctx, spec.params.model_validate(example))
        assert isinstance(outcome, DryRun | Executed), (example, outcome)
        assert services.sends() == [], f"{name} sent in a dry run: {services.sends()}"
        writes = [r for r in d.requests if r.verb not in KUBE_READS]
        assert all(r.dry_run for r in writes), f"{name} wrote without dryRun=All: {writes}"
        assert _snapshot(d) == before, f"{name} changed the cluster in a dry run"
        if spec.mutates:
            assert isinstance(outcome, DryRun) and outcome.detail, outcome
        if isinstance(outcome, Executed):  # a read-only action: nothing to undo
            assert outcome.inverse is None
        if spec.dry_run is DryRunStyle.DESCRIBE:
            assert not writes, f"{name} says it describes, yet it called the cluster"

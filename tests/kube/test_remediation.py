"""Runs that act on the API double through the whole remediator: undo after a failed
verification, target locks, several replicas sharing state, and the shipped playbooks'
exact plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remediator.app import STATE, build_app, build_registry
from remediator.audit.store import RunState
from remediator.catalog.loader import load_catalog
from remediator.cluster import targets
from remediator.cluster.kube import Kube
from remediator.config import ClusterConfig, RemediatorConfig
from remediator.runs.plan import build_plan
from remediator.webhook import alert_from_json
from tests.conftest import ROOT
from tests.unit.remediator.fakes import FakeServices
from tests.unit.remediator.test_app import Clock, notification, settle

pytestmark = pytest.mark.kube
NS = "shop"

SCALE_PLAYBOOK = """
apiVersion: vigil/v1
kind: Playbook
metadata: {name: scale-up}
spec:
  match: {labels: {alertname: QueueBacklog}}
  mode: auto
  guards: {respect_silences: false}
  steps:
    - name: scale
      action: kubernetes.scale
      params: {namespace: '{{ target.namespace }}', name: '{{ target.name }}', delta: 2,
               max_replicas: 6}
  verify:
    - {query: 'backlog < 100', within_s: 30, interval_s: 10}
"""

CORDON_PLAYBOOK = """
apiVersion: vigil/v1
kind: Playbook
metadata: {name: cordon-node}
spec:
  match: {labels: {alertname: NodeFlaky}}
  mode: auto
  guards: {respect_silences: false}
  steps:
    - {name: cordon, action: kubernetes.cordon, params: {node: '{{ labels.node }}'}}
  verify:
    - {query: 'node_ok == 1', within_s: 20, interval_s: 10}
"""


async def _start(
    aiohttp_client,
    tmp_path: Path,
    kube_double,
    playbooks: dict[str, str],
    *,
    cluster: ClusterConfig | None = None,
    name: str = "a",
):
    book = tmp_path / f"playbooks-{name}"
    book.mkdir(exist_ok=True)
    for file, text in playbooks.items():
        (book / file).write_text(text)
    fake, clock = FakeServices(), Clock()

    async def kube() -> Kube:
        return Kube(await kube_double.api_client())

    cfg = RemediatorConfig(cluster=cluster or ClusterConfig())
    app = build_app(
        cfg,
        playbook_dirs=[book],
        state_dir=tmp_path / f"state-{name}",
        services=fake,
        clock=clock,
        sleep=clock.sleep,
        kube=kube,
        external_url="http://vigil",
    )
    client = await aiohttp_client(app)
    st = app[STATE]
    await st.ready.wait()
    return client, st, fake, clock


async def test_failed_verification_scales_back(aiohttp_client, tmp_path, kube_double):
    d = kube_double.double
    d.seed_namespace(NS)
    pod = d.seed_deployment("worker", NS, replicas=3).pods[0]["metadata"]["name"]
    client, st, _fake, _clock = await _start(
        aiohttp_client, tmp_path, kube_double, {"scale-up.yaml": SCALE_PLAYBOOK}
    )
    await client.post("/webhook", json=notification("QueueBacklog", namespace=NS, pod=pod))
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.UNDONE)
    assert d.get("Deployment", NS, "worker")["spec"]["replicas"] == 3
    assert run.target == f"deployment/{NS}/worker"
    scales = [r for r in d.requests if r.subresource == "scale" and r.verb == "patch"]
    assert len(scales) == 2  # up to 5, then back to 3
    doc = await (await client.get(f"/api/v1/runs/{run.id}")).json()
    plan = next(e for e in doc["events"] if e["kind"] == "plan")
    assert plan["detail"]["target"]["chain"][-1] == "deployment/worker"


async def test_failed_verification_uncordons(aiohttp_client, tmp_path, kube_double):
    d = kube_double.double
    d.seed_node("node-4")
    client, st, _fake, _clock = await _start(
        aiohttp_client, tmp_path, kube_double, {"cordon-node.yaml": CORDON_PLAYBOOK}
    )
    await client.post("/webhook", json=notification("NodeFlaky", node="node-4"))
    await settle(st, lambda runs: runs and runs[0].state == RunState.UNDONE)
    assert not d.get("Node", None, "node-4")["spec"].get("unschedulable", False)
    patches = [r for r in d.requests if r.resource == "nodes" and r.verb == "patch"]
    assert len(patches) == 2


async def test_a_target_locked_by_another_run_is_refused(aiohttp_client, tmp_path, kube_double):
    d = kube_double.double
    d.seed_namespace(NS)
    d.seed_namespace("vigil")
    pod = d.seed_deployment("worker", NS, replicas=3).pods[0]["metadata"]["name"]
    client, st, _fake, clock = await _start(
        aiohttp_client,
        tmp_path,
        kube_double,
        {"scale-up.yaml": SCALE_PLAYBOOK},
        cluster=ClusterConfig(namespace="vigil", identity="a"),
    )
    lock = st.runner
    assert lock is not None
    from remediator.cluster.leases import LeaseLock, target_lease_name

    other = LeaseLock(
        st.kube, namespace="vigil", name=target_lease_name(f"deployment/{NS}/worker"), clock=clock
    )
    assert await other.acquire("run-of-another-replica", duration_s=600)
    await st.elector.step()
    await client.post("/webhook", json=notification("QueueBacklog", namespace=NS, pod=pod))
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.REFUSED)
    assert run.outcome == f"deployment/{NS}/worker is locked by run run-of-another-replica"
    assert d.get("Deployment", NS, "worker")["spec"]["replicas"] == 3


async def test_a_new_leader_neither_repeats_nor_forgets_what_the_old_one_did(
    aiohttp_client, tmp_path, kube_double
):
    d = kube_double.double
    d.seed_namespace(NS)
    d.seed_namespace("vigil")
    pod = d.seed_deployment("worker", NS, replicas=3).pods[0]["metadata"]["name"]
    pb = {"scale-up.yaml": SCALE_PLAYBOOK.replace("'backlog < 100'", "'ok'")}
    a_client, a, a_fake, a_clock = await _start(
        aiohttp_client,
        tmp_path,
        kube_double,
        pb,
        name="a",
        cluster=ClusterConfig(namespace="vigil", identity="a", lease_duration_s=15),
    )
    b_client, b, b_fake, b_clock = await _start(
        aiohttp_client,
        tmp_path,
        kube_double,
        pb,
        name="b",
        cluster=ClusterConfig(namespace="vigil", identity="b", lease_duration_s=15),
    )
    a_fake.query_results["ok"] = b_fake.query_results["ok"] = [{}]
    assert await a.elector.step() and not await b.elector.step()
    body = notification("QueueBacklog", namespace=NS, pod=pod)
    # Alertmanager sends every notification to both replicas
    await a_client.post("/webhook", json=body)
    await b_client.post("/webhook", json=body)
    await settle(a, lambda runs: runs and runs[0].state == RunState.SUCCEEDED)
    assert await b.audit.run(lambda db: db.list_runs()) == []  # b only recorded it
    assert d.get("Deployment", NS, "worker")["spec"]["replicas"] == 5
    # a dies; after the lease duration b takes over, imports a's run, replays, acts on nothing
    b_clock.now = a_clock.now + 16
    assert await b.elector.step()
    runs = await b.audit.run(lambda db: db.list_runs())
    assert [(r.state, r.outcome) for r in runs] == [
        (RunState.SUCCEEDED, f"done by run {runs[0].outcome.split()[3]} of replica a")
    ]
    assert d.get("Deployment", NS, "worker")["spec"]["replicas"] == 5
    # and its cooldown counts a's action: a second alert on the target is refused
    await b_client.post(
        "/webhook", json=notification("QueueBacklog", fingerprint="f2", namespace=NS, pod=pod)
    )
    runs = await settle(b, lambda runs: len(runs) == 2 and runs[0].state == RunState.REFUSED)
    assert runs[0].outcome.startswith("cooldown: ")


LIBRARY_ALERTS = {
    "crashloop-delete-pod": {"alertname": "KubePodCrashLooping"},
    "memory-growth-restart": {"alertname": "ContainerMemoryNearLimit"},
    "rollback-bad-rollout": {
        "alertname": "VigilAnomaly",
        "metric_name": "http_request_errors_ratio",
    },
    "node-drain": {"alertname": "KubeNodeNotReady", "node": "node-1"},
    "evicted-pods-cleanup": {"alertname": "KubePodEvicted"},
    "hpa-maxed-scale-up": {
        "alertname": "KubeHpaMaxedOut",
        "deployment": "checkout",
        "horizontalpodautoscaler": "checkout",
    },
    "cert-expiry-escalate": {
        "alertname": "CertificateExpiringSoon",
        "instance": "shop.example:443",
    },
}


@pytest.mark.parametrize("name", sorted(LIBRARY_ALERTS))
async def test_each_shipped_playbook_turns_its_alert_into_this_exact_plan(kube_double, name):
    d = kube_double.double
    d.seed_namespace(NS)
    seeded = d.seed_deployment(
        "checkout", NS, replicas=3, images=["shop/checkout:1.4.1", "shop/checkout:1.4.2"]
    )
    pod = seeded.pods[0]["metadata"]["name"]
    registry = build_registry()
    entry = load_catalog([ROOT / "playbooks" / f"{name}.yaml"], registry).entries[0]
    alert = alert_from_json(
        {
            "status": "firing",
            "labels": {**LIBRARY_ALERTS[name], "namespace": NS, "pod": pod},
            "annotations": {"summary": "expires in 6 days"},
            "startsAt": "2026-11-27T10:00:00Z",
            "fingerprint": "c0ffee",
        }
    )
    target = await targets.resolve(Kube(await kube_double.api_client()), alert.labels)
    plan = [
        s.to_json()
        for s in build_plan(
            entry.playbook.spec.steps,
            alert,
            registry,
            run_id="r-1",
            run_url="http://vigil/r-1",
            target=target,
        )
    ]
    expected = json.loads(
        (Path(__file__).parent / "plans" / f"{name}.json").read_text().replace("POD", pod)
    )
    assert plan == expected


async def test_an_approval_is_refused_when_the_target_changed_since(
    aiohttp_client, tmp_path, kube_double
):
    d = kube_double.double
    d.seed_namespace(NS)
    pod = d.seed_deployment("worker", NS, replicas=3).pods[0]["metadata"]["name"]
    pb = SCALE_PLAYBOOK.replace("mode: auto", "mode: approval")
    client, st, _fake, _clock = await _start(
        aiohttp_client, tmp_path, kube_double, {"scale-up.yaml": pb}
    )
    st.admin_token = "adm"
    await client.post("/webhook", json=notification("QueueBacklog", namespace=NS, pod=pod))
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.WAITING_APPROVAL)
    kube = Kube(await kube_double.api_client())
    await kube.patch(
        "deployment",
        NS,
        "worker",
        {"spec": {"template": {"metadata": {"annotations": {"changed-by": "someone-else"}}}}},
    )
    resp = await client.post(
        f"/api/v1/runs/{run.id}/approve",
        headers={"Authorization": "Bearer adm"},
        json={"plan_hash": run.plan_hash, "by": "alice"},
    )
    assert resp.status == 409 and "plan changed" in (await resp.json())["error"]
    assert d.get("Deployment", NS, "worker")["spec"]["replicas"] == 3


async def test_pausing_any_replica_stops_the_leader(aiohttp_client, tmp_path, kube_double):
    d = kube_double.double
    d.seed_namespace(NS)
    d.seed_namespace("vigil")
    pod = d.seed_deployment("worker", NS, replicas=3).pods[0]["metadata"]["name"]
    a_client, a, _a_fake, _ = await _start(
        aiohttp_client,
        tmp_path,
        kube_double,
        {"scale-up.yaml": SCALE_PLAYBOOK},
        name="a",
        cluster=ClusterConfig(namespace="vigil", identity="a"),
    )
    b_client, b, _, _ = await _start(
        aiohttp_client,
        tmp_path,
        kube_double,
        {"scale-up.yaml": SCALE_PLAYBOOK},
        name="b",
        cluster=ClusterConfig(namespace="vigil", identity="b"),
    )
    assert await a.elector.step() and not await b.elector.step()
    b.admin_token = "adm"
    resp = await b_client.post("/api/v1/pause", headers={"Authorization": "Bearer adm"})
    assert resp.status == 200  # asked of the follower
    await a_client.post("/webhook", json=notification("QueueBacklog", namespace=NS, pod=pod))
    [run] = await settle(a, lambda runs: runs and runs[0].state == RunState.REFUSED)
    assert run.outcome.startswith("kill_switch: ")
    assert d.get("Deployment", NS, "worker")["spec"]["replicas"] == 3

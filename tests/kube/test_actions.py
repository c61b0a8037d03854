"""Every Kubernetes action against the API double, in dry-run and for real, with conflicts,
disruption budgets, inverses; target resolution; the RBAC `vigil-remediator rbac` prints
covers every request the actions made."""

from __future__ import annotations

import logging

import pytest

from remediator import rbac
from remediator.actions import k8s
from remediator.actions.registry import ActionContext, DryRun, Executed, Failed
from remediator.app import build_registry
from remediator.catalog.loader import load_catalog
from remediator.cluster import targets
from remediator.cluster.kube import Kube
from tests.conftest import ROOT
from tests.unit.remediator.fakes import FakeServices

pytestmark = pytest.mark.kube
NS = "shop"


async def _kube(kube_double) -> Kube:
    kube_double.double.seed_namespace(NS)
    return Kube(await kube_double.api_client())


def _ctx(kube: Kube, *, dry_run: bool = False) -> ActionContext:
    return ActionContext(
        run_id="0000000000001-abcd",
        run_url="http://vigil/run",
        dry_run=dry_run,
        services=FakeServices(),
        alert=None,
        kube=kube,
        log=logging.LoggerAdapter(logging.getLogger("test"), {}),
        clock=lambda: 1_795_734_000.0,
    )


async def test_rollout_restart_dry_run_changes_nothing_then_restarts(kube_double):
    kube = await _kube(kube_double)
    d = kube_double.double
    d.seed_deployment("web", NS)
    params = k8s.WorkloadRef(namespace=NS, name="web")
    before = d.get("Deployment", NS, "web")
    out = await k8s.rollout_restart(_ctx(kube, dry_run=True), params)
    assert isinstance(out, DryRun)
    assert d.get("Deployment", NS, "web") == before
    assert [r.dry_run for r in d.requests if r.verb == "patch"] == [True]
    out = await k8s.rollout_restart(_ctx(kube), params)
    assert isinstance(out, Executed)
    after = d.get("Deployment", NS, "web")
    assert (
        after["spec"]["template"]["metadata"]["annotations"][k8s.RESTARTED_AT]
        == "2026-11-26T23:00:00+00:00"
    )
    assert after["metadata"]["generation"] > before["metadata"]["generation"]


async def test_scale_is_bounded_retries_a_conflict_and_its_inverse_restores(kube_double):
    kube = await _kube(kube_double)
    d = kube_double.double
    d.seed_deployment("api", NS, replicas=3)
    d.inject_error(
        409, "Conflict", "the object has been modified", verb="patch", subresource="scale"
    )
    out = await k8s.scale(
        _ctx(kube), k8s.ScaleParams(namespace=NS, name="api", delta=9, max_replicas=8)
    )
    assert isinstance(out, Executed) and out.detail == {"from": 3, "to": 8}
    assert d.get("Deployment", NS, "api")["spec"]["replicas"] == 8
    assert out.inverse is not None
    name, params = out.inverse
    back = await k8s.scale(_ctx(kube), k8s.ScaleParams(**params))
    assert name == "kubernetes.scale" and isinstance(back, Executed)
    assert d.get("Deployment", NS, "api")["spec"]["replicas"] == 3


async def test_rollout_undo_goes_back_one_revision_and_forward_again(kube_double):
    kube = await _kube(kube_double)
    d = kube_double.double
    d.seed_deployment("checkout", NS, images=["shop/checkout:1.4.1", "shop/checkout:1.4.2"])
    image = lambda: d.get("Deployment", NS, "checkout")["spec"]["template"]["spec"][  # noqa: E731
        "containers"
    ][0]["image"]
    dry = await k8s.rollout_undo(
        _ctx(kube, dry_run=True), k8s.UndoParams(namespace=NS, name="checkout")
    )
    assert isinstance(dry, DryRun) and image() == "shop/checkout:1.4.2"
    out = await k8s.rollout_undo(_ctx(kube), k8s.UndoParams(namespace=NS, name="checkout"))
    assert isinstance(out, Executed) and out.detail == {"from_revision": 2, "to_revision": 1}
    assert image() == "shop/checkout:1.4.1"
    template = d.get("Deployment", NS, "checkout")["spec"]["template"]
    assert "pod-template-hash" not in template["metadata"]["labels"]
    assert out.inverse is not None
    _, params = out.inverse
    again = await k8s.rollout_undo(_ctx(kube), k8s.UndoParams(**params))
    assert isinstance(again, Executed) and image() == "shop/checkout:1.4.2"


async def test_eviction_blocked_by_a_disruption_budget_is_reported_not_retried(kube_double):
    kube = await _kube(kube_double)
    d = kube_double.double
    seeded = d.seed_deployment("db", NS, replicas=2)
    d.seed_pdb("db", NS, match_labels={"app": "db"}, min_available=2)
    pod = seeded.pods[0]["metadata"]["name"]
    out = await k8s.evict_pod(_ctx(kube), k8s.PodRef(namespace=NS, name=pod))
    assert isinstance(out, Failed) and out.error.startswith("blocked by a disruption budget")
    assert not out.temporary
    assert d.get("Pod", NS, pod) is not None
    assert sum(1 for r in d.requests if r.subresource == "eviction") == 1


async def test_delete_pod_dry_run_and_real(kube_double):
    kube = await _kube(kube_double)
    d = kube_double.double
    pod = d.seed_deployment("cache", NS, replicas=1).pods[0]["metadata"]["name"]
    assert isinstance(
        await k8s.delete_pod(_ctx(kube, dry_run=True), k8s.PodRef(namespace=NS, name=pod)), DryRun
    )
    assert d.get("Pod", NS, pod) is not None
    assert isinstance(
        await k8s.delete_pod(_ctx(kube), k8s.PodRef(namespace=NS, name=pod)), Executed
    )
    assert d.get("Pod", NS, pod) is None


async def test_cordon_undo_uncordons_only_what_it_cordoned(kube_double):
    kube = await _kube(kube_double)
    d = kube_double.double
    d.seed_node("node-7")
    d.seed_node("node-8", unschedulable=True)
    out = await k8s.cordon(_ctx(kube), k8s.NodeRef(node="node-7"))
    assert isinstance(out, Executed) and d.get("Node", None, "node-7")["spec"]["unschedulable"]
    assert out.inverse is not None
    _, params = out.inverse
    await k8s.uncordon(_ctx(kube), k8s.NodeRef(**params))
    assert not d.get("Node", None, "node-7")["spec"].get("unschedulable", False)
    already = await k8s.cordon(_ctx(kube), k8s.NodeRef(node="node-8"))
    assert isinstance(already, Executed) and already.inverse is None


async def test_drain_skips_daemonset_and_mirror_pods_and_reports_budget_blocks(kube_double):
    kube = await _kube(kube_double)
    d = kube_double.double
    d.seed_node("node-3")
    web = d.seed_deployment("web", NS, replicas=2, node="node-3").pods
    db = d.seed_deployment("db", NS, replicas=1, node="node-3").pods
    d.seed_pdb("db", NS, match_labels={"app": "db"}, min_available=1)
    ds = d.create(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": NS},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "a", "image": "agent:1"}]},
                },
            },
        }
    )
    d.seed_pod("agent-x1", NS, labels={"app": "agent"}, node="node-3", owner=ds)
    slept = []
    now = [1_795_734_000.0]

    async def sleep(s):
        slept.append(s)
        now[0] += s

    ctx = _ctx(kube)
    ctx = ActionContext(**{**ctx.__dict__, "sleep": sleep, "clock": lambda: now[0]})
    out = await k8s.drain(ctx, k8s.DrainParams(node="node-3", timeout_s=12, retry_interval_s=5))
    assert isinstance(out, Failed) and "1 pods blocked by disruption budgets" in out.error
    assert d.get("Node", None, "node-3")["spec"]["unschedulable"] is True
    names = {p["metadata"]["name"] for p in d.objects("Pod", NS)}
    assert all(p["metadata"]["name"] not in names for p in web)  # evicted
    assert db[0]["metadata"]["name"] in names and "agent-x1" in names
    assert slept == [5, 5]  # retried until the 12 s budget ran out


async def test_run_job_is_labelled_with_the_run_and_annotate_restores(kube_double):
    kube = await _kube(kube_double)
    d = kube_double.double
    d.seed_deployment("web", NS)
    spec = {
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "fix", "image": "busybox:1.36", "command": ["true"]}],
            }
        }
    }
    out = await k8s.run_job(
        _ctx(kube), k8s.RunJobParams(namespace=NS, name_prefix="vacuum", spec=spec)
    )
    assert isinstance(out, Executed)
    [job] = d.objects("Job", NS)
    assert job["metadata"]["labels"][k8s.RUN_LABEL] == "0000000000001.abcd"
    assert job["metadata"]["name"].startswith("vacuum-")
    out = await k8s.annotate(
        _ctx(kube),
        k8s.AnnotateParams(namespace=NS, name="web", annotations={"vigil.dev/note": "restarted"}),
    )
    assert (
        d.get("Deployment", NS, "web")["metadata"]["annotations"]["vigil.dev/note"] == "restarted"
    )
    assert isinstance(out, Executed) and out.inverse is not None
    await k8s.annotate(_ctx(kube), k8s.AnnotateParams(**out.inverse[1]))
    assert "vigil.dev/note" not in d.get("Deployment", NS, "web")["metadata"]["annotations"]


async def test_targets_resolve_pod_to_deployment_and_record_the_chain(kube_double):
    kube = await _kube(kube_double)
    d = kube_double.double
    seeded = d.seed_deployment("checkout", NS, replicas=3)
    pod = seeded.pods[0]["metadata"]["name"]
    target = await targets.resolve(kube, {"namespace": NS, "pod": pod})
    assert target is not None and target.key == f"deployment/{NS}/checkout"
    rs = seeded.replicasets[-1]["metadata"]["name"]
    assert target.chain == (f"pod/{pod}", f"replicaset/{rs}", "deployment/checkout")
    assert target.replicas == 3 and target.pod == pod
    node = await targets.resolve(kube, {"node": "node-1"})
    assert node is None  # no such node object
    d.seed_node("node-1")
    node = await targets.resolve(kube, {"node": "node-1"})
    assert node is not None and node.key == "node/-/node-1"
    assert await targets.resolve(kube, {"namespace": NS, "pod": "gone-123"}) is None


async def test_the_printed_rbac_covers_every_request_the_actions_made(kube_double):
    kube = await _kube(kube_double)
    d = kube_double.double
    d.seed_node("node-9")
    seeded = d.seed_deployment("web", NS, replicas=2, node="node-9", images=["web:1", "web:2"])
    await targets.resolve(kube, {"namespace": NS, "pod": seeded.pods[0]["metadata"]["name"]})
    ctx = _ctx(kube)
    await k8s.rollout_restart(ctx, k8s.WorkloadRef(namespace=NS, name="web"))
    await k8s.scale(ctx, k8s.ScaleParams(namespace=NS, name="web", delta=1))
    await k8s.rollout_undo(ctx, k8s.UndoParams(namespace=NS, name="web"))
    await k8s.delete_pod(ctx, k8s.PodRef(namespace=NS, name=seeded.pods[1]["metadata"]["name"]))
    await k8s.drain(ctx, k8s.DrainParams(node="node-9"))
    await k8s.uncordon(ctx, k8s.NodeRef(node="node-9"))
    registry = build_registry()
    objects = rbac.render(
        load_catalog([ROOT / "playbooks"], registry), registry, namespace="vigil", namespaces=(NS,)
    )
    for r in d.requests:  # each where it was made: a Role's namespace, or cluster-wide
        resource = f"{r.resource}/{r.subresource}" if r.subresource else r.resource
        assert rbac.allows(
            objects,
            group=r.group,
            resource=resource,
            verb=r.verb,
            namespace=r.namespace or None,
            name=r.name,
        ), f"{r.verb} {r.group}/{resource} in {r.namespace or 'the cluster'} is not granted"

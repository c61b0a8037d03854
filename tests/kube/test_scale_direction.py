"""``kubernetes.scale`` never moves a workload against the requested direction: the shipped
hpa-maxed-scale-up playbook, approved on a Deployment already above its bound, sends no
patch and escalates with the reason instead of halving the service it meant to grow."""

from __future__ import annotations

import logging

import pytest

from remediator.actions import k8s
from remediator.actions.registry import ActionContext, Failed
from remediator.audit.store import RunState
from remediator.cluster.kube import Kube
from tests.conftest import ROOT
from tests.kube.test_remediation import NS, _start
from tests.unit.remediator.fakes import FakeServices
from tests.unit.remediator.test_app import notification, settle

pytestmark = pytest.mark.kube


class EverySeries(dict):
    """Prometheus answers one series to every query (the pre-condition holds)."""

    def get(self, key, default=None):
        return [{"metric": {}, "value": [0, "1"]}]


def _ctx(kube: Kube) -> ActionContext:
    return ActionContext(
        run_id="0000000000001-abcd",
        run_url="http://vigil/run",
        dry_run=False,
        services=FakeServices(),
        alert=None,
        kube=kube,
        log=logging.LoggerAdapter(logging.getLogger("test"), {}),
        clock=lambda: 1_795_734_000.0,
    )


@pytest.mark.parametrize(
    ("replicas", "params", "reason"),
    [
        (40, {"delta": 2, "max_replicas": 20}, "40 replicas is at or above max_replicas 20"),
        (1, {"delta": -1, "min_replicas": 2}, "1 replicas is at or below min_replicas 2"),
    ],
)
async def test_a_step_against_its_direction_sends_no_patch(kube_double, replicas, params, reason):
    d = kube_double.double
    d.seed_namespace(NS)
    d.seed_deployment("api", NS, replicas=replicas)
    kube = Kube(await kube_double.api_client())
    d.clear_requests()
    out = await k8s.scale(_ctx(kube), k8s.ScaleParams(namespace=NS, name="api", **params))
    assert isinstance(out, Failed) and not out.temporary
    assert out.error.startswith(f"deployment/{NS}/api: {reason}")
    assert [r.verb for r in d.requests] == ["get"]
    assert d.get("Deployment", NS, "api")["spec"]["replicas"] == replicas


async def test_the_shipped_hpa_playbook_refuses_to_halve_a_deployment(
    aiohttp_client, tmp_path, kube_double
):
    d = kube_double.double
    d.seed_namespace(NS)
    d.seed_deployment("checkout", NS, replicas=40)
    text = (ROOT / "playbooks" / "hpa-maxed-scale-up.yaml").read_text()
    client, st, fake, _ = await _start(
        aiohttp_client, tmp_path, kube_double, {"hpa-maxed-scale-up.yaml": text}
    )
    fake.query_results = EverySeries()
    st.admin_token = "adm"
    await client.post(
        "/webhook",
        json=notification(
            "KubeHpaMaxedOut",
            namespace=NS,
            deployment="checkout",
            horizontalpodautoscaler="checkout",
        ),
    )
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.WAITING_APPROVAL)
    doc = await (await client.get(f"/api/v1/runs/{run.id}")).json()
    [plan] = [e for e in doc["events"] if e["kind"] == "plan"]
    assert plan["detail"]["steps"][0]["request"]["replicas"] == "current+2"
    d.clear_requests()
    resp = await client.post(
        f"/api/v1/runs/{run.id}/approve",
        headers={"Authorization": "Bearer adm"},
        json={"plan_hash": run.plan_hash},
    )
    assert resp.status == 200
    [run] = await settle(st, lambda runs: runs[0].state == RunState.FAILED)
    assert run.outcome == (
        f"step scale: deployment/{NS}/checkout: 40 replicas is at or above max_replicas 20: "
        "no step up by 2 within the bound; not scaled"
    )
    assert d.get("Deployment", NS, "checkout")["spec"]["replicas"] == 40
    assert not [r for r in d.requests if r.verb == "patch"]
    [escalation] = [
        b
        for b in fake.bodies
        if isinstance(b, list) and b[0]["labels"]["alertname"] == "VigilRemediationFailed"
    ]
    # besides it, only the awaiting-approval alert and its resolve went to Alertmanager
    assert sorted(b[0]["labels"]["alertname"] for b in fake.bodies if isinstance(b, list)) == [
        "VigilRemediationAwaitingApproval"
    ] * 2 + ["VigilRemediationFailed"]
    assert "at or above max_replicas 20" in escalation[0]["annotations"]["summary"]
    # the owner is not told replicas were added: the second step never ran
    assert "VigilHpaMaximumTooLow" not in str(fake.bodies)

"""Alert labels are attacker-controlled (anyone who can write metrics or post to
Alertmanager chooses them). A hostile value must be refused before any Kubernetes call:
the API double's request log stays empty, and the run's audit record says why."""

from __future__ import annotations

import pytest

from remediator.actions import basic
from remediator.app import STATE, build_app, build_registry
from remediator.audit.store import RunState
from remediator.cluster.kube import Kube
from remediator.config import RemediatorConfig
from remediator.errors import TemplateError
from remediator.runs.plan import build_plan
from remediator.webhook import alert_from_json
from tests.unit.remediator.fakes import FakeServices
from tests.unit.remediator.test_app import Clock, notification, settle

pytestmark = pytest.mark.kube

DELETE_POD = """
apiVersion: vigil/v1
kind: Playbook
metadata: {name: delete-stuck-pod}
spec:
  match: {labels: {alertname: PodStuck}}
  mode: auto
  guards: {respect_silences: false}
  steps:
    - name: delete
      action: kubernetes.delete_pod
      params: {namespace: '{{ labels.namespace }}', name: '{{ labels.pod }}'}
"""

HOSTILE = {
    "traversal in namespace": {"namespace": "../../etc", "pod": "web-1"},
    "traversal in pod": {"namespace": "shop", "pod": "web/../../../apis/apps/v1"},
    "slash in pod": {"namespace": "shop", "pod": "web/1"},
    "newline in pod": {"namespace": "shop", "pod": "web-1\n"},
    "query in namespace": {"namespace": "shop?dryRun=All", "pod": "web-1"},
    "300 characters": {"namespace": "shop", "pod": "a" * 300},
    "template in a value": {"namespace": "shop", "pod": "{{ run.url }}"},
    "upper case": {"namespace": "Shop", "pod": "web-1"},
}


async def _start(aiohttp_client, tmp_path, kube_double, playbook: str):
    """The remediator with one playbook, on the API double; (client, state, services)."""
    book = tmp_path / "playbooks"
    book.mkdir()
    (book / "delete-stuck-pod.yaml").write_text(playbook)
    fake, clock = FakeServices(), Clock()

    async def kube() -> Kube:
        return Kube(await kube_double.api_client())

    app = build_app(
        RemediatorConfig(),
        playbook_dirs=[book],
        state_dir=tmp_path / "state",
        services=fake,
        clock=clock,
        sleep=clock.sleep,
        kube=kube,
        external_url="http://vigil",
    )
    client = await aiohttp_client(app)
    st = app[STATE]
    await st.ready.wait()
    return client, st, fake


@pytest.mark.parametrize("labels", HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_hostile_label_makes_no_kubernetes_request(
    aiohttp_client, tmp_path, kube_double, labels
):
    d = kube_double.double
    d.seed_namespace("shop")
    d.seed_pod("web-1", "shop")
    client, st, fake = await _start(aiohttp_client, tmp_path, kube_double, DELETE_POD)
    d.clear_requests()
    await client.post("/webhook", json=notification("PodStuck", **labels))
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.ESCALATED)
    assert d.requests == [] and d.nonresource_requests == []
    assert "not a Kubernetes name" in run.outcome or "params." in run.outcome
    assert d.get("Pod", "shop", "web-1") is not None
    [escalation] = [b for b in fake.bodies if isinstance(b, list)]
    assert escalation[0]["labels"]["alertname"] == "VigilRemediationFailed"


def _alert(**labels):
    return alert_from_json(
        {
            "status": "firing",
            "labels": {"alertname": "PodStuck", **labels},
            "annotations": {},
            "startsAt": "2026-11-27T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "f1",
        }
    )


@pytest.mark.parametrize("labels", HOSTILE.values(), ids=HOSTILE.keys())
def test_rendered_params_are_validated_before_a_plan_exists(labels):
    from remediator.catalog.playbook import Step

    step = Step.model_validate(
        {
            "name": "delete",
            "action": "kubernetes.delete_pod",
            "params": {"namespace": "{{ labels.namespace }}", "name": "{{ labels.pod }}"},
        }
    )
    with pytest.raises(
        TemplateError,
        match=r"step delete: params\.(namespace|name): .*"
        r"\(rendered from the alert\)",
    ):
        build_plan(
            (step,),
            _alert(**labels),
            build_registry(),
            run_id="r1",
            run_url="http://vigil/api/v1/runs/r1",
        )


def test_a_template_inside_a_label_value_is_not_expanded():
    from remediator.catalog.playbook import Step

    step = Step.model_validate(
        {
            "name": "silence",
            "action": "alertmanager.silence",
            "params": {
                "matchers": ['instance="{{ labels.instance }}"'],
                "duration_s": 600,
                "comment": "flapping {{ labels.instance }}",
            },
        }
    )
    [planned] = build_plan(
        (step,),
        _alert(instance="{{ run.url }}"),
        build_registry(),
        run_id="r1",
        run_url="http://vigil/api/v1/runs/r1",
    )
    assert isinstance(planned.params, basic.SilenceParams)
    assert planned.params.comment == "flapping {{ run.url }}"  # literal, not the run URL


async def test_a_denied_namespace_is_refused_before_the_target_is_resolved(
    aiohttp_client, tmp_path, kube_double
):
    """With namespaced Roles (``vigil-remediator rbac``) the remediator may not even read a
    denied namespace: the namespace guard is judged before target resolution, so the run is
    refused as the playbook says, with no request to the cluster and no 403 escalation."""
    d = kube_double.double
    d.seed_pod("coredns-1", "kube-system")
    client, st, fake = await _start(
        aiohttp_client,
        tmp_path,
        kube_double,
        DELETE_POD.replace(
            "guards: {respect_silences: false}",
            "guards: {respect_silences: false, namespaces: {deny: [kube-system]}}",
        ),
    )
    d.clear_requests()
    await client.post(
        "/webhook", json=notification("PodStuck", namespace="kube-system", pod="coredns-1")
    )
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.REFUSED)
    assert d.requests == [] and d.nonresource_requests == []
    assert run.outcome == "namespace: namespace 'kube-system' is on the deny list"
    assert not [b for b in fake.bodies if isinstance(b, list)]  # not escalated

"""Prometheus unreachable: a run whose pre-conditions or verification need it fails closed
(no action; or undone and escalated, never "succeeded") and its audit record says why."""

from __future__ import annotations

from typing import Any

from remediator.audit.store import RunState
from remediator.errors import ActionTemporaryError
from tests.unit.remediator.fakes import FakeServices
from tests.unit.remediator.test_app import notification, settle, start

DOWN = "GET http://prometheus:9090/api/v1/query: ClientConnectorError: connection refused"

PRECONDITION_BOOK = """\
apiVersion: vigil/v1
kind: Playbook
metadata:
  name: silence-if-replicas-ready
spec:
  match:
    labels: {alertname: DiskFlapping}
  mode: auto
  guards:
    respect_silences: false
    preconditions:
      - query: 'kube_deployment_status_replicas_ready{instance="{{ labels.instance }}"} > 0'
        description: replicas are ready
  steps:
    - name: silence
      action: alertmanager.silence
      params:
        matchers: ['instance="{{ labels.instance }}"']
        duration_s: 600
"""


class PrometheusDown(FakeServices):
    """Alertmanager answers; every PromQL query fails as a refused connection does."""

    async def prometheus_query(self, query: str) -> list[dict[str, Any]]:
        self.calls.append(("prometheus", query))
        raise ActionTemporaryError(DOWN, delay_s=1.0)


async def test_an_unreadable_precondition_refuses_the_run_and_says_why(aiohttp_client, tmp_path):
    book = tmp_path / "playbooks"
    book.mkdir()
    (book / "silence-if-replicas-ready.yaml").write_text(PRECONDITION_BOOK)
    client, st, fake, _ = await start(aiohttp_client, tmp_path, services=PrometheusDown())
    await client.post("/webhook", json=notification())
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.REFUSED)
    assert fake.count("prometheus") == 1
    assert fake.count("alertmanager", "POST") == 0  # nothing was done
    assert (
        "replicas are ready: cannot evaluate" in run.outcome and "connection refused" in run.outcome
    )
    doc = await (await client.get(f"/api/v1/runs/{run.id}")).json()
    [pre] = [e for e in doc["events"] if e["kind"] == "guard" and e["name"] == "precondition"]
    assert pre["verdict"] == "refuse" and DOWN in str(pre["detail"])
    assert not [e for e in doc["events"] if e["kind"].startswith("action")]


async def test_an_unreadable_verification_never_counts_as_success(aiohttp_client, tmp_path):
    client, st, fake, _clock = await start(aiohttp_client, tmp_path, services=PrometheusDown())
    await client.post("/webhook", json=notification())
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.UNDONE)
    assert fake.count("prometheus") == 5  # every 15 s until the 60 s deadline
    assert "verification failed" in run.outcome and "query failed" in run.outcome
    assert DOWN in run.outcome
    doc = await (await client.get(f"/api/v1/runs/{run.id}")).json()
    [check] = [e for e in doc["events"] if e["kind"] == "verify"]
    assert check["verdict"] == "failed" and DOWN in check["detail"]["detail"]
    # the silence it set was taken back and a person was told
    assert fake.count("alertmanager", "DELETE") == 1
    [escalation] = [b for b in fake.bodies if isinstance(b, list)]
    assert escalation[0]["labels"]["alertname"] == "VigilRemediationFailed"

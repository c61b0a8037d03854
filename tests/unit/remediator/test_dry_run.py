"""A run in ``dryRun`` or ``shadow`` mode sends nothing that changes anything, through the
whole service: its steps, its undo steps and its escalation are recorded as what would
have been sent (``would_send``), never posted. Reads (silences, PromQL) still happen."""

from __future__ import annotations

from pathlib import Path

from remediator.audit.store import RunState
from tests.unit.remediator.test_app import notification, settle, start

READS = (("prometheus",), ("alertmanager", "GET"))

TRIAL = """
apiVersion: vigil/v1
kind: Playbook
metadata: {name: trial}
spec:
  match: {labels: {alertname: DiskFlapping}}
  mode: dryRun
  guards: {respect_silences: true}
  steps:
    - {name: tell, action: notify,
       params: {url: {secret: chat}, text: 'disk on {{ labels.instance }}'}}
    - {name: page, action: alertmanager.escalate, params: {summary: disk}}
    - {name: ticket, action: http.request,
       params: {url: 'https://hooks.example/t', headers: {Authorization: {secret: tk}}}}
    - {name: check, action: promql.check, params: {query: never_true}}
  undo:
    - {name: tell-undo, action: notify, params: {url: {secret: chat}, text: undone}}
    - {name: unsilence, action: alertmanager.expire_silence, params: {silence_id: s-1}}
  escalate: {severity: warning}
"""

SHADOW = """
apiVersion: vigil/v1
kind: Playbook
metadata: {name: watch}
spec:
  match: {labels: {alertname: DiskFlapping}}
  mode: shadow
  guards: {respect_silences: false}
  steps:
    - {name: tell, action: notify, params: {url: {secret: chat}, text: hi}}
  escalate: {on_refused: [kill_switch]}
"""


def _playbook(tmp_path: Path, text: str) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    path = src / ("trial.yaml" if "name: trial" in text else "watch.yaml")
    path.write_text(text)
    return path


def _sends(fake) -> list[tuple[str, ...]]:
    return [c for c in fake.calls if not any(c[: len(r)] == r for r in READS)]


async def _events(client, run_id):
    return (await (await client.get(f"/api/v1/runs/{run_id}")).json())["events"]


async def test_a_failing_dry_run_undoes_and_escalates_on_paper_only(aiohttp_client, tmp_path):
    client, st, fake, _ = await start(
        aiohttp_client, tmp_path, playbooks=[_playbook(tmp_path, TRIAL)]
    )
    await client.post("/webhook", json=notification())
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.FAILED)
    assert _sends(fake) == []
    assert fake.count("alertmanager", "GET", "/api/v2/silences") == 1  # a read still runs
    events = await _events(client, run.id)
    responses = {e["name"]: e for e in events if e["kind"] == "action_response"}
    assert responses["tell"]["verdict"] == "dryrun"
    assert responses["tell"]["detail"]["would_send"] == {
        "method": "POST",
        "url": "<secret chat>",
        "json": {"text": "disk on db-1:9100"},
    }
    assert responses["page"]["detail"]["would_send"]["path"] == "/api/v2/alerts"
    assert responses["ticket"]["detail"]["would_send"]["headers"] == {
        "Authorization": "<secret tk>"
    }
    assert responses["check"]["verdict"] == "failed"
    undo = [(e["name"], e["verdict"]) for e in events if e["kind"] == "undo"]
    assert undo == [("tell-undo", "dryrun"), ("unsilence", "dryrun")]
    [esc] = [e for e in events if e["kind"] == "escalate"]
    assert esc["verdict"] == "dry_run"
    [alert] = esc["detail"]["would_send"]["body"]
    assert alert["labels"]["alertname"] == "VigilRemediationFailed"
    assert alert["labels"]["severity"] == "warning"
    assert "step check failed" in alert["annotations"]["summary"]
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_escalations_total{playbook="trial",result="ok"} 0.0' in metrics
    report = await (await client.get("/api/v1/report?format=json")).json()
    assert report["playbooks"][0]["escalations"] == 0  # recorded, not sent: not counted


async def test_a_dry_run_that_cannot_plan_escalates_on_paper_only(aiohttp_client, tmp_path):
    broken = TRIAL.replace(
        "text: 'disk on {{ labels.instance }}'", "text: '{{ labels.no_such_label }}'"
    )
    client, st, fake, _ = await start(
        aiohttp_client, tmp_path, playbooks=[_playbook(tmp_path, broken)]
    )
    await client.post("/webhook", json=notification())
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.ESCALATED)
    assert _sends(fake) == []
    [esc] = [e for e in await _events(client, run.id) if e["kind"] == "escalate"]
    assert esc["verdict"] == "dry_run" and "would_send" in esc["detail"]


async def test_a_shadow_playbook_refused_by_the_kill_switch_escalates_on_paper_only(
    aiohttp_client, tmp_path
):
    client, st, fake, _ = await start(
        aiohttp_client, tmp_path, admin="a", playbooks=[_playbook(tmp_path, SHADOW)]
    )
    await client.post("/api/v1/pause", headers={"Authorization": "Bearer a"})
    await client.post("/webhook", json=notification())
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.REFUSED)
    assert _sends(fake) == []
    [esc] = [e for e in await _events(client, run.id) if e["kind"] == "escalate"]
    assert esc["verdict"] == "dry_run"
    assert "refused by" in esc["detail"]["would_send"]["body"][0]["annotations"]["summary"]
    await client.post("/api/v1/resume", headers={"Authorization": "Bearer a"})
    await client.post("/webhook", json=notification(fingerprint="f2"))
    runs = await settle(st, lambda runs: len(runs) == 2 and runs[0].state == RunState.SHADOW)
    assert _sends(fake) == [] and runs[0].outcome.startswith("decided, not executed")

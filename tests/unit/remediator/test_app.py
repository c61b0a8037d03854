"""The remediator service in-process: webhook → durable record → one run per alert, guards,
actions, verification, undo, escalation, approvals, kill switch, crash recovery."""

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from remediator.app import STATE, build_app
from remediator.audit.store import AuditLog, RunState
from remediator.config import RemediatorConfig
from tests.conftest import SAMPLES
from tests.unit.remediator.fakes import FakeServices

HERE = Path(__file__).parent
T0 = 1_795_734_200.0  # 2026-11-27, a Friday


class Clock:
    """Wall time that moves only when the runner sleeps."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)  # a fake sleep still yields to the other tasks; no wait


def notification(
    alertname="DiskFlapping",
    *,
    fingerprint="f1",
    starts="2026-11-27T10:00:00Z",
    status="firing",
    **labels,
):
    alert = {
        "status": status,
        "labels": {"alertname": alertname, "instance": "db-1:9100", **labels},
        "annotations": {"summary": "disk flapping"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prom/graph",
        "fingerprint": fingerprint,
    }
    return {
        "version": "4",
        "receiver": "vigil",
        "status": status,
        "alerts": [alert],
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
    }


async def start(
    aiohttp_client, tmp_path, *, services=None, playbooks=None, admin=None, cfg=None, clock=None
):
    services = services or FakeServices()
    clock = clock or Clock()
    book = tmp_path / "playbooks"
    if not book.exists():
        book.mkdir()
        for p in playbooks or [HERE / "playbooks" / "silence-noisy-disk.yaml"]:
            shutil.copy(p, book)
    app = build_app(
        cfg or RemediatorConfig(),
        playbook_dirs=[book],
        state_dir=tmp_path,
        services=services,
        admin_token=admin,
        clock=clock,
        sleep=clock.sleep,
        external_url="http://vigil:9421",
    )
    client = await aiohttp_client(app)
    st = app[STATE]
    await st.ready.wait()
    return client, st, services, clock


async def drained(st, timeout_s=5.0):
    """Wait until every task the runner started (notification handling, runs) is done."""
    async with asyncio.timeout(timeout_s):
        while st.runner.tasks:
            await asyncio.gather(*list(st.runner.tasks), return_exceptions=True)


async def settle(st, predicate, timeout_s=5.0):
    """Wait until ``predicate(runs)`` holds, woken by the runner (no sleeping)."""
    async with asyncio.timeout(timeout_s):
        while True:
            st.runner.settled.clear()
            runs = await st.audit.run(lambda db: db.list_runs())
            if predicate(runs):
                return runs
            await st.runner.settled.wait()


async def test_a_notification_runs_its_playbook_once_and_verifies(aiohttp_client, tmp_path):
    client, st, fake, _clock = await start(aiohttp_client, tmp_path)
    fake.query_results['up{instance="db-1:9100"} == 1'] = [{"value": [0, "1"]}]
    resp = await client.post("/webhook", json=notification())
    assert resp.status == 200 and (await resp.json())["status"] == "recorded"
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.SUCCEEDED)
    assert fake.count("alertmanager", "POST", "/api/v2/silences") == 1
    silence = next(b for b in fake.bodies if isinstance(b, dict) and "matchers" in b)
    assert {"name": "instance", "value": "db-1:9100", "isRegex": False, "isEqual": True} in silence[
        "matchers"
    ]
    assert silence["comment"] == f"run {run.id}: flapping disk on db-1:9100"
    # the same notification again, as an HA pair's second Alertmanager sends it: no new run
    for _ in range(3):
        assert (await client.post("/webhook", json=notification())).status == 200
    await drained(st)
    doc = await (await client.get(f"/api/v1/runs/{run.id}")).json()
    kinds = [(e["kind"], e["name"], e["verdict"]) for e in doc["events"]]
    assert ("plan", "plan", None) in kinds
    assert ("guard", "cooldown", "allow") in kinds and ("guard", "kill_switch", "allow") in kinds
    assert ("action_request", "silence", None) in kinds
    assert ("action_response", "silence", "executed") in kinds
    assert ("verify", "the instance is up", "ok") in kinds
    runs = await st.audit.run(lambda db: db.list_runs())
    assert len(runs) == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_runs_total{playbook="silence-noisy-disk",state="succeeded"} 1.0' in metrics


async def test_failed_verification_undoes_and_escalates(aiohttp_client, tmp_path):
    client, st, fake, clock = await start(aiohttp_client, tmp_path)
    await client.post("/webhook", json=notification())
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.UNDONE)
    assert clock.now - T0 >= 60  # polled every 15 s until the 60 s deadline
    deletes = [c for c in fake.calls if c[:2] == ("alertmanager", "DELETE")]
    assert deletes == [("alertmanager", "DELETE", "/api/v2/silence/s-2")]
    [escalation] = [b for b in fake.bodies if isinstance(b, list)]
    assert escalation[0]["labels"]["alertname"] == "VigilRemediationFailed"
    assert escalation[0]["labels"]["severity"] == "critical"
    assert escalation[0]["annotations"]["run_url"] == f"http://vigil:9421/api/v1/runs/{run.id}"
    assert "verification failed" in run.outcome


async def test_a_second_alert_on_the_target_waits_for_the_cooldown(aiohttp_client, tmp_path):
    client, st, fake, clock = await start(aiohttp_client, tmp_path)
    fake.query_results['up{instance="db-1:9100"} == 1'] = [{}]
    await client.post("/webhook", json=notification(fingerprint="a"))
    await settle(st, lambda runs: runs and runs[0].state == RunState.SUCCEEDED)
    await client.post("/webhook", json=notification(fingerprint="b"))
    runs = await settle(st, lambda runs: len(runs) == 2 and runs[0].state == RunState.REFUSED)
    assert runs[0].outcome.startswith("cooldown: ")
    clock.now += 601
    await client.post("/webhook", json=notification(fingerprint="c"))
    runs = await settle(
        st, lambda runs: len(runs) == 3 and runs[0].state in (RunState.SUCCEEDED, RunState.REFUSED)
    )
    assert runs[0].state == RunState.SUCCEEDED


async def test_kill_switch_refuses_and_needs_the_admin_token(aiohttp_client, tmp_path):
    client, st, fake, _clock = await start(aiohttp_client, tmp_path, admin="adm")
    assert (await client.post("/api/v1/pause")).status == 401
    headers = {"Authorization": "Bearer adm"}
    assert (await client.post("/api/v1/pause", headers=headers)).status == 200
    await client.post("/webhook", json=notification())
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.REFUSED)
    assert run.outcome.startswith("kill_switch: ")
    assert fake.count("alertmanager", "POST", "/api/v2/silences") == 0
    assert (await client.post("/api/v1/resume", headers=headers)).status == 200
    assert await st.audit.run(lambda db: db.get_flag("paused")) is None


async def test_an_active_silence_holds_the_playbook(aiohttp_client, tmp_path):
    fake = FakeServices()
    fake.silences = [
        {
            "id": "maint-1",
            "status": {"state": "active"},
            "matchers": [{"name": "instance", "value": "db-.*", "isRegex": True, "isEqual": True}],
        }
    ]
    client, st, fake, _clock = await start(aiohttp_client, tmp_path, services=fake)
    await client.post("/webhook", json=notification())
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.REFUSED)
    assert run.outcome == "silence: silenced by maint-1"


async def test_approval_is_bound_to_the_plan(aiohttp_client, tmp_path):
    pb = tmp_path / "src" / "silence-noisy-disk.yaml"
    pb.parent.mkdir()
    pb.write_text(
        (HERE / "playbooks" / "silence-noisy-disk.yaml")
        .read_text()
        .replace("mode: auto", "mode: approval")
    )
    client, st, fake, _clock = await start(aiohttp_client, tmp_path, playbooks=[pb], admin="a")
    fake.query_results['up{instance="db-1:9100"} == 1'] = [{}]
    await client.post("/webhook", json=notification())
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.WAITING_APPROVAL)
    assert fake.count("alertmanager", "POST", "/api/v2/silences") == 0
    headers = {"Authorization": "Bearer a"}
    bad = await client.post(
        f"/api/v1/runs/{run.id}/approve",
        headers=headers,
        json={"plan_hash": "0" * 64, "by": "alice"},
    )
    assert bad.status == 409 and "plan changed" in (await bad.json())["error"]
    ok = await client.post(
        f"/api/v1/runs/{run.id}/approve",
        headers=headers,
        json={"plan_hash": run.plan_hash, "by": "alice"},
    )
    assert ok.status == 200
    [run] = await settle(st, lambda runs: runs[0].state == RunState.SUCCEEDED)
    # who approved is the credential's identity; the body's "by" is only a claim
    assert run.approved_by == "admin-token"
    events = await st.audit.run(lambda db: db.events(run.id))
    [approved] = [e for e in events if (e.kind, e.name) == ("approval", "approved")]
    assert approved.detail == {"by": "admin-token", "via": "admin-token", "claimed": "alice"}
    assert fake.count("alertmanager", "POST", "/api/v2/silences") == 1


async def test_malformed_webhooks_get_4xx_and_nothing_is_recorded(aiohttp_client, tmp_path):
    client, st, _fake, _clock = await start(aiohttp_client, tmp_path)
    for body in (
        b"{",
        b"[]",
        json.dumps({"version": "3", "alerts": []}).encode(),
        json.dumps({**notification(), "alerts": [{"labels": {}}]}).encode(),
    ):
        resp = await client.post(
            "/webhook", data=body, headers={"Content-Type": "application/json"}
        )
        assert resp.status == 400, body
        assert (await resp.json())["error"]
    assert await st.audit.run(lambda db: db.list_runs()) == []


async def test_the_real_alertmanager_sample_is_accepted(aiohttp_client, tmp_path):
    client, st, _fake, _clock = await start(aiohttp_client, tmp_path)
    body = json.loads((SAMPLES / "webhook_01.json").read_text())["body"]
    resp = await client.post("/webhook", json=body)
    assert resp.status == 200
    nid = (await resp.json())["notification"]
    note = await st.audit.run(lambda db: db.get_notification(nid))
    assert note.n_alerts == 1 and json.loads(note.body) == body


async def test_a_run_interrupted_by_a_crash_is_escalated_not_repeated(aiohttp_client, tmp_path):
    with AuditLog.open(tmp_path / "audit.db") as db:
        alert = notification()["alerts"][0]
        run = db.create_run(
            playbook="silence-noisy-disk",
            fingerprint="f1",
            starts_at=alert["startsAt"],
            alertname="DiskFlapping",
            alert=alert,
            mode="auto",
            notification_id=None,
            target="x",
            now_ms=1,
        )
        assert run is not None
        db.set_state(run.id, RunState.RUNNING, now_ms=2)
    client, st, fake, _clock = await start(aiohttp_client, tmp_path)
    [after] = await st.audit.run(lambda db: db.list_runs())
    assert after.state == RunState.INTERRUPTED
    assert [b[0]["labels"]["alertname"] for b in fake.bodies if isinstance(b, list)] == [
        "VigilRemediationFailed"
    ]
    # the notification comes again: the run is not repeated
    await client.post("/webhook", json=notification())
    await drained(st)
    assert fake.count("alertmanager", "POST", "/api/v2/silences") == 0
    assert len(await st.audit.run(lambda db: db.list_runs())) == 1


@pytest.mark.parametrize("token,status", [(None, 401), ("nope", 401), ("s3", 200)])
async def test_webhook_bearer_token(aiohttp_client, tmp_path, token, status):
    services = FakeServices()
    app = build_app(
        RemediatorConfig(),
        playbook_dirs=[HERE / "playbooks"],
        state_dir=tmp_path,
        services=services,
        token="s3",
    )
    client = await aiohttp_client(app)
    await app[STATE].ready.wait()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await client.post("/webhook", json=notification(alertname="Other"), headers=headers)
    assert resp.status == status


async def test_concurrent_alerts_never_exceed_the_rate_limit(aiohttp_client, tmp_path):
    pb = tmp_path / "src" / "silence-noisy-disk.yaml"
    pb.parent.mkdir()
    pb.write_text(
        (HERE / "playbooks" / "silence-noisy-disk.yaml")
        .read_text()
        .replace("max_runs: 5", "max_runs: 2")
        .replace("cooldown_s: 600", "cooldown_s: 600\n    max_concurrent: 10")
    )
    client, st, fake, _clock = await start(aiohttp_client, tmp_path, playbooks=[pb])
    fake.query_results.update({f'up{{instance="db-{i}:9100"}} == 1': [{}] for i in range(8)})
    posts = [
        client.post("/webhook", json=notification(fingerprint=f"f{i}", instance=f"db-{i}:9100"))
        for i in range(8)
    ]
    assert all(r.status == 200 for r in await asyncio.gather(*posts))
    runs = await settle(
        st,
        lambda runs: (
            len(runs) == 8 and all(r.state in (RunState.SUCCEEDED, RunState.REFUSED) for r in runs)
        ),
    )
    assert sorted(r.state.value for r in runs) == ["refused"] * 6 + ["succeeded"] * 2
    assert all(r.outcome.startswith("rate: ") for r in runs if r.state == RunState.REFUSED)
    assert fake.count("alertmanager", "POST", "/api/v2/silences") == 2


async def test_a_tripped_breaker_runs_in_shadow_until_reset(aiohttp_client, tmp_path):
    pb = tmp_path / "src" / "silence-noisy-disk.yaml"
    pb.parent.mkdir()
    pb.write_text(
        (HERE / "playbooks" / "silence-noisy-disk.yaml")
        .read_text()
        .replace("cooldown_s: 600", "cooldown_s: 0\n    circuit_breaker: {failures: 1}")
    )
    client, st, fake, _clock = await start(aiohttp_client, tmp_path, playbooks=[pb], admin="a")
    headers = {"Authorization": "Bearer a"}
    await client.post("/webhook", json=notification(fingerprint="f1"))
    await settle(st, lambda runs: runs and runs[0].state == RunState.UNDONE)  # verify failed
    await client.post("/webhook", json=notification(fingerprint="f2"))
    runs = await settle(st, lambda runs: len(runs) == 2 and runs[0].state == RunState.SHADOW)
    assert runs[0].outcome == "decided, not executed (shadow: circuit breaker tripped: shadow only)"
    reset = await client.post("/api/v1/breakers/silence-noisy-disk/reset?by=alice", headers=headers)
    assert reset.status == 200
    assert (
        await client.post("/api/v1/breakers/silence-noisy-disk/reset", headers=headers)
    ).status == 404
    fake.query_results['up{instance="db-1:9100"} == 1'] = [{}]
    await client.post("/webhook", json=notification(fingerprint="f3"))
    runs = await settle(st, lambda runs: len(runs) == 3 and runs[0].state == RunState.SUCCEEDED)
    notes = await st.audit.run(lambda db: db.events(None))
    assert ("circuit_breaker", "reset") in [(e.name, e.verdict) for e in notes]


@pytest.mark.parametrize(
    ("remaining", "state"),
    [
        ("0.9", RunState.SUCCEEDED),
        ("0.1", RunState.WAITING_APPROVAL),
        (None, RunState.WAITING_APPROVAL),
    ],
)
async def test_a_low_error_budget_turns_an_automatic_run_into_an_approval(
    aiohttp_client, tmp_path, remaining, state
):
    pb = tmp_path / "src" / "silence-noisy-disk.yaml"
    pb.parent.mkdir()
    pb.write_text(
        (HERE / "playbooks" / "silence-noisy-disk.yaml")
        .read_text()
        .replace(
            "cooldown_s: 600",
            "cooldown_s: 600\n    error_budget: {slo: db-availability, min_remaining: 0.25}",
        )
    )
    client, st, fake, _clock = await start(aiohttp_client, tmp_path, playbooks=[pb])
    fake.query_results['up{instance="db-1:9100"} == 1'] = [{}]
    if remaining is not None:
        fake.query_results[
            'slo:period_error_budget_remaining:ratio{sloth_id="db-availability"}'
        ] = [{"metric": {}, "value": [0, remaining]}]
    await client.post("/webhook", json=notification())
    [run] = await settle(st, lambda runs: runs and runs[0].state == state)
    doc = await (await client.get(f"/api/v1/runs/{run.id}")).json()
    [verdict] = [e for e in doc["events"] if e["name"] == "error_budget"]
    assert verdict["verdict"] == "allow"
    assert ("approval required" in verdict["detail"]["reason"]) == (state != RunState.SUCCEEDED)

"""Approvals are a decision like any other: every guard judges the run again when a
person approves it (kill switch included), waiting runs count toward concurrency and
blast radius, who approved is taken from the credential, and target labels that are
not Kubernetes names are refused at intake before any guard or query."""

import pytest

from remediator.audit.store import AuditLog, RunState
from remediator.config import AuthConfig, RemediatorConfig
from tests.unit.remediator.test_app import HERE, notification, settle, start

ADMIN = {"Authorization": "Bearer adm"}
SOURCE = (HERE / "playbooks" / "silence-noisy-disk.yaml").read_text()
PLAYBOOK = "silence-noisy-disk"


def approval_playbook(tmp_path, *guards: str):
    """silence-noisy-disk in approval mode, with no cooldown and these guard lines."""
    text = SOURCE.replace("mode: auto", "mode: approval").replace(
        "    cooldown_s: 600\n", "".join(f"    {g}\n" for g in ("cooldown_s: 0", *guards))
    )
    pb = tmp_path / "src" / f"{PLAYBOOK}.yaml"
    pb.parent.mkdir()
    pb.write_text(text)
    return pb


async def wait_for_approval(client, st, fake, n):
    """``n`` alerts on distinct instances; returns the runs, oldest first."""
    for i in range(n):
        fake.query_results[f'up{{instance="db-{i}:9100"}} == 1'] = [{}]
        await client.post(
            "/webhook", json=notification(fingerprint=f"f{i}", instance=f"db-{i}:9100")
        )
        await settle(
            st,
            lambda runs, i=i: (
                len(runs) == i + 1 and runs[0].state not in (RunState.PLANNED, RunState.RUNNING)
            ),
        )
    return list(reversed(await st.audit.run(lambda db: db.list_runs())))


async def approve(client, run, headers=ADMIN, **body):
    return await client.post(
        f"/api/v1/runs/{run.id}/approve", headers=headers, json={"plan_hash": run.plan_hash, **body}
    )


async def get(st, run_id):
    return await st.audit.run(lambda db: db.get_run(run_id))


async def test_the_probe_pause_and_limits_hold_against_approvals(aiohttp_client, tmp_path):
    pb = approval_playbook(tmp_path, "max_concurrent: 1", "blast_radius: {max_targets: 1}")
    client, st, fake, _ = await start(aiohttp_client, tmp_path, playbooks=[pb], admin="adm")
    first, second, third = await wait_for_approval(client, st, fake, 3)
    # the first waits; it counts as in progress, so the others are refused at intake
    assert first.state == RunState.WAITING_APPROVAL
    for run in (second, third):
        assert run.state == RunState.REFUSED
        assert run.outcome == "concurrency: 1 runs of this playbook in progress (max 1)"
    assert (await client.post("/api/v1/pause", headers=ADMIN)).status == 200
    resp = await approve(client, first, by="alice")
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert "approval refused by kill_switch: the remediator is paused" in error
    run = await get(st, first.id)
    assert run.state == RunState.REFUSED and run.approved_by is None
    assert run.outcome.startswith("approval refused: kill_switch: the remediator is paused")
    events = await st.audit.run(lambda db: db.events(first.id))
    [refusal] = [e for e in events if (e.kind, e.name) == ("approval", "refused")]
    assert refusal.detail["by"] == "admin-token" and refusal.detail["claimed"] == "alice"
    assert ("guard", "kill_switch", "refuse") in [(e.kind, e.name, e.verdict) for e in events]
    assert fake.count("alertmanager", "POST", "/api/v2/silences") == 0
    # a refused run cannot be approved again, paused or not
    assert (await client.post("/api/v1/resume", headers=ADMIN)).status == 200
    again = await approve(client, first)
    assert again.status == 409 and "refused, not waiting" in (await again.json())["error"]
    assert fake.count("alertmanager", "POST", "/api/v2/silences") == 0


async def test_approvals_are_held_to_the_rate_limit(aiohttp_client, tmp_path):
    pb = approval_playbook(tmp_path, "max_concurrent: 5")
    text = pb.read_text().replace("max_runs: 5", "max_runs: 1")
    pb.write_text(text)
    client, st, fake, _ = await start(aiohttp_client, tmp_path, playbooks=[pb], admin="adm")
    runs = await wait_for_approval(client, st, fake, 3)
    assert [r.state for r in runs] == [RunState.WAITING_APPROVAL] * 3
    assert (await approve(client, runs[0])).status == 200
    await settle(
        st, lambda rs: next(r for r in rs if r.id == runs[0].id).state == RunState.SUCCEEDED
    )
    for run in runs[1:]:
        resp = await approve(client, run)
        assert resp.status == 409
        assert (
            "approval refused by rate: 1 runs in the last 3600 s (limit 1)"
            in (await resp.json())["error"]
        )
        assert (await get(st, run.id)).state == RunState.REFUSED
    assert fake.count("alertmanager", "POST", "/api/v2/silences") == 1


async def _running_elsewhere(st, *, playbook=PLAYBOOK):
    """A run of ``playbook`` acting now (as one imported from another replica would)."""

    def add(db: AuditLog) -> None:
        run = db.create_run(
            playbook=playbook,
            fingerprint="elsewhere",
            starts_at="x",
            alertname="DiskFlapping",
            alert={},
            mode="auto",
            notification_id=None,
            target="instance/db-9:9100",
            now_ms=int(st.clock() * 1000),
        )
        assert run is not None
        db.mark_executing(run.id, now_ms=int(st.clock() * 1000))

    await st.audit.run(add)


@pytest.mark.parametrize(
    ("guard", "change", "reason"),
    [
        (
            "max_concurrent: 1",
            "running",
            "concurrency: 1 runs of this playbook in progress (max 1)",
        ),
        (
            "blast_radius: {max_targets: 1}",
            "running",
            "blast_radius: 1 targets already being acted on (max 1)",
        ),
        ("max_concurrent: 1", "silence", "silence: silenced by maint-1"),
        (
            "max_concurrent: 1",
            "breaker",
            "circuit_breaker: tripped: the playbook runs in shadow mode until reset",
        ),
    ],
)
async def test_a_guard_that_changed_while_waiting_refuses_the_approval(
    aiohttp_client, tmp_path, guard, change, reason
):
    pb = approval_playbook(tmp_path, guard, *(("max_concurrent: 5",) if "blast" in guard else ()))
    client, st, fake, _ = await start(aiohttp_client, tmp_path, playbooks=[pb], admin="adm")
    [run] = await wait_for_approval(client, st, fake, 1)
    assert run.state == RunState.WAITING_APPROVAL
    if change == "running":
        await _running_elsewhere(st)
    elif change == "silence":
        fake.silences = [
            {
                "id": "maint-1",
                "status": {"state": "active"},
                "matchers": [
                    {"name": "instance", "value": "db-.*", "isRegex": True, "isEqual": True}
                ],
            }
        ]
    else:
        await st.audit.run(
            lambda db: db.set_flag(f"breaker:{PLAYBOOK}", "tripped", now_ms=int(st.clock() * 1000))
        )
    resp = await approve(client, run)
    assert resp.status == 409 and f"approval refused by {reason}" in (await resp.json())["error"]
    run = await get(st, run.id)
    assert (run.state, run.outcome) == (RunState.REFUSED, f"approval refused: {reason}")
    assert fake.count("alertmanager", "POST", "/api/v2/silences") == 0


@pytest.mark.parametrize(
    ("configured", "sent", "approver"),
    [
        (None, {}, "admin-token"),
        (None, {"X-Forwarded-User": "bob"}, "admin-token"),  # not configured: not trusted
        ("X-Forwarded-User", {"X-Forwarded-User": "bob"}, "bob"),
        ("X-Forwarded-User", {}, "admin-token"),
        ("X-Remote-User", {"X-Forwarded-User": "bob"}, "admin-token"),
        ("X-Forwarded-User", {"X-Forwarded-User": "bob\tby"}, "admin-token"),  # not a name
    ],
)
async def test_the_approver_is_who_the_credential_says(
    aiohttp_client, tmp_path, configured, sent, approver
):
    cfg = RemediatorConfig(auth=AuthConfig(trusted_user_header=configured))
    pb = approval_playbook(tmp_path)
    client, st, fake, _ = await start(
        aiohttp_client, tmp_path, playbooks=[pb], admin="adm", cfg=cfg
    )
    [run] = await wait_for_approval(client, st, fake, 1)
    # the trusted header alone, without the admin token its proxy holds, is nothing
    assert (await approve(client, run, headers=sent, by="mallory")).status == 401
    resp = await approve(client, run, headers={**ADMIN, **sent}, by="mallory")
    assert resp.status == 200 and (await resp.json())["by"] == approver
    run = await settle(st, lambda rs: rs[0].state == RunState.SUCCEEDED)
    assert run[0].approved_by == approver
    events = await st.audit.run(lambda db: db.events(run[0].id))
    [approved] = [e for e in events if (e.kind, e.name) == ("approval", "approved")]
    via = "admin-token" if approver == "admin-token" else "trusted-header"
    assert approved.detail == {"by": approver, "via": via, "claimed": "mallory"}


async def test_breaker_reset_and_pause_record_the_credential_not_the_claim(
    aiohttp_client, tmp_path
):
    cfg = RemediatorConfig(auth=AuthConfig(trusted_user_header="X-Forwarded-User"))
    client, st, _fake, _ = await start(aiohttp_client, tmp_path, admin="adm", cfg=cfg)
    await st.audit.run(
        lambda db: db.set_flag(f"breaker:{PLAYBOOK}", "tripped", now_ms=int(st.clock() * 1000))
    )
    resp = await client.post(f"/api/v1/breakers/{PLAYBOOK}/reset?by=alice", headers=ADMIN)
    assert resp.status == 200
    notes = await st.audit.run(lambda db: db.events(None))
    [reset] = [e for e in notes if (e.name, e.verdict) == ("circuit_breaker", "reset")]
    assert reset.detail == {"playbook": PLAYBOOK, "by": "admin-token", "claimed": "alice"}
    resp = await client.post("/api/v1/pause", headers={**ADMIN, "X-Forwarded-User": "carol"})
    assert resp.status == 200
    notes = await st.audit.run(lambda db: db.events(None))
    [paused] = [e for e in notes if e.name == "kill_switch"]
    assert (paused.verdict, paused.detail) == ("paused", {"by": "carol"})


@pytest.mark.parametrize(
    "labels",
    [
        {"namespace": "../../etc"},
        {"namespace": "Shop"},
        {"pod": "web/1", "namespace": "shop"},
        {"node": "node-4\n"},
        {"deployment": "a" * 254, "namespace": "shop"},
    ],
)
async def test_a_target_label_that_is_no_kubernetes_name_is_refused_at_intake(
    aiohttp_client, tmp_path, labels
):
    client, st, fake, _ = await start(aiohttp_client, tmp_path)
    await client.post("/webhook", json=notification(**labels))
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.ESCALATED)
    assert run.outcome.startswith("refused before any guard: label ")
    assert "is not a Kubernetes name" in run.outcome
    # no guard judged it and nothing was asked of anyone: only the escalation went out
    assert fake.calls == [("alertmanager", "POST", "/api/v2/alerts")]
    [escalation] = fake.bodies
    assert "is not a Kubernetes name" in escalation[0]["annotations"]["summary"]
    events = await st.audit.run(lambda db: db.events(run.id))
    assert [
        (e.kind, e.name, e.verdict) for e in events if e.kind in ("decision", "guard", "plan")
    ] == [("decision", "target_labels", "refuse")]

"""Approvals a team can use: a waiting run is announced through Alertmanager and the
announcement resolves when the run is decided or expires; who decides comes from a
credential (a personal token, or the trusted proxy's header beside the admin token); a
playbook's ``approvers`` keep everyone else out (403, audited); rejecting is one call."""

import hashlib
from datetime import datetime
from typing import Any

import pytest
from multidict import CIMultiDict

from remediator import identity
from remediator.audit.store import RunState
from remediator.config import AuthConfig, RemediatorConfig
from remediator.errors import ConfigError, IdentityError
from remediator.runs import awaiting
from remediator.runtime import State
from tests.unit.remediator.fakes import FakeServices
from tests.unit.remediator.test_app import T0, drained, notification, start
from tests.unit.remediator.test_approvals import (
    ADMIN,
    PLAYBOOK,
    approval_playbook,
    approve,
    get,
    wait_for_approval,
)

TOKENS = {"alice": "alice-token-1", "bob": "bob-token-2", "carol": "carol-token-3"}


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def users_file(tmp_path, groups=None):
    groups = groups or {"bob": ["sre"]}
    path = tmp_path / "users.yaml"
    path.write_text(
        "users:\n"
        + "".join(
            f"  {name}:\n    token_sha256: {sha(token)}\n"
            f"    groups: [{', '.join(groups.get(name, []))}]\n"
            for name, token in TOKENS.items()
        )
    )
    return path


def bearer(name):
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def with_approvers(pb, text="approvers: {users: [alice], groups: [sre]}"):
    pb.write_text(pb.read_text().replace("  steps:\n", f"  {text}\n  steps:\n", 1))
    return pb


async def started(aiohttp_client, tmp_path, *, approvers=True, services=None, **auth):
    pb = approval_playbook(tmp_path, "max_concurrent: 5")
    if approvers:
        with_approvers(pb)
    cfg = RemediatorConfig(auth=AuthConfig(users_file=users_file(tmp_path), **auth))
    return await start(
        aiohttp_client, tmp_path, playbooks=[pb], admin="adm", cfg=cfg, services=services
    )


def notices(fake):
    """The awaiting-approval alerts posted, in order."""
    return [
        body[0]
        for body in fake.bodies
        if isinstance(body, list)
        and body
        and body[0]["labels"].get("alertname") == awaiting.ALERTNAME
    ]


def ms(iso):
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


# -- credentials ---------------------------------------------------------------------------


def test_a_personal_token_names_its_user_and_groups(tmp_path):
    users = identity.load_users(users_file(tmp_path), {"oncall": ("alice",)})
    who = identity.identify(credential=TOKENS["alice"], headers={}, admin_token="adm", users=users)
    assert who == identity.Identity("alice", frozenset({"oncall"}), identity.Via.USER_TOKEN)
    bob = identity.identify(credential=TOKENS["bob"], headers={}, admin_token=None, users=users)
    assert bob is not None and bob.groups == {"sre"}
    for token in (None, "wrong", "", "alice token", sha(TOKENS["alice"])):  # a hash is none
        assert (
            identity.identify(credential=token, headers={}, admin_token="adm", users=users) is None
        )


def test_the_trusted_header_counts_only_beside_the_admin_token(tmp_path):
    users = identity.load_users(None, {"sre": ("dave",)})
    kw: dict[str, Any] = {
        "users": users,
        "trusted_user_header": "X-Forwarded-User",
        "trusted_groups_header": "X-Forwarded-Groups",
        "admin_token": "adm",
    }
    hdrs = {"X-Forwarded-User": "dave", "X-Forwarded-Groups": "db, bad name,ops"}
    who = identity.identify(credential="adm", headers=hdrs, **kw)
    assert who == identity.Identity(
        "dave", frozenset({"sre", "db", "ops"}), identity.Via.TRUSTED_HEADER
    )
    assert identity.identify(credential=None, headers=hdrs, **kw) is None
    odd = identity.identify(credential="adm", headers={"X-Forwarded-User": "dave\u202e"}, **kw)
    assert odd == identity.Identity("admin-token", frozenset(), identity.Via.ADMIN_TOKEN)


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Forwarded-User", "alice"), ("X-Forwarded-User", "mallory")],  # appended, not replaced
        [("X-Forwarded-User", "mallory"), ("x-forwarded-user", "alice")],
        [("X-Forwarded-User", "alice, mallory")],  # two copies joined, as proxies do
        [("X-Forwarded-User", "dave"), ("X-Forwarded-Groups", "db"), ("X-Forwarded-Groups", "sre")],
    ],
)
def test_a_trusted_header_sent_twice_is_refused_not_picked(tmp_path, headers):
    kw: dict[str, Any] = {
        "users": identity.load_users(None, {}),
        "trusted_user_header": "X-Forwarded-User",
        "trusted_groups_header": "X-Forwarded-Groups",
        "admin_token": "adm",
    }
    with pytest.raises(IdentityError) as err:
        identity.identify(credential="adm", headers=CIMultiDict(headers), **kw)
    assert "the proxy in front of the remediator must replace the header a client sends" in str(
        err.value
    )
    # beside a personal token the proxy's headers are not read at all
    users = identity.load_users(users_file(tmp_path), {})
    who = identity.identify(
        credential=TOKENS["alice"], headers=CIMultiDict(headers), **(kw | {"users": users})
    )
    assert who == identity.Identity("alice", frozenset(), identity.Via.USER_TOKEN)


@pytest.mark.parametrize("name", ["admin-token", "Admin-Token", " admin-token "])
def test_the_trusted_header_may_not_name_the_admin_token(name):
    with pytest.raises(IdentityError) as err:
        identity.identify(
            credential="adm",
            headers={"X-Forwarded-User": name},
            admin_token="adm",
            users=identity.load_users(None, {}),
            trusted_user_header="X-Forwarded-User",
        )
    assert str(err.value) == (
        "the X-Forwarded-User header names 'admin-token', the name the "
        "shared admin token is recorded under; no person may take it"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "users:\n  alice:\n    token_sha256: abc\n",
            "users.yaml:3: users.alice.token_sha256: String should match pattern",
        ),
        (
            f"users:\n  alice:\n    token_sha256: {sha('x')}\n"
            f"  bob:\n    token_sha256: {sha('x')}\n",
            "users alice and bob have the same token",
        ),
        (f"users:\n  'al ice':\n    token_sha256: {sha('x')}\n", "'al ice' is not a user name"),
        (f"users:\n  alice:\n    token: {sha('x')}\n", "users.alice.token: Extra inputs"),
        (
            f"users:\n  admin-token:\n    token_sha256: {sha('x')}\n",
            "users.yaml:1: users: 'admin-token' is the name the shared admin token is "
            "recorded under; give this person another name",
        ),
        (f"users:\n  Admin-Token:\n    token_sha256: {sha('x')}\n", "'Admin-Token' is the name"),
    ],
)
def test_a_bad_users_file_is_a_config_error_with_its_line(tmp_path, text, expected):
    path = tmp_path / "users.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        identity.load_users(path, {})
    assert expected in str(err.value) and str(path) in str(err.value)
    assert "x" * 3 not in str(err.value)


# -- approvers -----------------------------------------------------------------------------


async def test_someone_who_is_not_an_approver_gets_403_and_is_audited(aiohttp_client, tmp_path):
    client, st, fake, _ = await started(aiohttp_client, tmp_path)
    [run] = await wait_for_approval(client, st, fake, 1)
    resp = await approve(client, run, headers=bearer("carol"), by="alice")
    assert resp.status == 403
    error = (await resp.json())["error"]
    assert error == (
        f"run {run.id}: carol may not approve or reject runs of playbook "
        f"{PLAYBOOK}; its approvers are users alice; groups sre"
    )
    # the shared admin token names nobody: a playbook with approvers wants a person
    resp = await approve(client, run, headers=ADMIN)
    assert (
        resp.status == 403 and "the shared admin token names nobody" in (await resp.json())["error"]
    )
    assert (
        await client.post(
            f"/api/v1/runs/{run.id}/reject", headers=bearer("carol"), json={"reason": "no"}
        )
    ).status == 403
    events = await st.audit.run(lambda db: db.events(run.id))
    forbidden = [
        (e.detail["by"], e.detail["via"], e.detail["action"])
        for e in events
        if (e.kind, e.name) == ("approval", "forbidden")
    ]
    assert forbidden == [
        ("carol", "user-token", "approve"),
        ("admin-token", "admin-token", "approve"),
        ("carol", "user-token", "reject"),
    ]
    assert (await get(st, run.id)).state == RunState.WAITING_APPROVAL
    assert fake.count("alertmanager", "POST", "/api/v2/silences") == 0
    # no credential at all is 401, as before
    assert (await approve(client, run, headers={})).status == 401
    # a member of a listed group may
    resp = await approve(client, run, headers=bearer("bob"))
    assert resp.status == 200 and (await resp.json())["by"] == "bob"
    done = await get(st, run.id)
    assert done.approved_by == "bob"
    [approved] = [
        e
        for e in await st.audit.run(lambda db: db.events(run.id))
        if (e.kind, e.name) == ("approval", "approved")
    ]
    assert approved.detail == {"by": "bob", "via": "user-token"}
    doc = await (await client.get(f"/api/v1/runs/{run.id}", headers=ADMIN)).json()
    assert (doc["approved_by"], doc["approved_via"]) == ("bob", "user-token")


async def test_without_approvers_any_credential_decides(aiohttp_client, tmp_path):
    client, st, fake, _ = await started(aiohttp_client, tmp_path, approvers=False)
    [run] = await wait_for_approval(client, st, fake, 1)
    resp = await approve(client, run, headers=bearer("carol"))
    assert resp.status == 200 and (await get(st, run.id)).approved_by == "carol"


async def test_a_group_from_the_proxy_header_may_approve(aiohttp_client, tmp_path):
    client, st, fake, _ = await started(
        aiohttp_client,
        tmp_path,
        trusted_user_header="X-Forwarded-User",
        trusted_groups_header="X-Forwarded-Groups",
    )
    [run] = await wait_for_approval(client, st, fake, 1)
    proxy = {**ADMIN, "X-Forwarded-User": "erin"}
    assert (await approve(client, run, headers=proxy)).status == 403
    resp = await approve(client, run, headers={**proxy, "X-Forwarded-Groups": "dev,sre"})
    assert resp.status == 200 and (await get(st, run.id)).approved_by == "erin"


async def test_a_proxy_header_sent_twice_is_400_audited_and_decides_nothing(
    aiohttp_client, tmp_path
):
    client, st, fake, _ = await started(
        aiohttp_client, tmp_path, approvers=False, trusted_user_header="X-Forwarded-User"
    )
    [run] = await wait_for_approval(client, st, fake, 1)
    twice = CIMultiDict(
        [*ADMIN.items(), ("X-Forwarded-User", "alice"), ("X-Forwarded-User", "mallory")]
    )
    for action in ("approve", "reject"):
        resp = await client.post(
            f"/api/v1/runs/{run.id}/{action}", headers=twice, json={"plan_hash": run.plan_hash}
        )
        assert resp.status == 400
        assert (await resp.json())["error"].startswith(
            "the request carries the X-Forwarded-User header 2 times; the proxy in front of "
            "the remediator must replace the header a client sends, not add another"
        )
    resp = await approve(client, run, headers={**ADMIN, "X-Forwarded-User": "admin-token"})
    assert resp.status == 400 and "no person may take it" in (await resp.json())["error"]
    assert (await get(st, run.id)).state == RunState.WAITING_APPROVAL
    events = await st.audit.run(lambda db: db.events(run.id))
    forbidden = [
        (e.detail["via"], e.detail["action"], "by" in e.detail)
        for e in events
        if (e.kind, e.name) == ("approval", "forbidden")
    ]
    assert forbidden == [
        ("trusted-header", "approve", False),
        ("trusted-header", "reject", False),
        ("trusted-header", "approve", False),
    ]
    # the kill switch and a breaker reset refuse it too, and change nothing
    for path in ("/api/v1/pause", f"/api/v1/breakers/{PLAYBOOK}/reset"):
        resp = await client.post(path, headers=twice)
        assert resp.status == 400, path
    assert await st.audit.run(lambda db: db.get_flag("paused")) is None
    # one header, one user: approved, and the run's answer says how it was identified
    resp = await approve(client, run, headers={**ADMIN, "X-Forwarded-User": "alice"})
    assert resp.status == 200 and (await resp.json())["by"] == "alice"
    doc = await (await client.get(f"/api/v1/runs/{run.id}", headers=ADMIN)).json()
    assert (doc["approved_by"], doc["approved_via"]) == ("alice", "trusted-header")


@pytest.mark.parametrize("text", ["approvers: {}", "approvers: {users: ['a b']}"])
async def test_bad_approvers_are_a_playbook_problem(aiohttp_client, tmp_path, text):
    pb = with_approvers(approval_playbook(tmp_path), text)
    _client, st, _, _ = await start(aiohttp_client, tmp_path, playbooks=[pb], admin="adm")
    [problem] = st.catalog.problems
    assert "spec.approvers" in problem


# -- request bodies ------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["approve", "reject"])
@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (
            "application/json",
            b'{"plan_hash": "\xff\xfe"}',
            "the body is not UTF-8 (byte 15: invalid start byte): send JSON encoded as UTF-8; ",
        ),
        (
            "application/json; charset=no-such-codec",
            b'{"plan_hash": "x", "reason": "x"}',
            "the Content-Type names charset 'no-such-codec': JSON is UTF-8, send charset=utf-8 "
            "or no charset; ",
        ),
        (
            "application/json; charset=latin-1",
            '{"reason": "é"}'.encode("latin-1"),
            "the Content-Type names charset 'latin-1'",
        ),
        ("application/json", b'{"plan_hash": ', "the body is not JSON: "),
        ("application/json", b'["plan_hash"]', "expected {"),
    ],
)
async def test_a_decision_body_that_is_not_utf8_json_is_400(
    aiohttp_client, tmp_path, action, content_type, body, expected
):
    client, st, fake, _ = await started(aiohttp_client, tmp_path)
    [run] = await wait_for_approval(client, st, fake, 1)
    resp = await client.post(
        f"/api/v1/runs/{run.id}/{action}",
        data=body,
        headers={**bearer("alice"), "Content-Type": content_type},
    )
    assert resp.status == 400
    assert (await resp.json())["error"].startswith(expected)
    assert (await get(st, run.id)).state == RunState.WAITING_APPROVAL
    # the same request in UTF-8 goes through
    resp = await client.post(
        f"/api/v1/runs/{run.id}/{action}",
        headers={**bearer("alice"), "Content-Type": "application/json; charset=utf-8"},
        data=f'{{"plan_hash": "{run.plan_hash}", "reason": "Schloß"}}'.encode(),
    )
    assert resp.status == 200


# -- rejecting -----------------------------------------------------------------------------


async def test_rejecting_ends_the_run_and_names_who(aiohttp_client, tmp_path):
    client, st, fake, _ = await started(aiohttp_client, tmp_path)
    [run] = await wait_for_approval(client, st, fake, 1)
    resp = await client.post(
        f"/api/v1/runs/{run.id}/reject",
        headers=bearer("alice"),
        json={"reason": "not during the sale"},
    )
    assert resp.status == 200
    assert await resp.json() == {
        "id": run.id,
        "state": "rejected",
        "by": "alice",
        "outcome": "rejected by alice: not during the sale",
    }
    done = await get(st, run.id)
    assert (done.state, done.outcome) == (
        RunState.REFUSED,
        "rejected by alice: not during the sale",
    )
    events = await st.audit.run(lambda db: db.events(run.id))
    [rejected] = [e for e in events if (e.kind, e.name) == ("approval", "rejected")]
    assert rejected.detail == {"by": "alice", "via": "user-token", "reason": "not during the sale"}
    # decided is decided: neither a second rejection nor an approval goes through
    again = await client.post(f"/api/v1/runs/{run.id}/reject", headers=bearer("alice"))
    assert again.status == 409 and "refused, not waiting" in (await again.json())["error"]
    assert (await approve(client, run, headers=bearer("alice"))).status == 409
    assert fake.count("alertmanager", "POST", "/api/v2/silences") == 0


async def test_a_reject_body_must_be_json(aiohttp_client, tmp_path):
    client, st, fake, _ = await started(aiohttp_client, tmp_path)
    [run] = await wait_for_approval(client, st, fake, 1)
    resp = await client.post(
        f"/api/v1/runs/{run.id}/reject",
        data="[1",
        headers={**bearer("alice"), "Content-Type": "application/json"},
    )
    assert resp.status == 400
    resp = await client.post(
        f"/api/v1/runs/{run.id}/reject",
        data="reason=x",
        headers={**bearer("alice"), "Content-Type": "text/plain"},
    )
    assert resp.status == 415
    assert (await get(st, run.id)).state == RunState.WAITING_APPROVAL


# -- the awaiting-approval alert -----------------------------------------------------------


async def test_a_waiting_run_is_announced_and_resolved_when_approved(aiohttp_client, tmp_path):
    client, st, fake, clock = await started(aiohttp_client, tmp_path)
    [run] = await wait_for_approval(client, st, fake, 1)
    [sent] = notices(fake)
    assert sent["labels"] == {
        "alertname": awaiting.ALERTNAME,
        "severity": "warning",
        "playbook": PLAYBOOK,
        "run_id": run.id,
        "original_alertname": "DiskFlapping",
        "instance": "db-0:9100",
    }
    notes = sent["annotations"]
    assert notes["console_url"] == f"http://vigil:9421/#run/{run.id}"
    assert notes["run_url"] == f"http://vigil:9421/api/v1/runs/{run.id}"
    assert notes["description"] == "1. silence: alertmanager.silence\non instance/db-0:9100"
    assert notes["approvers"] == "users alice; groups sre"
    assert notes["plan_hash"] == run.plan_hash
    assert ms(sent["endsAt"]) == run.approval_expires_ms == ms(notes["expires_at"])
    assert ms(sent["startsAt"]) == int(T0 * 1000)
    assert notes["summary"].startswith(
        f"Playbook {PLAYBOOK} waits for an approval to act on DiskFlapping (expires "
    )
    clock.now += 60
    assert (await approve(client, run, headers=bearer("alice"))).status == 200
    _first, resolved = notices(fake)
    assert resolved["labels"] == sent["labels"]
    assert ms(resolved["endsAt"]) == int((T0 + 60) * 1000)
    events = await st.audit.run(lambda db: db.events(run.id))
    assert [(e.name, e.verdict) for e in events if e.name.startswith("notice_")] == [
        ("notice_announced", "ok"),
        ("notice_resolved", "ok"),
    ]


async def test_the_announcement_resolves_when_rejected_or_expired(aiohttp_client, tmp_path):
    client, st, fake, clock = await started(aiohttp_client, tmp_path)
    first, second, third = await wait_for_approval(client, st, fake, 3)
    rejected_ms = int(clock.now * 1000)
    await client.post(f"/api/v1/runs/{first.id}/reject", headers=bearer("alice"))
    # the approval of the second comes too late: it expires, and says so
    clock.now = second.approval_expires_ms / 1000
    resp = await approve(client, second, headers=bearer("alice"))
    assert resp.status == 409 and "approval expired" in (await resp.json())["error"]
    # the third expires on the service's own round
    expired = await st.audit.run(lambda db: db.expire_approvals(now_ms=int(clock.now * 1000)))
    assert expired == [third.id]
    await st.runner.expired(expired)
    ended = [n for n in notices(fake) if "resolution" in n["annotations"]]
    now_ms = int(clock.now * 1000)
    assert [
        (n["labels"]["run_id"], n["annotations"]["resolution"], ms(n["endsAt"])) for n in ended
    ] == [
        (first.id, "refused: rejected by alice", rejected_ms),
        (second.id, "expired: approval not given in time", now_ms),
        (third.id, "expired: approval not given in time", now_ms),
    ]
    # a second round finds nothing left to resolve
    await st.runner.expired([third.id])
    assert len(notices(fake)) == 6


class AlertsRefused(FakeServices):
    """An Alertmanager whose POST /api/v2/alerts answers 400 (silences still work)."""

    async def alertmanager(self, method, path, body=None):
        status, doc = await super().alertmanager(method, path, body)
        return (400, "bad alert") if path == "/api/v2/alerts" else (status, doc)


async def test_an_alertmanager_that_fails_leaves_the_run_waiting(aiohttp_client, tmp_path):
    client, st, fake, _ = await started(aiohttp_client, tmp_path, services=AlertsRefused())
    [run] = await wait_for_approval(client, st, fake, 1)
    assert run.state == RunState.WAITING_APPROVAL
    events = await st.audit.run(lambda db: db.events(run.id))
    [failed] = [e for e in events if e.name == "notice_announced"]
    assert (failed.verdict, failed.detail["status"], failed.detail["error"]) == (
        "failed",
        400,
        "bad alert",
    )


# -- what goes to Alertmanager from the alert is made valid for it -------------------------


def test_hostile_values_become_valid_alertmanager_labels_and_text():
    labels = awaiting.notice_labels(
        run_id="r1",
        playbook="p",
        extra={"bad-name": "x", "team": "db", "run_id": "forged", "alertname": "Forged"},
        alert_labels={
            "alertname": "Disk\u202eFull\n",
            "namespace": "shop",
            "instance": "\ud800" + "a" * 400,
            "job": "",
            "pod\n": "x",
            "secret": "not copied",
        },
    )
    assert labels["alertname"] == awaiting.ALERTNAME and labels["run_id"] == "r1"
    assert labels["original_alertname"] == "Disk\ufffdFull\ufffd"
    assert labels["team"] == "db" and labels["namespace"] == "shop"
    assert labels["instance"].startswith("\ufffd") and len(labels["instance"]) == 256
    assert labels["instance"].endswith("…")
    assert "job" not in labels and "bad-name" not in labels and "secret" not in labels
    assert all(awaiting.LABEL_NAME.fullmatch(k) for k in labels)
    for value in labels.values():
        value.encode("utf-8")  # valid UTF-8: raises on a lone surrogate
    assert awaiting.am_text("a\nb\x07c\u200b", newlines=True) == "a\nb\ufffdc\ufffd"
    assert awaiting.am_text("a\nb") == "a\ufffdb"


class DecidedInFlight(FakeServices):
    """Someone rejects the run while its announcement is on its way to Alertmanager."""

    st: State | None = None  # the app's, once it started

    async def alertmanager(self, method, path, body=None):
        answer = await super().alertmanager(method, path, body)
        if path == "/api/v2/alerts" and "expires_at" in body[0]["annotations"]:
            run_id = body[0]["labels"]["run_id"]
            st = self.st
            assert st is not None and st.audit is not None
            await st.audit.run(
                lambda db: db.reject(
                    run_id,
                    by={"by": "alice", "via": "user-token"},
                    reason="fast",
                    now_ms=int(st.clock() * 1000),
                )
            )
        return answer


async def test_a_run_decided_while_it_is_announced_is_resolved_too(aiohttp_client, tmp_path):
    fake = DecidedInFlight()
    pb = approval_playbook(tmp_path, "max_concurrent: 5")
    cfg = RemediatorConfig(auth=AuthConfig(users_file=users_file(tmp_path)))
    client, st, _, _ = await start(
        aiohttp_client, tmp_path, playbooks=[pb], admin="adm", cfg=cfg, services=fake
    )
    fake.st = st
    fake.query_results['up{instance="db-0:9100"} == 1'] = [{}]
    await client.post("/webhook", json=notification(fingerprint="f0", instance="db-0:9100"))
    await drained(st)  # the run's task: decision, announcement, and what follows
    [run] = await st.audit.run(lambda db: db.list_runs())
    assert run.state == RunState.REFUSED
    announced, resolved = notices(fake)
    assert resolved["labels"] == announced["labels"]
    assert resolved["annotations"]["resolution"] == "refused: rejected by alice: fast"

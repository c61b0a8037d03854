"""Approvals through the real Alertmanager: a run that waits is announced as
``VigilRemediationAwaitingApproval`` and the team's receiver hears it; an approval with
the wrong person's token is refused (403); the right person approves one run and rejects
another, and both announcements resolve, in Alertmanager and at the receiver."""

from __future__ import annotations

import hashlib
import json
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.procs import free_port, process, wait_until
from tests.integration.stack import Webhook, alertmanager, am_alerts, get_json

pytestmark = pytest.mark.integration
AWAITING = "VigilRemediationAwaitingApproval"
TOKENS = {"alice": "alice-token-7f3a", "carol": "carol-token-19be"}

PLAYBOOK = """apiVersion: vigil/v1
kind: Playbook
metadata:
  name: silence-disk-full
spec:
  match:
    labels: {alertname: DiskFull}
  mode: approval
  approvers: {users: [alice]}
  guards:
    cooldown_s: 0
    max_concurrent: 5
  steps:
    - name: silence
      action: alertmanager.silence
      params:
        matchers: ['alertname="DiskFull"', 'instance="{{ labels.instance }}"']
        duration_s: 10m
        comment: 'run {{ run.id }}'
"""


def _am_config(path: Path, remediator: str, team: str) -> Path:
    path.write_text(f"""
route:
  receiver: vigil
  group_by: [alertname, instance]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers: ['alertname="{AWAITING}"']
      receiver: team
      group_by: [alertname, run_id]
receivers:
  - name: vigil
    webhook_configs:
      - url: {remediator}
        send_resolved: false
  - name: team
    webhook_configs:
      - url: {team}
        send_resolved: true
""")
    return path


def _post_alert(am: str, **labels: str) -> None:
    now = datetime.now(UTC)
    body = [
        {
            "labels": {"alertname": "DiskFull", **labels},
            "startsAt": now.isoformat().replace("+00:00", "Z"),
            "endsAt": (now + timedelta(minutes=10)).isoformat().replace("+00:00", "Z"),
        }
    ]
    req = urllib.request.Request(
        f"{am}/api/v2/alerts",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def _post(url: str, token: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _team_heard(hook: Webhook, run_id: str, status: str, timeout_s: float) -> list[dict]:
    return hook.wait_for(
        lambda n: (
            n["status"] == status
            and any(
                a["labels"].get("run_id") == run_id and a["labels"]["alertname"] == AWAITING
                for a in n["alerts"]
            )
        ),
        timeout_s,
    )


def _awaiting_in_am(am: str) -> dict[str, dict]:
    """The active awaiting-approval alerts in Alertmanager, by run id."""
    return {
        a["labels"]["run_id"]: a
        for a in am_alerts(am)
        if a["labels"]["alertname"] == AWAITING and a["status"]["state"] == "active"
    }


def test_a_waiting_run_is_announced_decided_by_its_approver_and_resolved(tmp_path):
    port = free_port()
    rem = f"http://127.0.0.1:{port}"
    book = tmp_path / "playbooks"
    book.mkdir()
    (book / "silence-disk-full.yaml").write_text(PLAYBOOK)
    (tmp_path / "users.yaml").write_text(
        "users:\n"
        + "".join(
            f"  {name}:\n    token_sha256: {hashlib.sha256(token.encode()).hexdigest()}\n"
            for name, token in TOKENS.items()
        )
    )
    (tmp_path / "admin.token").write_text("admin-token-55d1\n")
    (tmp_path / "remediator.yaml").write_text(
        f"auth:\n  users_file: {tmp_path / 'users.yaml'}\n"
        f"  admin_token_file: {tmp_path / 'admin.token'}\n"
    )
    with Webhook() as team:
        cfg = _am_config(tmp_path / "am.yml", f"{rem}/webhook", team.url)
        with (
            alertmanager("am", tmp_path, cfg) as (am, _),
            process(
                "remediator",
                [
                    sys.executable,
                    "-m",
                    "remediator",
                    "serve",
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--playbooks",
                    str(book),
                    "--alertmanager",
                    am,
                    "--config",
                    str(tmp_path / "remediator.yaml"),
                    "--state-dir",
                    str(tmp_path / "state"),
                ],
                tmp_path,
                ready_url=f"{rem}/readyz",
                timeout_s=60,
            ),
        ):
            _post_alert(am, instance="db-1:9100")
            _post_alert(am, instance="db-2:9100")

            def waiting() -> dict[str, dict]:
                runs = get_json(f"{rem}/api/v1/runs")["data"]
                return {r["fingerprint"]: r for r in runs if r["state"] == "waiting_approval"}

            wait_until("two runs wait for approval", lambda: len(waiting()) == 2, timeout_s=30)
            one, two = sorted(waiting().values(), key=lambda r: r["id"])
            wait_until(
                "both are announced in Alertmanager",
                lambda: {one["id"], two["id"]} <= set(_awaiting_in_am(am)),
                timeout_s=30,
            )
            shown = _awaiting_in_am(am)[one["id"]]
            assert shown["labels"]["playbook"] == "silence-disk-full"
            assert shown["labels"]["original_alertname"] == "DiskFull"
            assert shown["annotations"]["console_url"] == f"{rem}/#run/{one['id']}"
            assert shown["annotations"]["approvers"] == "users alice"
            assert shown["annotations"]["plan_hash"] == one["plan_hash"]
            assert "1. silence: alertmanager.silence" in shown["annotations"]["description"]
            ends = datetime.fromisoformat(shown["endsAt"].replace("Z", "+00:00"))
            assert abs(ends.timestamp() * 1000 - one["approval_expires_ms"]) < 1000
            assert _team_heard(team, one["id"], "firing", 30), "the team was not told"

            # carol has a token, but the playbook names alice: 403, and the run waits
            status, doc = _post(
                f"{rem}/api/v1/runs/{one['id']}/approve",
                TOKENS["carol"],
                {"plan_hash": one["plan_hash"], "by": "alice"},
            )
            assert status == 403
            assert (
                "carol may not approve or reject runs of playbook silence-disk-full" in doc["error"]
            )
            status, doc = _post(
                f"{rem}/api/v1/runs/{one['id']}/approve",
                "admin-token-55d1",
                {"plan_hash": one["plan_hash"]},
            )
            assert status == 403 and "the shared admin token names nobody" in doc["error"]
            run = get_json(f"{rem}/api/v1/runs/{one['id']}")
            assert run["state"] == "waiting_approval"
            forbidden = [
                e["detail"]["by"]
                for e in run["events"]
                if (e["kind"], e["name"]) == ("approval", "forbidden")
            ]
            assert forbidden == ["carol", "admin-token"]

            status, doc = _post(
                f"{rem}/api/v1/runs/{one['id']}/approve",
                TOKENS["alice"],
                {"plan_hash": one["plan_hash"]},
            )
            assert (status, doc["by"]) == (200, "alice")
            status, doc = _post(
                f"{rem}/api/v1/runs/{two['id']}/reject",
                TOKENS["alice"],
                {"reason": "db-2 is being replaced"},
            )
            assert (status, doc["outcome"]) == (200, "rejected by alice: db-2 is being replaced")

            for run_id in (one["id"], two["id"]):
                assert _team_heard(team, run_id, "resolved", 30), f"{run_id} not resolved"
            assert not {one["id"], two["id"]} & set(_awaiting_in_am(am))
            wait_until(
                "the approved run succeeded",
                lambda: get_json(f"{rem}/api/v1/runs/{one['id']}")["state"] == "succeeded",
                timeout_s=30,
            )
            assert get_json(f"{rem}/api/v1/runs/{two['id']}")["state"] == "refused"

"""The remediator with the real Alertmanager 0.25 and Prometheus 2.42: Alertmanager routes
alerts to the webhook, repeated notifications make one run, silences are real, verification
runs against Prometheus, escalations arrive, and a kill -9 mid-run is escalated on restart,
never repeated."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.procs import free_port, process, require, wait_until
from tests.integration.stack import alertmanager, am_alerts, get_json

pytestmark = pytest.mark.integration
PLAYBOOKS = Path(__file__).parent / "playbooks"


def _am_config(path: Path, webhook: str) -> Path:
    # repeat_interval is short so that Alertmanager notifies the same alert again and again
    path.write_text(f"""
route:
  receiver: vigil
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 2s
  routes:
    - matchers: ['alertname="VigilRemediationFailed"']
      receiver: blackhole
receivers:
  - name: vigil
    webhook_configs:
      - url: {webhook}
        send_resolved: false
  - name: blackhole
""")
    return path


def _post_alert(am: str, alertname: str, **labels: str) -> None:
    now = datetime.now(UTC)
    body = [
        {
            "labels": {"alertname": alertname, **labels},
            "annotations": {"summary": f"{alertname} in the integration test"},
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


def _runs(port: int) -> list[dict]:
    return get_json(f"http://127.0.0.1:{port}/api/v1/runs")["data"]


def _silences(am: str, alertname: str) -> list[dict]:
    with urllib.request.urlopen(f"{am}/api/v2/silences", timeout=5) as resp:
        return [
            s
            for s in json.load(resp)
            if s["status"]["state"] == "active"
            and {"name": "alertname", "value": alertname, "isRegex": False, "isEqual": True}
            in s["matchers"]
        ]


def _remediator(tmp_path: Path, port: int, am: str, prom: str):
    argv = [
        sys.executable,
        "-m",
        "remediator",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--playbooks",
        str(PLAYBOOKS),
        "--alertmanager",
        am,
        "--prometheus",
        prom,
        "--state-dir",
        str(tmp_path / "remediator"),
    ]
    return process(
        "remediator", argv, tmp_path, ready_url=f"http://127.0.0.1:{port}/readyz", timeout_s=60
    )


@pytest.fixture
def stack(tmp_path: Path):
    rem_port, prom_port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(f"""
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: prometheus
    static_configs: [{{targets: ['127.0.0.1:{prom_port}']}}]
""")
    cfg = _am_config(tmp_path / "am.yml", f"http://127.0.0.1:{rem_port}/webhook")
    prom = f"http://127.0.0.1:{prom_port}"
    with (
        process(
            "prometheus",
            [
                require("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp_path,
            ready_url=f"{prom}/-/ready",
        ),
        alertmanager("am", tmp_path, cfg) as (am, _),
    ):
        wait_until(
            "Prometheus scrapes itself",
            lambda: bool(get_json(f"{prom}/api/v1/query?query=up")["data"]["result"]),
            timeout_s=30,
        )
        yield tmp_path, rem_port, am, prom


def test_repeated_notifications_make_one_run_with_a_real_silence(stack):
    tmp_path, port, am, prom = stack
    with _remediator(tmp_path, port, am, prom):
        _post_alert(am, "DiskFlapping", instance="db-1:9100")
        wait_until(
            "the run succeeded",
            lambda: any(r["state"] == "succeeded" for r in _runs(port)),
            timeout_s=30,
        )
        [silence] = _silences(am, "DiskFlapping")
        assert {
            "name": "instance",
            "value": "db-1:9100",
            "isRegex": False,
            "isEqual": True,
        } in silence["matchers"]
        [run] = _runs(port)
        assert silence["comment"] == f"vigil run {run['id']}"

        # an alert nothing silences is notified every 2 s (repeat_interval): one run only
        _post_alert(am, "NoisyButHarmless", instance="web-1")
        wait_until("its run", lambda: len(_runs(port)) == 2, timeout_s=30)
        seen = _delivered(port)
        wait_until("three more notifications", lambda: _delivered(port) >= seen + 3, timeout_s=30)
        assert len(_runs(port)) == 2
        doc = get_json(f"http://127.0.0.1:{port}/api/v1/runs/{run['id']}")
        verify = [e for e in doc["events"] if e["kind"] == "verify"]
        assert verify and verify[0]["verdict"] == "ok"
        [pre] = [e for e in doc["events"] if e["kind"] == "guard" and e["name"] == "precondition"]
        assert pre["verdict"] == "allow"
        assert pre["detail"]["reason"] == "Prometheus is up to verify the outcome: 1 series"


def test_failed_verification_is_undone_and_escalated_to_alertmanager(stack):
    tmp_path, port, am, prom = stack
    with _remediator(tmp_path, port, am, prom):
        _post_alert(am, "CacheDown", job="cache")
        wait_until(
            "the run ended", lambda: any(r["state"] == "undone" for r in _runs(port)), timeout_s=60
        )
        assert _silences(am, "CacheDown") == []  # the undo expired the silence
        escalated = [
            a for a in am_alerts(am) if a["labels"]["alertname"] == "VigilRemediationFailed"
        ]
        assert len(escalated) == 1
        assert escalated[0]["labels"]["playbook"] == "restart-cache"
        assert escalated[0]["annotations"]["run_url"].endswith(_runs(port)[0]["id"])


def test_kill_9_mid_run_is_marked_interrupted_and_escalated_not_repeated(stack):
    tmp_path, port, am, prom = stack
    with _remediator(tmp_path, port, am, prom) as proc:
        _post_alert(am, "SlowThing")
        wait_until(
            "the run is waiting in its long step",
            lambda: any(r["state"] == "running" for r in _runs(port)),
            timeout_s=30,
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    db = sqlite3.connect(tmp_path / "remediator" / "audit.db")
    assert db.execute("SELECT state FROM runs").fetchall() == [("running",)]
    db.close()
    with _remediator(tmp_path, port, am, prom):
        [run] = _runs(port)
        assert run["state"] == "interrupted"
        assert "not repeated" in run["outcome"]
        wait_until(
            "the escalation arrived",
            lambda: any(
                a["labels"]["alertname"] == "VigilRemediationFailed" for a in am_alerts(am)
            ),
            timeout_s=30,
        )
        # Alertmanager notifies SlowThing again every 2 s: the run must not start again
        wait_until(
            "a repeat notification was received", lambda: _delivered(port) >= 1, timeout_s=30
        )
        assert len(_runs(port)) == 1


def _delivered(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('vigil_webhook_requests_total{code="200"}')
    )

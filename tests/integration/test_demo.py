"""`make demo`'s scenario end to end (DEMO_EXIT=1): every step happened, as Alertmanager's
alert and the remediator's audit log show."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.procs import free_port

pytestmark = pytest.mark.integration


def test_the_demo_scenario_runs_end_to_end(tmp_path: Path):
    ports: list[int] = []
    while len(ports) < 7:  # seven distinct free ports (not a consecutive range: busier)
        port = free_port()
        if port not in ports:
            ports.append(port)
    env = {
        **os.environ,
        "DEMO_EXIT": "1",
        "DEMO_PORTS": ",".join(map(str, ports)),
        "DEMO_WORKDIR": str(tmp_path / "demo"),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "deploy.local.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Result: every step happened" in done.stdout
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    steps = [s["step"] for s in summary["timeline"]]
    assert steps == [
        "history backfilled",
        "stack ready",
        "detector watching",
        "fault injected",
        "anomaly detected and routed",
        "playbook acted",
        "verification passed",
        "alert resolved",
        "dashboards checked",
    ]
    at = {s["step"]: s["at_s"] for s in summary["timeline"]}
    assert at["anomaly detected and routed"] - at["fault injected"] < 30
    # every dashboard query returns data here unless it reads what only a cluster has
    dashboards = summary["dashboards"]
    assert dashboards["empty"] == [] and dashboards["with_data"] >= 60, dashboards
    # the alert's dashboard_url draws the series and the band Vigil expected, with data
    link = dashboards["alert_link"]["series"]
    assert len(link) == 4 and all(n > 0 for n in link.values()), dashboards["alert_link"]
    assert [e.split("{")[0] for e in link] == [
        "demo_latency_p99_seconds",
        "vigil_anomaly_expected",
        "vigil_anomaly_lower",
        "vigil_anomaly_upper",
    ]
    alert = summary["alert"]  # as Alertmanager's API returned it
    assert alert["labels"]["alertname"] == "VigilAnomaly"
    assert alert["labels"]["job"] == "demo-shop"
    assert alert["annotations"]["direction"] == "above"
    assert "anomalous for" in alert["annotations"]["summary"]
    db = sqlite3.connect(tmp_path / "demo" / "remediator" / "audit.db")
    runs = db.execute("SELECT id, playbook, state, fingerprint FROM runs ORDER BY rowid").fetchall()
    events = {
        (k, n, v)
        for k, n, v in db.execute(
            "SELECT kind, name, verdict FROM events WHERE run_id = ?", (summary["run_id"],)
        )
    }
    db.close()
    assert (summary["run_id"], "demo-shop-restart", "succeeded", alert["fingerprint"]) == runs[
        0
    ]  # the first run is the fault's: no false alarm
    assert ("action_response", "restart", "executed") in events
    assert (
        "verify",
        "the shop's p99 latency is under 500 ms and its errors under 5% again",
        "ok",
    ) in events
    assert ("guard", "precondition", "allow") in events

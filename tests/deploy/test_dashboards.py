"""The Grafana dashboards in deploy/config/dashboards/ are what the generator writes, and
every query in them is valid PromQL (promtool)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from deploy.config import dashboards
from tests.integration.procs import require


def test_dashboards_are_generated_and_up_to_date():
    for name, text in dashboards.render().items():
        path = dashboards.OUT / name
        assert path.read_text() == text, f"{path} is stale: run python -m deploy.config.dashboards"
    assert sorted(p.name for p in dashboards.OUT.glob("*.json")) == sorted(dashboards.DASHBOARDS)


def test_every_dashboard_query_is_valid_promql(tmp_path: Path):
    exprs = []
    for path in dashboards.OUT.glob("*.json"):
        doc = json.loads(path.read_text())
        assert doc["uid"] and len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
        for panel in doc["panels"]:
            for target in panel["targets"]:
                exprs.append(target["expr"].replace("$metric", "http_requests_total")
                             .replace("$selector", 'job="api", namespace="shop"')
                             .replace("$service", "demo-shop")
                             .replace("$instance", "node-1:9100"))
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([require("promtool"), "check", "rules", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_dashboard_link_fills_the_anomaly_dashboards_variables():
    doc = json.loads((dashboards.OUT / "vigil-anomaly.json").read_text())
    names = {v["name"] for v in doc["templating"]["list"]}
    assert {"metric", "selector"} <= names  # detector/alerts.py Links.dashboard sets these
    assert doc["uid"] == "vigil-anomaly"  # alerting.dashboard_uid's default

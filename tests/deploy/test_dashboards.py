"""The Grafana dashboards in deploy/config/dashboards/ are what the generator writes, and
every query in them is valid PromQL (promtool)."""

from __future__ import annotations

import json
import re
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


# what the tests put where a dashboard has a variable (Grafana's "All" is ".+")
VALUES = {
    "metric": "http_requests_total",
    "selector": 'job="api", namespace="shop"',
    "service": ".+",
    "instance": ".+",
    "job": ".+",
}


def _docs() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(dashboards.OUT.glob("*.json"))]


def test_every_dashboard_query_is_valid_promql(tmp_path: Path):
    exprs = []
    for doc in _docs():
        assert doc["uid"] and len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
        exprs += [q.expr for q in dashboards.prometheus_queries(doc, VALUES)]
    assert all("$" not in e for e in exprs), [e for e in exprs if "$" in e]
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        [require("promtool"), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(exprs) >= 80


def test_every_panel_reads_a_datasource_its_dashboard_defines():
    for doc in _docs():
        defined = {v["name"] for v in doc["templating"]["list"] if v["type"] == "datasource"}
        for panel in doc["panels"]:
            if panel["type"] == "text":
                continue
            uses = {t["datasource"]["uid"] for t in panel["targets"]} | {panel["datasource"]["uid"]}
            assert {u.strip("${}") for u in uses} <= defined, (doc["uid"], panel["title"])
            for target in panel["targets"]:
                kind = target["datasource"]["type"]
                query = target.get("expr") or target.get("query") or target.get("queryType")
                assert query, (doc["uid"], panel["title"])
                if kind == "loki":  # LogQL: a stream selector first
                    assert re.match(r"^(sum by \(\w+(, \w+)*\) \(rate\()?\{", query), query
                if kind == "tempo" and target["queryType"] == "traceql":
                    assert query.startswith("{") and query.endswith("}"), query


def test_logs_traces_and_dependencies_dashboards_exist():
    uids = {d["uid"]: d for d in _docs()}
    assert {"loki"} <= {p["datasource"]["type"] for p in uids["vigil-logs"]["panels"]}
    assert {"tempo", "prometheus"} <= {
        p["datasource"]["type"] for p in uids["vigil-traces"]["panels"]
    }
    assert "nodeGraph" in {p["type"] for p in uids["vigil-dependencies"]["panels"]}


def test_queries_reading_cluster_only_sources_are_recognised():
    def q(expr: str) -> dashboards.PanelQuery:
        return dashboards.PanelQuery("d", "p", "A", expr)

    assert q("sum by (phase) (kube_pod_status_phase)").cluster_source() == "kube-state-metrics"
    assert q("(kube_deployment_spec_replicas - x) > 0").cluster_source() == "kube-state-metrics"
    assert q('rate(container_cpu_usage_seconds_total{container!=""}[5m])').cluster_source()
    assert q('sum(up{job="container_x"})').cluster_source() is None  # a label value
    assert q("sum by (container) (rate(demo_requests_total[5m]))").cluster_source() is None


def test_the_alert_dashboard_link_fills_the_anomaly_dashboards_variables():
    doc = json.loads((dashboards.OUT / "vigil-anomaly.json").read_text())
    names = {v["name"] for v in doc["templating"]["list"]}
    assert {"metric", "selector"} <= names  # detector/alerting/book.py Links.dashboard sets these
    assert doc["uid"] == "vigil-anomaly"  # alerting.dashboard_uid's default

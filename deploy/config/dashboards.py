"""Grafana dashboards as code: ``python -m deploy.config.dashboards`` writes
deploy/config/dashboards/*.json (checked in; a test keeps them up to date).

* ``vigil-anomaly``: one series with the band Vigil expected and its anomaly score, from
  the write-back series; the alerts' ``dashboard_url`` opens it with the variables
  ``metric`` (the metric name) and ``selector`` (the label matchers, without braces).
* ``vigil-overview``: Vigil itself: ingestion, queue, detection, alerts and their
  delivery, remediation runs, guard refusals, leadership.
* ``vigil-slos``: every SLO's remaining error budget, burn rates and SLI (the rules of
  ``vigil-detector slo generate``).
* ``vigil-remediation``: runs by outcome, guard refusals, action latency, verifications,
  escalations and breaker trips, duplicates avoided.

Only JSON is produced here; the cluster form provisions it through Grafana's sidecar and
the one-machine form has no Grafana (its Prometheus links draw the same series).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}


def _panel(title: str, targets: list[tuple[str, str]], *, x: int, y: int, w: int = 12,
           h: int = 8, unit: str = "short", description: str = "",
           overrides: list[dict[str, Any]] | None = None,
           thresholds: list[tuple[float, str]] | None = None) -> dict[str, Any]:
    steps = [{"color": "green", "value": None}] + [
        {"color": color, "value": value} for value, color in (thresholds or [])]
    return {
        "type": "timeseries", "title": title, "description": description, "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit,
                                     "thresholds": {"mode": "absolute", "steps": steps},
                                     "custom": {"lineWidth": 1, "fillOpacity": 0}},
                        "overrides": overrides or []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                    "tooltip": {"mode": "multi"}},
        "targets": [{"datasource": DS, "expr": expr, "legendFormat": legend,
                     "refId": chr(ord("A") + i)} for i, (expr, legend) in enumerate(targets)],
    }


def _datasource_var() -> dict[str, Any]:
    return {"name": "datasource", "type": "datasource", "query": "prometheus",
            "label": "Prometheus", "current": {}, "hide": 0}


def _textbox(name: str, label: str, default: str) -> dict[str, Any]:
    return {"name": name, "type": "textbox", "label": label, "query": default,
            "current": {"text": default, "value": default}, "hide": 0}


def _dashboard(uid: str, title: str, panels: list[dict[str, Any]],
               variables: list[dict[str, Any]], time_from: str) -> dict[str, Any]:
    for i, panel in enumerate(panels, start=1):
        panel["id"] = i
    return {"uid": uid, "title": title, "tags": ["vigil"], "timezone": "utc",
            "schemaVersion": 39, "version": 1, "editable": True, "refresh": "30s",
            "time": {"from": time_from, "to": "now"},
            "templating": {"list": [_datasource_var(), *variables]}, "panels": panels,
            "annotations": {"list": []}, "links": []}


def anomaly() -> dict[str, Any]:
    band = 'metric_name="$metric", $selector'
    fill = {"matcher": {"id": "byName", "options": "upper"},
            "properties": [{"id": "custom.fillBelowTo", "value": "lower"},
                           {"id": "custom.fillOpacity", "value": 15},
                           {"id": "color", "value": {"mode": "fixed",
                                                     "fixedColor": "green"}}]}
    quiet = [{"matcher": {"id": "byName", "options": name},
              "properties": [{"id": "custom.lineWidth", "value": 0},
                             {"id": "color", "value": {"mode": "fixed",
                                                       "fixedColor": "green"}}]}
             for name in ("lower", "upper")]
    panels = [
        _panel("$metric and the band Vigil expected", [
            ("$metric{$selector}", "value"),
            (f"anomaly_expected{{{band}}}", "expected"),
            (f"anomaly_lower{{{band}}}", "lower"),
            (f"anomaly_upper{{{band}}}", "upper")], x=0, y=0, w=24, h=12,
            description="The series, the value Vigil expected and the band it judged by "
                        "(written back by the detector).", overrides=[*quiet, fill]),
        _panel("Anomaly score", [(f"anomaly_score{{{band}}}", "{{detector}}")], x=0, y=12,
               w=24, h=6, unit="percentunit", thresholds=[(0.9999, "orange"),
                                                          (0.999999, "red")],
               description="About the probability that a normal sample is less extreme; "
                           "the default alert thresholds are 0.9999 and 0.999999."),
    ]
    variables = [_textbox("metric", "metric", "up"),
                 _textbox("selector", "label matchers", 'job=~".+"')]
    return _dashboard("vigil-anomaly", "Vigil: a series and its expected band", panels,
                      variables, "now-6h")


def overview() -> dict[str, Any]:
    rate = "[5m]"
    panels = [
        _panel("Samples received / s", [
            (f"sum(rate(vigil_samples_received_total{rate}))", "received"),
            (f"sum(rate(vigil_samples_accepted_total{rate}))", "accepted"),
            (f"sum by (reason) (rate(vigil_samples_dropped_total{rate}))", "dropped: {{reason}}")],
            x=0, y=0),
        _panel("Remote-write answers / s", [
            (f"sum by (code) (rate(vigil_remote_write_requests_total{rate}))", "{{code}}")],
            x=12, y=0),
        _panel("Detector queue fill", [
            ("max(vigil_ingest_queue_samples / vigil_ingest_queue_capacity_samples)", "fill")],
            x=0, y=8, unit="percentunit", thresholds=[(0.5, "orange"), (0.9, "red")]),
        _panel("Series tracked, stuck, absent", [
            ("sum(vigil_active_series)", "tracked"), ("sum(vigil_stuck_series)", "stuck"),
            ("sum(vigil_absent_series)", "absent")], x=12, y=8),
        _panel("Alerts firing and sent", [
            ("sum(vigil_alerts_firing)", "firing"),
            (f"sum(rate(vigil_alerts_sent_total{rate}))", "sent / s"),
            (f"sum(rate(vigil_alert_send_failures_total{rate}))", "send failures / s")],
            x=0, y=16),
        _panel("Alert delivery latency p99", [
            ("histogram_quantile(0.99, sum by (le) "
             f"(rate(vigil_alert_delivery_seconds_bucket{rate})))", "p99")],
            x=12, y=16, unit="s", thresholds=[(0.05, "orange"), (1, "red")]),
        _panel("Remediation runs by state (1 h)", [
            ("sum by (playbook, state) (increase(vigil_runs_total[1h]))",
             "{{playbook}}: {{state}}")], x=0, y=24),
        _panel("Guard refusals (1 h)", [
            ("sum by (guard) (increase(vigil_guard_refusals_total[1h]))", "{{guard}}")],
            x=12, y=24),
        _panel("Webhook to first action p99", [
            ("histogram_quantile(0.99, sum by (le) "
             f"(rate(vigil_webhook_to_first_action_seconds_bucket{rate})))", "p99")],
            x=0, y=32, unit="s", thresholds=[(0.1, "orange")]),
        _panel("Remediator leader, kill switch, escalations", [
            ("max by (instance) (vigil_remediator_leader)", "leader {{instance}}"),
            ("max(vigil_remediator_paused)", "paused"),
            (f"sum(increase(vigil_escalations_total{rate}))", "escalations (5 m)")],
            x=12, y=32),
    ]
    return _dashboard("vigil-overview", "Vigil: overview", panels, [], "now-3h")


def _query_var(name: str, label: str, query: str) -> dict[str, Any]:
    return {"name": name, "type": "query", "label": label, "datasource": DS,
            "query": {"query": query, "refId": "var"}, "refresh": 2, "includeAll": True,
            "multi": True, "current": {"text": "All", "value": "$__all"}, "hide": 0}


def slos() -> dict[str, Any]:
    sel = 'sloth_service=~"$service"'
    panels = [
        _panel("Error budget remaining (30 days)", [
            (f"slo:period_error_budget_remaining:ratio{{{sel}}}", "{{sloth_id}}")],
            x=0, y=0, unit="percentunit", thresholds=[(0.25, "orange"), (0.0, "red")],
            description="1 = untouched, 0 = spent; the remediator's error_budget guard asks "
                        "for approvals below its floor."),
        _panel("Burn rate now (5 m)", [
            (f"slo:current_burn_rate:ratio{{{sel}}}", "{{sloth_id}}")], x=12, y=0,
            thresholds=[(1, "orange"), (14.4, "red")],
            description="1 spends the budget exactly over 30 days; 14.4 pages."),
        _panel("SLI error ratio, 1 h and 6 h", [
            (f"slo:sli_error:ratio_rate1h{{{sel}}}", "{{sloth_id}} 1h"),
            (f"slo:sli_error:ratio_rate6h{{{sel}}}", "{{sloth_id}} 6h"),
            (f"slo:error_budget:ratio{{{sel}}}", "{{sloth_id}} budget")], x=0, y=8,
            unit="percentunit"),
        _panel("Burn over the period (30 d)", [
            (f"slo:period_burn_rate:ratio{{{sel}}}", "{{sloth_id}}")], x=12, y=8,
            thresholds=[(1, "red")]),
    ]
    return _dashboard("vigil-slos", "Vigil: SLOs and error budgets", panels,
                      [_query_var("service", "service",
                                  "label_values(slo:objective:ratio, sloth_service)")],
                      "now-7d")


def remediation() -> dict[str, Any]:
    panels = [
        _panel("Runs by outcome / h", [
            ("sum by (state) (increase(vigil_runs_total[1h]))", "{{state}}")], x=0, y=0),
        _panel("Guard refusals / h", [
            ("sum by (playbook, guard) (increase(vigil_guard_refusals_total[1h]))",
             "{{playbook}}: {{guard}}")], x=12, y=0),
        _panel("Action latency p99", [
            ("histogram_quantile(0.99, sum by (le, action) "
             "(rate(vigil_action_seconds_bucket[5m])))", "{{action}}")], x=0, y=8, unit="s"),
        _panel("Verifications / h", [
            ("sum by (playbook, result) (increase(vigil_verifications_total[1h]))",
             "{{playbook}}: {{result}}")], x=12, y=8),
        _panel("Escalations and breaker trips / h", [
            ("sum by (playbook) (increase(vigil_escalations_total[1h]))",
             "escalated: {{playbook}}"),
            ("sum by (playbook) (increase(vigil_circuit_breaker_trips_total[1h]))",
             "breaker: {{playbook}}")], x=0, y=16),
        _panel("Duplicates avoided / h", [
            ("sum by (playbook) (increase(vigil_runs_deduplicated_total[1h]))",
             "{{playbook}}")], x=12, y=16,
            description="Notifications whose run already existed (repeats, HA pairs)."),
    ]
    return _dashboard("vigil-remediation", "Vigil: remediation runs", panels, [], "now-24h")


def cluster() -> dict[str, Any]:
    panels = [
        _panel("Nodes ready / not ready", [
            ('sum(kube_node_status_condition{condition="Ready", status="true"})', "ready"),
            ('sum(kube_node_status_condition{condition="Ready", status=~"false|unknown"})',
             "not ready")], x=0, y=0),
        _panel("Pods by phase", [
            ("sum by (phase) (kube_pod_status_phase)", "{{phase}}")], x=12, y=0),
        _panel("Container restarts / h by namespace", [
            ("sum by (namespace) (increase(kube_pod_container_status_restarts_total[1h]))",
             "{{namespace}}")], x=0, y=8),
        _panel("Deployments missing replicas", [
            ("sum by (namespace, deployment) (kube_deployment_spec_replicas "
             "- kube_deployment_status_replicas_available) > 0",
             "{{namespace}}/{{deployment}}")], x=12, y=8),
        _panel("CPU used by namespace (cores)", [
            ('sum by (namespace) (rate(container_cpu_usage_seconds_total{container!=""}[5m]))',
             "{{namespace}}")], x=0, y=16),
        _panel("Memory working set by namespace", [
            ('sum by (namespace) (container_memory_working_set_bytes{container!=""})',
             "{{namespace}}")], x=12, y=16, unit="bytes"),
    ]
    return _dashboard("vigil-cluster", "Cluster overview", panels, [], "now-6h")


def nodes() -> dict[str, Any]:
    inst = 'instance=~"$instance"'
    panels = [
        _panel("CPU busy", [
            (f'1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle", {inst}}}[5m]))',
             "{{instance}}")], x=0, y=0, unit="percentunit"),
        _panel("Memory available", [
            (f"node_memory_MemAvailable_bytes{{{inst}}} / node_memory_MemTotal_bytes{{{inst}}}",
             "{{instance}}")], x=12, y=0, unit="percentunit"),
        _panel("Load (1 m) per core", [
            (f'node_load1{{{inst}}} / count by (instance) (node_cpu_seconds_total{{mode="idle", '
             f'{inst}}})', "{{instance}}")], x=0, y=8),
        _panel("Disk busy", [
            (f"rate(node_disk_io_time_seconds_total{{{inst}}}[5m])", "{{instance}} {{device}}")],
            x=12, y=8, unit="percentunit"),
    ]
    return _dashboard("vigil-nodes", "Node resources", panels,
                      [_query_var("instance", "node", "label_values(node_uname_info, instance)")],
                      "now-6h")


def network() -> dict[str, Any]:
    dev = 'device!~"lo|veth.*|cali.*|cni.*|flannel.*|docker.*"'
    panels = [
        _panel("Node traffic (bytes/s)", [
            (f"sum by (instance) (rate(node_network_receive_bytes_total{{{dev}}}[5m]))",
             "{{instance}} in"),
            (f"sum by (instance) (rate(node_network_transmit_bytes_total{{{dev}}}[5m]))",
             "{{instance}} out")], x=0, y=0, unit="Bps"),
        _panel("Errors and drops / s", [
            (f"sum by (instance) (rate(node_network_receive_errs_total{{{dev}}}[5m]) "
             f"+ rate(node_network_transmit_errs_total{{{dev}}}[5m]))", "{{instance}} errors"),
            (f"sum by (instance) (rate(node_network_receive_drop_total{{{dev}}}[5m]) "
             f"+ rate(node_network_transmit_drop_total{{{dev}}}[5m]))", "{{instance}} drops")],
            x=12, y=0),
        _panel("Pod traffic by namespace (bytes/s)", [
            ("sum by (namespace) (rate(container_network_receive_bytes_total[5m]))",
             "{{namespace}} in")], x=0, y=8, unit="Bps"),
        _panel("Probe latency and success", [
            ("max by (instance) (probe_duration_seconds)", "{{instance}}"),
            ("min by (instance) (probe_success)", "{{instance}} up")], x=12, y=8, unit="s"),
    ]
    return _dashboard("vigil-network", "Network", panels, [], "now-6h")


def storage() -> dict[str, Any]:
    fs = 'fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs"'
    panels = [
        _panel("Filesystem used", [
            (f"1 - node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}}",
             "{{instance}} {{mountpoint}}")], x=0, y=0, unit="percentunit",
            thresholds=[(0.8, "orange"), (0.9, "red")]),
        _panel("Filesystem free in 24 h (linear prediction)", [
            (f"predict_linear(node_filesystem_avail_bytes{{{fs}}}[6h], 86400)",
             "{{instance}} {{mountpoint}}")], x=12, y=0, unit="bytes",
            thresholds=[(0, "red")]),
        _panel("Persistent volumes used", [
            ("kubelet_volume_stats_used_bytes / kubelet_volume_stats_capacity_bytes",
             "{{namespace}}/{{persistentvolumeclaim}}")], x=0, y=8, unit="percentunit"),
        _panel("Persistent volumes free in 4 days (linear prediction)", [
            ("predict_linear(kubelet_volume_stats_available_bytes[6h], 4 * 86400)",
             "{{namespace}}/{{persistentvolumeclaim}}")], x=12, y=8, unit="bytes",
            thresholds=[(0, "red")]),
    ]
    return _dashboard("vigil-storage", "Storage", panels, [], "now-24h")


def application() -> dict[str, Any]:
    panels = [
        _panel("Request rate by job", [
            ("sum by (job) (rate(demo_requests_total[5m]))", "{{job}}"),
            ("sum by (job) (rate(http_requests_total[5m]))", "{{job}}")], x=0, y=0,
            unit="reqps"),
        _panel("Error ratio by job", [
            ('sum by (job) (rate(demo_requests_total{code=~"5.."}[5m])) '
             "/ sum by (job) (rate(demo_requests_total[5m]))", "{{job}}"),
            ('sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) '
             "/ sum by (job) (rate(http_requests_total[5m]))", "{{job}}")], x=12, y=0,
            unit="percentunit", thresholds=[(0.01, "orange"), (0.05, "red")]),
        _panel("Latency p99 by job", [
            ("histogram_quantile(0.99, sum by (job, le) "
             "(rate(demo_request_duration_seconds_bucket[5m])))", "{{job}}"),
            ("histogram_quantile(0.99, sum by (job, le) "
             "(rate(http_request_duration_seconds_bucket[5m])))", "{{job}}")], x=0, y=8,
            unit="s"),
        _panel("Saturation: CPU of requests", [
            ('sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{container!=""}'
             "[5m])) / sum by (namespace, pod) (kube_pod_container_resource_requests"
             '{resource="cpu"})', "{{namespace}}/{{pod}}")], x=12, y=8, unit="percentunit"),
    ]
    return _dashboard("vigil-application", "Application health (rate, errors, duration)",
                      panels, [], "now-6h")


def business() -> dict[str, Any]:
    panels = [
        _panel("Checkouts per minute", [
            ('sum(rate(demo_requests_total{code="200"}[5m])) * 60', "completed"),
            ('sum(rate(demo_requests_total{code=~"5.."}[5m])) * 60', "failed")], x=0, y=0),
        _panel("Checkout p99 latency (what customers feel)", [
            ("max(demo_latency_p99_seconds)", "p99 (15 s window)")], x=12, y=0, unit="s",
            thresholds=[(0.5, "red")]),
        _panel("Vigil's view of the checkout latency", [
            ("demo_latency_p99_seconds", "value"),
            ('anomaly_lower{metric_name="demo_latency_p99_seconds"}', "lower"),
            ('anomaly_upper{metric_name="demo_latency_p99_seconds"}', "upper")],
            x=0, y=8, w=24, unit="s"),
    ]
    return _dashboard("vigil-business", "Business: the demo shop", panels, [], "now-3h")


DASHBOARDS = {"vigil-anomaly.json": anomaly, "vigil-overview.json": overview,
              "vigil-slos.json": slos, "vigil-remediation.json": remediation,
              "vigil-cluster.json": cluster, "vigil-nodes.json": nodes,
              "vigil-network.json": network, "vigil-storage.json": storage,
              "vigil-application.json": application, "vigil-business.json": business}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n"
            for name, build in DASHBOARDS.items()}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

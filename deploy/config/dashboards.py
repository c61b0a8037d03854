"""Grafana dashboards as code: ``python -m deploy.config.dashboards`` writes
deploy/config/dashboards/*.json (checked in; a test keeps them up to date).

Vigil's own, here:

* ``vigil-anomaly``: one series with the band Vigil expected and its anomaly score, from
  the write-back series; the alerts' ``dashboard_url`` opens it with the variables
  ``metric`` (the metric name) and ``selector`` (the label matchers, without braces).
* ``vigil-overview``: Vigil's own health: ingestion, queue, detection, alerts and their
  delivery, remediation runs, guard refusals, leadership, the processes.
* ``vigil-slos``: every SLO's remaining error budget, burn rates and SLI (the rules of
  ``vigil-detector slo generate``).
* ``vigil-remediation``: runs by outcome, guard refusals, action latency, verifications,
  escalations and breaker trips, duplicates avoided.
* ``vigil-dependencies``: calls between services: Tempo's service graph, and the
  monitoring pipeline's own hops (Prometheus → detector → Alertmanager → receivers and
  the remediator, remediator → Kubernetes) from the metrics each side exports.

The platform's (cluster, nodes, network, storage, application, business, logs, traces)
are in deploy/config/platform.py. ``prometheus_queries`` lists every PromQL query of a
dashboard with its variables filled in: the tests check each parses (promtool) and, in
the local stack (``make demo``), returns data unless it reads a source only a cluster
has (``CLUSTER_SOURCES``). The cluster form provisions the JSON through Grafana's
sidecar; the one-machine form has no Grafana (its Prometheus links draw the same series).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.config import grafana as g
from deploy.config import platform

OUT = Path(__file__).resolve().parent / "dashboards"


def anomaly() -> dict[str, Any]:
    band = 'metric_name="$metric", $selector'
    fill = {
        "matcher": {"id": "byName", "options": "upper"},
        "properties": [
            {"id": "custom.fillBelowTo", "value": "lower"},
            {"id": "custom.fillOpacity", "value": 15},
            {"id": "color", "value": {"mode": "fixed", "fixedColor": "green"}},
        ],
    }
    quiet = [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [
                {"id": "custom.lineWidth", "value": 0},
                {"id": "color", "value": {"mode": "fixed", "fixedColor": "green"}},
            ],
        }
        for name in ("lower", "upper")
    ]
    panels = [
        g.panel(
            "$metric and the band Vigil expected",
            [
                ("$metric{$selector}", "value"),
                (f"vigil_anomaly_expected{{{band}}}", "expected"),
                (f"vigil_anomaly_lower{{{band}}}", "lower"),
                (f"vigil_anomaly_upper{{{band}}}", "upper"),
            ],
            x=0,
            y=0,
            w=24,
            h=12,
            description="The series, the value Vigil expected and the band it judged by "
            "(written back by the detector).",
            overrides=[*quiet, fill],
        ),
        g.panel(
            "Anomaly score",
            [(f"vigil_anomaly_score{{{band}}}", "{{detector}}")],
            x=0,
            y=12,
            w=24,
            h=6,
            unit="percentunit",
            thresholds=[(0.9999, "orange"), (0.999999, "red")],
            description="About the probability that a normal sample is less extreme; "
            "the default alert thresholds are 0.9999 and 0.999999.",
        ),
    ]
    variables = [
        g.textbox("metric", "metric", "up"),
        g.textbox("selector", "label matchers", 'job=~".+"'),
    ]
    return g.dashboard(
        "vigil-anomaly", "Vigil: a series and its expected band", panels, variables, "now-6h"
    )


def overview() -> dict[str, Any]:
    rate = "[5m]"
    panels = [
        g.panel(
            "Samples received / s",
            [
                (f"sum(rate(vigil_samples_received_total{rate}))", "received"),
                (f"sum(rate(vigil_samples_accepted_total{rate}))", "accepted"),
                (
                    f"sum by (reason) (rate(vigil_samples_dropped_total{rate}))",
                    "dropped: {{reason}}",
                ),
            ],
            x=0,
            y=0,
        ),
        g.panel(
            "Remote-write answers / s",
            [(f"sum by (code) (rate(vigil_remote_write_requests_total{rate}))", "{{code}}")],
            x=12,
            y=0,
        ),
        g.panel(
            "Detector queue fill",
            [("max(vigil_ingest_queue_samples / vigil_ingest_queue_capacity_samples)", "fill")],
            x=0,
            y=8,
            unit="percentunit",
            thresholds=[(0.5, "orange"), (0.9, "red")],
        ),
        g.panel(
            "Series tracked, stuck, absent",
            [
                ("sum(vigil_active_series)", "tracked"),
                ("sum(vigil_stuck_series)", "stuck"),
                ("sum(vigil_absent_series)", "absent"),
            ],
            x=12,
            y=8,
        ),
        g.panel(
            "Alerts firing and sent",
            [
                ("sum(vigil_alerts_firing)", "firing"),
                (f"sum(rate(vigil_alerts_sent_total{rate}))", "sent / s"),
                (f"sum(rate(vigil_alert_send_failures_total{rate}))", "send failures / s"),
            ],
            x=0,
            y=16,
        ),
        g.panel(
            "Alert delivery latency p99",
            [
                (
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(vigil_alert_delivery_seconds_bucket{rate})))",
                    "p99",
                )
            ],
            x=12,
            y=16,
            unit="s",
            thresholds=[(0.05, "orange"), (1, "red")],
        ),
        g.panel(
            "Remediation runs by state (1 h)",
            [
                (
                    "sum by (playbook, state) (increase(vigil_runs_total[1h]))",
                    "{{playbook}}: {{state}}",
                )
            ],
            x=0,
            y=24,
        ),
        g.panel(
            "Guard refusals (1 h)",
            [("sum by (guard) (increase(vigil_guard_refusals_total[1h]))", "{{guard}}")],
            x=12,
            y=24,
        ),
        g.panel(
            "Webhook to first action p99",
            [
                (
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(vigil_webhook_to_first_action_seconds_bucket{rate})))",
                    "p99",
                )
            ],
            x=0,
            y=32,
            unit="s",
            thresholds=[(0.1, "orange")],
        ),
        g.panel(
            "Remediator leader, kill switch, escalations",
            [
                ("max by (instance) (vigil_remediator_leader)", "leader {{instance}}"),
                ("max(vigil_remediator_paused)", "paused"),
                (f"sum(increase(vigil_escalations_total{rate}))", "escalations (5 m)"),
            ],
            x=12,
            y=32,
        ),
        g.panel(
            "Event loop lag and batch time p99",
            [
                (
                    "histogram_quantile(0.99, sum by (instance, le) "
                    f"(rate(vigil_event_loop_lag_seconds_bucket{rate})))",
                    "loop lag {{instance}}",
                ),
                (
                    "histogram_quantile(0.99, sum by (instance, le) "
                    f"(rate(vigil_detect_batch_seconds_bucket{rate})))",
                    "batch {{instance}}",
                ),
            ],
            x=0,
            y=40,
            unit="s",
            thresholds=[(0.05, "orange"), (0.5, "red")],
            description="A lagging loop answers remote-write and webhooks late.",
        ),
        g.panel(
            "Vigil processes: CPU and memory",
            [
                (
                    'sum by (job, instance) (rate(process_cpu_seconds_total{job=~"vigil-.+"}'
                    f"{rate}))",
                    "{{instance}} cores",
                ),
                (
                    'max by (job, instance) (process_resident_memory_bytes{job=~"vigil-.+"}) / 2^30',
                    "{{instance}} GiB",
                ),
            ],
            x=12,
            y=40,
        ),
        g.panel(
            "Internal errors / s",
            [
                (f"sum(rate(vigil_worker_errors_total{rate}))", "detector worker"),
                (f"sum(rate(vigil_remediator_errors_total{rate}))", "remediator"),
            ],
            x=0,
            y=48,
            description="Caught at a task root, logged with a traceback, counted; any is "
            "a bug (VigilInternalErrors).",
        ),
    ]
    return g.dashboard("vigil-overview", "Vigil: overview", panels, [], "now-3h")


def slos() -> dict[str, Any]:
    sel = 'sloth_service=~"$service"'
    panels = [
        g.panel(
            "Error budget remaining (30 days)",
            [(f"slo:period_error_budget_remaining:ratio{{{sel}}}", "{{sloth_id}}")],
            x=0,
            y=0,
            unit="percentunit",
            thresholds=[(0.25, "orange"), (0.0, "red")],
            description="1 = untouched, 0 = spent; the remediator's error_budget guard asks "
            "for approvals below its floor.",
        ),
        g.panel(
            "Burn rate now (5 m)",
            [(f"slo:current_burn_rate:ratio{{{sel}}}", "{{sloth_id}}")],
            x=12,
            y=0,
            thresholds=[(1, "orange"), (14.4, "red")],
            description="1 spends the budget exactly over 30 days; 14.4 pages.",
        ),
        g.panel(
            "SLI error ratio, 1 h and 6 h",
            [
                (f"slo:sli_error:ratio_rate1h{{{sel}}}", "{{sloth_id}} 1h"),
                (f"slo:sli_error:ratio_rate6h{{{sel}}}", "{{sloth_id}} 6h"),
                (f"slo:error_budget:ratio{{{sel}}}", "{{sloth_id}} budget"),
            ],
            x=0,
            y=8,
            unit="percentunit",
        ),
        g.panel(
            "Burn over the period (30 d)",
            [(f"slo:period_burn_rate:ratio{{{sel}}}", "{{sloth_id}}")],
            x=12,
            y=8,
            thresholds=[(1, "red")],
        ),
    ]
    return g.dashboard(
        "vigil-slos",
        "Vigil: SLOs and error budgets",
        panels,
        [g.query_var("service", "service", "label_values(slo:objective:ratio, sloth_service)")],
        "now-7d",
    )


def remediation() -> dict[str, Any]:
    panels = [
        g.panel(
            "Runs by outcome / h",
            [("sum by (state) (increase(vigil_runs_total[1h]))", "{{state}}")],
            x=0,
            y=0,
        ),
        g.panel(
            "Guard refusals / h",
            [
                (
                    "sum by (playbook, guard) (increase(vigil_guard_refusals_total[1h]))",
                    "{{playbook}}: {{guard}}",
                )
            ],
            x=12,
            y=0,
        ),
        g.panel(
            "Action latency p99",
            [
                (
                    "histogram_quantile(0.99, sum by (le, action) "
                    "(rate(vigil_action_seconds_bucket[5m])))",
                    "{{action}}",
                )
            ],
            x=0,
            y=8,
            unit="s",
        ),
        g.panel(
            "Verifications / h",
            [
                (
                    "sum by (playbook, result) (increase(vigil_verifications_total[1h]))",
                    "{{playbook}}: {{result}}",
                )
            ],
            x=12,
            y=8,
        ),
        g.panel(
            "Escalations and breaker trips / h",
            [
                (
                    "sum by (playbook) (increase(vigil_escalations_total[1h]))",
                    "escalated: {{playbook}}",
                ),
                (
                    "sum by (playbook) (increase(vigil_circuit_breaker_trips_total[1h]))",
                    "breaker: {{playbook}}",
                ),
            ],
            x=0,
            y=16,
        ),
        g.panel(
            "Duplicates avoided / h",
            [("sum by (playbook) (increase(vigil_runs_deduplicated_total[1h]))", "{{playbook}}")],
            x=12,
            y=16,
            description="Notifications whose run already existed (repeats, HA pairs).",
        ),
    ]
    return g.dashboard("vigil-remediation", "Vigil: remediation runs", panels, [], "now-24h")


def dependencies() -> dict[str, Any]:
    edge = 'client=~"$service", server=~"$service"'
    graph = "traces_service_graph_request"
    panels = [
        g.service_map(
            "Service graph",
            x=0,
            y=0,
            h=12,
            description="Calls between services seen in traces (Tempo's metrics generator).",
        ),
        g.panel(
            "Requests / s, client → server",
            [
                (
                    f"sum by (client, server) (rate({graph}_total{{{edge}}}[5m]))",
                    "{{client}} → {{server}}",
                )
            ],
            x=0,
            y=12,
            unit="reqps",
        ),
        g.panel(
            "Failed share, client → server",
            [
                (
                    f"sum by (client, server) (rate({graph}_failed_total{{{edge}}}[5m])) / "
                    f"sum by (client, server) (rate({graph}_total{{{edge}}}[5m]))",
                    "{{client}} → {{server}}",
                )
            ],
            x=12,
            y=12,
            unit="percentunit",
            thresholds=[(0.01, "orange"), (0.05, "red")],
        ),
        g.panel(
            "Server latency p99, client → server",
            [
                (
                    "histogram_quantile(0.99, sum by (client, server, le) "
                    f"(rate({graph}_server_seconds_bucket{{{edge}}}[5m])))",
                    "{{client}} → {{server}}",
                )
            ],
            x=0,
            y=20,
            w=24,
            unit="s",
        ),
        g.text(
            "The monitoring pipeline",
            "Each hop below is drawn from the metrics of the "
            "side that makes the call: Prometheus → Vigil's detector (remote-write), "
            "detector and Prometheus → Alertmanager, Alertmanager → its receivers (the "
            "remediator's webhook among them), remediator → Kubernetes API and "
            "Prometheus (verification).",
            x=0,
            y=28,
            h=3,
        ),
        g.panel(
            "Prometheus → detector: samples sent / s",
            [
                ("sum by (url) (rate(prometheus_remote_storage_samples_total[5m]))", "{{url}}"),
                (
                    "sum by (url) (rate(prometheus_remote_storage_samples_failed_total[5m]) + "
                    "rate(prometheus_remote_storage_samples_retried_total[5m]))",
                    "failed or retried {{url}}",
                ),
            ],
            x=0,
            y=31,
        ),
        g.panel(
            "Prometheus → detector: age of the newest sample sent",
            [
                (
                    "time() - max by (url) (prometheus_remote_storage_queue_highest_sent_timestamp_"
                    "seconds)",
                    "{{url}}",
                )
            ],
            x=12,
            y=31,
            unit="s",
            thresholds=[(60, "orange"), (300, "red")],
        ),
        g.panel(
            "Detector and Prometheus → Alertmanager",
            [
                ("sum(rate(vigil_alerts_sent_total[5m]))", "detector: alerts sent"),
                ("sum(rate(vigil_alert_send_failures_total[5m]))", "detector: failures"),
                (
                    "sum by (alertmanager) (rate(prometheus_notifications_sent_total[5m]))",
                    "prometheus: sent {{alertmanager}}",
                ),
                (
                    "sum by (alertmanager) (rate(prometheus_notifications_errors_total[5m]))",
                    "prometheus: errors {{alertmanager}}",
                ),
            ],
            x=0,
            y=39,
        ),
        g.panel(
            "Alertmanager → receivers: notifications / s",
            [
                (
                    "sum by (integration) (rate(alertmanager_notifications_total[5m]))",
                    "{{integration}}",
                ),
                (
                    "sum by (integration) (rate(alertmanager_notifications_failed_total[5m]))",
                    "failed {{integration}}",
                ),
            ],
            x=12,
            y=39,
        ),
        g.panel(
            "Alertmanager → receivers: latency p99",
            [
                (
                    "histogram_quantile(0.99, sum by (integration, le) "
                    "(rate(alertmanager_notification_latency_seconds_bucket[5m])))",
                    "{{integration}}",
                )
            ],
            x=0,
            y=47,
            unit="s",
        ),
        g.panel(
            "Remediator → Kubernetes and Prometheus",
            [
                (
                    "histogram_quantile(0.99, sum by (action, le) "
                    "(rate(vigil_action_seconds_bucket[1h])))",
                    "p99 {{action}}",
                ),
                (
                    "sum by (result) (increase(vigil_verifications_total[1h]))",
                    "verifications / h: {{result}}",
                ),
            ],
            x=12,
            y=47,
        ),
    ]
    return g.dashboard(
        "vigil-dependencies",
        "Service dependencies",
        panels,
        [
            g.query_var(
                "service", "service", "label_values(traces_service_graph_request_total, server)"
            )
        ],
        "now-3h",
        sources=("prometheus", "tempo"),
    )


DASHBOARDS = {
    "vigil-anomaly.json": anomaly,
    "vigil-overview.json": overview,
    "vigil-slos.json": slos,
    "vigil-remediation.json": remediation,
    "vigil-dependencies.json": dependencies,
    "vigil-cluster.json": platform.cluster,
    "vigil-nodes.json": platform.nodes,
    "vigil-network.json": platform.network,
    "vigil-storage.json": platform.storage,
    "vigil-application.json": platform.application,
    "vigil-business.json": platform.business,
    "vigil-logs.json": platform.logs,
    "vigil-traces.json": platform.traces,
}

# metric name prefixes of sources only a cluster has, and what exports them
CLUSTER_SOURCES = {
    "kube_": "kube-state-metrics",
    "container_": "cAdvisor (kubelet)",
    "kubelet_": "the kubelet",
    "coredns_": "CoreDNS",
    "traces_": "Tempo's metrics generator (span metrics, service graph)",
}
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@dataclass(frozen=True, slots=True)
class PanelQuery:
    """One PromQL target of a dashboard panel, its variables filled in."""

    dashboard: str
    panel: str
    ref: str
    expr: str

    def cluster_source(self) -> str | None:
        """What only a cluster has that this query reads, or None."""
        for name in _NAME.findall(_QUOTED.sub('""', self.expr)):
            for prefix, source in CLUSTER_SOURCES.items():
                if name.startswith(prefix):
                    return source
        return None


def prometheus_queries(doc: Mapping[str, Any], values: Mapping[str, str]) -> Iterator[PanelQuery]:
    """Every Prometheus target of a dashboard with ``$name`` replaced by values[name]
    (longest names first, so ``$service`` is not read as ``$serv``...)."""
    names = sorted(values, key=len, reverse=True)
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            if target["datasource"]["type"] != "prometheus":
                continue
            expr = target["expr"]
            for name in names:
                expr = expr.replace(f"${name}", values[name])
            yield PanelQuery(doc["uid"], panel["title"], target["refId"], expr)


def render() -> dict[str, str]:
    return {
        name: json.dumps(build(), indent=2, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Dashboards of the platform Vigil watches: cluster, nodes, network, storage,
application health, the demo shop's business metrics, logs (Loki) and traces (Tempo).

Each function returns one dashboard's JSON model (deploy/config/grafana.py);
deploy/config/dashboards.py collects and writes them. Panels reading kube-state-metrics,
cAdvisor, the kubelet or Tempo's metrics generator show data only in a cluster
(dashboards.CLUSTER_SOURCES); the rest also do on one machine (``make demo``).
"""

from __future__ import annotations

from typing import Any

from deploy.config import grafana as g


def cluster() -> dict[str, Any]:
    panels = [
        g.panel(
            "Nodes ready / not ready",
            [
                ('sum(kube_node_status_condition{condition="Ready", status="true"})', "ready"),
                (
                    'sum(kube_node_status_condition{condition="Ready", status=~"false|unknown"})',
                    "not ready",
                ),
            ],
            x=0,
            y=0,
        ),
        g.panel(
            "Pods by phase", [("sum by (phase) (kube_pod_status_phase)", "{{phase}}")], x=12, y=0
        ),
        g.panel(
            "Container restarts / h by namespace",
            [
                (
                    "sum by (namespace) (increase(kube_pod_container_status_restarts_total[1h]))",
                    "{{namespace}}",
                )
            ],
            x=0,
            y=8,
        ),
        g.panel(
            "Deployments missing replicas",
            [
                (
                    "sum by (namespace, deployment) (kube_deployment_spec_replicas "
                    "- kube_deployment_status_replicas_available) > 0",
                    "{{namespace}}/{{deployment}}",
                )
            ],
            x=12,
            y=8,
        ),
        g.panel(
            "CPU used by namespace (cores)",
            [
                (
                    'sum by (namespace) (rate(container_cpu_usage_seconds_total{container!=""}[5m]))',
                    "{{namespace}}",
                )
            ],
            x=0,
            y=16,
        ),
        g.panel(
            "Memory working set by namespace",
            [
                (
                    'sum by (namespace) (container_memory_working_set_bytes{container!=""})',
                    "{{namespace}}",
                )
            ],
            x=12,
            y=16,
            unit="bytes",
        ),
    ]
    return g.dashboard("vigil-cluster", "Cluster overview", panels, [], "now-6h")


def nodes() -> dict[str, Any]:
    inst = 'instance=~"$instance"'
    panels = [
        g.panel(
            "CPU busy",
            [
                (
                    f'1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle", {inst}}}[5m]))',
                    "{{instance}}",
                )
            ],
            x=0,
            y=0,
            unit="percentunit",
        ),
        g.panel(
            "Memory available",
            [
                (
                    f"node_memory_MemAvailable_bytes{{{inst}}} / node_memory_MemTotal_bytes{{{inst}}}",
                    "{{instance}}",
                )
            ],
            x=12,
            y=0,
            unit="percentunit",
        ),
        g.panel(
            "Load (1 m) per core",
            [
                (
                    f"max by (instance) (node_load1{{{inst}}}) / count by (instance) "
                    f'(node_cpu_seconds_total{{mode="idle", {inst}}})',
                    "{{instance}}",
                )
            ],
            x=0,
            y=8,
        ),
        g.panel(
            "Disk busy",
            [(f"rate(node_disk_io_time_seconds_total{{{inst}}}[5m])", "{{instance}} {{device}}")],
            x=12,
            y=8,
            unit="percentunit",
        ),
    ]
    return g.dashboard(
        "vigil-nodes",
        "Node resources",
        panels,
        [g.query_var("instance", "node", "label_values(node_uname_info, instance)")],
        "now-6h",
    )


def network() -> dict[str, Any]:
    dev = 'device!~"lo|veth.*|cali.*|cni.*|flannel.*|docker.*"'
    panels = [
        g.panel(
            "Node traffic (bytes/s)",
            [
                (
                    f"sum by (instance) (rate(node_network_receive_bytes_total{{{dev}}}[5m]))",
                    "{{instance}} in",
                ),
                (
                    f"sum by (instance) (rate(node_network_transmit_bytes_total{{{dev}}}[5m]))",
                    "{{instance}} out",
                ),
            ],
            x=0,
            y=0,
            unit="Bps",
        ),
        g.panel(
            "Errors and drops / s",
            [
                (
                    f"sum by (instance) (rate(node_network_receive_errs_total{{{dev}}}[5m]) "
                    f"+ rate(node_network_transmit_errs_total{{{dev}}}[5m]))",
                    "{{instance}} errors",
                ),
                (
                    f"sum by (instance) (rate(node_network_receive_drop_total{{{dev}}}[5m]) "
                    f"+ rate(node_network_transmit_drop_total{{{dev}}}[5m]))",
                    "{{instance}} drops",
                ),
            ],
            x=12,
            y=0,
        ),
        g.panel(
            "Pod traffic by namespace (bytes/s)",
            [
                (
                    "sum by (namespace) (rate(container_network_receive_bytes_total[5m]))",
                    "{{namespace}} in",
                )
            ],
            x=0,
            y=8,
            unit="Bps",
        ),
        g.panel(
            "Probe latency and success",
            [
                ("max by (instance) (probe_duration_seconds)", "{{instance}}"),
                ("min by (instance) (probe_success)", "{{instance}} up"),
            ],
            x=12,
            y=8,
            unit="s",
        ),
        g.panel(
            "DNS latency",
            [
                ("max by (instance) (probe_dns_lookup_time_seconds)", "probe {{instance}}"),
                (
                    "histogram_quantile(0.99, sum by (le) "
                    "(rate(coredns_dns_request_duration_seconds_bucket[5m])))",
                    "CoreDNS p99",
                ),
            ],
            x=0,
            y=16,
            w=24,
            unit="s",
            description="What a blackbox probe spent resolving its target, and the "
            "cluster DNS's own p99 (CoreDNS).",
        ),
    ]
    return g.dashboard("vigil-network", "Network", panels, [], "now-6h")


def storage() -> dict[str, Any]:
    fs = 'fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs"'
    panels = [
        g.panel(
            "Filesystem used",
            [
                (
                    f"1 - node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}}",
                    "{{instance}} {{mountpoint}}",
                )
            ],
            x=0,
            y=0,
            unit="percentunit",
            thresholds=[(0.8, "orange"), (0.9, "red")],
        ),
        g.panel(
            "Filesystem free in 24 h (linear prediction)",
            [
                (
                    f"predict_linear(node_filesystem_avail_bytes{{{fs}}}[6h], 86400)",
                    "{{instance}} {{mountpoint}}",
                )
            ],
            x=12,
            y=0,
            unit="bytes",
            thresholds=[(0, "red")],
        ),
        g.panel(
            "Persistent volumes used",
            [
                (
                    "kubelet_volume_stats_used_bytes / kubelet_volume_stats_capacity_bytes",
                    "{{namespace}}/{{persistentvolumeclaim}}",
                )
            ],
            x=0,
            y=8,
            unit="percentunit",
        ),
        g.panel(
            "Persistent volumes free in 4 days (linear prediction)",
            [
                (
                    "predict_linear(kubelet_volume_stats_available_bytes[6h], 4 * 86400)",
                    "{{namespace}}/{{persistentvolumeclaim}}",
                )
            ],
            x=12,
            y=8,
            unit="bytes",
            thresholds=[(0, "red")],
        ),
    ]
    return g.dashboard("vigil-storage", "Storage", panels, [], "now-24h")


def application() -> dict[str, Any]:
    # every service that follows docs/instrumentation.md: <ns>_requests_total{code} and
    # <ns>_request_duration_seconds (a histogram), whatever <ns> is
    reqs = '{__name__=~".+_requests_total", code!="", job=~"$job"}'
    errs = '{__name__=~".+_requests_total", code=~"5..", job=~"$job"}'
    hist = '{__name__=~".+_request_duration_seconds_bucket", job=~"$job"}'
    panels = [
        g.panel(
            "Request rate by job",
            [(f"sum by (job) (rate({reqs}[5m]))", "{{job}}")],
            x=0,
            y=0,
            unit="reqps",
            description="Every <ns>_requests_total with a code label (docs/instrumentation.md).",
        ),
        g.panel(
            "Error ratio by job (5xx)",
            [(f"sum by (job) (rate({errs}[5m])) / sum by (job) (rate({reqs}[5m]))", "{{job}}")],
            x=12,
            y=0,
            unit="percentunit",
            thresholds=[(0.01, "orange"), (0.05, "red")],
            description="No line: no 5xx in the window (or no requests).",
        ),
        g.panel(
            "Latency p99 and p50 by job",
            [
                (f"histogram_quantile(0.99, sum by (job, le) (rate({hist}[5m])))", "{{job}} p99"),
                (f"histogram_quantile(0.5, sum by (job, le) (rate({hist}[5m])))", "{{job}} p50"),
            ],
            x=0,
            y=8,
            unit="s",
        ),
        g.panel(
            "Saturation: CPU and memory of the process",
            [
                (
                    'sum by (job) (rate(process_cpu_seconds_total{job=~"$job"}[5m]))',
                    "{{job}} cores",
                ),
                (
                    'sum by (job) (process_resident_memory_bytes{job=~"$job"}) / 2^30',
                    "{{job}} GiB resident",
                ),
            ],
            x=12,
            y=8,
            description="From the process collector every Prometheus client library "
            "exports (on Linux).",
        ),
        g.panel(
            "Saturation: CPU against the pods' requests",
            [
                (
                    'sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{container!=""}'
                    "[5m])) / sum by (namespace, pod) (kube_pod_container_resource_requests"
                    '{resource="cpu"})',
                    "{{namespace}}/{{pod}}",
                )
            ],
            x=0,
            y=16,
            w=24,
            unit="percentunit",
            description="Above 1: the pod uses more CPU than it "
            "asked for (cAdvisor and kube-state-metrics).",
        ),
    ]
    return g.dashboard(
        "vigil-application",
        "Application health (rate, errors, duration)",
        panels,
        [g.query_var("job", "job", "label_values(up, job)")],
        "now-6h",
    )


def business() -> dict[str, Any]:
    panels = [
        g.panel(
            "Checkouts per minute",
            [
                ('sum(rate(demo_requests_total{code="200"}[5m])) * 60', "completed"),
                ('sum(rate(demo_requests_total{code=~"5.."}[5m])) * 60', "failed"),
            ],
            x=0,
            y=0,
        ),
        g.panel(
            "Checkout p99 latency (what customers feel)",
            [("max(demo_latency_p99_seconds)", "p99 (15 s window)")],
            x=12,
            y=0,
            unit="s",
            thresholds=[(0.5, "red")],
        ),
        g.panel(
            "Vigil's view of the checkout latency",
            [
                ("demo_latency_p99_seconds", "value"),
                ('vigil_anomaly_lower{metric_name="demo_latency_p99_seconds"}', "lower"),
                ('vigil_anomaly_upper{metric_name="demo_latency_p99_seconds"}', "upper"),
            ],
            x=0,
            y=8,
            w=24,
            unit="s",
        ),
    ]
    return g.dashboard("vigil-business", "Business: the demo shop", panels, [], "now-3h")


def logs() -> dict[str, Any]:
    sel = 'namespace=~"$namespace", container=~"$container"'
    panels = [
        g.panel(
            "Log lines by level / s",
            [(f"sum by (level) (rate({{{sel}}}[5m]))", "{{level}}")],
            x=0,
            y=0,
            source="loki",
            description="Vigil's JSON logs (and any JSON log with a `level` "
            "field) carry their level as a label (Alloy).",
        ),
        g.panel(
            "Error lines by pod / s",
            [
                (
                    f'sum by (namespace, pod) (rate({{{sel}}} |~ "(?i)(error|exception|fatal|panic)"'
                    " [5m]))",
                    "{{namespace}}/{{pod}}",
                )
            ],
            x=12,
            y=0,
            source="loki",
        ),
        g.logs(
            "Lines matching the search",
            f'{{{sel}}} |~ "(?i)$search"',
            x=0,
            y=8,
            description="A regular expression, case-insensitive; empty shows every line.",
        ),
        g.logs(
            "Vigil's decisions (detector alerts, remediation runs, refusals)",
            '{namespace=~"$vigil_namespace"} | json | logger=~"detector.alerting.delivery|'
            'remediator.runs.*" or level=~"WARNING|ERROR"',
            x=0,
            y=20,
            h=10,
            description="The trace_id of a line opens its trace.",
        ),
    ]
    variables = [
        g.query_var("namespace", "namespace", "label_values(namespace)", "loki"),
        g.query_var("container", "container", "label_values(container)", "loki"),
        g.textbox("search", "search (regex)", ""),
        g.textbox("vigil_namespace", "Vigil's namespace", "vigil"),
    ]
    return g.dashboard("vigil-logs", "Logs (Loki)", panels, variables, "now-1h", sources=("loki",))


def traces() -> dict[str, Any]:
    svc = 'resource.service.name=~"$service"'
    calls = 'traces_spanmetrics_calls_total{service=~"$service"}'
    panels = [
        g.traces("Recent traces", f"{{{svc}}}", x=0, y=0),
        g.traces("Slow traces (over $slow)", f"{{{svc} && duration > $slow}}", x=12, y=0),
        g.traces("Traces with errors", f"{{{svc} && status = error}}", x=0, y=10),
        g.traces(
            "Vigil: alerts and remediation runs",
            '{resource.service.name=~"vigil-detector|vigil-remediator"}',
            x=12,
            y=10,
            description="An alert's trace_id annotation and a run's audit record name their trace.",
        ),
        g.panel(
            "Span rate by service",
            [(f"sum by (service) (rate({calls}[5m]))", "{{service}}")],
            x=0,
            y=20,
            unit="reqps",
            description="Tempo's span metrics, remote-written to Prometheus.",
        ),
        g.panel(
            "Span error ratio by service",
            [
                (
                    f'sum by (service) (rate(traces_spanmetrics_calls_total{{service=~"$service", '
                    f'status_code="STATUS_CODE_ERROR"}}[5m])) / sum by (service) (rate({calls}[5m]))',
                    "{{service}}",
                )
            ],
            x=12,
            y=20,
            unit="percentunit",
        ),
        g.panel(
            "Span duration p99 by service",
            [
                (
                    "histogram_quantile(0.99, sum by (service, le) (rate("
                    'traces_spanmetrics_latency_bucket{service=~"$service"}[5m])))',
                    "{{service}}",
                )
            ],
            x=0,
            y=28,
            w=24,
            unit="s",
        ),
    ]
    variables = [
        g.query_var("service", "service", "label_values(traces_spanmetrics_calls_total, service)"),
        g.textbox("slow", "slow means over", "1s"),
    ]
    return g.dashboard(
        "vigil-traces",
        "Traces (Tempo)",
        panels,
        variables,
        "now-1h",
        sources=("prometheus", "tempo"),
    )

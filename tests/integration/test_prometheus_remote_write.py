"""Real Prometheus scrapes a real node_exporter and remote-writes into a real vigil-detector.

What Vigil tracks must match what Prometheus itself stored, series by series, bit for bit.
"""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_api_client import PrometheusConnect

from tests.integration.procs import free_port, process, require, vigil_detector_argv, wait_until

pytestmark = pytest.mark.integration


def _vigil_series(port: int) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/series?limit=100000&match[]=" + urllib.parse.quote(
        '{job="node"}'
    )
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)["data"]


def test_vigil_sees_what_prometheus_stored(tmp_path: Path):
    node_port, vigil_port, prom_port = free_port(), free_port(), free_port()
    node_bin, prom_bin = require("prometheus-node-exporter"), require("prometheus")
    (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['127.0.0.1:{node_port}']
remote_write:
  - url: http://127.0.0.1:{vigil_port}/api/v1/write
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
""")
    with (
        process(
            "node_exporter",
            [node_bin, f"--web.listen-address=127.0.0.1:{node_port}", "--no-collector.systemd"],
            tmp_path,
            ready_url=f"http://127.0.0.1:{node_port}/metrics",
        ),
        process(
            "vigil",
            vigil_detector_argv(vigil_port, "--state-dir", str(tmp_path / "vigil")),
            tmp_path,
            ready_url=f"http://127.0.0.1:{vigil_port}/readyz",
            timeout_s=180,
        ),
        process(
            "prometheus",
            [
                prom_bin,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp_path,
            ready_url=f"http://127.0.0.1:{prom_port}/-/ready",
        ),
    ):

        def enough() -> bool:
            data = _vigil_series(vigil_port)
            return len(data) > 200 and sum(d["samples"] >= 3 for d in data) > 200

        wait_until("vigil tracks node_exporter series", enough, timeout_s=90, interval_s=0.5)
        ours = _vigil_series(vigil_port)
        prom = PrometheusConnect(url=f"http://127.0.0.1:{prom_port}", disable_ssl=True)
        stored = prom.custom_query('{job="node"}[2m]')

    by_labels = {
        tuple(sorted(entry["metric"].items())): {
            round(float(ts) * 1000): value for ts, value in entry["values"]
        }
        for entry in stored
    }
    compared = 0
    for series in ours:
        if series["stale"]:
            continue
        key = tuple(sorted(series["labels"].items()))
        assert key in by_labels, f"Vigil tracks {key}, which Prometheus did not store"
        theirs = by_labels[key].get(series["last_timestamp_ms"])
        assert theirs is not None, f"{key}: no Prometheus sample at {series['last_timestamp_ms']}"
        a, b = float(series["last_value"]), float(theirs)
        assert (math.isnan(a) and math.isnan(b)) or a == b, (key, a, b)
        compared += 1
    assert compared > 200
    newest = max(max(samples) for samples in by_labels.values())
    ours_keys = {tuple(sorted(s["labels"].items())) for s in ours}
    recent = {k for k, samples in by_labels.items() if max(samples) >= newest - 5000}
    missing = recent - ours_keys
    assert not missing, f"Prometheus stored series Vigil never saw: {sorted(missing)[:5]}"

"""Warm start against the real Prometheus, with history backfilled by promtool.

A series with six hours of history in Prometheus is scored from its first live sample;
a series without history starts cold.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from detector.remote_write import encode
from tests.integration.procs import free_port, process, require, vigil_detector_argv, wait_until

pytestmark = pytest.mark.integration

HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}


def _backfill(tmp: Path, now_s: int) -> Path:
    rng = np.random.default_rng(5)
    lines = ["# HELP vigil_warm_metric A gauge with history.", "# TYPE vigil_warm_metric gauge"]
    for t in range(now_s - 8 * 3600, now_s - 2 * 3600, 60):
        lines.append(f'vigil_warm_metric{{job="warm"}} {100 + rng.normal(0, 1):.4f} {t}')
    lines.append("# EOF")
    source = tmp / "history.om"
    source.write_text("\n".join(lines) + "\n")
    tsdb = tmp / "tsdb"
    subprocess.run(
        [require("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
        check=True,
        capture_output=True,
    )
    return tsdb


def _write(port: int, series: list[encode.Series]) -> None:
    body = encode.compress(encode.encode_v1(series))
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/write", data=body, headers=HEADERS, method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 204


def _series(port: int, name: str) -> dict:
    query = urllib.parse.urlencode({"match[]": name})
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/api/v1/series?{query}", timeout=5
    ) as resp:
        data = json.load(resp)["data"]
    return data[0] if data else {}


def test_new_series_learn_their_history_before_live_samples(tmp_path: Path):
    now_s = int(time.time())
    tsdb = _backfill(tmp_path, now_s)
    prom_port, vigil_port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text("global: {}\n")
    (tmp_path / "vigil.yaml").write_text("warm_start:\n  history_s: 43200\n")
    with (
        process(
            "prometheus",
            [
                require("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tsdb}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp_path,
            ready_url=f"http://127.0.0.1:{prom_port}/-/ready",
        ),
        process(
            "vigil",
            vigil_detector_argv(
                vigil_port,
                "--config",
                str(tmp_path / "vigil.yaml"),
                "--prometheus",
                f"http://127.0.0.1:{prom_port}",
            ),
            tmp_path,
            ready_url=f"http://127.0.0.1:{vigil_port}/readyz",
            timeout_s=180,
        ),
    ):
        now_ms = now_s * 1000
        for step, value in ((0, 100.2), (60_000, 131.0)):
            _write(
                vigil_port,
                [
                    encode.Series(
                        labels=[("__name__", "vigil_warm_metric"), ("job", "warm")],
                        samples=[(now_ms + step, value)],
                    ),
                    encode.Series(
                        labels=[("__name__", "vigil_cold_metric"), ("job", "cold")],
                        samples=[(now_ms + step, value)],
                    ),
                ],
            )
        wait_until(
            "both series scored twice",
            lambda: (
                _series(vigil_port, "vigil_warm_metric").get("samples", 0) > 300
                and _series(vigil_port, "vigil_cold_metric").get("samples", 0) == 2
            ),
            timeout_s=60,
        )
        warm = _series(vigil_port, "vigil_warm_metric")
        cold = _series(vigil_port, "vigil_cold_metric")
        with urllib.request.urlopen(f"http://127.0.0.1:{vigil_port}/metrics") as resp:
            metrics = resp.read().decode()
    assert warm["samples"] == 360 + 2  # six hours at one a minute, then the live two
    assert warm["last_value"] == "131.0"
    assert warm["score"] >= 0.999  # judged against its history at once
    assert 95 < warm["expected"] < 105
    assert cold["score"] < 0.999  # no history: still warming up
    assert 'vigil_warm_starts_total{result="ok"} 1.0' in metrics
    assert 'vigil_warm_starts_total{result="empty"} 1.0' in metrics

"""``vigil-detector backtest`` against a real Prometheus whose TSDB promtool backfilled
with a known week (tests/fixtures/backtest/history.py): a latency incident of 40 minutes,
a quiet series, and a series with hostile label values and an incident of its own.

The incident pages once, within a minute of its start, and resolves after it ends; the
quiet series never pages; a config with a one-hour ``for_s`` pages on nothing, and
``--compare`` says so; every output carries the hostile labels escaped.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.fixtures.backtest import history
from tests.integration.procs import free_port, process, require

pytestmark = pytest.mark.integration

CHECKOUT = {"__name__": "bt_request_latency_seconds", "job": "checkout"}
QUIET = {"__name__": "bt_queue_depth", "job": "worker"}
HOSTILE = {
    "__name__": "bt_request_latency_seconds",
    "job": "<script>alert(1)</script>",
    "team": history.HOSTILE_TEAM,
}
TERMINAL_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _iso(ts_s: int) -> str:
    return datetime.fromtimestamp(ts_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _backfill(tmp: Path) -> Path:
    source = tmp / "history.om"
    source.write_text(history.openmetrics(), encoding="utf-8")
    tsdb = tmp / "tsdb"
    subprocess.run(
        [require("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
        check=True,
        capture_output=True,
    )
    return tsdb


def test_the_incident_pages_and_the_quiet_week_does_not(tmp_path: Path):
    tsdb = _backfill(tmp_path)
    port = free_port()
    (tmp_path / "prometheus.yml").write_text("global: {}\n")
    (tmp_path / "vigil.yaml").write_text("{}\n")  # the defaults
    (tmp_path / "patient.yaml").write_text("alerts:\n  - for_s: 1h\n")
    out = tmp_path / "out"
    url = f"http://127.0.0.1:{port}"
    with process(
        "prometheus",
        [
            require("prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tsdb}",
            "--storage.tsdb.retention.time=100y",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path,
        ready_url=f"{url}/-/ready",
    ):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "detector",
                "backtest",
                "--config",
                str(tmp_path / "vigil.yaml"),
                "--prometheus",
                url,
                "--range",
                "7d",
                "--end",
                _iso(history.END_S),
                "--match",
                '{__name__=~"bt_.*"}',
                "--step",
                "1m",
                "--out",
                str(out),
                "--compare",
                str(tmp_path / "patient.yaml"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        refused = subprocess.run(
            [
                sys.executable,
                "-m",
                "detector",
                "backtest",
                "--config",
                str(tmp_path / "vigil.yaml"),
                "--prometheus",
                url,
                "--end",
                _iso(history.END_S),
                "--match",
                "sum(bt_queue_depth)",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        empty = subprocess.run(
            [
                sys.executable,
                "-m",
                "detector",
                "backtest",
                "--config",
                str(tmp_path / "vigil.yaml"),
                "--prometheus",
                url,
                "--end",
                _iso(history.END_S),
                "--match",
                "no_such_metric",
                "--range",
                "1h",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert refused.returncode == 2 and "not a series selector" in refused.stderr
    assert empty.returncode == 1 and "no series matched" in empty.stderr

    doc = json.loads((out / "backtest.json").read_text(encoding="ascii"))
    first, patient = doc["runs"]
    assert first["series"] == {"read": 3, "tracked": 3, "untracked": 0, "refused": 0}
    paged = {json.dumps(a["series"], sort_keys=True): a for a in first["alerts"]}
    assert set(paged) == {
        json.dumps(CHECKOUT, sort_keys=True),
        json.dumps(HOSTILE, sort_keys=True),
    }  # not the quiet series
    incident = paged[json.dumps(CHECKOUT, sort_keys=True)]
    start_s, end_s = history.INCIDENT_START_S, history.INCIDENT_START_S + history.INCIDENT_S
    assert incident["fired"] == _iso(start_s)  # for_s 60 at 1m: its first sample
    assert _iso(end_s) <= incident["ended"] <= _iso(end_s + 300)
    assert incident["resolution"] == "back_in_band" and incident["peak_score"] >= 0.9999
    assert incident["fired_on"]["value"] > incident["fired_on"]["upper"]
    assert first["pages"] == 2 and patient["pages"] == 0
    assert doc["compare"]["pages"] == [2, 0] and len(doc["compare"]["only_first"]) == 2

    charts = sorted(p.name for p in out.glob("*.svg"))
    assert charts == ["config1-series01.svg", "config1-series02.svg"]
    for name in charts:
        svg = (out / name).read_text(encoding="utf-8")
        ET.fromstring(svg)
        assert "<script" not in svg and "\x1b" not in svg

    table = done.stdout
    assert not TERMINAL_UNSAFE.search(table)
    assert 'bt_request_latency_seconds{job="checkout"}' in table
    assert "bt_queue_depth" not in table
    assert "series paging only under A: 2" in table

"""Hostile label values against the real Prometheus lexer: a series written with them
(remote write) is read back by the warm start's selector (``selector_of``), and only it.
Before values were escaped beyond quote, backslash and newline, a value holding U+FFFD
made every history query of its series a parse error ("invalid UTF-8 rune")."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_api_client import PrometheusConnect

from detector.remote_write import encode
from detector.warmstart.prometheus import history_query, parse_matrix, selector_of
from tests.integration.procs import free_port, process, require, wait_until
from tests.unit.detector.warmstart.test_selector_hostile import HOSTILE_VALUES

pytestmark = pytest.mark.integration

HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}


def test_each_hostile_series_is_read_back_exactly(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "prometheus.yml").write_text("global: {}\n")
    now_ms = int(time.time() * 1000)
    values = [v for v in HOSTILE_VALUES if v]  # Prometheus keeps no empty label
    series = [
        encode.Series(
            labels=(("__name__", "vigil_hostile"), ("i", str(i)), ("path", value)),
            samples=[(now_ms - 1000, float(i))],
        )
        for i, value in enumerate(values)
    ]
    # the same labels but one more: the exact-label filter must drop it
    series.append(
        encode.Series(
            labels=(("__name__", "vigil_hostile"), ("i", "0"), ("path", values[0]), ("z", "1")),
            samples=[(now_ms - 1000, -1.0)],
        )
    )
    with process(
        "prometheus",
        [
            require("prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver",
        ],
        tmp_path,
        ready_url=f"http://127.0.0.1:{port}/-/ready",
    ):
        body = encode.compress(encode.encode_v1(series))
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/write", data=body, headers=HEADERS, method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 204
        client = PrometheusConnect(url=f"http://127.0.0.1:{port}")

        def read(i: int) -> list[float]:
            labels = tuple(series[i].labels)
            answer = client.custom_query(history_query(selector_of(labels), 3600))
            return parse_matrix(answer, labels)[1].view("float64").tolist()

        wait_until("the written series are queryable", lambda: read(0) == [0.0], 30)
        for i in range(len(values)):
            assert read(i) == [float(i)], repr(values[i][:40])

"""``writeback.format: vmanomaly``: vmanomaly's names, scale and labels, so its dashboards
and alert rules (``anomaly_score > 1``) work on Vigil's output unchanged."""

import itertools
import math
import time

import numpy as np
import pytest

from detector.config import AlertingConfig, WritebackConfig
from detector.writeback import vmanomaly_score
from tests.unit.detector.apphelpers import (
    V1,
    body,
    config,
    level_shift,
    start,
    writeback_sink,
)


@pytest.mark.parametrize(
    ("score", "scaled"),
    [
        (0.0, 0.0),
        (0.9, math.log(0.1) / math.log(1e-4)),
        (0.9999, 1.0),
        (0.999999, 1.5),
    ],
)
def test_the_alert_threshold_becomes_one_and_rarer_is_larger(score, scaled):
    assert vmanomaly_score(score, 0.9999) == pytest.approx(scaled)


def test_the_scale_is_monotonic_and_finite_up_to_one():
    scores = np.linspace(0.0, 1.0, 1001)
    scaled = [vmanomaly_score(float(s), 0.999) for s in scores]
    assert all(b >= a for a, b in itertools.pairwise(scaled))
    assert math.isfinite(scaled[-1]) and scaled[-1] > 1


async def test_writes_anomaly_score_y_yhat_band_with_the_for_label(aiohttp_client, aiohttp_server):
    url, received = await writeback_sink(aiohttp_server)
    cfg = config(
        alerting=AlertingConfig(),
        writeback=WritebackConfig(url=url, interval_s=3600, format="vmanomaly"),
    )
    client, rt = await start(aiohttp_client, cfg)
    now = int(time.time() * 1000)
    calm = level_shift(
        "latency_seconds", start_ms=now - 400_000, n_normal=300, n_shift=0, job="api"
    )
    await client.post("/api/v1/write", data=body(calm), headers=V1)
    await rt.wait_idle()
    assert await rt.writeback.flush()
    shifted = level_shift(
        "latency_seconds", start_ms=now - 100_000, n_normal=0, n_shift=1, job="api", shift=40.0
    )
    await client.post("/api/v1/write", data=body(shifted), headers=V1)
    await rt.wait_idle()
    assert await rt.writeback.flush()
    written = [
        {dict(req.labels(i))["__name__"]: dict(req.labels(i)) for i in range(req.n_series)}
        for req in received
    ]
    assert [sorted(w) for w in written] == [
        ["anomaly_score", "y", "yhat", "yhat_lower", "yhat_upper"]
    ] * 2
    labels = written[0]["anomaly_score"]
    assert labels == {"__name__": "anomaly_score", "for": "latency_seconds", "job": "api"}
    calm_score = _value(received[0], "anomaly_score")
    shift_score = _value(received[1], "anomaly_score")
    assert calm_score < 1 < shift_score
    assert _value(received[1], "y") == pytest.approx(1.0 + 0.1 * 40.0, abs=0.5)
    assert (
        _value(received[1], "yhat_lower")
        < _value(received[1], "yhat")
        < _value(received[1], "yhat_upper")
    )


def _value(req, name: str) -> float:
    """The one sample written for metric ``name`` in a decoded request."""
    for i in range(req.n_series):
        if dict(req.labels(i))["__name__"] == name:
            [value] = req.smp_value[req.smp_series == i]
            return float(value)
    raise AssertionError(f"{name} not written")

"""bench.scenarios: the figures from a series and what the service did with it (hand-made
traces, no detector)."""

import json

import numpy as np
import pytest

from bench import scenarios
from bench.scenario_data import EPOCH_MS, STEP_MS, Series

N = 20


def _series(anomaly=None, lasting=False, metric="g", stale=()):
    ts = EPOCH_MS + np.arange(N, dtype=np.int64) * STEP_MS
    marks = np.zeros(N, dtype=np.bool_)
    marks[list(stale)] = True
    interval = (
        None
        if anomaly is None
        else (int(ts[anomaly[0]]) - STEP_MS // 2, int(ts[anomaly[1] - 1]) + STEP_MS // 2)
    )
    return Series(
        family="f",
        metric=metric,
        anomalous=anomaly is not None,
        ts_ms=ts,
        values=np.full(N, 10.0),
        stale=marks,
        anomaly=interval,
        lasting=lasting,
    )


def _trace(s, firing_at=(), fires=(), outside=()):
    firing = np.zeros(N, dtype=np.bool_)
    firing[list(firing_at)] = True
    scored = scenarios.scored_mask(s)
    inband = scored.copy()
    inband[list(outside)] = False
    return scenarios.Trace(
        scored=scored,
        firing=firing,
        banded=scored,
        inband=inband,
        fires_ms=tuple(int(s.ts_ms[i]) for i in fires),
    )


def test_short_anomaly_delay_share_pages_and_resolve():
    s = _series(anomaly=(5, 10))
    f = scenarios.measure(s, _trace(s, firing_at=range(7, 12), fires=[7]), warmup_samples=0)
    assert f.detected and f.delay == 2.0  # samples 5, 6 not firing; 7 is
    assert f.anomaly_firing_share == pytest.approx(3 / 5)
    assert f.anomaly_pages == 1 and f.pages == 1
    assert f.resolve_after == 2.0  # 10 and 11 still firing after the end
    assert not f.firing_at_end


def test_an_anomaly_never_fired_on_is_missed():
    s = _series(anomaly=(5, 10))
    f = scenarios.measure(s, _trace(s, firing_at=[12, 13], fires=[12]), warmup_samples=0)
    assert not f.detected and np.isnan(f.delay)
    assert f.anomaly_firing_share == 0.0 and f.anomaly_pages == 0 and f.pages == 1


def test_a_lasting_anomaly_counts_whether_the_alert_still_fires_at_the_end():
    s = _series(anomaly=(10, N), lasting=True)
    still = scenarios.measure(s, _trace(s, firing_at=range(12, N), fires=[12]), warmup_samples=0)
    forgot = scenarios.measure(s, _trace(s, firing_at=range(12, 15), fires=[12]), warmup_samples=0)
    assert still.firing_at_end and not forgot.firing_at_end
    assert still.anomaly_firing_share == pytest.approx(8 / 10)
    assert forgot.anomaly_firing_share == pytest.approx(3 / 10)
    assert np.isnan(still.resolve_after)


def test_band_coverage_counts_scored_samples_after_the_warm_up():
    s = _series()
    t = _trace(s, outside=[2, 15])  # one during the warm-up, one after
    f = scenarios.measure(s, t, warmup_samples=5)
    assert (f.band_in, f.band_n) == (N - 5 - 1, N - 5)


def test_a_counter_has_no_rate_on_its_first_sample_nor_after_a_staleness_marker():
    s = _series(metric="x_total", stale=[8])
    scored = scenarios.scored_mask(s)
    assert scored.tolist() == [i not in (0, 8, 9) for i in range(N)]
    g = _series(stale=[8])
    assert scenarios.scored_mask(g).tolist() == [i != 8 for i in range(N)]


def test_summary_rates_false_pages_per_thousand_series_days():
    clean = []
    for pages in (0, 2):
        s = _series()
        clean.append((s, scenarios.measure(s, _trace(s, fires=range(pages)), warmup_samples=0)))
    anom = _series(anomaly=(5, 10))
    a = scenarios.measure(anom, _trace(anom, firing_at=range(6, 9), fires=[6]), warmup_samples=0)
    r = scenarios.summarise(clean, [(anom, a)])
    days = 2 * N * STEP_MS / 86_400_000
    assert r["false_pages_per_1k_series_days"] == pytest.approx(1000 * 2 / days, rel=1e-3)
    assert r["clean_series_paged"] == 1 and r["clean_pages"] == 2
    assert r["band_coverage"] == 1.0
    assert r["detected"] == 1.0 and r["delay_median"] == 1.0
    assert r["lasting"] is False and r["firing_at_end"] is None
    json.dumps(r)  # the figures go on the last line as JSON

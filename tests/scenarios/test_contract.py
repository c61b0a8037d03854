"""Issue 20's contract, through the service path with the default configuration, on
seeds the figures in docs/detectors.md were not measured on (the suite's are 1): a
sustained latency shift, a sustained drop, an error-counter burst and night traffic at
daytime level each fire and are still firing 30-50 minutes in (or at the end of a
shorter anomaly); clean heavy-tailed and clean seasonal series raise no alert over
4 days; a weekly series warmed up from 15 days of history does not page on its weekend.
Each found within five samples (issue 20; ``for_s: 60`` at 15 s makes three the least).

Unlike ``test_service_path.py`` (the instrument), this file asserts what the default
detector does: a change that breaks one of these breaks the contract users rely on.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import scenario_data as sd
from bench import scenarios
from bench.scenario_data import Series
from detector.config import DetectorConfig

DAYS = 4.0
SEEDS = (11, 12)
MINUTE_MS = 60_000


def _firing_between(s: Series, t: scenarios.Trace, start_ms: int, end_ms: int) -> np.ndarray:
    """Whether the alert was firing after each scored sample in [start, end)."""
    at = (s.ts_ms >= start_ms) & (s.ts_ms < end_ms) & t.scored
    return t.firing[at]


def _latency_shift(seed: int) -> Series:
    """The issue's own example: 0.20 +- 0.01 s at a 15 s scrape, then 0.80 +- 0.01 s for
    the last hour."""
    rng = np.random.default_rng(seed)
    n = int(DAYS * 86_400_000 // sd.STEP_MS)
    ts = sd.EPOCH_MS + np.arange(n, dtype=np.int64) * sd.STEP_MS
    x = 0.20 + 0.01 * rng.standard_normal(n)
    start = int(ts[-240])
    x[-240:] += 0.60
    return Series(
        family="latency_shift",
        metric="http_request_duration_seconds",
        anomalous=True,
        ts_ms=ts,
        values=x,
        stale=np.zeros(n, dtype=np.bool_),
        anomaly=(start, int(ts[-1]) + sd.STEP_MS),
        lasting=True,
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_lasting_and_long_anomalies_fire_and_keep_firing(seed):
    series = [
        _latency_shift(seed),
        sd.generate("shift_up_lasting", seed=seed, index=0, days=DAYS, anomalous=True),
        sd.generate("shift_down_lasting", seed=seed, index=0, days=DAYS, anomalous=True),
        sd.generate("low_rate_errors_burst", seed=seed, index=0, days=DAYS, anomalous=True),
        sd.generate("daily_night_at_day_level", seed=seed, index=0, days=DAYS, anomalous=True),
    ]
    traces = scenarios.ServicePath(DetectorConfig()).run(series)
    for s, t in zip(series, traces, strict=True):
        assert s.anomaly is not None
        start, end = s.anomaly
        firing = _firing_between(s, t, start, end)
        # found within five samples (before a light tail fell at the Gaussian's slope
        # beyond its edge, seed 12's -6 sigma shift scored 0.9997-0.9999 for 14 samples)
        assert firing[:6].any(), (s.family, "not found within 5 samples")
        first = int(np.argmax(firing))
        # from the first firing sample until 50 minutes in (or the anomaly's end, for the
        # 50-minute error burst), the alert never stops: one page, still firing
        until = min(end, start + 50 * MINUTE_MS)
        held = _firing_between(s, t, start, until)[first:]
        assert held.all(), (s.family, "stopped firing at sample", first + int(np.argmin(held)))
        assert sum(1 for f in t.fires_ms if start <= f < until) == 1, s.family


@pytest.mark.parametrize("seed", SEEDS)
def test_clean_heavy_tailed_and_seasonal_series_stay_quiet_for_four_days(seed):
    families = ("student_t_latency", "lognormal_latency", "daily_night_at_day_level")
    series = [
        sd.generate(f, seed=seed, index=i, days=DAYS, anomalous=False)
        for f in families
        for i in range(2)
    ]
    traces = scenarios.ServicePath(DetectorConfig()).run(series)
    pages = {s.family: 0 for s in series}
    for s, t in zip(series, traces, strict=True):
        pages[s.family] += len(t.fires_ms)
    assert pages == dict.fromkeys(families, 0)


def test_a_weekly_series_warmed_from_its_history_does_not_page_on_its_weekend():
    """14 days from a Monday: the weekend at 35% of weekday traffic is in the live part
    twice. Warmed from 15 days of history, nothing pages; cold, the weekend does."""
    family = "weekly_saturday_at_weekday_level"
    live = [sd.generate(family, seed=s, index=0, days=14, anomalous=False) for s in SEEDS]
    history = [
        scenarios.history_for(x, seed=s, index=0, days=15) for x, s in zip(live, SEEDS, strict=True)
    ]
    warm = scenarios.ServicePath(DetectorConfig(), warm_start=True).run(live, histories=history)
    assert [len(t.fires_ms) for t in warm] == [0, 0]
    cold = scenarios.ServicePath(DetectorConfig()).run(live)
    assert all(len(t.fires_ms) > 0 for t in cold)

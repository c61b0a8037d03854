"""The scenario bench's warm start reads what the service's warm start reads: the history
ends where the live series starts, keeps its weekday phase, is sparse (5 min) before the
last ``history_s`` and dense within it, carries no staleness markers; and a weekly series
warmed from 15 days pages on its labelled Saturday but not on its weekends."""

from __future__ import annotations

import numpy as np

from bench import scenario_data, scenarios
from detector.config import WarmStartConfig

WEEKLY = "weekly_saturday_at_weekday_level"
DAY_MS = 86_400_000


def test_the_history_ends_before_the_live_series_in_phase():
    live = scenario_data.generate(WEEKLY, seed=3, index=0, days=14, anomalous=True)
    h = scenarios.history_for(live, seed=3, index=0, days=15)
    assert h.ts_ms[-1] < live.ts_ms[0] <= h.ts_ms[-1] + 2 * scenario_data.STEP_MS
    assert h.ts_ms[0] >= live.ts_ms[0] - 15 * DAY_MS
    assert h.anomaly is None and not h.anomalous
    # the same weekday phase: weekends at 35%, so a week apart the level repeats
    later = live.ts_ms[0] + np.arange(0, 7 * DAY_MS, 3_600_000)
    before = later - 14 * DAY_MS
    hist_at = np.interp(before, h.ts_ms, h.values)
    live_clean = scenario_data.generate(WEEKLY, seed=3, index=0, days=14, anomalous=False)
    live_at = np.interp(later, live_clean.ts_ms, live_clean.values)
    assert np.corrcoef(hist_at, live_at)[0, 1] > 0.9


def test_the_warm_start_read_is_sparse_then_dense_and_without_markers():
    live = scenario_data.generate("gaps_jitter_shift", seed=1, index=0, days=7, anomalous=False)
    h = scenarios.history_for(live, seed=1, index=0, days=15)
    ws = WarmStartConfig()
    ts, values, sparse = scenarios.warm_history(h, int(live.ts_ms[0]), ws)
    assert np.all(np.diff(ts) > 0) and np.isfinite(values).all()
    recent_from = live.ts_ms[0] - ws.history_s * 1000
    assert (ts[:sparse] < recent_from).all() and (ts[sparse:] >= recent_from).all()
    gaps = np.diff(ts[:sparse])
    assert abs(np.median(gaps) - 300_000) < 1_000  # a sample every period_step_s (jitter)
    dense = h.ts_ms[(h.ts_ms >= recent_from) & ~h.stale]
    assert ts[sparse:].tolist() == dense.tolist()  # every sample, no staleness marker


def test_a_warmed_weekly_series_pages_on_its_saturday_not_its_weekends():
    cold = scenarios.run_suite([WEEKLY], n=2, days=14, seed=2)[WEEKLY]
    warm = scenarios.run_suite([WEEKLY], n=2, days=14, seed=2, warm_days=15)[WEEKLY]
    pages = cold["clean_pages"]
    assert isinstance(pages, int) and pages > 0  # without history the first weekend is news
    assert warm["clean_pages"] == 0
    assert warm["detected"] == 1.0 and warm["pages_per_anomaly"] == 1.0

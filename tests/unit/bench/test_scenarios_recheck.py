"""The scenario bench runs the service's seasonal re-check as the service does: a cold
weekly series is looked at once its history spans two weeks, read as the warm start's
queries read Prometheus (its own samples so far, sparse then dense, nothing from the
future), moved to its weekly profile, and pages on no weekend after that; with
``recheck=False`` it goes on paging every weekend, and a daily series is never moved."""

from __future__ import annotations

import numpy as np

from bench import scenario_data, scenarios
from detector.config import DetectorConfig

WEEKLY = "weekly_saturday_at_weekday_level"
DAILY = "daily_night_at_day_level"
DAY_MS = 86_400_000


def _pages_from(traces, first_day: int) -> int:
    """Pages of ``traces`` on or after day ``first_day`` of the series (day 0: a Monday)."""
    days = [(f - scenario_data.EPOCH_MS) // DAY_MS for t in traces for f in t.fires_ms]
    return sum(day >= first_day for day in days)


def test_a_cold_weekly_series_moves_after_two_weeks_and_stops_paging_on_weekends():
    series = [
        scenario_data.generate(WEEKLY, seed=4, index=0, days=21, anomalous=False),
        scenario_data.generate(DAILY, seed=4, index=0, days=21, anomalous=False),
    ]
    path = scenarios.ServicePath(DetectorConfig())
    traces = path.run(series)
    # every series looked at from day 14 on, daily: the weekly one moved, the daily kept
    assert path.rechecks["moved"] == 1 and path.rechecks["kept"] >= 6
    dets = path.pipeline.detectors
    assert dets.period_of(0) == 7 * DAY_MS and dets.period_of(1) == DAY_MS
    before = _pages_from(traces[:1], 0)
    assert before > 0  # its first two weekends were news to a daily profile
    assert _pages_from(traces, 15) == 0  # nothing after the move

    off = scenarios.ServicePath(DetectorConfig(), recheck=False)
    off_traces = off.run(series[:1])
    assert off.rechecks == {"moved": 0, "kept": 0, "short": 0}
    assert _pages_from(off_traces, 15) > 0  # its third weekend pages too


def test_a_recheck_reads_the_series_own_history_so_far_as_the_queries_do():
    s = scenario_data.generate(WEEKLY, seed=2, index=0, days=16, anomalous=False)
    path = scenarios.ServicePath(DetectorConfig())
    slot_of = path._register([s])
    check = scenarios._ReCheck(path, [s], None, slot_of)
    start = int(s.ts_ms[0])
    # a new deployment's warm start found nothing: due when two weeks (and an hour) exist
    assert check.next_due_ms() == start + 14 * DAY_MS + 3_600_000
    now = start + 15 * DAY_MS
    h = check.read(int(slot_of[0]), now)
    assert h.first_ms is not None and h.last_ms is not None
    assert start <= h.first_ms < start + 300_000 and now - 30_000 < h.last_ms < now
    assert h.period_ms == 7 * DAY_MS
    ws = path.cfg.warm_start
    sparse = h.ts[h.ts < now - ws.history_s * 1000]
    assert abs(float(np.median(np.diff(sparse))) - ws.period_step_s * 1000) < 1000
    dense = h.ts[h.ts >= now - ws.history_s * 1000]
    assert np.all(np.diff(dense) == scenario_data.STEP_MS)


def test_warm_started_series_are_looked_at_a_day_after_their_warm_start():
    s = scenario_data.generate(DAILY, seed=2, index=0, days=3, anomalous=False)
    h = scenarios.history_for(s, seed=2, index=0, days=15)
    path = scenarios.ServicePath(DetectorConfig(), warm_start=True)
    slot_of = path._register([s])
    check = scenarios._ReCheck(path, [s], [h], slot_of)
    assert check.next_due_ms() == int(s.ts_ms[0]) + DAY_MS

"""Which seasonal period a series follows, judged from its history (warm start).

Pure: samples in, a period out. The history is put on a regular grid (its median
interval), detrended (scipy), and its autocorrelation is measured at each candidate
period that the history covers at least twice. The shortest candidate above the
threshold wins unless a longer one repeats clearly better (``LONGER_MARGIN``): a weekly
profile has seven times the bins of a daily one and learns each of them seven times
slower, so a series that repeats daily as well as weekly is better served by the day.
A weekly period must also show in whole days (``weekdays_repeat``), so one day-long
incident in the history does not pass for a weekly rhythm. A counter is judged by its
rate, not by its running total. The grid has at most ``MAX_GRID`` points, so a fast
scrape costs no more than a slow one. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import signal

MIN_CORRELATION = 0.3
MIN_POINTS = 64
MAX_GRID = 20_000  # points of the regular grid at most (a 1 s scrape over 15 days: 1.3M)
WEEK_S = 7 * 86_400.0
DAY_MS = 86_400_000
# a weekly period must also show in whole days: the mean of each day and of the same
# weekday a week later correlate at least this much over at least WEEKLY_MIN_PAIRS pairs
# (one day-long incident lowers the autocorrelation a day apart twice and a week apart
# once, so on its own it made a daily series "weekly"; its day has no twin a week later)
WEEKLY_DAY_CORRELATION = 0.7
WEEKLY_MIN_PAIRS = 5
# how much better (autocorrelation) a longer period must repeat than a shorter one that
# also qualifies: a daily series correlates as well a week apart as a day apart (0.98 and
# 0.98 in bench.scenario_data's daily family), a weekday/weekend one does not (0.69 a day
# apart, 0.99 a week apart)
LONGER_MARGIN = 0.1


def rate_of(
    ts_ms: NDArray[np.int64], totals: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """A counter's per-second rate between consecutive samples, a reset (a drop) counting
    the new total as the increase, as Prometheus' ``rate`` does."""
    finite = np.isfinite(totals)
    ts, x = ts_ms[finite], totals[finite]
    if ts.shape[0] < 2:
        return ts[:0], x[:0]
    inc = np.diff(x)
    inc = np.where(inc < 0.0, x[1:], inc)
    dt = np.diff(ts).astype(np.float64) / 1000.0
    ok = dt > 0.0
    return ts[1:][ok], inc[ok] / dt[ok]


def correlations(
    ts_ms: NDArray[np.int64], values: NDArray[np.float64], candidates_s: Sequence[float]
) -> dict[float, float]:
    """The autocorrelation of the detrended history at each candidate period (seconds)
    that it covers at least twice."""
    finite = np.isfinite(values)
    ts, x = ts_ms[finite], values[finite]
    if ts.shape[0] < MIN_POINTS:
        return {}
    span = float(ts[-1] - ts[0])
    step = max(float(np.median(np.diff(ts))), span / MAX_GRID)
    if step <= 0:
        return {}
    grid = np.arange(float(ts[0]), float(ts[-1]), step)
    if grid.shape[0] < MIN_POINTS:
        return {}
    y = signal.detrend(np.interp(grid, ts.astype(np.float64), x))
    # a constant series leaves only rounding in y: no period
    if float(np.std(y)) <= 1e-9 * max(1.0, float(np.max(np.abs(x)))):
        return {}
    out: dict[float, float] = {}
    for period_s in candidates_s:
        lag = round(period_s * 1000.0 / step)
        if lag < 2 or 2 * lag > y.shape[0]:
            continue
        r = float(np.corrcoef(y[:-lag], y[lag:])[0, 1])
        if np.isfinite(r):
            out[float(period_s)] = r
    return out


def detect_period(
    ts_ms: NDArray[np.int64],
    values: NDArray[np.float64],
    candidates_s: Sequence[float],
    *,
    counter: bool = False,
) -> float | None:
    """The candidate period (in seconds) the series repeats best, or None."""
    if counter:
        ts_ms, values = rate_of(ts_ms, values)
    best: tuple[float, float] | None = None
    for period_s, r in sorted(correlations(ts_ms, values, candidates_s).items()):
        if r < MIN_CORRELATION:
            continue
        if period_s == WEEK_S and not weekdays_repeat(ts_ms, values):
            continue
        if best is None or r >= best[1] + LONGER_MARGIN:
            best = (period_s, r)
    return None if best is None else best[0]


def weekdays_repeat(ts_ms: NDArray[np.int64], values: NDArray[np.float64]) -> bool:
    """Whether the history's whole days repeat a week apart: the correlation of each
    UTC day's mean with the mean of the same weekday a week later, over the pairs of
    days both well covered (at least 80% of the day's median sample count)."""
    finite = np.isfinite(values)
    ts, x = ts_ms[finite], values[finite]
    if ts.shape[0] == 0:
        return False
    day = (ts // DAY_MS).astype(np.int64)
    first = int(day[0])
    index = day - first
    n_days = int(index[-1]) + 1
    counts = np.bincount(index, minlength=n_days).astype(np.float64)
    sums = np.bincount(index, weights=x, minlength=n_days)
    covered = counts >= 0.8 * float(np.median(counts[counts > 0]))
    means = np.divide(sums, counts, out=np.zeros(n_days), where=counts > 0)
    pairs = [(d, d + 7) for d in range(n_days - 7) if covered[d] and covered[d + 7]]
    if len(pairs) < WEEKLY_MIN_PAIRS:
        return False
    a = np.array([means[d] for d, _ in pairs])
    b = np.array([means[e] for _, e in pairs])
    if float(np.std(a)) == 0.0 or float(np.std(b)) == 0.0:
        return False
    return float(np.corrcoef(a, b)[0, 1]) >= WEEKLY_DAY_CORRELATION

"""Which seasonal period a series follows, judged from its history (warm start).

Pure: samples in, a period out. The history is put on a regular grid (its median
interval), detrended (scipy), and its autocorrelation is measured at each candidate
period that the history covers at least twice. The shortest candidate above the
threshold wins unless a longer one repeats clearly better (``LONGER_MARGIN``): a weekly
profile has seven times the bins of a daily one and learns each of them seven times
slower, so a series that repeats daily as well as weekly is better served by the day.
A counter is judged by its rate, not by its running total. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import signal

MIN_CORRELATION = 0.3
MIN_POINTS = 64
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
    step = float(np.median(np.diff(ts)))
    if step <= 0:
        return {}
    grid = np.arange(float(ts[0]), float(ts[-1]), step)
    if grid.shape[0] < MIN_POINTS:
        return {}
    y = signal.detrend(np.interp(grid, ts.astype(np.float64), x))
    if float(np.std(y)) == 0.0:
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
        if best is None or r >= best[1] + LONGER_MARGIN:
            best = (period_s, r)
    return None if best is None else best[0]

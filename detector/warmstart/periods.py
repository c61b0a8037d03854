"""Which seasonal period a series follows, judged from its history (warm start).

Pure: samples in, a period out. The history is put on a regular grid (its median
interval), detrended (scipy), and its autocorrelation is measured at each candidate
period that the history covers at least twice; the strongest one above the threshold
wins. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import signal

MIN_CORRELATION = 0.3
MIN_POINTS = 64


def detect_period(
    ts_ms: NDArray[np.int64], values: NDArray[np.float64], candidates_s: Sequence[float]
) -> float | None:
    """The candidate period (in seconds) the series repeats best, or None."""
    finite = np.isfinite(values)
    ts, x = ts_ms[finite], values[finite]
    if ts.shape[0] < MIN_POINTS:
        return None
    step = float(np.median(np.diff(ts)))
    if step <= 0:
        return None
    grid = np.arange(float(ts[0]), float(ts[-1]), step)
    if grid.shape[0] < MIN_POINTS:
        return None
    y = signal.detrend(np.interp(grid, ts.astype(np.float64), x))
    if float(np.std(y)) == 0.0:
        return None
    best: tuple[float, float] | None = None
    for period_s in candidates_s:
        lag = round(period_s * 1000.0 / step)
        if lag < 2 or 2 * lag > y.shape[0]:
            continue
        r = float(np.corrcoef(y[:-lag], y[lag:])[0, 1])
        if np.isfinite(r) and r >= MIN_CORRELATION and (best is None or r > best[1]):
            best = (float(period_s), r)
    return None if best is None else best[0]

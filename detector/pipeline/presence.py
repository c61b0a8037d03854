"""Stuck and absent series: the checks that a detector on values cannot make.

A *stuck* series repeats one value far longer than it ever has lately (a frozen exporter,
a gauge that stopped updating); an *absent* series has sent nothing for many of its usual
intervals without being marked stale (a target that vanished without Prometheus noticing,
or a broken remote-write path). This module owns both rules as pure, vectorised functions
of the pipeline's per-series tables and a time; it does no I/O and reads no clock.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detector.config import PresenceConfig
from detector.pipeline.worker import Pipeline


def stuck(p: Pipeline, n: int, rules: PresenceConfig) -> NDArray[np.bool_]:
    """Series (of the first ``n`` slots) repeating one value unusually long."""
    run = p.run_same[:n]
    usual = np.maximum(rules.stuck_min_samples, rules.stuck_factor * p.run_max[:n])
    warmed = p.n_samples[:n] >= rules.warmup_samples
    out: NDArray[np.bool_] = warmed & (p.stale[:n] == 0) & (run >= usual)
    return out


def absent(p: Pipeline, n: int, now_ms: int, rules: PresenceConfig) -> NDArray[np.bool_]:
    """Series (of the first ``n`` slots) silent for many of their usual intervals."""
    interval = p.interval_ms[:n]
    limit = np.maximum(rules.absent_min_s * 1000.0, rules.absent_intervals * interval)
    silent = (now_ms - p.last_ts[:n]).astype(np.float64)
    known = (interval > 0) & (p.n_samples[:n] >= rules.warmup_samples)
    out: NDArray[np.bool_] = known & (p.stale[:n] == 0) & (silent > limit)
    return out

"""The ensemble family (the default detector): state table, parameters and kernel call.

This module owns the struct-of-arrays table of the ensemble detector for many series and
the translation of ``EnsembleParams`` into the kernel's parameter vector. The arithmetic
and its documentation live in ``_kernels/ensemble.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from detector.config import EnsembleParams
from detector.detectors._kernels import ensemble as k
from detector.detectors._kernels.calibration import HIST_BINS
from detector.detectors.base import Scores, TableFamily

_NEVER = -1e18  # "adopted at" of a series that never adopted a new level


def band_probability(band_sigmas: float) -> float:
    """The tail probability at the band's edge: that of a Gaussian z of ``band_sigmas``."""
    return math.erfc(band_sigmas / math.sqrt(2.0))


def params_vector(p: EnsembleParams) -> NDArray[np.float64]:
    v = np.zeros(k.N_PARAMS, dtype=np.float64)
    v[k.P_ALPHA_FAST] = p.alpha_fast
    v[k.P_ALPHA_SLOW] = p.alpha_slow
    v[k.P_ALPHA_SEASON] = p.alpha_season
    v[k.P_CLIP] = p.clip_sigmas
    v[k.P_DECAY] = p.decay
    v[k.P_BINS] = p.season_bins
    v[k.P_PERIOD_MS] = p.season_period_s * 1000.0
    v[k.P_MIN_VISITS] = p.season_min_visits
    v[k.P_BAND_P] = band_probability(p.band_sigmas)
    v[k.P_WARMUP] = p.warmup_samples
    v[k.P_ADOPT_MS] = p.adopt_after_s * 1000.0
    v[k.P_TAIL_INDEX] = p.tail_index
    v[k.P_SEASON_SAMPLE_MS] = p.season_sample_s * 1000.0
    return v


# the most bins a series' own period may give its profile: a week of 30-minute bins, about
# 3 KB a series (the issue-20 budget with a weekly profile is 4 KiB)
MAX_PERIOD_BINS = 336


def params_for_period(params: EnsembleParams, period_ms: float) -> EnsembleParams | None:
    """The parameters of a series whose history repeats with ``period_ms``, when that
    period is a multiple (two or more) of the family's: the same bin width over the longer
    period (a week of the default's 30-minute bins), so a weekday/weekend series gets a
    weekly profile instead of a daily one stretched into 3.5-hour bins. None when the
    period fits the family's own profile (``set_period`` then gives the series that period
    with the family's bins) or the family has no profile."""
    if params.season_bins == 0:
        return None
    ratio = period_ms / (params.season_period_s * 1000.0)
    if ratio < 1.5:
        return None
    bins = min(MAX_PERIOD_BINS, max(params.season_bins, round(params.season_bins * ratio)))
    return params.model_copy(update={"season_period_s": period_ms / 1000.0, "season_bins": bins})


class EnsembleFamily(TableFamily):
    """Struct-of-arrays state of the ensemble detector for many series, one params set."""

    KIND = "ensemble"
    TABLES = ("state", "season", "visits", "hist", "htot")

    def __init__(self, params: EnsembleParams, capacity: int = 1024) -> None:
        self.params = params
        self.vector = params_vector(params)
        # only the state and tables of the signals that are on (a series without the
        # seasonal profile has zero-width profile tables)
        self.state = np.zeros((0, k.state_columns(params.season_bins)), dtype=np.float64)
        self.season = np.zeros((0, params.season_bins), dtype=np.float32)
        self.visits = np.zeros((0, params.season_bins), dtype=np.float32)
        # calibration only for the signals that are on: level, seasonal
        self.n_signals = 1 + (params.season_bins > 0)
        self.hist = np.zeros((0, self.n_signals * HIST_BINS), dtype=np.float32)
        # per signal: total weight; its lazy-forgetting divisor; the sum of its stored bins
        self.htot = np.zeros((0, 3 * self.n_signals), dtype=np.float64)
        self.ensure(capacity)

    def configure(self, slot: int) -> None:
        super().configure(slot)
        self.state[slot, k.S_ADOPT_T] = _NEVER
        self.htot[slot, self.n_signals : 2 * self.n_signals] = 1.0

    def adopted_at(self, row: int) -> float | None:
        """When the series last adopted a lasting deviation as its new level (epoch ms),
        or None if it never did."""
        t = float(self.state[row, k.S_ADOPT_T])
        return None if t <= _NEVER else t

    def params_for_period(self, period_ms: float) -> EnsembleParams | None:
        """See the module's ``params_for_period``."""
        return params_for_period(self.params, period_ms)

    def set_period(self, row: int, period_ms: float) -> None:
        """Give one series its own seasonal period (detected from its history); its
        profile starts over. Without a seasonal profile there is nothing to set."""
        if self.params.season_bins == 0:
            return
        self.state[row, k.S_PERIOD] = max(1, round(period_ms))  # whole ms, as the kernel bins
        self.season[row] = 0
        self.visits[row] = 0

    def period_of(self, row: int) -> float | None:
        """The seasonal period of a series in ms, or None without a seasonal profile."""
        if self.params.season_bins == 0:
            return None
        period = float(self.state[row, k.S_PERIOD])
        return period if period > 0 else self.params.season_period_s * 1000.0

    def score_learn(
        self,
        slots: NDArray[np.int32],
        ts_ms: NDArray[np.int64],
        values: NDArray[np.float64],
        out: Scores,
    ) -> None:
        self.check(slots, ts_ms, values, out)
        k.ensemble_score_learn(
            np.ascontiguousarray(slots, dtype=np.int32),
            np.ascontiguousarray(ts_ms, dtype=np.int64),
            np.ascontiguousarray(values, dtype=np.float64),
            self.state,
            self.season,
            self.visits,
            self.hist,
            self.htot,
            self.vector,
            out.score,
            out.expected,
            out.lower,
            out.upper,
        )

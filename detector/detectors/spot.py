"""The spot family (DSPOT): its state table, parameters and kernel call.

This module owns the table of the DSPOT detector for one parameter set: per slot the
robust level and scale and each tail's exceedance rate, peak count and moments of its
recent excesses (``state``, 104 bytes). The arithmetic and its documentation live in
``_kernels/spot.py``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detector.config import SpotParams
from detector.detectors._kernels import spot as k
from detector.detectors.base import Scores, TableFamily


def params_vector(p: SpotParams) -> NDArray[np.float64]:
    v = np.zeros(k.N_PARAMS, dtype=np.float64)
    v[k.P_ALPHA] = p.alpha
    v[k.P_CLIP] = p.clip_sigmas
    v[k.P_WARMUP] = p.warmup_samples
    v[k.P_T] = p.threshold_sigmas
    v[k.P_PEAKS] = p.peaks
    v[k.P_MIN_PEAKS] = p.min_peaks
    v[k.P_RATE_ALPHA] = p.rate_alpha
    v[k.P_RISK] = p.risk
    v[k.P_ADOPT] = p.adopt_samples
    v[k.P_MIN_SCALE] = p.min_scale
    v[k.P_PROTECT_RISK] = p.protect_risk
    return v


class SpotFamily(TableFamily):
    """Struct-of-arrays state of the DSPOT detector for many series."""

    KIND = "spot"
    TABLES = ("state",)

    def __init__(self, params: SpotParams, capacity: int = 1024) -> None:
        self.params = params
        self.vector = params_vector(params)
        self.state = np.zeros((0, k.N_STATE), dtype=np.float64)
        self.ensure(capacity)

    def score_learn(
        self,
        slots: NDArray[np.int32],
        ts_ms: NDArray[np.int64],
        values: NDArray[np.float64],
        out: Scores,
    ) -> None:
        """DSPOT does not depend on time; ``ts_ms`` is only checked."""
        self.check(slots, ts_ms, values, out)
        k.spot_score_learn(
            np.ascontiguousarray(slots, dtype=np.int32),
            np.ascontiguousarray(values, dtype=np.float64),
            self.state,
            self.vector,
            out.score,
            out.expected,
            out.lower,
            out.upper,
        )

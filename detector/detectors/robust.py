"""The robust-level family: its state table, parameters and kernel call.

This module owns the table of the robust-level detector (count, level, scale per slot)
for one parameter set. The arithmetic lives in ``_kernels/robust.py``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detector.config import RobustParams
from detector.detectors._kernels import robust as k
from detector.detectors.base import Scores, TableFamily


def params_vector(p: RobustParams) -> NDArray[np.float64]:
    v = np.zeros(k.N_PARAMS, dtype=np.float64)
    v[k.P_ALPHA] = p.alpha
    v[k.P_CLIP] = p.clip_sigmas
    v[k.P_WARMUP] = p.warmup_samples
    v[k.P_BAND] = p.band_sigmas
    v[k.P_PROTECT] = p.protect_above
    v[k.P_MIN_SCALE] = p.min_scale
    return v


class RobustFamily(TableFamily):
    """Struct-of-arrays state of the robust-level detector for many series."""

    KIND = "robust"
    TABLES = ("state",)

    def __init__(self, params: RobustParams, capacity: int = 1024) -> None:
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
        """The robust level does not depend on time; ``ts_ms`` is only checked."""
        self.check(slots, ts_ms, values, out)
        k.robust_score_learn(
            np.ascontiguousarray(slots, dtype=np.int32),
            np.ascontiguousarray(values, dtype=np.float64),
            self.state,
            self.vector,
            out.score,
            out.expected,
            out.lower,
            out.upper,
        )

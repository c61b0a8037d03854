"""The robust-level family: its state table, parameters and kernel call.

This module owns the table of the robust-level detector (count, level, scale per slot)
for one parameter set. The arithmetic lives in ``_kernels/robust.py``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detector.config import RobustParams
from detector.detectors._kernels import robust as k
from detector.detectors.base import Scores


def params_vector(p: RobustParams) -> NDArray[np.float64]:
    v = np.zeros(k.N_PARAMS, dtype=np.float64)
    v[k.P_ALPHA] = p.alpha
    v[k.P_CLIP] = p.clip_sigmas
    v[k.P_WARMUP] = p.warmup_samples
    v[k.P_BAND] = p.band_sigmas
    v[k.P_PROTECT] = p.protect_above
    v[k.P_MIN_SCALE] = p.min_scale
    return v


class RobustFamily:
    """Struct-of-arrays state of the robust-level detector for many series."""

    def __init__(self, params: RobustParams, capacity: int = 1024) -> None:
        self.params = params
        self.vector = params_vector(params)
        self.capacity = 0
        self.state = np.zeros((0, k.N_STATE), dtype=np.float64)
        self.ensure(capacity)

    def arrays(self) -> dict[str, NDArray[np.float64]]:
        return {"state": self.state}

    def bytes_per_series(self) -> int:
        return int(self.state.itemsize * self.state.shape[1])

    def ensure(self, n_slots: int) -> None:
        if n_slots <= self.capacity:
            return
        size = max(n_slots, 2 * self.capacity, 1024)
        grown = np.zeros((size, k.N_STATE), dtype=np.float64)
        grown[: self.state.shape[0]] = self.state
        self.state = grown
        self.capacity = size

    def configure(self, slot: int) -> None:
        self.ensure(slot + 1)
        self.state[slot] = 0.0

    def score_learn(self, slots: NDArray[np.int32], ts_ms: NDArray[np.int64],
                    values: NDArray[np.float64], out: Scores) -> None:
        del ts_ms  # the robust level does not depend on time
        if slots.shape != values.shape or slots.shape != out.score.shape:
            raise ValueError(
                f"robust: {slots.shape[0]} slots, {values.shape[0]} values and "
                f"{out.score.shape[0]} outputs must have one length"
            )
        if slots.shape[0] and int(slots.max()) >= self.capacity:
            raise ValueError(f"robust: slot {int(slots.max())} is beyond the table "
                             f"({self.capacity}); call ensure() first")
        k.robust_score_learn(np.ascontiguousarray(slots, dtype=np.int32),
                             np.ascontiguousarray(values, dtype=np.float64),
                             self.state, self.vector, out.score, out.expected, out.lower,
                             out.upper)

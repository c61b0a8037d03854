"""The robust-level family: parameters per slot, the state table and its kernel call.

This module owns the table of the robust-level detector (count, level, scale per slot and
the per-slot parameters chosen by the series rule). The arithmetic lives in
``_kernels/robust.py``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detector.config import RobustParams
from detector.detectors._kernels.robust import robust_score_learn
from detector.detectors.base import Scores

_STATE = ("n", "level", "scale")
_PARAMS = ("alpha", "clip", "warmup", "band", "protect", "min_scale")


class RobustFamily:
    """Struct-of-arrays state of the robust-level detector for many series."""

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = 0
        self.arrays: dict[str, NDArray[np.float64]] = {
            name: np.zeros(0, dtype=np.float64) for name in _STATE + _PARAMS
        }
        self.ensure(capacity)

    def ensure(self, n_slots: int) -> None:
        if n_slots <= self.capacity:
            return
        size = max(n_slots, 2 * self.capacity, 1024)
        for name, arr in self.arrays.items():
            grown = np.zeros(size, dtype=np.float64)
            grown[: arr.shape[0]] = arr
            self.arrays[name] = grown
        self.capacity = size

    def configure(self, slot: int, params: RobustParams) -> None:
        self.ensure(slot + 1)
        a = self.arrays
        a["n"][slot] = 0.0
        a["level"][slot] = 0.0
        a["scale"][slot] = 0.0
        a["alpha"][slot] = params.alpha
        a["clip"][slot] = params.clip_sigmas
        a["warmup"][slot] = params.warmup_samples
        a["band"][slot] = params.band_sigmas
        a["protect"][slot] = params.protect_above
        a["min_scale"][slot] = params.min_scale

    def score_learn(self, slots: NDArray[np.int32], values: NDArray[np.float64],
                    out: Scores) -> None:
        if slots.shape != values.shape or slots.shape != out.score.shape:
            raise ValueError(
                f"robust: {slots.shape[0]} slots, {values.shape[0]} values and "
                f"{out.score.shape[0]} outputs must have one length"
            )
        if slots.shape[0] and int(slots.max()) >= self.capacity:
            raise ValueError(f"robust: slot {int(slots.max())} is beyond the table "
                             f"({self.capacity}); call ensure() first")
        a = self.arrays
        robust_score_learn(
            np.ascontiguousarray(slots, dtype=np.int32),
            np.ascontiguousarray(values, dtype=np.float64),
            a["n"], a["level"], a["scale"], a["alpha"], a["clip"], a["warmup"], a["band"],
            a["protect"], a["min_scale"], out.score, out.expected, out.lower, out.upper,
        )

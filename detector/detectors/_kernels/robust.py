"""Kernel of the robust-level family: Huber-clipped exponentially weighted level and scale.

Each sample is scored against the state before it, then learned (unless protected).
Non-finite values (NaN, ±Inf) score NaN and leave the state unchanged. One call handles
the samples of many series; a batch fed whole or in pieces gives identical results.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types

from detector.detectors._kernels import SAFE_FASTMATH
from detector.detectors._kernels.tail import score_from_z

_f64 = types.Array(types.float64, 1, "C")
_i32 = types.Array(types.int32, 1, "C")
_i64 = types.Array(types.int64, 1, "C")

# slots, values, (state) n, level, scale, (params) alpha, clip, warmup, band, protect,
# min_scale, (out) score, expected, lower, upper
SIGNATURE = types.void(_i32, _f64, _f64, _f64, _f64, _f64, _f64, _f64, _f64, _f64, _f64,
                       _f64, _f64, _f64, _f64)

# mean absolute deviation -> standard deviation, for Gaussian noise
MAD_TO_SIGMA = math.sqrt(math.pi / 2.0)


@njit(SIGNATURE, cache=True, nogil=True, fastmath=SAFE_FASTMATH)
def robust_score_learn(
    slots: np.ndarray, values: np.ndarray, n: np.ndarray, level: np.ndarray,
    scale: np.ndarray, alpha: np.ndarray, clip: np.ndarray, warmup: np.ndarray,
    band: np.ndarray, protect: np.ndarray, min_scale: np.ndarray, score: np.ndarray,
    expected: np.ndarray, lower: np.ndarray, upper: np.ndarray,
) -> None:
    """Score then learn ``values[i]`` for series ``slots[i]``, in order.

    ``score`` is the probability that a normal sample is less extreme (two-sided Gaussian
    tail of the robust z-score, see ``tail.py``); it is 0 while the series warms up.
    """
    for i in range(slots.shape[0]):
        s = slots[i]
        x = values[i]
        sigma = max(scale[s] * MAD_TO_SIGMA, min_scale[s] + 1e-9 * abs(level[s]))
        if n[s] == 0:
            expected[i] = np.nan
            lower[i] = np.nan
            upper[i] = np.nan
        else:
            expected[i] = level[s]
            lower[i] = level[s] - band[s] * sigma
            upper[i] = level[s] + band[s] * sigma
        if not math.isfinite(x):
            score[i] = np.nan
            continue
        if n[s] < warmup[s]:
            p = 0.0
        else:
            p = score_from_z(abs(x - level[s]) / sigma)
        score[i] = p
        if p >= protect[s]:
            continue
        n[s] += 1.0
        if n[s] == 1.0:
            level[s] = x
            scale[s] = 0.0
            continue
        # exact running mean / mean absolute deviation while warming up, then EW
        a = max(alpha[s], 1.0 / n[s])
        r = x - level[s]
        if n[s] > warmup[s]:
            limit = clip[s] * sigma
            r = min(max(r, -limit), limit)
        level[s] += a * r
        scale[s] += a * (abs(r) - scale[s])

"""Kernel of the robust-level family: Huber-clipped exponentially weighted level and scale.

Each sample is scored against the state before it, then learned (unless protected).
Non-finite values (NaN, ±Inf) score NaN and leave the state unchanged. One call handles
the samples of many series; a batch fed whole or in pieces gives identical results.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types

from detector.detectors._kernels import MAX_SCORED, SAFE_FASTMATH
from detector.detectors._kernels.tail import score_from_z

_f64 = types.Array(types.float64, 1, "C")
_f64_2 = types.Array(types.float64, 2, "C")
_i32 = types.Array(types.int32, 1, "C")

S_N, S_LEVEL, S_SCALE = range(3)
N_STATE = 3
P_ALPHA, P_CLIP, P_WARMUP, P_BAND, P_PROTECT, P_MIN_SCALE = range(6)
N_PARAMS = 6

# slots, values, state, params, score, expected, lower, upper
SIGNATURE = types.void(_i32, _f64, _f64_2, _f64, _f64, _f64, _f64, _f64)

# mean absolute deviation -> standard deviation, for Gaussian noise
MAD_TO_SIGMA = math.sqrt(math.pi / 2.0)


@njit(SIGNATURE, cache=True, nogil=True, fastmath=SAFE_FASTMATH)
def robust_score_learn(
    slots: np.ndarray,
    values: np.ndarray,
    state: np.ndarray,
    params: np.ndarray,
    score: np.ndarray,
    expected: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
) -> None:
    """Score then learn ``values[i]`` for series ``slots[i]``, in order.

    ``score`` is the probability that a normal sample is less extreme (two-sided Gaussian
    tail of the robust z-score, see ``tail.py``); it is 0 while the series warms up.
    """
    alpha = params[P_ALPHA]
    clip = params[P_CLIP]
    warmup = params[P_WARMUP]
    band = params[P_BAND]
    protect = params[P_PROTECT]
    min_scale = params[P_MIN_SCALE]
    for i in range(slots.shape[0]):
        st = state[slots[i]]
        x = values[i]
        sigma = max(st[S_SCALE] * MAD_TO_SIGMA, min_scale + 1e-9 * abs(st[S_LEVEL]))
        if st[S_N] == 0:
            expected[i] = np.nan
            lower[i] = np.nan
            upper[i] = np.nan
        else:
            expected[i] = st[S_LEVEL]
            lower[i] = st[S_LEVEL] - band * sigma
            upper[i] = st[S_LEVEL] + band * sigma
        if not abs(x) <= MAX_SCORED:  # NaN, +-inf or too large to square
            score[i] = np.nan
            continue
        if st[S_N] < warmup:
            p = 0.0
        else:
            p = score_from_z(abs(x - st[S_LEVEL]) / sigma)
        score[i] = p
        if p >= protect:
            continue
        st[S_N] += 1.0
        if st[S_N] == 1.0:
            st[S_LEVEL] = x
            st[S_SCALE] = 0.0
            continue
        # exact running mean / mean absolute deviation while warming up, then EW
        a = max(alpha, 1.0 / st[S_N])
        r = x - st[S_LEVEL]
        if st[S_N] > warmup:
            limit = clip * sigma
            r = min(max(r, -limit), limit)
        st[S_LEVEL] += a * r
        st[S_SCALE] += a * (abs(r) - st[S_SCALE])

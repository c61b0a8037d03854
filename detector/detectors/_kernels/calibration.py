"""The empirical calibration shared by detectors: how rare is this value of a signal,
given that signal's own recent history?

A forgetting histogram per (series, signal) over log2(1 + z) gives the share of past
values at least as extreme; beyond everything seen, the Gaussian tail of z breaks ties.
numpy and numba only.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from detector.detectors._kernels import SAFE_FASTMATH

HIST_BINS = 32
_BIN_SCALE = HIST_BINS / math.log2(math.exp(4.0))  # log2(1 + z) for z up to ~53


@njit(cache=True, nogil=True, fastmath=SAFE_FASTMATH)
def bin_of(z: float) -> int:
    """Histogram bin of z: log2(1 + z) spread over the bins, z up to ~53.

    log2 comes from the float's exponent plus a quadratic in its mantissa (within 0.005
    of the true value, monotone, no transcendental call).
    """
    m, e = math.frexp(1.0 + z)
    x = 2.0 * m  # 1 + z = x * 2**(e - 1), x in [1, 2)
    log2 = (e - 1) + (-0.34484843 * x + 2.02466578) * x - 1.67981735
    return min(int(log2 * _BIN_SCALE), HIST_BINS - 1)


@njit(cache=True, nogil=True, fastmath=SAFE_FASTMATH)
def tail_probability(hist: np.ndarray, htot: np.ndarray, s: int, k: int, z: float,
                     decay: float) -> float:
    """Empirical tail probability of ``z`` for signal k of series s, then learn z.

    ``htot`` holds per series, for each of its n signals: the total weight (column k), the
    lazy-forgetting divisor g = decay**t (column n + k) and the sum of the stored bins
    (column 2n + k). Stored bins are true weights divided by g, so a sample touches one
    bin instead of decaying all of them; they are rescaled only when g gets tiny. The
    weight at least as extreme as z is summed from whichever end of the histogram is
    nearer (most samples land in the low bins).
    """
    b = bin_of(z)
    base = k * HIST_BINS
    n = htot.shape[1] // 3
    g = htot[s, n + k]
    if b < HIST_BINS // 2:
        below = 0.0
        for j in range(b):
            below += hist[s, base + j]
        ge = max(0.0, htot[s, 2 * n + k] - below) * g
    else:
        ge = 0.0
        for j in range(b, HIST_BINS):
            ge += hist[s, base + j]
        ge *= g
    p = (ge + 1.0) / (htot[s, k] + 2.0)
    # beyond what this series has shown (less than one sample's weight, allowing for
    # rounding): the Gaussian tail breaks ties
    if ge < 1.0 - 1e-6:
        p = min(p, max(math.erfc(z / math.sqrt(2.0)), 1e-300))
    g *= decay
    if g < 1e-30:
        for j in range(HIST_BINS):
            hist[s, base + j] *= g
        htot[s, 2 * n + k] *= g
        g = 1.0
    hist[s, base + b] += 1.0 / g
    htot[s, 2 * n + k] += 1.0 / g
    htot[s, n + k] = g
    htot[s, k] = htot[s, k] * decay + 1.0
    return p

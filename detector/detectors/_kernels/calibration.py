"""The empirical calibration shared by detectors: how rare is this value of a signal,
given that signal's own recent history?

A forgetting histogram per (series, signal) over log2(1 + z) gives the share of past
values at least as extreme; beyond everything seen, a power-law tail from the edge of
the largest values (or the Gaussian tail of z) keeps ordering them.
numpy and numba only.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from detector.detectors._kernels import SAFE_FASTMATH
from detector.detectors._kernels.tail import log10_two_sided_tail

HIST_BINS = 16
_LOG10_2 = math.log10(2.0)
_FLOOR_LOG10 = -300.0  # the smallest probability returned
_TRUSTED_WEIGHT = 100.0  # history weight from which a signal's own tail edge is trusted
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
                     decay: float, tail_index: float) -> float:
    """Empirical tail probability of ``z`` for signal k of series s, then learn z.

    Within the history it is a ratio of weights (no logarithm on the common path); beyond
    it, the extrapolation is computed in logarithms and floored at 1e-300 (a z-score
    beyond 37 on a series too young to extrapolate from its own edge), so callers take
    one logarithm of the smallest probability they combine.

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
    # beyond what this series has shown (less than one sample's weight at or beyond z,
    # allowing for rounding): extrapolate from the edge of the largest values seen. With a
    # tail index the tail falls on from there as (1 + z) ** -tail_index, a power law, so a
    # heavy-tailed signal's new record is rare but not impossible; while the history is
    # young (under _TRUSTED_WEIGHT samples) its edge is itself noise and the extrapolation
    # is never rarer than the Gaussian tail. Without a tail index, the Gaussian tail alone.
    if ge < 1.0 - 1e-6:
        lg = log10_two_sided_tail(z)
        top = -1
        if tail_index > 0.0:
            acc = 0.0
            for j in range(HIST_BINS - 1, -1, -1):
                acc += hist[s, base + j] * g
                if acc >= 1.0:
                    top = j
                    break
        lp = math.log10(p)
        if top < 0:
            lp = min(lp, lg)
        else:  # bins are log2(1 + z) * _BIN_SCALE: the upper edge of bin `top`, in log2
            excess = max(0.0, math.log2(1.0 + z) - (top + 1) / _BIN_SCALE)
            lp -= tail_index * excess * _LOG10_2
            if htot[s, k] < _TRUSTED_WEIGHT:
                lp = max(lp, lg)
        p = 10.0 ** max(lp, _FLOOR_LOG10)
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


@njit(cache=True, nogil=True, fastmath=SAFE_FASTMATH)
def take_back(hist: np.ndarray, htot: np.ndarray, s: int, k: int, z: float,
              amount: float) -> None:
    """Take back ``amount`` (at most 1) of the weight that the last ``tail_probability``
    call for signal k of series s learned for ``z`` (the same divisor g is still current,
    so the stored bin loses exactly ``amount`` of true weight)."""
    base = k * HIST_BINS
    n = htot.shape[1] // 3
    g = htot[s, n + k]
    b = bin_of(z)
    hist[s, base + b] -= amount / g
    htot[s, 2 * n + k] -= amount / g
    htot[s, k] -= amount

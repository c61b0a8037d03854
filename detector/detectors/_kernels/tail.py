"""The one meaning of ``anomaly_score``: z (or a tail probability) -> score in [0, 1).

``score`` is the probability that a normal sample is less extreme. Below a tail
probability of 1e-6 the plain ``1 - p`` would round to exactly 1.0 in float64 and every
extreme sample would tie; there the score keeps growing with -log10(p), staying below 1,
so more extreme still ranks higher. numpy and numba only.
"""

from __future__ import annotations

import math

from numba import njit

_LN10 = math.log(10.0)
_SQRT_PI = math.sqrt(math.pi)
_KNEE = 1e-6


@njit(cache=True, nogil=True)
def score_from_log10_tail(log10_p: float) -> float:
    """Score of a sample whose tail probability is 10**log10_p."""
    if log10_p > -6.0:
        return 1.0 - 10.0**log10_p
    return 1.0 - _KNEE / (1.0 + (-6.0 - log10_p))


@njit(cache=True, nogil=True)
def score_from_probability(p: float) -> float:
    """Score of a sample whose tail probability is ``p`` (1 or more scores 0); a logarithm
    only below the knee."""
    if p > _KNEE:
        return 1.0 - min(1.0, p)
    return score_from_log10_tail(math.log10(p))


@njit(cache=True, nogil=True)
def log10_two_sided_tail(z: float) -> float:
    """log10 of P(|N(0,1)| >= z), accurate far into the tail."""
    x = abs(z) / math.sqrt(2.0)
    if x < 20.0:
        p = math.erfc(x)
        if p > 0.0:
            return math.log10(p)
    # erfc(x) ~ exp(-x^2) / (x sqrt(pi)) for large x
    return (-x * x - math.log(x * _SQRT_PI)) / _LN10


@njit(cache=True, nogil=True)
def score_from_z(z: float) -> float:
    """Score of a Gaussian z-score (two-sided). The common case costs one erfc."""
    x = abs(z) / math.sqrt(2.0)
    if x < 3.3:  # tail probability above ~3e-6: no logarithms needed
        p = math.erfc(x)
        if p > _KNEE:
            return 1.0 - p
    return score_from_log10_tail(log10_two_sided_tail(z))

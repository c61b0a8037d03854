"""The empirical calibration shared by detectors: how rare is this value of a signal,
given that signal's own recent history?

A forgetting histogram per (series, signal) over log2(1 + z) gives the share of past
values at least as extreme; beyond everything seen, a power-law tail from the edge of
the largest values (or the Gaussian tail of z) keeps ordering them. Its index is
``tail_index``, or for a light-tailed signal the Gaussian tail's own slope at the edge,
at most 15 (``tail_index_of``).
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
    of the true value, monotone, no transcendental call). An infinite or NaN z (a value
    beyond the float range of its deviation) is in the top bin: ``int`` of either is the
    most negative int64, an index that wrote into the next series' row.
    """
    if not z < 1e300:
        return HIST_BINS - 1
    m, e = math.frexp(1.0 + max(z, 0.0))
    x = 2.0 * m  # 1 + z = x * 2**(e - 1), x in [1, 2)
    log2 = (e - 1) + (-0.34484843 * x + 2.02466578) * x - 1.67981735
    return min(int(log2 * _BIN_SCALE), HIST_BINS - 1)


# without reassociation: the band (``threshold_z``) adds the float32 bins in the order the
# score (``tail_probability``) adds them, so the two agree on the weight at or beyond
# every bin to the last bit
_IN_ORDER = {"nsz", "arcp", "contract", "afn"}


# A light tail: the weight at or beyond bin _LIGHT_HI (z >= 2.49) is at most _LIGHT_RATIO of
# that at or beyond bin _LIGHT_LO (z >= 1.72), with at least _LIGHT_MIN_WEIGHT samples' weight
# there. A Gaussian's ratio is 0.15; a Student t(3) standardised by its standard deviation
# has 0.39, the scenario suite's lognormal latency 0.30, a Poisson(1) count 0.24 (those
# keep ``tail_index``); a quantised round(N(3, 1)) 0.09. At 20 samples' weight beyond 1.72
# the ratio's noise is about 0.08.
_LIGHT_RATIO = 0.2
_LIGHT_MIN_WEIGHT = 20.0
_LIGHT_LO, _LIGHT_HI = 4, 5
# the light tail's index at most: 15 takes a 6-sigma sample past the alert rule's 0.9999
# from the usual edges (z 3.5-4.7); the Gaussian's own 17-29 there also turned the weekly
# scenario's Sunday-midnight profile mismatch (4-5 sigma, once a week, older than the
# calibration's memory) into three pages instead of one (warm, --full)
_LIGHT_MAX_INDEX = 15.0


@njit(cache=True, nogil=True, fastmath=_IN_ORDER)
def tail_index_of(
    hist: np.ndarray, htot: np.ndarray, s: int, k: int, top: int, tail_index: float
) -> float:
    """The index of the power law beyond the history's edge (bin ``top`` the highest with
    a sample's weight at or above it): ``tail_index``, or for a light-tailed signal the
    Gaussian tail's own slope d ln P / d ln(1 + z) at the edge (at most _LIGHT_MAX_INDEX),
    when that is steeper.

    The Gaussian tail steepens beyond any point, so a power law with its slope at the edge
    stays heavier than the Gaussian decay from the edge's own empirical probability: a
    light-tailed series' sample six sigmas out is rare enough to page (issue 20: with
    index 10 it scored 0.9997-0.9999, under the alert rule's 0.9999), and never rarer than
    that decay. Cheap: a sum over the low bins and a table lookup.
    """
    if top + 1 >= HIST_BINS:
        return tail_index
    base = k * HIST_BINS
    n = htot.shape[1] // 3
    below = 0.0  # the stored weight under bin _LIGHT_HI, from the low end (fewer bins)
    for j in range(_LIGHT_HI):
        below += hist[s, base + j]
    w_hi = max(0.0, htot[s, 2 * n + k] - below)
    w_lo = w_hi + hist[s, base + _LIGHT_LO]
    if w_lo * htot[s, n + k] < _LIGHT_MIN_WEIGHT or w_hi > _LIGHT_RATIO * w_lo:
        return tail_index
    return max(tail_index, min(GAUSS_INDEX[top + 1], _LIGHT_MAX_INDEX))


@njit(cache=True, nogil=True, fastmath=_IN_ORDER)
def tail_probability(
    hist: np.ndarray, htot: np.ndarray, s: int, k: int, z: float, decay: float, tail_index: float
) -> float:
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
        # never less than the upper half's weight, summed as a z there sums it: the stored
        # sum drifts from its bins by rounding, and drifted below them it made a z in bin
        # 7 rarer than one in bin 8 (a band cannot be the level set of such a score)
        upper = 0.0
        for j in range(HIST_BINS - 1, HIST_BINS // 2 - 1, -1):
            upper += hist[s, base + j]
        ge = max(max(0.0, htot[s, 2 * n + k] - below), upper) * g
    else:
        ge = 0.0
        for j in range(HIST_BINS - 1, b - 1, -1):
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
            lp -= tail_index_of(hist, htot, s, k, top, tail_index) * excess * _LOG10_2
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
def take_back(hist: np.ndarray, htot: np.ndarray, s: int, k: int, z: float, amount: float) -> None:
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


def _bin_edges() -> tuple[np.ndarray, np.ndarray]:
    """The smallest z of each bin (``bin_of`` inverted: the quadratic in the mantissa
    solved per octave, then moved by a few ulps to where the compiled ``bin_of`` itself
    changes bin, so a z on an edge is in the bin the edge opens) and the exact
    log2(1 + z) there."""
    a, b, c = -0.34484843, 2.02466578, -1.67981735
    lo = np.zeros(HIST_BINS + 1)
    for j in range(1, HIST_BINS):
        u = j / _BIN_SCALE
        octave = math.floor(u)
        f = u - octave
        top = (a * 2.0 + b) * 2.0 + c  # the approximation's value as x -> 2
        if f > top:
            y = 2.0 ** (octave + 1)
        else:  # a x^2 + b x + c = f, the root in [1, 2)
            x = (-b + math.sqrt(b * b - 4.0 * a * (c - f))) / (2.0 * a)
            y = x * 2.0**octave
        z = y - 1.0
        while bin_of(z) < j:
            z = float(np.nextafter(z, math.inf))
        while bin_of(float(np.nextafter(z, -math.inf))) >= j:
            z = float(np.nextafter(z, -math.inf))
        lo[j] = z
    lo[HIST_BINS] = math.inf
    return lo, np.log2(1.0 + lo)


BIN_LO, BIN_LOG2 = _bin_edges()
# the Gaussian tail's slope d ln P / d ln(1 + z) at each bin's lower edge, (1 + z)(z + 1/z)
GAUSS_INDEX = np.array([(1.0 + z) * (z + 1.0 / z) if 0.0 < z < math.inf else 0.0 for z in BIN_LO])


@njit(cache=True, nogil=True, fastmath=SAFE_FASTMATH)
def gaussian_z(log10_p: float) -> float:
    """The z whose two-sided Gaussian tail probability is 10**log10_p (Newton on
    ``log10_two_sided_tail``; used only while a history is young)."""
    z = math.sqrt(max(0.0, -2.0 * log10_p * math.log(10.0)))
    for _ in range(30):
        f = log10_two_sided_tail(z) - log10_p
        # d/dz log10 P(|N| >= z) = -2 phi(z) / (P ln 10); in logs for large z
        lphi = -0.5 * z * z - 0.5 * math.log(2.0 * math.pi)
        slope = -2.0 * math.exp(lphi - log10_two_sided_tail(z) * math.log(10.0)) / math.log(10.0)
        step = f / slope
        z = max(0.0, z - step)
        if abs(step) < 1e-13 * (1.0 + z):
            break
    return z


@njit(cache=True, nogil=True, fastmath=_IN_ORDER)
def threshold_z(
    hist: np.ndarray, htot: np.ndarray, s: int, k: int, t: float, tail_index: float, gauss_z: float
) -> float:
    """The smallest z that ``tail_probability`` (with the state as it is now) would call
    at most ``t``: every z at or beyond it is that rare, every z below it is not.

    ``tail_probability`` is non-increasing in z: a step per histogram bin within the
    history, and beyond it a power law (or the Gaussian tail while the history is young),
    so the threshold is a bin's lower edge or a root found in closed form. This is what
    makes the published band the score's own level set. ``gauss_z`` is
    ``gaussian_z(log10(t))``, which the caller computes once per ``t``.
    """
    base = k * HIST_BINS
    n = htot.shape[1] // 3
    g = htot[s, n + k]
    tot = htot[s, k]
    lt = math.log10(t)
    # the weight at or beyond each bin with the very sums tail_probability takes: from the
    # top for the upper bins, the stored sum less the bins below for the lower ones. The
    # history is the bins with at least one sample's weight at or beyond (allowing for
    # rounding); within it the probability is a ratio that falls bin by bin, so the
    # threshold is the lower edge of the lowest bin whose ratio is at most t.
    top = -1  # the highest bin with a sample's weight at or above it, as tail_probability
    acc = 0.0
    last_in = -1
    first_in = HIST_BINS
    upper = 0.0
    half = 0.0  # the upper half's weight (bins 8 to 15), once the loop has passed it
    for j in range(HIST_BINS - 1, -1, -1):
        h = hist[s, base + j]
        acc += h * g
        if top < 0 and acc >= 1.0:
            top = j
        upper += h
        if j >= HIST_BINS // 2:
            half = upper
            ge = upper * g
        else:
            below = 0.0
            for i in range(j):
                below += hist[s, base + i]
            ge = max(max(0.0, htot[s, 2 * n + k] - below), half) * g
        if ge >= 1.0 - 1e-6:
            if last_in < 0:
                last_in = j
            if (ge + 1.0) / (tot + 2.0) <= t:
                first_in = j
            elif top >= 0:
                break  # not that rare, nor is any bin below (and `top` is found)
    if first_in < HIST_BINS:
        return BIN_LO[first_in]
    # beyond the history (bins above last_in): per bin, a constant share of the weight,
    # then a power law from the edge of the largest values (or the Gaussian bounds, which
    # apply beyond the history only)
    young = tail_index > 0.0 and top >= 0 and tot < _TRUSTED_WEIGHT
    gauss_only = tail_index <= 0.0 or top < 0
    edge = (top + 1) / _BIN_SCALE
    if not gauss_only:
        tail_index = tail_index_of(hist, htot, s, k, top, tail_index)
    zb = math.inf
    for j in range(last_in + 1, HIST_BINS):
        if j >= HIST_BINS // 2:
            ge = 0.0
            for i in range(HIST_BINS - 1, j - 1, -1):
                ge += hist[s, base + i]
        else:  # j below the upper half: the loop above passed it
            below = 0.0
            for i in range(j):
                below += hist[s, base + i]
            ge = max(max(0.0, htot[s, 2 * n + k] - below), half)
        ge *= g
        c = math.log10((ge + 1.0) / (tot + 2.0))
        if c <= lt:  # already that rare at the bin's lower edge
            zb = BIN_LO[j]
            break
        if gauss_only:
            continue
        # c - tail_index * (log2(1 + z) - edge) * log10(2) <= lt
        need = edge + (c - lt) / (tail_index * _LOG10_2)
        if need < BIN_LOG2[j + 1]:
            zb = max(BIN_LO[j], 2.0**need - 1.0)
            break
    if young:
        return max(zb, gauss_z)
    if gauss_only:
        return min(zb, max(gauss_z, BIN_LO[last_in + 1]))
    return zb

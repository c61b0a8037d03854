"""Kernel of the spot family: DSPOT (drift-aware peaks over threshold, Siffer et al., KDD
2017) on the residuals of a robust exponentially weighted level, both tails.

Per series, per sample (scored against the state before it, then learned):

- *residual*: ``z = (x - level) / sigma``, with the Huber-clipped exponentially weighted
  level and mean absolute deviation of the robust family (``sigma`` = MAD * sqrt(pi/2));
  the level is the drift-aware part of DSPOT (the paper subtracts a moving mean);
- *tails*: per side, the excesses ``|z| - t`` of the residuals beyond the threshold ``t``
  (``threshold_sigmas``) are the peaks; their first two moments are exponentially
  weighted over the recent peaks (weight ``2 / (peaks + 1)``, the span of a window of
  ``peaks``; a plain running mean until that many), so the generalised Pareto fit (method
  of moments: ``gamma = (1 - m^2/v) / 2``, ``sigma_gpd = m (1 - gamma)``, gamma clamped to
  [0, 0.45]: at least an exponential tail, since a bounded tail fitted from a few dozen
  peaks puts an end point just past the largest one) costs O(1) per peak and four scalars
  per side. ``rate`` is each side's exceedance rate (an exponentially weighted share of
  the learned samples beyond ``t``);
- *tail probability* of a residual on one side: ``rate * (1 + gamma y / sigma_gpd) **
  (-1 / gamma)`` for an excess ``y`` over ``t``; below ``t``, ``rate ** (|z| / t)``
  (log-linear from 1 at the level to ``rate`` at ``t``). A side with fewer than
  ``min_peaks`` excesses is not calibrated yet (DSPOT's initial period): its samples
  score 0 and its band edge is NaN;
- *score*: ``1 - min(1, 2 p)`` for that side's tail probability ``p`` (two-sided, so it is
  about the probability that a normal sample is less extreme), through ``tail.py`` so the
  far tail keeps ranking; a score of at least ``1 - risk`` is exactly a sample beyond the
  band, whose edges are the DSPOT alarm thresholds ``z_q`` at ``risk / 2`` per side.

Learning protects the model: a sample beyond its side's DSPOT threshold at
``protect_risk / 2`` (far beyond the band: with the paper's choice, the band's own risk,
the fit never sees the samples just beyond the band, its tail shrinks and alarms feed
themselves; measured on NAB, docs/detectors.md) is not a peak and does not count in the
rate; the level learns it clipped at ``clip_sigmas``, and after ``adopt_samples`` such
samples in a row on one side the level adopts the new value (the scale is kept). Every
sample's level update is Huber-clipped at ``clip_sigmas``. The first ``warmup_samples``
samples learn the level and scale (running mean and MAD) and score 0.

Non-finite values score NaN and leave the state unchanged. numpy and numba only.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types

from detector.detectors._kernels import MAX_SCORED, SAFE_FASTMATH
from detector.detectors._kernels.tail import score_from_log10_tail

# per-series scalars; then, per tail (0: upper, 1: lower), TAIL_FIELDS more from S_TAIL
S_N, S_LEVEL, S_SCALE, S_RUN, S_M = range(5)
S_TAIL = 5
T_RATE, T_COUNT, T_MEAN, T_MEAN2 = range(4)  # T_MEAN(2): moments of the excesses
TAIL_FIELDS = 4
N_STATE = S_TAIL + 2 * TAIL_FIELDS
(
    P_ALPHA,
    P_CLIP,
    P_WARMUP,
    P_T,
    P_PEAKS,
    P_MIN_PEAKS,
    P_RATE_ALPHA,
    P_RISK,
    P_ADOPT,
    P_MIN_SCALE,
    P_PROTECT_RISK,
) = range(11)
N_PARAMS = 11

GAMMA_MIN = 0.0
GAMMA_MAX = 0.45
_LN10 = math.log(10.0)
_LOG10_2 = math.log10(2.0)
_RATE_MIN = 1e-9
MAD_TO_SIGMA = math.sqrt(math.pi / 2.0)

_f64 = types.Array(types.float64, 1, "C")
_f64_2 = types.Array(types.float64, 2, "C")
_i32 = types.Array(types.int32, 1, "C")
# slots, values, state, params, score, expected, lower, upper
SIGNATURE = types.void(_i32, _f64, _f64_2, _f64, _f64, _f64, _f64, _f64)


@njit(cache=True, nogil=True, fastmath=SAFE_FASTMATH)
def gpd_fit(n: float, m: float, m2: float) -> tuple[float, float]:
    """(gamma, sigma) of a generalised Pareto by the method of moments from the mean ``m``
    and mean square ``m2`` of ``n`` (n > 1) excesses; gamma clamped to [GAMMA_MIN,
    GAMMA_MAX] with the mean kept (sigma = mean * (1 - gamma)). The variance from the two
    moments loses precision only when v << m^2, where gamma is clamped to GAMMA_MIN
    anyway."""
    v = (m2 - m * m) * n / (n - 1.0)
    if m <= 0.0:
        return 0.0, 1e-12
    if v <= 0.0:
        g = GAMMA_MIN
    else:
        g = min(max(0.5 * (1.0 - m * m / v), GAMMA_MIN), GAMMA_MAX)
    return g, max(m * (1.0 - g), 1e-12)


@njit(cache=True, nogil=True, fastmath=SAFE_FASTMATH)
def log10_excess_tail(y: float, g: float, sg: float) -> float:
    """log10 P(excess > y) of a GPD(gamma=g >= 0, sigma=sg)."""
    if g < 1e-9:
        return -y / sg / _LN10
    return -math.log10(1.0 + g * y / sg) / g


@njit(cache=True, nogil=True, fastmath=SAFE_FASTMATH)
def log10_side_tail(yz: float, t: float, rate: float, g: float, sg: float) -> float:
    """log10 of one side's tail probability of a residual of |z| = ``yz``."""
    lr = math.log10(max(rate, _RATE_MIN))
    if yz <= t:
        return min(yz / t, 1.0) * lr
    return lr + log10_excess_tail(yz - t, g, sg)


@njit(cache=True, nogil=True, fastmath=SAFE_FASTMATH)
def alarm_threshold(t: float, rate: float, g: float, sg: float, q: float) -> float:
    """|z| whose side tail probability is ``q`` (the DSPOT threshold z_q)."""
    r = max(rate, _RATE_MIN)
    if q >= r:  # inside the threshold: invert the log-linear part
        return t * math.log10(q) / math.log10(r) if r < 1.0 else 0.0
    if g < 1e-9:
        return t + sg * math.log(r / q)
    return t + sg / g * ((q / r) ** (-g) - 1.0)


@njit(SIGNATURE, cache=True, nogil=True, fastmath=SAFE_FASTMATH)
def spot_score_learn(
    slots: np.ndarray,
    values: np.ndarray,
    state: np.ndarray,
    params: np.ndarray,
    score: np.ndarray,
    expected: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
) -> None:
    """Score then learn ``values[i]`` for series ``slots[i]``, in order."""
    alpha = params[P_ALPHA]
    clip = params[P_CLIP]
    warmup = params[P_WARMUP]
    t = params[P_T]
    k_peaks = params[P_PEAKS]
    w_peak = 2.0 / (k_peaks + 1.0)  # weight of a new peak in its side's moments
    min_peaks = params[P_MIN_PEAKS]
    rate_alpha = params[P_RATE_ALPHA]
    q = 0.5 * params[P_RISK]
    adopt = params[P_ADOPT]
    min_scale = params[P_MIN_SCALE]
    qp = 0.5 * params[P_PROTECT_RISK]
    for i in range(slots.shape[0]):
        s = slots[i]
        st = state[s]
        x = values[i]
        sigma = max(st[S_SCALE] * MAD_TO_SIGMA, min_scale + 1e-9 * abs(st[S_LEVEL]))
        # each side's fit and alarm threshold (in sigmas), from the state before x
        g_up = g_dn = 0.0
        sg_up = sg_dn = 1.0
        cal_up = st[S_TAIL + T_COUNT] >= min_peaks
        cal_dn = st[S_TAIL + TAIL_FIELDS + T_COUNT] >= min_peaks
        zq_up = zq_dn = zp_up = zp_dn = np.inf  # an uncalibrated tail: no band, no alarm
        if cal_up:
            o = S_TAIL
            g_up, sg_up = gpd_fit(min(st[o + T_COUNT], k_peaks), st[o + T_MEAN], st[o + T_MEAN2])
            zq_up = alarm_threshold(t, st[o + T_RATE], g_up, sg_up, q)
            zp_up = alarm_threshold(t, st[o + T_RATE], g_up, sg_up, qp)
        if cal_dn:
            o = S_TAIL + TAIL_FIELDS
            g_dn, sg_dn = gpd_fit(min(st[o + T_COUNT], k_peaks), st[o + T_MEAN], st[o + T_MEAN2])
            zq_dn = alarm_threshold(t, st[o + T_RATE], g_dn, sg_dn, q)
            zp_dn = alarm_threshold(t, st[o + T_RATE], g_dn, sg_dn, qp)
        if st[S_N] == 0:
            expected[i] = np.nan
            lower[i] = np.nan
            upper[i] = np.nan
        else:
            expected[i] = st[S_LEVEL]
            lower[i] = st[S_LEVEL] - zq_dn * sigma if cal_dn else np.nan
            upper[i] = st[S_LEVEL] + zq_up * sigma if cal_up else np.nan
        if not abs(x) <= MAX_SCORED:  # NaN, +-inf or too large to square
            score[i] = np.nan
            continue
        if st[S_N] == 0:
            st[S_N] = 1.0
            st[S_LEVEL] = x
            st[S_SCALE] = 0.0
            score[i] = 0.0
            continue
        r = x - st[S_LEVEL]
        z = r / sigma
        up = z >= 0.0
        yz = abs(z)
        warm = st[S_N] >= warmup
        # 1. score
        if warm and (cal_up if up else cal_dn):
            o = S_TAIL if up else S_TAIL + TAIL_FIELDS
            lp = _LOG10_2 + log10_side_tail(
                yz, t, st[o + T_RATE], g_up if up else g_dn, sg_up if up else sg_dn
            )
            score[i] = score_from_log10_tail(min(lp, 0.0))
        else:  # warming up, or this side's tail is not calibrated yet (DSPOT's init)
            score[i] = 0.0
        # 2. learn: a sample beyond the protection threshold (``protect_risk``) is not a
        # peak, counts in no rate and moves the level clipped, until ``adopt`` of them in
        # a row on one side make it the new level
        alarm = warm and yz > (zp_up if up else zp_dn)
        st[S_N] += 1.0
        if alarm:
            side = 1.0 if up else -1.0
            st[S_RUN] = st[S_RUN] + side if st[S_RUN] * side > 0.0 else side
            if adopt > 0.0 and abs(st[S_RUN]) >= adopt:
                st[S_LEVEL] = x
                st[S_RUN] = 0.0
                continue
        else:
            st[S_RUN] = 0.0
            if warm:
                st[S_M] += 1.0
                a = max(rate_alpha, 1.0 / st[S_M])
                o_up = S_TAIL + T_RATE
                o_dn = S_TAIL + TAIL_FIELDS + T_RATE
                st[o_up] += a * ((1.0 if z > t else 0.0) - st[o_up])
                st[o_dn] += a * ((1.0 if z < -t else 0.0) - st[o_dn])
                if yz > t:  # a peak: into this side's moments
                    o = S_TAIL if up else S_TAIL + TAIL_FIELDS
                    st[o + T_COUNT] += 1.0
                    w = max(w_peak, 1.0 / st[o + T_COUNT])
                    e = yz - t
                    st[o + T_MEAN] += w * (e - st[o + T_MEAN])
                    st[o + T_MEAN2] += w * (e * e - st[o + T_MEAN2])
        # exact running mean / MAD while warming up, then EW with Huber-clipped residuals
        a = max(alpha, 1.0 / st[S_N])
        if warm:
            limit = clip * sigma
            r = min(max(r, -limit), limit)
        st[S_LEVEL] += a * r
        st[S_SCALE] += a * (abs(r) - st[S_SCALE])

"""Kernel of the ensemble family, the default detector: up to four signals, each
calibrated by its own history, combined into one score.

Per series, per sample (scored against the state before it, then learned):

1. *level*: |z| of the value against a fast exponentially weighted level and variance
   (``alpha_fast``), which learn residuals clipped at ``clip_sigmas`` so one outlier does
   not drag them; after ``adopt_samples`` clipped residuals in a row on one side the level
   adopts the new value (a lasting shift becomes the new normal);
2. *cusum*: a two-sided CUSUM of the residuals against a slow level (``alpha_slow``),
   standardised (slack ``cusum_k``): a shift or drift too small to stand out sample by
   sample accumulates;
3. *shift* (``short`` > 0): |mean| of the last ``short`` of those standardised residuals;
4. *seasonal*: |z| of the residual of a daily profile of ``season_bins`` time-of-day bins
   (bin means learned at ``alpha_season`` a visit) on top of a slow level; used once the
   sample's bin has had ``season_min_visits`` visits. A sample is one visit, or the share
   dt / ``season_sample`` of one when it follows the previous sample sooner, so the profile
   learns as much a day at a 15 s scrape interval as from 5-minute data.

Each signal's tail probability is its *empirical* one (``calibration.py``): a forgetting
histogram of that signal's past values gives the share at least as extreme; beyond
everything seen, a power-law tail (``tail_index``) from the edge of the largest values.
The score is ``1 - min(1, k * min(p))`` over the k signals consulted (Bonferroni), so
0.999 means about one normal sample in a thousand scores as high; below 1e-6 it goes
through logarithms (``tail.py``), so extreme samples keep their order instead of tying
at 1.0. The first ``warmup_samples`` samples of a series are learned but score 0 and do
not enter the calibration (a fresh variance makes every early sample look extreme).
After a score of at least ``refractory_above``, the next ``refractory_samples`` samples
of the series count as ``refractory_factor`` times less rare: one incident is reported
at its onset rather than on every sample, while something far rarer still stands out.
Alarms in the first ``refractory_samples`` samples after the warm-up start no refractory
period (a young baseline's alarms are mostly its own noise).
A sample scoring at least ``refractory_above`` enters the calibration, the seasonal
profile and the level under it at ``alarm_weight`` only, so an incident does not make the
next one like it look normal, nor tomorrow at the same time look abnormal.

Non-finite values score NaN and leave the state unchanged. numpy and numba only.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types

from detector.detectors._kernels import SAFE_FASTMATH
from detector.detectors._kernels.calibration import tail_probability as tail_p
from detector.detectors._kernels.calibration import take_back
from detector.detectors._kernels.tail import score_from_probability

# per-series scalar state, one row of ``state`` per slot: the columns every series needs,
# then those of the seasonal signal, then those of the shift signal; a family allocates
# only the columns of the signals it has (``state_columns``), and the kernel touches no
# other (S_PERIOD: the series' own seasonal period in whole ms, 0: the family's)
(S_N, S_M1, S_V1, S_M2, S_V2, S_LAST_FIRE, S_CUP, S_CDOWN, S_RUN,
 S_L, S_SV, S_PERIOD, S_LAST_T,
 S_RSUM, S_RPOS) = range(15)
N_CORE, N_SEASONAL, N_STATE = 9, 13, 15


def state_columns(season_bins: int, short_samples: int) -> int:
    """Columns of ``state`` a family with these signals needs."""
    return N_STATE if short_samples > 0 else N_SEASONAL if season_bins > 0 else N_CORE

# parameters, one vector for the family
(P_ALPHA_FAST, P_ALPHA_SLOW, P_ALPHA_SEASON, P_CLIP, P_DECAY, P_SHORT, P_BINS, P_PERIOD_MS,
 P_MIN_VISITS, P_REFRACTORY, P_REFRACTORY_ABOVE, P_BAND, P_CUSUM_K, P_WARMUP,
 P_REFRACTORY_FACTOR, P_ADOPT, P_TAIL_INDEX, P_ALARM_WEIGHT, P_SEASON_SAMPLE_MS) = range(19)
N_PARAMS = 19

_f64 = types.Array(types.float64, 1, "C")
_f64_2 = types.Array(types.float64, 2, "C")
_f32_2 = types.Array(types.float32, 2, "C")
_i32 = types.Array(types.int32, 1, "C")
_i64 = types.Array(types.int64, 1, "C")
# slots, ts_ms, values, state, ring, season, visits, hist, htot, params, score, expected,
# lower, upper
SIGNATURE = types.void(_i32, _i64, _f64, _f64_2, _f32_2, _f32_2, _f32_2, _f32_2, _f64_2, _f64,
                       _f64, _f64, _f64, _f64)


@njit(SIGNATURE, cache=True, nogil=True, fastmath=SAFE_FASTMATH)
def ensemble_score_learn(
    slots: np.ndarray, ts_ms: np.ndarray, values: np.ndarray, state: np.ndarray,
    ring: np.ndarray, season: np.ndarray, visits: np.ndarray, hist: np.ndarray,
    htot: np.ndarray, params: np.ndarray, score: np.ndarray, expected: np.ndarray,
    lower: np.ndarray, upper: np.ndarray,
) -> None:
    """Score then learn ``values[i]`` (at ``ts_ms[i]``) for series ``slots[i]``, in order."""
    a1 = params[P_ALPHA_FAST]
    a2 = params[P_ALPHA_SLOW]
    sa = params[P_ALPHA_SEASON]
    clip = params[P_CLIP]
    decay = params[P_DECAY]
    short = int(params[P_SHORT])
    nbins = int(params[P_BINS])
    period = params[P_PERIOD_MS]
    min_visits = params[P_MIN_VISITS]
    refractory = params[P_REFRACTORY]
    refractory_above = params[P_REFRACTORY_ABOVE]
    band = params[P_BAND]
    cusum_k = params[P_CUSUM_K]
    warmup = params[P_WARMUP]
    refractory_factor = params[P_REFRACTORY_FACTOR]
    adopt = params[P_ADOPT]
    tail_index = params[P_TAIL_INDEX]
    alarm_weight = params[P_ALARM_WEIGHT]
    season_sample = params[P_SEASON_SAMPLE_MS]
    shift_signal = 2 + (nbins > 0)  # calibration column of the shift signal
    family_period = max(np.int64(1), np.int64(round(period)))  # whole ms
    for i in range(slots.shape[0]):
        s = slots[i]
        x = values[i]
        st = state[s]
        b = 0
        if nbins > 0:  # time of day in whole ms, so a sample on a bin's edge is in it
            pms = np.int64(st[S_PERIOD]) if st[S_PERIOD] > 0.0 else family_period
            b = min(int((ts_ms[i] % pms) * nbins // pms), nbins - 1)
        seasonal_on = nbins > 0 and visits[s, b] >= min_visits
        # while a series is young its weights are those of a plain running mean and
        # variance (1/(n+1)): a fixed small weight from a zero start would leave the
        # variance far too small for hundreds of samples and make noise look extreme
        young = 1.0 / (st[S_N] + 1.0)
        b1 = max(a1, young)
        b2 = max(a2, young)
        s1 = math.sqrt(st[S_V1])
        ss = math.sqrt(st[S_SV]) if nbins > 0 else 0.0
        if st[S_N] == 0:
            expected[i] = np.nan
            lower[i] = np.nan
            upper[i] = np.nan
        elif seasonal_on:
            expected[i] = st[S_L] + season[s, b]
            lower[i] = expected[i] - band * ss
            upper[i] = expected[i] + band * ss
        else:
            expected[i] = st[S_M1]
            lower[i] = st[S_M1] - band * s1
            upper[i] = st[S_M1] + band * s1
        if not math.isfinite(x):
            score[i] = np.nan
            continue
        if st[S_N] == 0:
            st[S_M1] = x
            st[S_M2] = x
            if nbins > 0:
                st[S_L] = x
        # 1. level
        d1 = x - st[S_M1]
        if s1 > 0.0:
            z1 = abs(d1) / s1
        else:
            z1 = 0.0 if d1 == 0.0 else 50.0
        # 2. shift: mean of the last `short` standardised residuals against the slow level
        s2 = math.sqrt(st[S_V2])
        e2 = (x - st[S_M2]) / s2 if s2 > 0.0 else 0.0
        zs = 0.0
        if short > 0:
            r = int(st[S_RPOS])
            st[S_RPOS] = r + 1 if r + 1 < short else 0
            st[S_RSUM] += e2 - ring[s, r]
            ring[s, r] = e2
            zs = abs(st[S_RSUM]) / math.sqrt(short)
        # 3. cusum: two-sided CUSUM of the same standardised residuals, slack cusum_k
        st[S_CUP] = max(0.0, st[S_CUP] + e2 - cusum_k)
        st[S_CDOWN] = max(0.0, st[S_CDOWN] - e2 - cusum_k)
        zc = max(st[S_CUP], st[S_CDOWN])
        warm = st[S_N] >= warmup  # before, levels learn but nothing is scored or calibrated
        p = 1.0  # the smallest tail probability among the signals consulted
        k = 2.0
        if warm:
            p = min(tail_p(hist, htot, s, 0, z1, decay, tail_index),
                    tail_p(hist, htot, s, 1, zc, decay, tail_index))
            if short > 0:
                p = min(p, tail_p(hist, htot, s, shift_signal, zs, decay, tail_index))
                k = 3.0
        # 4. seasonal (learned after the score, below)
        e3 = 0.0
        if nbins > 0:
            e3 = x - st[S_L] - season[s, b]
            if seasonal_on and warm:
                z3 = abs(e3) / ss if ss > 0.0 else 0.0
                p = min(p, tail_p(hist, htot, s, 2, z3, decay, tail_index))
                k += 1.0
        # Bonferroni over the k signals, k times less rare during the refractory period;
        # the score is 1 - kp, through logarithms only when that would round to 1
        kp = k * p
        if not warm:
            sc = 0.0
        elif st[S_N] - st[S_LAST_FIRE] < refractory:
            sc = score_from_probability(kp * refractory_factor)
        else:
            sc = score_from_probability(kp)
            # a young series' alarms start no refractory period: its baseline is too
            # young for one to mean an incident is under way, and silencing it would
            # leave it deaf to a real one
            if sc >= refractory_above and st[S_N] >= warmup + refractory:
                st[S_LAST_FIRE] = st[S_N]
        score[i] = sc
        alarm = warm and sc >= refractory_above
        if nbins > 0:  # learn the seasonal profile and the level under it
            # an alarming sample at alarm_weight only: an incident must not teach the
            # profile that tomorrow at this time looks like it
            w = alarm_weight if alarm else 1.0
            resid = x - st[S_L]
            st[S_L] += w * b2 * (x - season[s, b] - st[S_L])
            # a sample is one visit of its bin, or the share dt / season_sample of one when
            # samples come closer together: a 15 s scrape makes as many visits a day as
            # 5-minute data, so the profile remembers days whatever the scrape interval
            f = 1.0
            if st[S_N] > 0:
                f = min(1.0, max(0.0, (ts_ms[i] - st[S_LAST_T]) / season_sample))
            if visits[s, b] == 0:
                season[s, b] = resid
            else:
                season[s, b] += w * sa * f * (resid - season[s, b])
            visits[s, b] += f
            st[S_SV] = (1.0 - b1) * (st[S_SV] + b1 * e3 * e3)
        if alarm and alarm_weight < 1.0:
            # an alarming sample enters the calibration at alarm_weight only, so the next
            # incident is not judged against this one as if it were normal
            back = 1.0 - alarm_weight
            take_back(hist, htot, s, 0, z1, back)
            take_back(hist, htot, s, 1, zc, back)
            if short > 0:
                take_back(hist, htot, s, shift_signal, zs, back)
            if seasonal_on:
                take_back(hist, htot, s, 2, z3, back)
        # learn the fast level from a clipped residual; a run of ``adopt`` clipped residuals
        # on one side is a lasting shift: the level jumps to it, the variance is kept
        if s1 > 0.0 and abs(d1) > clip * s1:
            side = 1.0 if d1 > 0.0 else -1.0
            st[S_RUN] = st[S_RUN] + side if st[S_RUN] * side > 0.0 else side
            if adopt > 0.0 and abs(st[S_RUN]) >= adopt:
                st[S_M1] = x
                st[S_RUN] = 0.0
                d1 = 0.0
            else:
                d1 = clip * s1 * side
        else:
            st[S_RUN] = 0.0
        st[S_M1] += b1 * d1
        st[S_V1] = (1.0 - b1) * (st[S_V1] + b1 * d1 * d1)
        d2 = x - st[S_M2]
        st[S_M2] += b2 * d2
        st[S_V2] = (1.0 - b2) * (st[S_V2] + b2 * d2 * d2)
        if nbins > 0:
            st[S_LAST_T] = ts_ms[i] if st[S_N] == 0 else max(st[S_LAST_T], float(ts_ms[i]))
        st[S_N] += 1.0

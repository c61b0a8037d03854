"""Kernel of the ensemble family, the default detector: one or two signals, each
calibrated by its own history, combined into one score that the published band agrees with.

Per series, per sample (scored against the state before it, then learned):

1. *level*: |z| of the value against a fast exponentially weighted level and variance
   (``alpha_fast``); normal samples teach them with residuals clipped at ``clip_sigmas``.
   With a daily profile the level watches the value less its time-of-day bin's offset
   (once the bin has one), so a daily wave is not a level shift to it;
2. *seasonal*: |z| of the residual of a daily profile of ``season_bins`` time-of-day bins
   (bin means learned at ``alpha_season`` a visit) on top of a slow level (``alpha_slow``);
   used once the sample's bin has had ``season_min_visits`` visits. A sample is one visit,
   or the share dt / ``season_sample`` of one when it follows the previous sample sooner.

Each signal's tail probability is its *empirical* one (``calibration.py``). The score is
``1 - min(1, k * min(p))`` over the k signals consulted (Bonferroni), through logarithms
below 1e-6 (``tail.py``). The first ``warmup_samples`` samples are learned but score 0.

*The band is the score's level set.* ``lower``/``upper`` are where the score reaches the
band's level (tail probability ``band_p``, 0.001 for 3.29 sigmas): each signal's
calibration is inverted (``calibration.threshold_z``) and the band is the intersection of
the signals' intervals. A value outside it scores at least the band's level, a value
inside scores below it.

*Anomalous samples teach nothing.* A sample outside the band (k min(p) <= band_p) enters
no variance, no level, no profile and no calibration: the expectation holds and a lasting
deviation keeps scoring. Nor do the samples inside the band that continue a run (same
side, still in the series' own outer 5%: ``_RUN_P``): they teach at a tenth of their weight,
so the band cannot widen from the anomaly's side before adoption. One exception: a run the
series came back from was its own tail, and its last extreme enters the calibration at
half weight then, once the calibration holds 100 samples' weight (without it a lumpy tail,
such as a low-rate counter's, is never learned). The seasonal profile is the other
exception: a bin
not yet in use learns an anomalous sample as a normal one (clipped; a bin never visited
starts from the offset of the bin before it), so a young profile that flags a daily wave
still converges; a bin
in use learns it at a tenth of a visit. A run stops when the series comes back, or when the
deviation has lasted ``adopt_ms`` (a time, not a sample count): then the level and the
profile's level move by the run's mean deviation, the series' adoption count goes up and
its time is kept (``S_ADOPTIONS``, ``S_ADOPT_T``) for the alert's resolution to say so.
A run ends at the second sample in a row that has come back: on the other side of the
expected value, or no longer in the series' outer 5% (a deviation hovering at the band's
edge keeps its run, and one noisy sample of a shifted series does not restart its hour).

Non-finite values score NaN and leave the state unchanged. numpy and numba only.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types

from detector.detectors._kernels import MAX_SCORED, SAFE_FASTMATH
from detector.detectors._kernels.calibration import gaussian_z, take_back, threshold_z
from detector.detectors._kernels.calibration import tail_probability as tail_p
from detector.detectors._kernels.tail import score_from_probability

# per-series scalar state, one row of ``state`` per slot: the columns every series needs,
# then those of the seasonal signal; a family allocates only the columns of the signals it
# has (``state_columns``). S_PERIOD: the series' own seasonal period in whole ms (0: the
# family's). The run: its side (+1/-1, 0 none), start time, samples, and its mean deviation
# from the level (S_RUN_D1) and from the seasonal expectation (S_RUN_E3).
(
    S_N,
    S_M1,
    S_V1,
    S_RUN_SIDE,
    S_RUN_SINCE,
    S_RUN_N,
    S_RUN_D1,
    S_RUN_V1,
    S_ADOPTIONS,
    S_ADOPT_T,
    S_BACK,  # samples in a row back from the open run (this column held a streak before)
    S_ONSET_Z1,
    S_L,
    S_SV,
    S_PERIOD,
    S_LAST_T,
    S_RUN_E3,
    S_RUN_V3,
    S_ONSET_Z3,
) = range(19)
N_CORE, N_SEASONAL = 12, 19
N_STATE = N_SEASONAL
_RUN_ALPHA = 0.05  # the run's mean deviation weighs about its last 20 samples
# weight at which a single anomalous sample between normal ones enters the calibration
# (once the next sample is normal): an isolated extreme is the series' own tail (seen twice
# within the calibration's memory, a value is no longer beyond it), a run of them is not
_ISOLATED_WEIGHT = 0.5
_ISOLATED_MIN_WEIGHT = 100.0  # calibration weight (samples) before that applies
# weight at which an anomalous sample teaches the seasonal profile (a share of a visit),
# and at which a sample inside the band that continues a run teaches everything
_FLAGGED_WEIGHT = 0.1
# a run goes on while its samples stay in the series' own outer 5% on its side (the
# signals' smallest tail probability, Bonferroni-scaled, at most _RUN_P), in the band or not
_RUN_P = 0.05
# samples in a row back from a run (on the other side, or out of the outer 5%) that end it:
# one is noise on a shifted series (a -6 sigma shift with a 3-sigma sample back towards the
# old level ended its run four minutes before adoption and restarted the hour), two in a
# row are rare (p ~ 1e-7 a pair for that shift)
_BACK_SAMPLES = 2.0


def state_columns(season_bins: int) -> int:
    """Columns of ``state`` a family with these signals needs."""
    return N_SEASONAL if season_bins > 0 else N_CORE


# parameters, one vector for the family
(
    P_ALPHA_FAST,
    P_ALPHA_SLOW,
    P_ALPHA_SEASON,
    P_CLIP,
    P_DECAY,
    P_BINS,
    P_PERIOD_MS,
    P_MIN_VISITS,
    P_BAND_P,
    P_WARMUP,
    P_ADOPT_MS,
    P_TAIL_INDEX,
    P_SEASON_SAMPLE_MS,
) = range(13)
N_PARAMS = 13

_f64 = types.Array(types.float64, 1, "C")
_f64_2 = types.Array(types.float64, 2, "C")
_f32_2 = types.Array(types.float32, 2, "C")
_i32 = types.Array(types.int32, 1, "C")
_i64 = types.Array(types.int64, 1, "C")
# slots, ts_ms, values, state, season, visits, hist, htot, params, score, expected, lower,
# upper
SIGNATURE = types.void(
    _i32, _i64, _f64, _f64_2, _f32_2, _f32_2, _f32_2, _f64_2, _f64, _f64, _f64, _f64, _f64
)


@njit(SIGNATURE, cache=True, nogil=True, fastmath=SAFE_FASTMATH)
def ensemble_score_learn(
    slots: np.ndarray,
    ts_ms: np.ndarray,
    values: np.ndarray,
    state: np.ndarray,
    season: np.ndarray,
    visits: np.ndarray,
    hist: np.ndarray,
    htot: np.ndarray,
    params: np.ndarray,
    score: np.ndarray,
    expected: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
) -> None:
    """Score then learn ``values[i]`` (at ``ts_ms[i]``) for series ``slots[i]``, in order."""
    a1 = params[P_ALPHA_FAST]
    a2 = params[P_ALPHA_SLOW]
    sa = params[P_ALPHA_SEASON]
    clip = params[P_CLIP]
    decay = params[P_DECAY]
    nbins = int(params[P_BINS])
    period = params[P_PERIOD_MS]
    min_visits = params[P_MIN_VISITS]
    band_p = params[P_BAND_P]
    warmup = params[P_WARMUP]
    adopt_ms = params[P_ADOPT_MS]
    tail_index = params[P_TAIL_INDEX]
    season_sample = params[P_SEASON_SAMPLE_MS]
    family_period = max(np.int64(1), np.int64(round(period)))  # whole ms
    # the Gaussian z of the band's level per signal, with one signal and with two
    gauss_z1 = gaussian_z(math.log10(band_p))
    gauss_z2 = gaussian_z(math.log10(band_p / 2.0))
    for i in range(slots.shape[0]):
        s = slots[i]
        x = values[i]
        st = state[s]
        b = 0
        if nbins > 0:  # time of day in whole ms, so a sample on a bin's edge is in it
            pms = np.int64(st[S_PERIOD]) if st[S_PERIOD] > 0.0 else family_period
            b = min(int((ts_ms[i] % pms) * nbins // pms), nbins - 1)
        seasonal_on = nbins > 0 and visits[s, b] >= min_visits
        # the level signal watches the value with its bin's learned offset taken off, so a
        # daily wave is not a level shift to it (a bin never visited has no offset yet)
        off = season[s, b] if nbins > 0 and visits[s, b] > 0.0 else 0.0
        # while a series is young its weights are those of a plain running mean and
        # variance (1/(n+1)): a fixed small weight from a zero start would leave the
        # variance far too small for hundreds of samples and make noise look extreme
        young = 1.0 / (st[S_N] + 1.0)
        b1 = max(a1, young)
        b2 = max(a2, young)
        s1 = math.sqrt(st[S_V1])
        ss = math.sqrt(st[S_SV]) if nbins > 0 else 0.0
        warm = st[S_N] >= warmup  # before, levels learn but nothing is scored or calibrated
        k = 2.0 if seasonal_on else 1.0  # signals consulted
        t = band_p / k  # the tail probability at the band's edge, per signal
        centre = st[S_M1] + off
        if seasonal_on and st[S_N] > 0:
            centre = st[S_L] + season[s, b]
        if st[S_N] == 0:
            expected[i] = np.nan
            lower[i] = np.nan
            upper[i] = np.nan
        else:
            expected[i] = centre
            if warm:  # where the score reaches the band's level, signal by signal
                lo = -math.inf
                hi = math.inf
                gz = gauss_z2 if seasonal_on else gauss_z1
                z = threshold_z(hist, htot, s, 0, t, tail_index, gz)
                if s1 > 0.0 or z <= 50.0:  # a flat level: any change is z = 50
                    lo = off + st[S_M1] - z * s1
                    hi = off + st[S_M1] + z * s1
                if seasonal_on:
                    z = threshold_z(hist, htot, s, 1, t, tail_index, gz)
                    if ss > 0.0 or z <= 50.0:
                        lo = max(lo, centre - z * ss)
                        hi = min(hi, centre + z * ss)
                lower[i] = lo
                upper[i] = hi
            else:  # not scored yet: no band
                lower[i] = np.nan
                upper[i] = np.nan
        if not abs(x) <= MAX_SCORED:  # NaN, +-inf or too large to square
            score[i] = np.nan
            continue
        if st[S_N] == 0:
            st[S_M1] = x
            centre = x
            if nbins > 0:
                st[S_L] = x
        # 1. level
        d1 = x - off - st[S_M1]
        if s1 > 0.0:
            z1 = abs(d1) / s1
        else:
            z1 = 0.0 if d1 == 0.0 else 50.0
        p = 1.0  # the smallest tail probability among the signals consulted
        if warm:
            p = tail_p(hist, htot, s, 0, z1, decay, tail_index)
        # 2. seasonal
        e3 = 0.0
        z3 = 0.0
        if nbins > 0:
            e3 = x - st[S_L] - season[s, b]
            if seasonal_on and warm:
                if ss > 0.0:
                    z3 = abs(e3) / ss
                else:
                    z3 = 0.0 if e3 == 0.0 else 50.0
                p = min(p, tail_p(hist, htot, s, 1, z3, decay, tail_index))
        anomalous = warm and p <= t  # outside the band
        score[i] = score_from_probability(k * p) if warm else 0.0
        dev = x - centre
        side = 1.0 if dev > 0.0 else -1.0
        if anomalous:
            # the expectation, the variance and the calibration learn nothing from it (the
            # calibration learns a single one later, once the next sample is normal)
            take_back(hist, htot, s, 0, z1, 1.0)
            st[S_ONSET_Z1] = z1 if warm else -1.0
            if nbins > 0:
                st[S_ONSET_Z3] = z3 if seasonal_on else -1.0
            if seasonal_on:
                take_back(hist, htot, s, 1, z3, 1.0)
            if nbins > 0 and st[S_N] > 0:
                # the profile (not the level under it) learns it: a bin not yet in use
                # (fewer than season_min_visits) has no expectation of its own to keep and
                # learns it in full, or a young profile that flags a daily wave (or its
                # own first noisy sample) stays wrong; a bin in use learns it a little
                # (an hour of anomaly moves it about 1%)
                f = min(1.0, max(0.0, (ts_ms[i] - st[S_LAST_T]) / season_sample))
                resid = x - st[S_L]
                if visits[s, b] == 0.0:
                    # an anomalous first visit starts from the bin before (a profile is
                    # continuous at its bins' edges) and is learned clipped below: taken
                    # in full, one -18 sigma sample at a bin's first visit made it the
                    # bin's offset and the next normal samples paged
                    pb = b - 1 if b > 0 else nbins - 1
                    season[s, b] = season[s, pb] if visits[s, pb] > 0.0 else 0.0
                if not seasonal_on:  # clipped, so one extreme moves it little
                    r = resid - season[s, b]
                    if s1 > 0.0 and abs(r) > clip * s1:
                        r = clip * s1 * (1.0 if r > 0.0 else -1.0)
                    season[s, b] += max(sa * f, f / (visits[s, b] + f)) * r
                else:
                    season[s, b] += _FLAGGED_WEIGHT * sa * f * (resid - season[s, b])
                visits[s, b] += f if not seasonal_on else _FLAGGED_WEIGHT * f
            st[S_BACK] = 0.0
            if st[S_RUN_SIDE] != side:  # a new run
                st[S_RUN_SIDE] = side
                st[S_RUN_SINCE] = float(ts_ms[i])
                st[S_RUN_N] = 0.0
                st[S_RUN_D1] = 0.0
                st[S_RUN_V1] = 0.0
                if nbins > 0:
                    st[S_RUN_E3] = 0.0
                    st[S_RUN_V3] = 0.0
            st[S_RUN_N] += 1.0
            w = max(1.0 / st[S_RUN_N], _RUN_ALPHA)
            r = d1 - st[S_RUN_D1]
            st[S_RUN_D1] += w * r
            st[S_RUN_V1] = (1.0 - w) * (st[S_RUN_V1] + w * r * r)
            if nbins > 0:
                r = e3 - st[S_RUN_E3]
                st[S_RUN_E3] += w * r
                st[S_RUN_V3] = (1.0 - w) * (st[S_RUN_V3] + w * r * r)
            if adopt_ms > 0.0 and ts_ms[i] - st[S_RUN_SINCE] >= adopt_ms:
                # lasted adopt_ms: the new level is the normal now, with at least the
                # spread the run showed around it (the calibration and the profile's shape
                # are kept)
                st[S_M1] += st[S_RUN_D1]
                st[S_V1] = max(st[S_V1], st[S_RUN_V1])
                if nbins > 0:
                    st[S_L] += st[S_RUN_E3]
                    st[S_SV] = max(st[S_SV], st[S_RUN_V3])
                st[S_ADOPTIONS] += 1.0
                st[S_ADOPT_T] = float(ts_ms[i])
                st[S_RUN_SIDE] = 0.0
        else:
            # a sample inside the band that continues an open run (same side, still in the
            # series' outer _RUN_P) is learned at _FLAGGED_WEIGHT only, so the band cannot
            # widen from the anomaly's side and end a lasting deviation before adopt_ms
            cw = 1.0
            came_back = False
            if st[S_RUN_SIDE] != 0.0:
                if side != st[S_RUN_SIDE] or k * p > _RUN_P:
                    st[S_BACK] += 1.0
                else:
                    st[S_BACK] = 0.0
                if st[S_BACK] >= _BACK_SAMPLES:
                    st[S_RUN_SIDE] = 0.0  # back: the run is over
                    st[S_BACK] = 0.0
                    came_back = True
                else:
                    cw = _FLAGGED_WEIGHT
            # a run the series came back from was its own tail: its last extreme enters
            # the calibration at half weight (not while the calibration is young: a young
            # variance's extremes would set the tail's edge, and a 10-sigma sample at
            # sample 300 scored 0.986; not while the run goes on: a shift hovering at the
            # band's edge would teach the tail its own samples and widen the band)
            if came_back and htot[s, 0] >= _ISOLATED_MIN_WEIGHT:
                if st[S_ONSET_Z1] >= 0.0:
                    take_back(hist, htot, s, 0, st[S_ONSET_Z1], -_ISOLATED_WEIGHT)
                if nbins > 0 and st[S_ONSET_Z3] >= 0.0:
                    take_back(hist, htot, s, 1, st[S_ONSET_Z3], -_ISOLATED_WEIGHT)
            if cw < 1.0:
                # and not at all by the calibration: the run's samples are not the
                # series' own tail unless it comes back (above); a tenth of each would
                # add up over an hour and move the band's edge outwards
                if warm:
                    take_back(hist, htot, s, 0, z1, 1.0)
                    if seasonal_on:
                        take_back(hist, htot, s, 1, z3, 1.0)
                b1 *= cw
                b2 *= cw
            if nbins > 0:  # learn the seasonal profile and the level under it
                resid = x - st[S_L]
                st[S_L] += b2 * (x - season[s, b] - st[S_L])
                # a sample is one visit of its bin, or the share dt / season_sample of one
                # when samples come closer together: a 15 s scrape makes as many visits a
                # day as 5-minute data, so the profile remembers days at any interval
                f = 1.0
                if st[S_N] > 0:
                    f = cw * min(1.0, max(0.0, (ts_ms[i] - st[S_LAST_T]) / season_sample))
                # a young bin is the plain mean of its visits so far (a share f of a
                # visit weighs f / (visits + f)): at a 15 s scrape its first sample alone
                # would otherwise be its offset for days
                if visits[s, b] == 0:
                    season[s, b] = resid
                else:
                    season[s, b] += max(sa * f, f / (visits[s, b] + f)) * (resid - season[s, b])
                visits[s, b] += f
                st[S_SV] = (1.0 - b1) * (st[S_SV] + b1 * e3 * e3)
            # learn the fast level from a clipped residual
            if s1 > 0.0 and abs(d1) > clip * s1:
                d1 = clip * s1 * (1.0 if d1 > 0.0 else -1.0)
            st[S_M1] += b1 * d1
            st[S_V1] = (1.0 - b1) * (st[S_V1] + b1 * d1 * d1)
        if nbins > 0:
            st[S_LAST_T] = ts_ms[i] if st[S_N] == 0 else max(st[S_LAST_T], float(ts_ms[i]))
        st[S_N] += 1.0

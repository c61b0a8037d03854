"""Slow, obviously-correct Python versions of each detector family, one series at a time.

They follow the documented algorithm line by line with plain floats, so a numba kernel
that compiles to something else (fast-math, integer conversions, a missed state update)
disagrees with them.
"""

from __future__ import annotations

import math

import numpy as np

from detector.config import EnsembleParams, RobustParams, SpotParams
from detector.detectors._kernels import MAX_SCORED

MAD_TO_SIGMA = math.sqrt(math.pi / 2.0)


def f32(x: float) -> float:
    """Round as the kernels' float32 tables store."""
    return float(np.float32(x))


def _log10_two_sided(z: float) -> float:
    x = abs(z) / math.sqrt(2.0)
    if x < 20.0 and math.erfc(x) > 0.0:
        return math.log10(math.erfc(x))
    return (-x * x - math.log(x * math.sqrt(math.pi))) / math.log(10.0)


def _score_from_log10(lp: float) -> float:
    return 1.0 - 10.0**lp if lp > -6.0 else 1.0 - 1e-6 / (1.0 + (-6.0 - lp))


def _score_from_z(z: float) -> float:
    return _score_from_log10(_log10_two_sided(z))


def robust(params: RobustParams, values: list[float]) -> list[float]:
    n = level = scale = 0.0
    out = []
    for x in values:
        sigma = max(scale * MAD_TO_SIGMA, params.min_scale + 1e-9 * abs(level))
        if not abs(x) <= MAX_SCORED:  # NaN, +-inf or beyond what is scored
            out.append(math.nan)
            continue
        p = 0.0 if n < params.warmup_samples else _score_from_z(abs(x - level) / sigma)
        out.append(p)
        if p >= params.protect_above:
            continue
        n += 1
        if n == 1:
            level, scale = x, 0.0
            continue
        a = max(params.alpha, 1.0 / n)
        r = x - level
        if n > params.warmup_samples:
            r = min(max(r, -params.clip_sigmas * sigma), params.clip_sigmas * sigma)
        level += a * r
        scale += a * (abs(r) - scale)
    return out


def _approx_log2(y: float) -> float:
    """log2(y) as the kernels approximate it: the exponent plus a quadratic in the mantissa."""
    m, e = math.frexp(y)
    x = 2.0 * m
    return (e - 1) + (-0.34484843 * x + 2.02466578) * x - 1.67981735


def _bin_floor(j: int, bins: int) -> float:
    """The smallest z of calibration bin j (bisection on the approximate log2)."""
    target = j * math.log2(math.exp(4.0)) / bins
    lo, hi = 0.0, 2.0 ** (target + 1.0)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _approx_log2(1.0 + mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi


class _Calibration:
    """Empirical tail of one signal: a forgetting histogram over log2(1 + z), its bins
    stored as float32 like the ensemble's table (their sum is kept in float64)."""

    BINS = 16

    def __init__(self) -> None:
        self.hist = [0.0] * self.BINS  # true weight / self.scale
        self.stored = 0.0  # sum of self.hist
        self.scale = 1.0
        self.total = 0.0
        self.last_bin = 0
        self.last_z = 0.0

    def tail(self, z: float, decay: float, tail_index: float) -> float:
        """log10 of the share of past values at least as extreme as z; then learn z."""
        m, e = math.frexp(1.0 + z)
        x = 2.0 * m
        log2 = (e - 1) + (-0.34484843 * x + 2.02466578) * x - 1.67981735
        width = math.log2(math.exp(4.0)) / self.BINS  # bin width in log2(1 + z)
        b = min(int(log2 / width), self.BINS - 1)
        if b < self.BINS // 2:  # at least the upper half's weight, summed from the top
            upper = sum(reversed(self.hist[self.BINS // 2 :]))
            ge = max(max(0.0, self.stored - sum(self.hist[:b])), upper) * self.scale
        else:
            ge = sum(reversed(self.hist[b:])) * self.scale  # from the top, as the kernel
        lp = math.log10((ge + 1.0) / (self.total + 2.0))
        if ge < 1.0 - 1e-6:  # beyond the history: extrapolate
            gauss = _log10_two_sided(z)
            # the highest bin with at least one sample's weight at or above it
            tops = [j for j in range(self.BINS) if sum(self.hist[j:]) * self.scale >= 1.0]
            if tail_index <= 0.0 or not tops:
                lp = min(lp, gauss)
            else:
                edge = (max(tops) + 1) * width
                index = self.index_beyond(max(tops), tail_index)
                lp -= index * max(0.0, math.log2(1.0 + z) - edge) * math.log10(2.0)
                if self.total < 100.0:  # a young history: no rarer than Gaussian
                    lp = max(lp, gauss)
        self.scale *= decay
        if self.scale < 1e-30:
            self.hist = [f32(h * self.scale) for h in self.hist]
            self.stored *= self.scale
            self.scale = 1.0
        self._put(b, 1.0 / self.scale)
        self.total = self.total * decay + 1.0
        self.last_bin = b
        self.last_z = z
        return lp

    def index_beyond(self, top: int, tail_index: float) -> float:
        """The power law's index beyond the edge: tail_index, or for a light tail (weight
        from z = 2.49 at most 0.2 of that from z = 1.72, at least 20 samples' weight there)
        the Gaussian tail's slope (1 + z)(z + 1/z) at the edge's z, at most 15, when
        steeper."""
        if top + 1 >= self.BINS:
            return tail_index
        w_hi = max(0.0, self.stored - sum(self.hist[:5]))
        w_lo = w_hi + self.hist[4]
        if w_lo * self.scale < 20.0 or w_hi > 0.2 * w_lo:
            return tail_index
        z = _bin_floor(top + 1, self.BINS)
        return max(tail_index, min((1.0 + z) * (z + 1.0 / z), 15.0))

    def add(self, z: float, amount: float) -> None:
        """Learn z (no forgetting step) at ``amount`` of a sample's weight."""
        m, e = math.frexp(1.0 + z)
        x = 2.0 * m
        log2 = (e - 1) + (-0.34484843 * x + 2.02466578) * x - 1.67981735
        b = min(int(log2 / (math.log2(math.exp(4.0)) / self.BINS)), self.BINS - 1)
        self._put(b, amount / self.scale)
        self.total += amount

    def take_back(self, amount: float) -> None:
        """Learn the last value at 1 - amount of its weight instead."""
        self._put(self.last_bin, -amount / self.scale)
        self.total -= amount

    def _put(self, b: int, stored_amount: float) -> None:
        self.hist[b] = f32(self.hist[b] + stored_amount)
        self.stored += stored_amount


def ensemble(  # noqa: C901 (a line-by-line mirror of the kernel, which has the same shape)
    params: EnsembleParams, ts_ms: list[int], values: list[float]
) -> list[float]:
    q = params
    band_p = math.erfc(q.band_sigmas / math.sqrt(2.0))
    n = 0
    m1 = v1 = level = sv = 0.0
    season = [0.0] * max(q.season_bins, 1)
    visits = [0.0] * max(q.season_bins, 1)
    last_t = 0.0
    cal = [_Calibration() for _ in range(2)]
    run_side = run_since = run_n = run_d1 = run_e3 = 0.0
    back = 0  # samples in a row back from the open run
    onset: list[tuple[_Calibration, float]] = []
    out = []
    for t, x in zip(ts_ms, values, strict=True):
        if not abs(x) <= MAX_SCORED:  # NaN, +-inf or beyond what is scored
            out.append(math.nan)
            continue
        b = 0
        if q.season_bins:
            period = max(1, round(q.season_period_s * 1000.0))
            b = min((t % period) * q.season_bins // period, q.season_bins - 1)
        seasonal_on = q.season_bins > 0 and visits[b] >= q.season_min_visits
        b1 = max(q.alpha_fast, 1.0 / (n + 1))  # running mean/variance while young
        b2 = max(q.alpha_slow, 1.0 / (n + 1))
        s1, ss = math.sqrt(v1), math.sqrt(sv)
        k = 2.0 if seasonal_on else 1.0
        if n == 0:
            m1 = level = x
        # the level watches the value less its bin's offset, once the bin has one
        off = season[b] if q.season_bins and visits[b] > 0 else 0.0
        centre = level + season[b] if seasonal_on else m1 + off
        d1 = x - off - m1
        z1 = abs(d1) / s1 if s1 > 0 else (0.0 if d1 == 0 else 50.0)
        warm = n >= q.warmup_samples
        lp = 0.0  # log10 of the smallest tail probability
        used = []
        if warm:
            lp = cal[0].tail(z1, q.decay, q.tail_index)
            used.append(cal[0])
        e3 = x - level - season[b] if q.season_bins else 0.0
        if seasonal_on and warm:
            z3 = abs(e3) / ss if ss > 0 else (0.0 if e3 == 0 else 50.0)
            lp = min(lp, cal[1].tail(z3, q.decay, q.tail_index))
            used.append(cal[1])
        out.append(_score_from_log10(min(0.0, lp + math.log10(k))) if warm else 0.0)
        anomalous = warm and 10.0**lp <= band_p / k  # outside the band
        dev = x - centre
        side = 1.0 if dev > 0 else -1.0
        if anomalous:  # learns nothing; a run that lasts adopt_after_s is adopted
            back = 0
            onset = [(c, c.last_z) for c in used]
            for c in used:
                c.take_back(1.0)
            if q.season_bins and n > 0:  # the profile learns it: in full while the bin
                # is not in use yet, a tenth of a visit once it is
                f = min(1.0, max(0.0, (t - last_t) / (q.season_sample_s * 1e3)))
                resid = x - level
                if visits[b] == 0:
                    season[b] = f32(resid)
                elif not seasonal_on:  # clipped at clip_sigmas of the level's sigma
                    r = resid - season[b]
                    if s1 > 0 and abs(r) > q.clip_sigmas * s1:
                        r = math.copysign(q.clip_sigmas * s1, r)
                    season[b] = f32(season[b] + max(q.alpha_season * f, f / (visits[b] + f)) * r)
                else:
                    season[b] = f32(season[b] + 0.1 * q.alpha_season * f * (resid - season[b]))
                visits[b] = f32(visits[b] + (f if not seasonal_on else 0.1 * f))
            if run_side != side:
                run_side, run_since, run_n = side, float(t), 0.0
                run_d1 = run_e3 = run_v1 = run_v3 = 0.0
            run_n += 1
            w = max(1.0 / run_n, 0.05)
            r1, r3 = d1 - run_d1, e3 - run_e3
            run_d1 += w * r1
            run_v1 = (1 - w) * (run_v1 + w * r1 * r1)
            run_e3 += w * r3
            run_v3 = (1 - w) * (run_v3 + w * r3 * r3)
            if q.adopt_after_s > 0 and t - run_since >= q.adopt_after_s * 1000.0:
                m1 += run_d1
                v1 = max(v1, run_v1)
                level += run_e3
                sv = max(sv, run_v3)
                run_side = 0.0
        else:
            # a run ends at the second sample in a row back (the other side, or out of the
            # series' outer 5%); until then its samples inside the band teach a tenth
            # and the calibration nothing
            cw, came_back = 1.0, False
            if run_side != 0:
                back = back + 1 if side != run_side or lp + math.log10(k) > math.log10(0.05) else 0
                if back >= 2:
                    run_side, back, came_back = 0.0, 0, True
                else:
                    cw = 0.1
            # a run the series came back from: its last extreme is the series' own tail,
            # learned at half weight once the calibration holds 100 samples' weight
            if came_back and cal[0].total >= 100.0:
                for c, z in onset:
                    c.add(z, 0.5)
            if cw < 1.0:
                for c in used:
                    c.take_back(1.0)
                b1 *= cw
                b2 *= cw
            if q.season_bins:
                resid = x - level
                level += b2 * (x - season[b] - level)
                # a visit, or the share dt / season_sample_s of one for a sample that
                # follows the previous one sooner
                f = (
                    1.0
                    if n == 0
                    else cw * min(1.0, max(0.0, (t - last_t) / (q.season_sample_s * 1e3)))
                )
                # a young bin is the plain mean of its visits so far
                season[b] = f32(
                    resid
                    if visits[b] == 0
                    else season[b]
                    + max(q.alpha_season * f, f / (visits[b] + f)) * (resid - season[b])
                )
                visits[b] = f32(visits[b] + f)
                sv = (1 - b1) * (sv + b1 * e3 * e3)
            if s1 > 0 and abs(d1) > q.clip_sigmas * s1:
                d1 = math.copysign(q.clip_sigmas * s1, d1)
            m1 += b1 * d1
            v1 = (1 - b1) * (v1 + b1 * d1 * d1)
        last_t = t if n == 0 else max(last_t, t)
        n += 1
    return out


class _Tail:
    """One side of DSPOT: exceedance rate and the moments of its recent excesses over t,
    exponentially weighted with the span of a window of `size` peaks."""

    def __init__(self, size: int) -> None:
        self.rate = 0.0
        self.count = 0
        self.mean = self.mean2 = 0.0
        self.size = size

    def learn(self, e: float) -> None:
        self.count += 1
        w = max(2.0 / (self.size + 1.0), 1.0 / self.count)
        self.mean += w * (e - self.mean)
        self.mean2 += w * (e * e - self.mean2)

    def fit(self) -> tuple[float, float]:
        """GPD (gamma, sigma) by the method of moments, gamma in [0, 0.45]."""
        n = min(self.count, self.size)
        m = self.mean
        v = (self.mean2 - m * m) * n / (n - 1)
        if m <= 0.0:
            return 0.0, 1e-12
        g = 0.0 if v <= 0.0 else min(max(0.5 * (1.0 - m * m / v), 0.0), 0.45)
        return g, max(m * (1.0 - g), 1e-12)

    def log10_tail(self, yz: float, t: float) -> float:
        g, sg = self.fit()
        lr = math.log10(max(self.rate, 1e-9))
        if yz <= t:
            return min(yz / t, 1.0) * lr
        y = yz - t
        if g < 1e-9:  # exponential
            return lr - y / sg / math.log(10.0)
        return lr - math.log10(1.0 + g * y / sg) / g

    def threshold(self, t: float, q: float) -> float:
        g, sg = self.fit()
        r = max(self.rate, 1e-9)
        if q >= r:
            return t * math.log10(q) / math.log10(r) if r < 1.0 else 0.0
        if g < 1e-9:
            return t + sg * math.log(r / q)
        return t + sg / g * ((q / r) ** (-g) - 1.0)


def spot(params: SpotParams, values: list[float]) -> list[float]:
    """DSPOT on the residuals of the robust level, as docs/detectors.md describes it."""
    q = params
    n = m = 0
    level = scale = run = 0.0
    tails = (_Tail(q.peaks), _Tail(q.peaks))  # upper, lower
    out = []
    for x in values:
        if not abs(x) <= MAX_SCORED:  # NaN, +-inf or beyond what is scored
            out.append(math.nan)
            continue
        if n == 0:
            n, level, scale = 1, x, 0.0
            out.append(0.0)
            continue
        sigma = max(scale * MAD_TO_SIGMA, q.min_scale + 1e-9 * abs(level))
        r = x - level
        z = r / sigma
        tail = tails[0] if z >= 0 else tails[1]
        calibrated = tail.count >= q.min_peaks
        warm = n >= q.warmup_samples
        if warm and calibrated:
            lp = math.log10(2.0) + tail.log10_tail(abs(z), q.threshold_sigmas)
            out.append(_score_from_log10(min(lp, 0.0)))
        else:  # warming up, or this side has too few peaks yet
            out.append(0.0)
        zp = tail.threshold(q.threshold_sigmas, q.protect_risk / 2) if calibrated else math.inf
        n += 1
        if warm and abs(z) > zp:  # protected: no peak, no rate, the level learns it clipped
            side = 1.0 if z >= 0 else -1.0
            run = run + side if run * side > 0 else side
            if q.adopt_samples and abs(run) >= q.adopt_samples:
                level, run = x, 0.0
                continue
        else:
            run = 0.0
            if warm:
                m += 1
                a = max(q.rate_alpha, 1.0 / m)
                tails[0].rate += a * (float(z > q.threshold_sigmas) - tails[0].rate)
                tails[1].rate += a * (float(z < -q.threshold_sigmas) - tails[1].rate)
                if abs(z) > q.threshold_sigmas:
                    tail.learn(abs(z) - q.threshold_sigmas)
        a = max(q.alpha, 1.0 / n)
        if warm:
            r = min(max(r, -q.clip_sigmas * sigma), q.clip_sigmas * sigma)
        level += a * r
        scale += a * (abs(r) - scale)
    return out

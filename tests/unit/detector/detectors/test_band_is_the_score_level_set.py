"""The contract between the score and the band: a value outside the published band scores
at or above the band's level, a value inside scores below it, always.

The calibration's threshold (``threshold_z``) inverts its tail probability
(``tail_probability``): every z at or beyond the threshold is at most as probable as the
band's level, every z below it is more probable. Checked on the kernel pair over random
histories (young, trusted, heavy, empty, with a drifted stored sum), and end to end on the
ensemble family over series of every shape the scenario suite knows.
"""

import math

import numpy as np
import pytest

from detector.config import EnsembleParams
from detector.detectors._kernels import calibration as c
from detector.detectors.base import Scores
from detector.detectors.ensemble import EnsembleFamily, band_probability

DECAY = 0.9995


def _random_history(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One signal's histogram as the kernel keeps it: float32 bins in stored units, a
    float64 stored sum that has drifted from them by rounding, a divisor g, a total."""
    hist = np.zeros((1, c.HIST_BINS), dtype=np.float32)
    htot = np.zeros((1, 3))
    reach = int(rng.integers(0, c.HIST_BINS + 1))  # bins the history reaches
    scale = 10.0 ** rng.uniform(-1.5, 3.5)  # from a young history to a long one
    weights = scale * np.exp(-rng.uniform(0.2, 2.0) * np.arange(reach))
    weights[rng.random(reach) < 0.2] = 0.0  # empty bins within the history
    g = 10.0 ** rng.uniform(-20, 0)
    hist[0, :reach] = weights / g
    stored = float(hist[0].astype(np.float64).sum())
    htot[0, 2] = stored * (1.0 + rng.normal(0.0, 1e-6))
    htot[0, 1] = g
    htot[0, 0] = float(weights.sum()) * (1.0 + abs(rng.normal(0.0, 1e-3)))
    return hist, htot


@pytest.mark.parametrize("tail_index", [0.0, 2.0, 10.0])
def test_the_threshold_is_exactly_where_the_tail_probability_reaches_the_level(tail_index):
    rng = np.random.default_rng(int(tail_index * 7) + 1)
    disagreements = []
    for case in range(3000):
        hist, htot = _random_history(rng)
        t = 10.0 ** rng.uniform(-4, -2)
        thr = c.threshold_z(hist, htot, 0, 0, t, tail_index, c.gaussian_z(math.log10(t)))
        # values on both sides of the threshold, near it and far from it, and bin edges
        zs = np.concatenate(
            [
                thr * (1.0 + np.array([-1e-9, 1e-9, -1e-3, 1e-3, -0.1, 0.1])),
                rng.uniform(0.0, 60.0, 20),
                c.BIN_LO[1:-1],
            ]
        )
        for z in zs[np.isfinite(zs) & (zs >= 0.0)]:
            p = c.tail_probability(hist.copy(), htot.copy(), 0, 0, float(z), DECAY, tail_index)
            if (p <= t) != (z >= thr):
                disagreements.append((case, float(z), thr, p, t))
    assert disagreements == []


def test_a_young_history_takes_the_gaussian_bound_beyond_it_only():
    """One sample at z = 3.4 (the history): the Gaussian 3.29 of a 0.001 level lies
    inside it, where the probability is the history's ratio (2/3), so the band's edge is
    the history's end, not 3.29 (the band said 'outside' at a score of 0.33)."""
    hist = np.zeros((1, c.HIST_BINS), dtype=np.float32)
    htot = np.array([[0.0, 1.0, 0.0]])
    c.tail_probability(hist, htot, 0, 0, 3.4, DECAY, 0.0)
    t = 0.001
    thr = c.threshold_z(hist, htot, 0, 0, t, 0.0, c.gaussian_z(math.log10(t)))
    assert thr > 3.4
    assert c.tail_probability(hist.copy(), htot.copy(), 0, 0, 3.4, DECAY, 0.0) > t


def test_a_drifted_stored_sum_moves_score_and_band_together():
    """The float64 sum of the stored bins drifts from its float32 bins by their rounding.
    A last bin of the history holding 0.9998 of a sample by the bins and a little more by
    the stored sum is in the history for both the score and the band (the band used to
    sum the bins and call it beyond the history)."""
    hist = np.zeros((1, c.HIST_BINS), dtype=np.float32)
    hist[0, :7] = [532.5, 96.9, 595.6, 141.1, 143.5, 23.1, 0.9998]
    htot = np.array([[1533.8, 1.0, float(hist[0].astype(np.float64).sum()) + 3e-4]])
    t = 0.0010018738
    thr = c.threshold_z(hist, htot, 0, 0, t, 10.0, c.gaussian_z(math.log10(t)))
    for z in (3.6, 3.93, thr, np.nextafter(thr, 0.0)):
        p = c.tail_probability(hist.copy(), htot.copy(), 0, 0, float(z), DECAY, 10.0)
        assert (p <= t) == (z >= thr)


def _series(rng: np.random.Generator, kind: int, n: int, step_s: float) -> np.ndarray:
    day = np.arange(n) * step_s / 86400.0 * 2.0 * np.pi
    if kind == 0:
        x = rng.normal(100.0, 5.0, n) + 15.0 * np.sin(day)
    elif kind == 1:
        x = 200.0 + 10.0 * rng.standard_t(3, n)
    elif kind == 2:
        x = rng.lognormal(0.0, 0.5, n)
    elif kind == 3:
        x = np.round(rng.normal(3.0, 1.0, n) + 2.0 * np.sin(day))
    else:
        x = rng.poisson(1.0, n).astype(float)
    if rng.random() < 0.5:  # a shift somewhere: runs, adoption, the way back
        a = int(rng.integers(n // 4, n - 200))
        x[a : a + int(rng.integers(3, 200))] += rng.choice([-8.0, 8.0]) * x[: n // 4].std()
    return x


@pytest.mark.parametrize("step_s", [15.0, 60.0])
def test_on_every_shape_a_value_outside_the_band_scores_at_or_above_its_level(step_s):
    params = EnsembleParams()
    level = 1.0 - band_probability(params.band_sigmas)
    n_series, n = 100, 5000
    rng = np.random.default_rng(int(step_s))
    data = np.stack([_series(rng, s % 5, n, step_s) for s in range(n_series)])
    family = EnsembleFamily(params, capacity=n_series)
    for s in range(n_series):
        family.configure(s)
    slots = np.arange(n_series, dtype=np.int32)
    checked = 0
    disagreements = []
    for i in range(n):
        out = Scores.empty(n_series)
        ts = np.full(n_series, 1_700_000_000_000 + int(i * step_s * 1000), dtype=np.int64)
        values = data[:, i].copy()
        family.score_learn(slots, ts, values, out)
        banded = np.isfinite(out.lower)
        outside = (values < out.lower) | (values > out.upper)
        wrong = banded & (outside != (out.score >= level))
        checked += int(banded.sum())
        disagreements += [(i, int(s)) for s in np.flatnonzero(wrong)]
    assert checked > 0.9 * n_series * n
    assert disagreements == []

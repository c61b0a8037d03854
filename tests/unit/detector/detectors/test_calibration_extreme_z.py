"""A z-score beyond the float range (a deviation of 1e308, or one over a variance of
1e-300) or NaN (a state that overflowed) must land in a histogram bin of its own series:
``bin_of`` returned the most negative int64 for both, and the calibration's write went
one row further, into the next series' bin 0."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detector.config import EnsembleParams
from detector.detectors._kernels import calibration as c
from detector.detectors.base import Scores
from detector.detectors.ensemble import EnsembleFamily


@pytest.mark.parametrize("z", [math.inf, math.nan, 1e300, 1.7e308, -0.5, -math.inf])
def test_every_z_has_a_bin_within_the_histogram(z: float) -> None:
    assert 0 <= c.bin_of(z) < c.HIST_BINS


@pytest.mark.parametrize("z", [math.inf, math.nan])
def test_learning_an_extreme_z_touches_its_own_row_only(z: float) -> None:
    hist = np.zeros((2, 2 * c.HIST_BINS), dtype=np.float32)
    htot = np.tile([1.0, 1.0, 1.0, 1.0, 0.0, 0.0], (2, 1))
    for k in (0, 1):
        c.tail_probability(hist, htot, 0, k, z, 0.9995, 2.0)
        c.take_back(hist, htot, 0, k, z, 0.5)
    assert not hist[1].any()
    assert hist[0, c.HIST_BINS - 1] == pytest.approx(0.5 / 0.9995)
    assert hist[0, 2 * c.HIST_BINS - 1] == pytest.approx(0.5 / 0.9995)


def test_a_hostile_series_leaves_its_neighbours_state_alone() -> None:
    """Series 0 varies by 1e-155 (a variance of 1e-310) around 0, then jumps to 1e160:
    z = 1e160 / 1e-155 = inf. Series 1 is the same ordinary series in both runs and must
    end with the same state (before, its histogram gained weight in bin 0)."""
    rng = np.random.default_rng(4)
    n = 2500
    ordinary = 100.0 + rng.normal(0.0, 1.0, n)
    flat = rng.normal(0.0, 1e-155, n)
    hostile = flat.copy()
    hostile[2000:] = 1e160

    def run(series0: np.ndarray) -> EnsembleFamily:
        family = EnsembleFamily(EnsembleParams(), capacity=2)
        family.configure(0)
        family.configure(1)
        slots = np.array([0, 1], dtype=np.int32)
        for i in range(n):
            ts = np.full(2, 1_700_000_000_000 + 15_000 * i, dtype=np.int64)
            family.score_learn(slots, ts, np.array([series0[i], ordinary[i]]), Scores.empty(2))
        return family

    calm, attacked = run(flat), run(hostile)
    for name, arr in calm.arrays().items():
        np.testing.assert_array_equal(getattr(attacked, name)[1], arr[1], err_msg=name)

"""river as the oracle where our kernels run the same algorithm."""

import numpy as np
from river import stats

from detector.config import EnsembleParams
from detector.detectors._kernels import ensemble as k
from detector.detectors.base import Scores
from detector.detectors.ensemble import EnsembleFamily


def test_ensemble_level_and_variance_equal_river_ewmean_ewvar():
    # unclipped, and a band so wide that no sample is anomalous: the plain EW pair (with
    # a daily profile the level watches the value less its bin's offset instead)
    params = EnsembleParams(alpha_fast=0.01, clip_sigmas=1e9, band_sigmas=100.0, season_bins=0)
    family = EnsembleFamily(params, capacity=1)
    family.configure(0)
    rng = np.random.default_rng(11)
    x = rng.normal(5.0, 2.0, 3000)
    x[1500:] += 3.0
    t = np.arange(3000, dtype=np.int64) * 60_000
    family.score_learn(np.zeros(3000, np.int32), t, x, Scores.empty(3000))
    mean, var = stats.EWMean(fading_factor=0.01), stats.EWVar(fading_factor=0.01)
    for value in x:
        mean.update(value)
        var.update(value)
    np.testing.assert_allclose(family.state[0, k.S_M1], mean.get(), rtol=1e-9)
    np.testing.assert_allclose(family.state[0, k.S_V1], var.get(), rtol=1e-9)

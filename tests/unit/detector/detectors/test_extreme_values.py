"""A sender controls the values: none may break a series' state for good.

Values whose deviations cannot be squared in float64 (beyond ``MAX_SCORED``) are treated
as non-finite ones: scored NaN, nothing learned. Before, +-1.7e308 or noise of 1e307
turned the ensemble's level and variance into NaN and the series never scored again.
"""

import numpy as np
import pytest

from detector.config import EnsembleParams, RobustParams, SpotParams
from detector.detectors._kernels import MAX_SCORED
from detector.detectors.base import Scores
from detector.detectors.kinds import build_family

FAMILIES = {
    "ensemble": EnsembleParams(),
    "robust": RobustParams(),
    "spot": SpotParams(),
}
N = 1500
T0 = 1_700_000_000_000


def _run(params, values):
    family = build_family(params, capacity=1)
    family.configure(0)
    out = Scores.empty(values.shape[0])
    family.score_learn(
        np.zeros(values.shape[0], np.int32),
        T0 + 15_000 * np.arange(values.shape[0], dtype=np.int64),
        values,
        out,
    )
    return family, out


def _hostile(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "max_then_min":
        return np.where(np.arange(N) < N // 2, -1.7e308, 1.7e308)
    if kind == "huge_noise":
        return rng.normal(0.0, 1e307, N)
    return np.where(np.arange(N) % 7 == 0, 1e200, 100.0 + rng.normal(0.0, 1.0, N))


@pytest.mark.parametrize("kind", sorted(FAMILIES))
@pytest.mark.parametrize("hostile", ["max_then_min", "huge_noise", "sprinkled"])
def test_extreme_values_score_nan_and_leave_the_state_able_to_score(kind, hostile):
    rng = np.random.default_rng(3)
    bad = _hostile(hostile, rng)
    normal = 100.0 + rng.normal(0.0, 1.0, N)
    family, out = _run(FAMILIES[kind], np.concatenate([bad, normal]))
    too_large = np.abs(bad) > MAX_SCORED
    assert np.isnan(out.score[:N][too_large]).all()
    for name, table in family.arrays().items():
        assert not np.isnan(table[0]).any(), name
    # the series goes on: its normal samples are scored, and a spike among them is found
    assert np.isfinite(out.score[N:]).all()
    _, after = _run(FAMILIES[kind], np.concatenate([bad, normal, [140.0]]))
    assert after.score[-1] > 0.999


def test_the_largest_scored_value_is_still_scored():
    values = np.concatenate([100.0 + np.random.default_rng(1).normal(0, 1, 500), [MAX_SCORED]])
    _, out = _run(EnsembleParams(), values)
    assert out.score[-1] > 0.999

"""Every detector kind in KINDS passes the same checks (river's ``yield_checks`` habit)."""

from __future__ import annotations

import numpy as np
import pytest

from detector.config import DetectorParams, EnsembleParams, RobustParams, SpotParams
from detector.detectors.base import Scores
from detector.detectors.kinds import KINDS, build_family
from tests import reference

PARAMS: dict[str, DetectorParams] = {
    "robust": RobustParams(),
    "ensemble": EnsembleParams(season_min_visits=2),
    # a small ring so the 2,000-sample reference stream wraps it many times
    "spot": SpotParams(peaks=16, min_peaks=8),
}
STEP_MS = 300_000  # 5 minutes: the seasonal profile sees each bin several times


def test_every_kind_is_checked():
    assert set(PARAMS) == set(KINDS)


def _stream(seed: int, n: int = 3000, shift_at: int = 2500, daily: float = 10.0):
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.int64) * STEP_MS + 1_700_000_000_000
    day = np.sin(2 * np.pi * (t % 86_400_000) / 86_400_000)
    x = 100 + daily * day + rng.normal(0, 1, n)
    x[shift_at:] += 8
    return t, x


def _run(kind, slots, ts, values, family=None, n_series=1):
    if family is None:
        family = build_family(PARAMS[kind], capacity=n_series)
        for s in range(n_series):
            family.configure(s)
    out = Scores.empty(values.shape[0])
    family.score_learn(slots.astype(np.int32), ts, values, out)
    return family, out


def _state(family):
    return {k: v.copy() for k, v in family.arrays().items()}


@pytest.mark.parametrize("kind", sorted(PARAMS))
def test_deterministic(kind):
    t, x = _stream(1)
    z = np.zeros(x.shape[0], np.int32)
    _, a = _run(kind, z, t, x)
    _, b = _run(kind, z, t, x)
    assert np.array_equal(a.score, b.score, equal_nan=True)


@pytest.mark.parametrize("kind", sorted(PARAMS))
@pytest.mark.parametrize("cuts", [(1,), (7, 1000), (2999,), (100, 101, 2500)])
def test_chunk_invariant_bit_identical(kind, cuts):
    t, x = _stream(2)
    z = np.zeros(x.shape[0], np.int32)
    whole, out = _run(kind, z, t, x)
    family = build_family(PARAMS[kind], capacity=1)
    family.configure(0)
    parts = []
    for a, b in zip((0, *cuts), (*cuts, x.shape[0]), strict=True):
        _, part = _run(kind, z[a:b], t[a:b], x[a:b], family=family)
        parts.append(part.score)
    assert np.array_equal(out.score, np.concatenate(parts), equal_nan=True)
    for name, arr in whole.arrays().items():
        assert np.array_equal(arr, family.arrays()[name], equal_nan=True), name


@pytest.mark.parametrize("kind", sorted(PARAMS))
def test_non_finite_scores_nan_and_leaves_state_unchanged(kind):
    t, x = _stream(3, n=200)
    z = np.zeros(200, np.int32)
    family, _ = _run(kind, z, t, x)
    before = _state(family)
    bad = np.array([np.nan, np.inf, -np.inf, np.nan])
    _, out = _run(kind, np.zeros(4, np.int32), t[-4:] + 1, bad, family=family)
    assert np.isnan(out.score).all()
    for name, arr in family.arrays().items():
        assert np.array_equal(arr, before[name], equal_nan=True), name


@pytest.mark.parametrize("kind", sorted(PARAMS))
def test_scores_are_probabilities_and_a_level_shift_stands_out(kind):
    t, x = _stream(4, daily=0.0)
    _, out = _run(kind, np.zeros(x.shape[0], np.int32), t, x)
    assert np.isfinite(out.score).all()
    assert (out.score >= 0).all() and (out.score <= 1).all()
    noise = out.score[1000:2500]
    assert out.score[2500:2510].max() > np.quantile(noise, 0.999)
    assert np.mean(noise >= 0.999) < 0.01


@pytest.mark.parametrize("kind", sorted(PARAMS))
def test_interleaved_series_equal_series_alone(kind):
    t, x = _stream(5, n=800)
    _, y = _stream(6, n=800)
    slots = np.tile(np.array([0, 1], np.int32), 800)
    ts = np.repeat(t, 2)
    vals = np.empty(1600)
    vals[0::2], vals[1::2] = x, y * 3
    _, both = _run(kind, slots, ts, vals, n_series=2)
    _, alone = _run(kind, np.zeros(800, np.int32), t, y * 3)
    assert np.array_equal(both.score[1::2], alone.score, equal_nan=True)


@pytest.mark.parametrize("kind", sorted(PARAMS))
def test_matches_the_python_reference(kind):
    t, x = _stream(7, n=2000)
    x[500] = np.nan
    x[900] += 40
    _, out = _run(kind, np.zeros(x.shape[0], np.int32), t, x)
    params = PARAMS[kind]
    if isinstance(params, RobustParams):
        want = reference.robust(params, x.tolist())
    elif isinstance(params, SpotParams):
        want = reference.spot(params, x.tolist())
    else:
        assert isinstance(params, EnsembleParams)
        want = reference.ensemble(params, t.tolist(), x.tolist())
    np.testing.assert_allclose(out.score, np.array(want), rtol=1e-9, atol=1e-12)


# the ensemble allocates only the state and tables of its signals that are on; each
# combination is checked against the reference, whole and in pieces
ENSEMBLE_SIGNALS = [
    EnsembleParams(season_min_visits=2),
    EnsembleParams(season_bins=0),
    EnsembleParams(season_bins=0, adopt_after_s=0),
]


@pytest.mark.parametrize("params", ENSEMBLE_SIGNALS, ids=["seasonal", "core", "never-adopt"])
def test_each_ensemble_signal_set_matches_the_reference_in_pieces(params):
    t, x = _stream(8, n=2000)
    x[700] += 30
    family = build_family(params, capacity=1)
    family.configure(0)
    scores = []
    for a, b in ((0, 1), (1, 999), (999, 2000)):
        out = Scores.empty(b - a)
        family.score_learn(np.zeros(b - a, np.int32), t[a:b], x[a:b], out)
        scores.append(out.score)
    want = reference.ensemble(params, t.tolist(), x.tolist())
    np.testing.assert_allclose(np.concatenate(scores), np.array(want), rtol=1e-9, atol=1e-12)


def test_state_bytes_per_series():
    robust = build_family(RobustParams(), capacity=1)
    flat = build_family(EnsembleParams(season_bins=0), capacity=1)
    daily = build_family(EnsembleParams(), capacity=1)
    assert robust.bytes_per_series() <= 256
    assert flat.bytes_per_series() <= 256  # the detector issue's bound without seasonality
    assert daily.bytes_per_series() <= 4096
    assert flat.bytes_per_series() < daily.bytes_per_series()
    assert build_family(SpotParams(), capacity=1).bytes_per_series() <= 1024

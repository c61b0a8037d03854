import numpy as np
import pytest
from pydantic import ValidationError

from detector.config import SpotParams
from detector.detectors._kernels import spot as k
from detector.detectors.base import Scores
from detector.detectors.spot import SpotFamily


def _run(params, x):
    """Score ``x[series, sample]`` with one fresh series per row; scores and bands."""
    n_series, n = x.shape
    family = SpotFamily(params, capacity=n_series)
    for s in range(n_series):
        family.configure(s)
    slots = np.tile(np.arange(n_series, dtype=np.int32), n)
    out = Scores.empty(slots.size)
    family.score_learn(slots, np.zeros(slots.size, np.int64), x.T.ravel(), out)
    return family, [a.reshape(n, n_series).T for a in (out.score, out.lower, out.upper)]


@pytest.mark.parametrize("risk", [1e-2, 1e-3])
@pytest.mark.parametrize("noise", ["gauss", "student3", "lognormal"])
def test_the_risk_is_about_the_false_alarm_rate_whatever_the_tail(risk, noise):
    rng = np.random.default_rng(1)
    draw = {
        "gauss": lambda s: rng.normal(0, 1, s),
        "student3": lambda s: rng.standard_t(3, s),
        "lognormal": lambda s: rng.lognormal(0, 1, s),
    }[noise]
    _, (score, _, _) = _run(SpotParams(risk=risk), 100 + draw((100, 4000)))
    rate = np.mean(score[:, 1000:] >= 1 - risk)
    assert risk / 5 < rate < 3 * risk, rate


def test_a_score_of_one_minus_risk_is_exactly_a_sample_beyond_the_band():
    rng = np.random.default_rng(2)
    x = 100 + rng.standard_t(4, (20, 3000))
    params = SpotParams(risk=1e-2)
    _, (score, lower, upper) = _run(params, x)
    calibrated = np.isfinite(lower) & np.isfinite(upper) & (np.arange(3000) >= 200)
    beyond = (x > upper) | (x < lower)
    alarm = score >= 1 - params.risk
    agree = (beyond == alarm)[calibrated]
    assert agree.mean() > 0.9999  # only rounding at the edge may disagree


def test_one_outlier_is_no_peak_and_barely_moves_the_level():
    rng = np.random.default_rng(3)
    x = 100 + rng.normal(0, 1, (1, 1001))
    x[0, -1] = 1e6
    family, (_score, _, _) = _run(SpotParams(), x[:, :-1])
    before = family.state[0].copy()
    out = Scores.empty(1)
    family.score_learn(np.zeros(1, np.int32), np.zeros(1, np.int64), x[0, -1:], out)
    assert out.score[0] > 0.99999
    after = family.state[0]
    for f in (k.T_COUNT, k.T_MEAN, k.T_MEAN2, k.T_RATE):
        assert after[k.S_TAIL + f] == before[k.S_TAIL + f]
    sigma = before[k.S_SCALE] * k.MAD_TO_SIGMA
    assert abs(after[k.S_LEVEL] - before[k.S_LEVEL]) <= SpotParams().alpha * 2.0 * sigma + 1e-9


def test_a_lasting_shift_is_adopted_and_stops_paging():
    rng = np.random.default_rng(4)
    x = 100 + rng.normal(0, 1, (1, 3000))
    x[0, 2000:] += 50
    family, (score, _, _) = _run(SpotParams(adopt_samples=30), x)
    assert score[0, 2000] > 0.9999
    assert abs(family.state[0, k.S_LEVEL] - 150) < 2
    assert np.mean(score[0, 2100:] >= 0.999) < 0.01


def test_fresh_noise_series_do_not_page():
    """The calibration period: a young series' tails score 0 until they hold min_peaks
    excesses, so plain noise on a new series does not reach the default alert threshold."""
    rng = np.random.default_rng(5)
    _, (score, _, _) = _run(SpotParams(), 100 + rng.normal(0, 1, (1000, 300)))
    assert (score[:, :30] == 0).all()
    assert np.mean((score >= 0.9999).any(axis=1)) < 0.03  # measured 0.8%


def test_the_peak_moments_weight_recent_peaks_with_the_span_of_the_window():
    """The first ``peaks`` excesses are averaged plainly; after that each new one weighs
    2 / (peaks + 1), the span of a window of ``peaks``."""
    family = SpotFamily(SpotParams(peaks=16, min_peaks=8), capacity=1)
    family.configure(0)
    out = Scores.empty(1)
    rng = np.random.default_rng(6)
    excesses = []
    for x in 100 + rng.standard_t(3, 3000):
        st = family.state[0]
        sigma = max(st[k.S_SCALE] * k.MAD_TO_SIGMA, 1e-9 + 1e-9 * abs(st[k.S_LEVEL]))
        z, before = (x - st[k.S_LEVEL]) / sigma, st[k.S_TAIL + k.T_COUNT]
        family.score_learn(np.zeros(1, np.int32), np.zeros(1, np.int64), np.array([x]), out)
        if family.state[0, k.S_TAIL + k.T_COUNT] > before:  # an upper peak was learned
            excesses.append(z - 1.5)
    assert len(excesses) > 100
    mean = mean2 = 0.0
    for i, e in enumerate(excesses, start=1):
        w = max(2.0 / 17.0, 1.0 / i)
        mean, mean2 = mean + w * (e - mean), mean2 + w * (e * e - mean2)
    assert family.state[0, k.S_TAIL + k.T_MEAN] == pytest.approx(mean, rel=1e-9)
    assert family.state[0, k.S_TAIL + k.T_MEAN2] == pytest.approx(mean2, rel=1e-9)


def test_gpd_fit_recovers_an_exponential_and_a_pareto_tail():
    rng = np.random.default_rng(7)
    for gamma, sigma in ((0.0, 2.0), (0.3, 1.0)):
        u = rng.uniform(size=200_000)
        e = sigma * rng.exponential(size=u.size) if gamma == 0 else sigma / gamma * (u**-gamma - 1)
        g, s = k.gpd_fit(float(e.size), float(e.mean()), float((e * e).mean()))
        assert g == pytest.approx(gamma, abs=0.03) and s == pytest.approx(sigma, rel=0.05)


def test_min_peaks_cannot_exceed_the_ring():
    with pytest.raises(ValidationError, match="min_peaks"):
        SpotParams(peaks=8, min_peaks=9)


def test_state_is_104_bytes_per_series_whatever_the_peaks():
    for peaks in (16, 64, 1024):
        family = SpotFamily(SpotParams(peaks=peaks), capacity=1)
        assert family.bytes_per_series() == (5 + 2 * 4) * 8

"""The empirical calibration shared by the detectors: its extrapolation beyond the history
and the weight an alarm is learned at."""

import math

import numpy as np
import pytest

from detector.detectors._kernels import calibration as c
from detector.detectors._kernels.tail import log10_two_sided_tail

DECAY = 0.9995


def _tables(signals=1):
    hist = np.zeros((1, signals * c.HIST_BINS))
    htot = np.zeros((1, 3 * signals))
    htot[0, signals : 2 * signals] = 1.0  # the lazy-forgetting divisor starts at 1
    return hist, htot


def _learned(zs, tail_index=10.0):
    hist, htot = _tables()
    for z in zs:
        c.tail_probability(hist, htot, 0, 0, float(z), DECAY, tail_index)
    return hist, htot


def _lp(tables, z, tail_index=10.0):
    hist, htot = (t.copy() for t in tables)
    return math.log10(c.tail_probability(hist, htot, 0, 0, z, DECAY, tail_index))


def test_a_heavy_tailed_record_is_rare_but_not_impossible():
    history = np.abs(np.random.default_rng(3).standard_t(4, 2000))
    tables = _learned(history)
    record = 1.2 * history.max()
    assert record < 40  # inside the histogram's range (z up to about 53)
    power = _lp(tables, record)
    gaussian = _lp(tables, record, tail_index=0.0)
    assert gaussian < -30  # the Gaussian tail calls a record 20% above the largest impossible
    assert -6.0 < power < math.log10(1.0 / 1000)  # rarer than anything seen, not absurdly so


def test_farther_beyond_the_history_is_rarer_and_nothing_ties():
    tables = _learned(np.abs(np.random.default_rng(4).normal(0, 1, 2000)))
    lps = [_lp(tables, z) for z in (6.0, 10.0, 100.0, 1e4, 1e8)]
    assert lps == sorted(lps, reverse=True) and len(set(lps)) == len(lps)
    assert all(math.isfinite(lp) for lp in lps)


def test_a_young_history_is_never_rarer_than_gaussian_beyond_its_edge():
    tables = _learned(np.abs(np.random.default_rng(5).normal(0, 1, 40)))
    assert tables[1][0, 0] < 100.0  # under _TRUSTED_WEIGHT
    for z in (4.0, 8.0, 30.0):
        assert _lp(tables, z) >= log10_two_sided_tail(z) - 1e-12


def test_within_the_history_the_share_at_least_as_extreme_is_used():
    tables = _learned(np.full(1000, 2.0))
    # all the weight sits at z = 2: a value in that bin is not rare at all
    assert _lp(tables, 2.0) > math.log10(0.9)


@pytest.mark.parametrize("back", [0.5, 1.0])
def test_take_back_leaves_the_value_learned_at_the_remaining_weight(back):
    hist, htot = _learned([1.0] * 50)
    c.tail_probability(hist, htot, 0, 0, 9.0, DECAY, 10.0)
    c.take_back(hist, htot, 0, 0, 9.0, back)
    g = htot[0, 1]
    stored = hist[0, c.bin_of(9.0)] * g
    assert stored == pytest.approx(1.0 - back, abs=1e-12)
    assert htot[0, 2] * g == pytest.approx(hist[0].sum() * g)
    assert htot[0, 0] == pytest.approx(sum(DECAY**i for i in range(51)) - back, rel=1e-12)


def test_an_incident_does_not_teach_the_calibration_that_it_is_normal():
    """Samples outside the band enter no calibration (a run of three is no isolated
    extreme): a second incident like the first, 500 samples later, scores as rare."""
    from detector.config import EnsembleParams
    from detector.detectors.base import Scores
    from detector.detectors.ensemble import EnsembleFamily

    x = 100 + np.random.default_rng(6).normal(0, 1, 2600)
    x[1000:1003] -= 12  # the first incident
    x[1500:1503] -= 12  # the second
    family = EnsembleFamily(EnsembleParams(season_bins=0), capacity=1)
    family.configure(0)
    out = Scores.empty(x.shape[0])
    family.score_learn(
        np.zeros(x.shape[0], np.int32), np.arange(x.shape[0], dtype=np.int64) * 60_000, x, out
    )
    assert out.score[1000:1003].min() >= 0.9999
    assert out.score[1500:1503].min() >= 0.9999


def _index_of(tables, tail_index=10.0):
    hist, htot = tables
    g = htot[0, 1]
    top = max(j for j in range(c.HIST_BINS) if hist[0, j:].sum() * g >= 1.0)
    return top, c.tail_index_of(hist, htot, 0, 0, top, tail_index)


def test_beyond_a_light_tailed_history_the_tail_falls_as_a_gaussian_ones_does():
    """Issue 20's detection delay: on a Gaussian series a 6-sigma sample scored
    0.9997-0.9999 (the power law with index 10 from the edge of the largest values is
    heavier than the Gaussian tail just there), under the alert rule's 0.9999. A light
    tail now falls from its edge at the Gaussian tail's own slope there."""
    tables = _learned(np.abs(np.random.default_rng(7).normal(0, 1, 4000)))
    top, index = _index_of(tables)
    edge_z = c.BIN_LO[top + 1]
    gaussian_slope = (1 + edge_z) * (edge_z + 1 / edge_z)
    assert index == pytest.approx(min(gaussian_slope, 15.0)) and index > 10.0
    # two signals (Bonferroni): a 6-sigma sample now scores above the rule's 0.9999
    assert 2 * 10 ** _lp(tables, 6.0) < 1e-4
    # and never rarer than the Gaussian decay from the edge's empirical probability
    at_edge = _lp(tables, edge_z)
    for z in (edge_z + 0.5, 6.0, 8.0):
        assert _lp(tables, z) >= at_edge + log10_two_sided_tail(z) - log10_two_sided_tail(edge_z)


@pytest.mark.parametrize(
    "draw",
    [
        lambda r: r.standard_t(3, 4000) / math.sqrt(3.0),  # Student t(3), standardised
        lambda r: np.exp(0.3 * r.normal(0, 1, 4000)),  # the scenario suite's lognormal
        lambda r: r.poisson(1.0, 4000).astype(float),  # a low-rate counter's rate
    ],
)
def test_a_heavier_tail_keeps_the_power_law(draw):
    x = draw(np.random.default_rng(8))
    tables = _learned(np.abs((x - x.mean()) / x.std()))
    assert _index_of(tables)[1] == 10.0


def test_a_short_history_keeps_the_power_law():
    """Fewer than 20 samples' weight beyond z = 1.72: the ratio is too noisy to judge."""
    tables = _learned(np.abs(np.random.default_rng(9).normal(0, 1, 150)))
    hist, htot = tables
    assert hist[0, 4:].sum() * htot[0, 1] < 20.0
    assert _index_of(tables)[1] == 10.0


@pytest.mark.parametrize("seed", [7, 8])
def test_the_threshold_inverts_the_light_tail(seed):
    """The band stays the score's level set: threshold_z is where tail_probability first
    reaches t, for the light tail's index as for the power law's."""
    rng = np.random.default_rng(seed)
    z = np.abs(rng.normal(0, 1, 4000) if seed == 7 else rng.standard_t(3, 4000))
    hist, htot = _learned(z)
    for t in (1e-3 / 2, 1e-3 / 3, 1e-6):
        gz = c.gaussian_z(math.log10(t))
        zt = c.threshold_z(hist, htot, 0, 0, t, 10.0, gz)
        assert 10 ** _lp((hist, htot), zt * (1 + 1e-9)) <= t * (1 + 1e-9)
        assert 10 ** _lp((hist, htot), zt * (1 - 1e-6)) > t

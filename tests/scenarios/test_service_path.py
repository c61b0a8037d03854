"""The scenario suite measures what the service does: a few scenarios through
``bench.scenarios.ServicePath``, checked against the family and the rate arithmetic
run on their own, and against the alert events.

These are properties of the instrument, not of the detector: whether the default
detector detects, keeps firing or stays quiet is what the suite reports, not what this
file asserts.
"""

import math

import numpy as np
import pytest

from bench import scenario_data as sd
from bench import scenarios
from detector.config import DetectorConfig
from detector.detectors.base import Scores
from detector.detectors.kinds import build_family

DAYS = 2.0


def _run(*families, n=1, seed=3):
    series = scenarios.build_series(families, n=n, days=DAYS, seed=seed)
    return series, scenarios.ServicePath(DetectorConfig()).run(series, outputs=True)


@pytest.fixture(scope="module")
def shifts():
    return _run("shift_up_lasting", "spike", "low_rate_errors_burst")


def test_scores_and_band_are_the_default_familys_own(shifts):
    """Fed by scrape rounds with other series between, a gauge scores exactly as the
    default family scores it fed alone in one call (the family is chunk-invariant)."""
    params = DetectorConfig().series[0].detector
    for s, t in zip(*shifts, strict=True):
        if s.is_counter:
            continue
        family = build_family(params, capacity=1)
        family.configure(0)
        out = Scores.empty(s.ts_ms.shape[0])
        family.score_learn(np.zeros(s.ts_ms.shape[0], np.int32), s.ts_ms, s.values, out)
        o = t.outputs
        assert np.array_equal(o.score, out.score, equal_nan=True), s.family
        assert np.array_equal(o.lower, out.lower, equal_nan=True)
        assert np.array_equal(o.upper, out.upper, equal_nan=True)
        assert np.array_equal(o.seen, s.values)
        finite = np.isfinite(out.lower)
        inside = finite & (s.values >= out.lower) & (s.values <= out.upper)
        assert np.array_equal(t.banded, finite) and np.array_equal(t.inband, inside)


def test_a_counter_is_seen_as_its_per_second_rate(shifts):
    s, t = next((s, t) for s, t in zip(*shifts, strict=True) if s.is_counter)
    rate = np.diff(s.values) * 1000.0 / np.diff(s.ts_ms)
    assert np.allclose(t.outputs.seen[1:], rate)
    assert not t.scored[0] and np.isnan(t.outputs.score[0])


def test_every_page_is_a_rising_edge_of_the_firing_state(shifts):
    for s, t in zip(*shifts, strict=True):
        rising = np.flatnonzero(t.firing[1:] & ~t.firing[:-1]) + 1
        assert [int(s.ts_ms[i]) for i in rising] == list(t.fires_ms), s.family


def test_figures_agree_with_the_trace(shifts):
    for s, t in zip(*shifts, strict=True):
        f = scenarios.measure(s, t, warmup_samples=30)
        inside = s.in_anomaly()
        if s.anomalous:
            assert f.detected == bool(t.firing[inside].any())
            if f.detected:
                first = int(np.argmax(t.firing & inside))
                assert f.delay == first - int(np.argmax(inside))
                # for_s counts the first anomalous sample's own 15 s: 60 s is the 4th
                rule = DetectorConfig().alerts[0]
                least = max(rule.for_samples, math.ceil(rule.for_s * 1000 / sd.STEP_MS)) - 1
                assert f.delay >= least
        assert f.firing_at_end == bool(t.firing[-1])
        assert f.pages == len(t.fires_ms)


def test_series_run_together_are_measured_as_if_alone(shifts):
    series, traces = shifts
    alone_series, alone = _run("spike")
    k = next(i for i, s in enumerate(series) if s.family == "spike" and s.anomalous)
    j = next(i for i, s in enumerate(alone_series) if s.anomalous)
    assert np.array_equal(series[k].values, alone_series[j].values)
    for field in ("firing", "scored", "banded", "inband"):
        assert np.array_equal(getattr(traces[k], field), getattr(alone[j], field)), field
    for field in ("score", "seen", "lower", "upper"):
        assert np.array_equal(
            getattr(traces[k].outputs, field), getattr(alone[j].outputs, field), equal_nan=True
        ), field
    assert traces[k].fires_ms == alone[j].fires_ms


def test_a_staleness_marker_reaches_the_service_and_its_figures_are_stable():
    """A scrape gap: the marker is not scored, the series' sample after it is, and the
    same seed gives the same figures."""
    first = scenarios.run_suite(["gaps_jitter_shift"], n=1, days=DAYS, seed=5)
    again = scenarios.run_suite(["gaps_jitter_shift"], n=1, days=DAYS, seed=5)
    assert first == again
    series, traces = _run("gaps_jitter_shift", seed=5)
    s, t = series[0], traces[0]
    marks = np.flatnonzero(s.stale)
    assert marks.shape[0] > 0
    assert not t.scored[marks].any() and np.isnan(t.outputs.score[marks]).all()
    assert t.scored[marks[marks + 1 < s.stale.shape[0]] + 1].all()
    assert first["gaps_jitter_shift"]["band_coverage"] is not None


def test_the_clean_and_anomalous_twins_differ_only_from_the_anomaly_on(shifts):
    series, traces = shifts
    for fam in ("shift_up_lasting", "spike"):
        (c, tc), (a, ta) = [(s, t) for s, t in zip(series, traces, strict=True) if s.family == fam]
        before = a.ts_ms < a.anomaly[0]
        assert np.array_equal(tc.outputs.score[before], ta.outputs.score[before], equal_nan=True)
        assert np.array_equal(tc.firing[before], ta.firing[before])
        assert sd.FAMILIES[fam].metric == c.metric == a.metric

"""bench.scenario_data: seeded SRE metric shapes with labelled anomaly intervals."""

import numpy as np
import pytest

from bench import scenario_data as sd

DAYS = 3.0


def _days(family):
    return max(DAYS, sd.FAMILIES[family].min_days)


def _gen(family, anomalous, seed=1, index=0):
    return sd.generate(family, seed=seed, index=index, days=_days(family), anomalous=anomalous)


@pytest.mark.parametrize("family", list(sd.FAMILIES))
def test_a_seed_gives_the_same_series_and_another_seed_another(family):
    for anomalous in (False, True):
        a, b = _gen(family, anomalous), _gen(family, anomalous)
        for field in ("ts_ms", "values", "stale"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), field
        assert a.anomaly == b.anomaly
    assert not np.array_equal(_gen(family, False).values, _gen(family, False, seed=2).values)
    assert not np.array_equal(_gen(family, False).values, _gen(family, False, index=1).values)


@pytest.mark.parametrize("family", list(sd.FAMILIES))
def test_clean_series_carry_no_anomaly(family):
    s = _gen(family, False)
    assert s.anomaly is None and not s.lasting and not s.in_anomaly().any()


@pytest.mark.parametrize("family", list(sd.FAMILIES))
def test_series_are_a_scrape_grid_prometheus_could_send(family):
    s = _gen(family, True)
    assert np.all(np.diff(s.ts_ms) > 0)
    assert s.ts_ms[0] >= sd.EPOCH_MS - sd.STEP_MS // 2
    steps = np.diff(s.ts_ms)
    assert np.all(np.abs(steps - sd.STEP_MS * np.round(steps / sd.STEP_MS)) <= 1000)
    assert np.all(np.isfinite(s.values))
    assert s.stale.any() == sd.FAMILIES[family].gaps
    if s.is_counter and not sd.FAMILIES[family].resets:
        assert np.all(np.diff(s.values) >= 0)


@pytest.mark.parametrize("family", list(sd.FAMILIES))
def test_the_labelled_interval_lies_where_the_anomaly_was_put(family):
    clean, anom = _gen(family, False), _gen(family, True)
    start, end = anom.anomaly
    inside = anom.in_anomaly()
    assert inside.any()
    assert anom.lasting == bool(inside[-1])
    if anom.lasting:
        assert np.all(inside[np.argmax(inside) :])
    else:
        # ends well before the series does, starts after the baseline had time
        assert end + sd.MARGIN_S * 1000 - sd.STEP_MS <= anom.ts_ms[-1] + sd.STEP_MS
        assert start >= sd.EPOCH_MS + sd.EARLIEST_S * 1000 - sd.STEP_MS
    assert np.array_equal(clean.ts_ms, anom.ts_ms)
    if clean.is_counter:  # the per-scrape increases differ only inside the interval
        same = np.diff(clean.values) == np.diff(anom.values)
        assert same[~inside[1:]].all()
        assert not same[inside[1:]].all()
    else:  # the clean series is the anomalous one without its anomaly
        assert np.array_equal(clean.values[~inside], anom.values[~inside])
        assert not np.array_equal(clean.values[inside], anom.values[inside])


@pytest.mark.parametrize(
    ("family", "minutes"),
    [
        ("shift_up_short", 30),
        ("shift_down_short", 30),
        ("spike", 1),
        ("dip", 1),
        ("variance_burst", 30),
        ("low_rate_errors_burst", 50),
        ("student_t_latency", 60),
        ("lognormal_latency", 60),
        ("shift_up_lasting", 360),
        ("slow_drift", 720),
        ("daily_night_at_day_level", 120),
        ("weekly_saturday_at_weekday_level", 360),
    ],
)
def test_intervals_have_their_documented_length(family, minutes):
    s = _gen(family, True)
    assert s.in_anomaly().sum() == minutes * 4  # 15 s scrapes
    assert s.anomaly[1] - s.anomaly[0] == minutes * 60_000


def test_shifts_move_the_level_by_their_size():
    clean, anom = _gen("shift_up_short", False), _gen("shift_up_short", True)
    inside = anom.in_anomaly()
    assert np.allclose(anom.values[inside] - clean.values[inside], 30.0)  # 6 sigma of 5
    clean, anom = _gen("dip", False), _gen("dip", True)
    assert np.allclose(anom.values[anom.in_anomaly()] - clean.values[anom.in_anomaly()], -60.0)


def test_contextual_anomalies_sit_at_night_and_on_a_saturday():
    s = _gen("daily_night_at_day_level", True)
    hours = ((s.ts_ms[s.in_anomaly()] - sd.EPOCH_MS) % 86_400_000) / 3_600_000
    assert hours.min() >= 1.0 and hours.max() < 3.0
    w = _gen("weekly_saturday_at_weekday_level", True)
    days = (w.ts_ms[w.in_anomaly()] - sd.EPOCH_MS) // 86_400_000
    assert set(days.tolist()) == {12}  # 2024-01-13, a Saturday
    clean = _gen("weekly_saturday_at_weekday_level", False)
    assert np.mean(w.values[w.in_anomaly()]) > 2.0 * np.mean(clean.values[w.in_anomaly()])


def test_low_rate_counter_is_about_one_a_scrape_and_bursts_fifteen_fold():
    clean, anom = _gen("low_rate_errors_burst", False), _gen("low_rate_errors_burst", True)
    inc = np.diff(clean.values)
    assert 0.9 < inc.mean() < 1.1 and np.quantile(inc, 0.98) <= 4
    burst = np.diff(anom.values)[anom.in_anomaly()[1:]]
    assert 12.0 < burst.mean() < 18.0


def test_gaps_carry_a_staleness_marker_and_leave_samples_out():
    s = _gen("gaps_jitter_shift", False)
    n_grid = int(DAYS * 86_400_000 // sd.STEP_MS)
    assert s.ts_ms.shape[0] < n_grid
    after_marker = np.flatnonzero(s.stale[:-1]) + 1
    assert after_marker.shape[0] > 0
    jitter = (s.ts_ms - sd.EPOCH_MS) % sd.STEP_MS
    assert np.any((jitter > 0) & (jitter < sd.STEP_MS - 1))  # not on the grid


def test_restarting_counter_drops_to_near_zero_and_keeps_counting():
    s = _gen("counter_resets_drop", False)
    drops = np.flatnonzero(np.diff(s.values) < 0)
    assert drops.shape[0] >= 1
    for d in drops:
        assert s.values[d + 1] < 800  # part of one scrape's ~750 increase
        assert s.values[d + 2] > s.values[d + 1]


def test_too_few_days_for_a_family_is_an_error():
    with pytest.raises(ValueError, match="at least 14 days"):
        sd.generate("weekly_saturday_at_weekday_level", seed=1, index=0, days=7.0, anomalous=True)
    with pytest.raises(ValueError, match="does not fit"):
        sd._place(np.random.default_rng(0), sd.Grid(np.arange(9000.0) * 15), 1800.0)

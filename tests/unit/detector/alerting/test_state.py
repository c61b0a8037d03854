"""The alert lifecycle kernel: for, hysteresis, escalation, staleness, chunk invariance."""

import itertools
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray

from detector.alerting.state import ALERT_TABLES, FIRING, NORMAL, AlertState, EventKind
from detector.config import AlertRule, SeverityLevel

RULE = AlertRule(
    severities=(
        SeverityLevel(severity="warning", score=0.99),
        SeverityLevel(severity="critical", score=0.9999),
    ),
    for_samples=3,
    for_s=0.0,
    resolve_below=0.9,
    resolve_samples=2,
    resolve_s=0.0,
)


class Tables:
    """The pipeline's per-slot arrays, as many as a test needs (an ``AlertTables``)."""

    al_rule: NDArray[np.int16]
    al_state: NDArray[np.uint8]
    al_level: NDArray[np.uint8]
    al_since: NDArray[np.int64]
    al_run: NDArray[np.int64]
    al_normal_since: NDArray[np.int64]
    al_run_from: NDArray[np.int64]
    al_prev_ts: NDArray[np.int64]
    al_peak: NDArray[np.float64]
    al_base_exp: NDArray[np.float64]
    al_base_lo: NDArray[np.float64]
    al_base_hi: NDArray[np.float64]
    last_ts: NDArray[np.int64]
    stale: NDArray[np.uint8]
    interval_ms: NDArray[np.float64]
    last_input: NDArray[np.float64]
    last_score: NDArray[np.float64]
    last_expected: NDArray[np.float64]
    last_lower: NDArray[np.float64]
    last_upper: NDArray[np.float64]

    def __init__(self, n, rule_of=0):
        for name, dtype, fill in ALERT_TABLES:
            setattr(self, name, np.full(n, fill, dtype=dtype))
        self.al_rule[:] = rule_of
        self.last_ts = np.zeros(n, np.int64)
        self.stale = np.zeros(n, np.uint8)
        self.interval_ms = np.full(n, 1000.0)
        for name in ("last_input", "last_score", "last_expected", "last_lower", "last_upper"):
            setattr(self, name, np.zeros(n))


def run(state, tables, slots, scores, ts=None, outside=None):
    """Values at their expected value, in the middle of their band, unless ``outside`` (a
    bool per sample) puts them below it."""
    slots = np.asarray(slots, np.int32)
    scores = np.asarray(scores, np.float64)
    ts = (
        np.arange(1, len(slots) + 1, dtype=np.int64) * 1000
        if ts is None
        else np.asarray(ts, np.int64)
    )
    values = scores * 10
    out = np.zeros(len(slots), bool) if outside is None else np.asarray(outside, bool)
    lower, upper = values - 1 + 2 * out, values + 1
    return state.step(tables, slots, ts, scores, values, values.copy(), lower, upper)


def kinds(events):
    return [(e.kind, e.level) for e in events]


def test_fires_after_for_samples_and_resolves_after_normal_run():
    state, t = AlertState([RULE]), Tables(1)
    ev = run(state, t, [0] * 7, [0.5, 0.995, 0.995, 0.995, 0.5, 0.5, 0.5])
    assert kinds(ev) == [(EventKind.FIRE, 1), (EventKind.RESOLVE, 1)]
    fire, resolve = ev
    assert fire.since_ms == 2000 and fire.ts_ms == 4000 and fire.value == 9.95
    assert resolve.ts_ms == 6000  # two normal samples
    assert t.al_state[0] == NORMAL


def test_a_normal_sample_ends_a_pending_run():
    state, t = AlertState([RULE]), Tables(1)
    assert run(state, t, [0] * 6, [0.995, 0.995, 0.5, 0.995, 0.995, 0.5]) == []
    assert t.al_state[0] == NORMAL


def test_a_pending_run_holds_until_the_series_has_come_back():
    # pending-side hysteresis: a sample inside the band that scores at least resolve_below
    # (0.9), or lies in the band's outer half, neither ends nor advances the run
    state, t = AlertState([RULE]), Tables(1)
    ev = run(state, t, [0] * 4, [0.995, 0.95, 0.995, 0.995])
    assert [(e.kind, e.ts_ms) for e in ev] == [(EventKind.FIRE, 4000)]
    state, t = AlertState([RULE]), Tables(1)
    assert run(state, t, [0] * 3, [0.995, 0.95, 0.995]) == []  # two anomalous samples
    assert t.al_state[0] != NORMAL
    # a moderate shift below the expected value 10, band [6, 14]: samples at 7.5 are
    # inside the band and score low, but in its outer half (below the midpoint 8)
    values = np.array([5.0, 7.5, 5.5, 7.5, 5.0])
    scores = np.array([0.995, 0.5, 0.995, 0.5, 0.995])
    for inner, fires in ((7.5, True), (8.5, False)):
        state, t = AlertState([RULE]), Tables(1)
        v = np.where(values == 7.5, inner, values)
        ev = state.step(
            t,
            np.zeros(5, np.int32),
            np.arange(1, 6, dtype=np.int64) * 1000,
            scores,
            v,
            np.full(5, 10.0),
            np.full(5, 6.0),
            np.full(5, 14.0),
        )
        assert [(e.kind, e.ts_ms) for e in ev] == ([(EventKind.FIRE, 5000)] if fires else [])


def test_hysteresis_samples_between_normal_and_threshold_do_not_resolve():
    state, t = AlertState([RULE]), Tables(1)
    ev = run(state, t, [0] * 9, [0.995] * 3 + [0.95, 0.5, 0.95, 0.5, 0.95, 0.5])
    assert kinds(ev) == [(EventKind.FIRE, 1)]  # never two normal samples in a row
    assert t.al_state[0] == FIRING


def test_a_value_outside_the_band_keeps_a_started_run_going():
    state, t = AlertState([RULE]), Tables(1)
    # a shift: the first sample scores high, the next ones fade but stay outside the band
    ev = run(
        state,
        t,
        [0] * 9,
        [0.5, 0.995, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
        outside=[0, 1, 1, 1, 1, 0, 0, 0, 0],
    )
    assert [(e.kind, e.ts_ms) for e in ev] == [(EventKind.FIRE, 4000), (EventKind.RESOLVE, 7000)]
    # outside the band alone never starts a run
    state, t = AlertState([RULE]), Tables(1)
    assert run(state, t, [0] * 5, [0.5] * 5, outside=[1] * 5) == []


def test_escalates_once_when_the_higher_threshold_is_reached():
    state, t = AlertState([RULE]), Tables(1)
    ev = run(state, t, [0] * 6, [0.995, 0.995, 0.995, 0.99999, 0.99999, 0.995])
    assert kinds(ev) == [(EventKind.FIRE, 1), (EventKind.ESCALATE, 2)]
    assert ev[1].peak == 0.99999


def test_fires_at_the_highest_level_reached_while_pending():
    state, t = AlertState([RULE]), Tables(1)
    assert kinds(run(state, t, [0] * 3, [0.99999, 0.995, 0.995])) == [(EventKind.FIRE, 2)]


def test_for_seconds_and_resolve_seconds_are_both_required():
    rule = RULE.model_copy(
        update={"for_samples": 1, "for_s": 10.0, "resolve_samples": 1, "resolve_s": 5.0}
    )
    state, t = AlertState([rule]), Tables(1)
    ev = run(
        state,
        t,
        [0] * 8,
        [0.995] * 4 + [0.5] * 4,
        ts=[0, 5000, 9000, 10000, 11000, 13000, 16000, 17000],
    )
    assert [(e.kind, e.ts_ms) for e in ev] == [(EventKind.FIRE, 10000), (EventKind.RESOLVE, 16000)]


DEFAULT = AlertRule()  # for_s 60 and resolve_s 120, one sample each


def test_default_for_fires_on_the_first_five_minute_sample_and_fourth_at_15_s():
    # a sample stands for the interval ending at it, as Prometheus's for: sees a series
    state, t = AlertState([DEFAULT]), Tables(1)
    ev = run(state, t, [0] * 4, [0.5, 0.99999, 0.5, 0.5], ts=[0, 300_000, 600_000, 900_000])
    assert [(e.kind, e.ts_ms) for e in ev] == [
        (EventKind.FIRE, 300_000),
        (EventKind.RESOLVE, 600_000),
    ]
    state, t = AlertState([DEFAULT]), Tables(1)
    ts = [15_000 * k for k in range(16)]
    ev = run(state, t, [0] * 16, [0.5] + [0.99999] * 4 + [0.5] * 11, ts=ts)
    # 4th anomalous sample: 45 s since the first plus its own 15 s; resolved after 8
    # normal samples (105 s since the first plus 15 s)
    assert [(e.kind, e.ts_ms) for e in ev] == [(EventKind.FIRE, ts[4]), (EventKind.RESOLVE, ts[12])]
    assert ev[0].since_ms == ts[1]  # the alert still starts at its first anomalous sample
    state, t = AlertState([DEFAULT]), Tables(1)
    assert run(state, t, [0] * 5, [0.5] + [0.99999] * 3 + [0.5], ts=ts[:5]) == []


def test_a_samples_interval_is_capped_at_five_minutes_and_zero_for_the_first():
    state, t = AlertState([DEFAULT]), Tables(1)
    assert run(state, t, [0], [0.99999], ts=[0]) == []  # no previous sample: 0 s long
    state, t = AlertState([DEFAULT.model_copy(update={"for_s": 400.0})]), Tables(1)
    # after an hour's gap the first sample stands for 300 s; 100 s more make 400
    ev = run(state, t, [0] * 3, [0.5, 0.99999, 0.99999], ts=[0, 3_600_000, 3_700_000])
    assert [(e.kind, e.ts_ms) for e in ev] == [(EventKind.FIRE, 3_700_000)]


def test_nan_scores_and_series_without_rule_change_nothing():
    state, t = AlertState([RULE]), Tables(2)
    t.al_rule[1] = -1
    assert run(state, t, [0, 1, 0, 1, 0, 1], [0.995, 1.0, math.nan, 1.0, 0.995, 1.0]) == []
    assert t.al_state[1] == NORMAL and t.al_state[0] != NORMAL


def test_sweep_resolves_stale_and_silent_firing_series():
    state = AlertState([RULE], stale_intervals=5.0, stale_min_s=10.0)
    t = Tables(3)
    run(state, t, [0, 1, 2] * 3, [0.995] * 9)
    assert list(t.al_state) == [FIRING] * 3
    t.last_ts[:] = 100_000
    t.stale[1] = 1  # a staleness marker at 100 s
    t.last_ts[2] = 80_000  # silent for 30 s > max(5 intervals, 10 s)
    ev = state.sweep(t, 3, now_ms=110_000)
    assert [(e.slot, e.kind) for e in ev] == [(2, EventKind.STALE)]
    # a marker alone is one failed scrape: it resolves once the silence after it lasts
    assert list(t.al_state) == [FIRING, FIRING, NORMAL]
    t.last_ts[0] = 110_000  # slot 0 keeps sending
    ev = state.sweep(t, 3, now_ms=110_001)
    assert [(e.slot, e.kind) for e in ev] == [(1, EventKind.STALE)]
    assert list(t.al_state) == [FIRING, NORMAL, NORMAL]
    assert [e.slot for e in state.firing(t, 3, now_ms=110_001)] == [0]


def test_a_failed_scrape_keeps_a_firing_alert():
    """A staleness marker followed by samples again within the silence limit (one failed
    scrape during an incident) neither resolves nor pages again."""
    state = AlertState([RULE], stale_intervals=5.0, stale_min_s=10.0)
    t = Tables(1)
    run(state, t, [0] * 3, [0.995] * 3)
    assert t.al_state[0] == FIRING
    t.last_ts[0] = 4_000  # the marker
    t.stale[0] = 1
    assert state.sweep(t, 1, now_ms=9_000) == []
    t.stale[0] = 0
    ev = run(state, t, [0], [0.995], ts=[5_000])
    assert ev == [] and t.al_state[0] == FIRING


@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from([0.1, 0.95, 0.995, 0.99999, math.nan])),
        max_size=80,
    ),
    st.lists(st.integers(1, 79), max_size=5),
)
def test_feeding_in_pieces_gives_the_same_events_and_state(samples, cuts):
    slots = [s for s, _ in samples]
    scores = [x for _, x in samples]
    ts = list(range(1000, 1000 * (len(samples) + 1), 1000))
    whole_state, whole = AlertState([RULE]), Tables(3)
    expected = run(whole_state, whole, slots, scores, ts) if samples else []
    piece_state, pieces = AlertState([RULE]), Tables(3)
    got = []
    bounds = [0, *sorted(c for c in set(cuts) if c < len(samples)), len(samples)]
    for a, b in itertools.pairwise(bounds):
        if b > a:
            got += run(piece_state, pieces, slots[a:b], scores[a:b], ts[a:b])
    assert [(e.slot, e.kind, e.level, e.ts_ms) for e in got] == [
        (e.slot, e.kind, e.level, e.ts_ms) for e in expected
    ]
    for name, _, _ in ALERT_TABLES:
        assert np.array_equal(getattr(whole, name), getattr(pieces, name), equal_nan=True), name


def test_events_carry_the_band_from_before_the_anomaly():
    state, t = AlertState([RULE]), Tables(1)
    slots = np.zeros(4, np.int32)
    ts = np.arange(1, 5, dtype=np.int64) * 1000
    scores = np.array([0.5, 0.995, 0.995, 0.995])
    values = np.array([1.0, 9.0, 9.0, 9.0])
    # the band widens as the detector learns the anomalous samples
    lower = np.array([0.0, 0.5, 0.0, -1.0])
    upper = np.array([2.0, 2.5, 4.0, 6.0])
    expected = np.array([1.0, 1.5, 2.0, 2.5])
    [fire] = state.step(t, slots, ts, scores, values, expected, lower, upper)
    assert fire.kind == EventKind.FIRE and fire.value == 9.0
    assert (fire.expected, fire.lower, fire.upper) == (1.5, 0.5, 2.5)  # the run's first sample

"""Replaying history through one config's service path, and what it tallies up
(detector.backtest.replay, detector.backtest.tally), with in-memory series."""

from __future__ import annotations

import numpy as np
import pytest

from detector.alerting.state import AlertEvent, EventKind
from detector.backtest import span, tally
from detector.backtest.replay import REFUSED, UNTRACKED, Replay, SeriesBlock
from detector.config import AlertRule, DetectorConfig, Limits, SeriesRule

STEP_MS = 60_000
END_S = 1_764_547_200
LATENCY = (("__name__", "latency_seconds"), ("job", "api"))
QUIET = (("__name__", "queue_depth"), ("job", "worker"))


def history(
    days: float = 2.0, *, incident_at_h: float = 40.0, incident_min: int = 40, seed: int = 3
) -> tuple[span.Span, dict[tuple, tuple[np.ndarray, np.ndarray]]]:
    grid = span.build_span(end_s=END_S, range_s=days * 86400, step_s=60, lead_s=0)
    ts = grid.first_ms + np.arange(grid.n_points, dtype=np.int64) * STEP_MS
    rng = np.random.default_rng(seed)
    lat = 0.2 + rng.normal(0, 0.005, ts.shape[0])
    at = int(incident_at_h * 60)
    lat[at : at + incident_min] += 0.25
    quiet = 50 + rng.normal(0, 1.0, ts.shape[0])
    return grid, {LATENCY: (ts, lat), QUIET: (ts, quiet)}


def blocks_of(data, lo_ms: int, hi_ms: int, only=None) -> list[SeriesBlock]:
    out = []
    for labels, (ts, vs) in data.items():
        if only is not None and labels != only:
            continue
        sel = (ts >= lo_ms) & (ts <= hi_ms)
        out.append(SeriesBlock(labels=labels, ts_ms=ts[sel], values=vs[sel]))
    return out


def replay(cfg, grid, data, *, chunk_points: int, only=None):
    events: list[AlertEvent] = []
    r = Replay(cfg, on_events=events.extend)
    t = tally.Tally(
        cfg.alerts,
        start_ms=grid.start_ms,
        end_ms=grid.end_ms,
        labels_of=r.labels_of,
        rule_of=r.rule_of,
    )
    for index in range(0, grid.n_points, chunk_points):
        n = min(chunk_points, grid.n_points - index)
        grid_ms = grid.first_ms + np.arange(index, index + n, dtype=np.int64) * STEP_MS
        r.feed(blocks_of(data, int(grid_ms[0]), int(grid_ms[-1]), only), grid_ms=grid_ms)
        t.apply(events)
        events.clear()
    r.finish(grid.end_ms + STEP_MS)
    t.apply(events)
    return r, t.outcome()


def test_the_incident_pages_and_the_quiet_series_does_not():
    grid, data = history()
    r, out = replay(DetectorConfig(), grid, data, chunk_points=500)
    assert r.counts.series_tracked == 2 and r.counts.samples == 2 * grid.n_points
    assert [p.series for p in out.pages] == [LATENCY]
    page = out.pages[0]
    incident_ms = grid.first_ms + 40 * 60 * STEP_MS
    assert page.since_ms == incident_ms and page.fired_ms == incident_ms  # for_s 60 at 1m
    assert page.resolution is tally.Resolution.BACK_IN_BAND
    assert incident_ms + 40 * STEP_MS <= page.ended_ms <= incident_ms + 45 * STEP_MS
    assert page.value > page.upper and page.peak_score >= 0.9999
    assert out.rules[0].pages == 1 and sum(out.rules[0].per_day.values()) == 1
    assert out.top[0].series == LATENCY and out.top[0].pages == 1


@pytest.mark.parametrize("chunk_points", [1, 7, 333, 11_000])
def test_chunking_changes_nothing(chunk_points):
    grid, data = history(days=1.0, incident_at_h=20.0)
    _, whole = replay(DetectorConfig(), grid, data, chunk_points=grid.n_points)
    _, chunked = replay(DetectorConfig(), grid, data, chunk_points=chunk_points)
    assert chunked.pages == whole.pages and len(whole.pages) == 1


def test_a_series_replayed_alone_gets_what_it_got_among_others():
    grid, data = history(days=1.0, incident_at_h=20.0)
    _, together = replay(DetectorConfig(), grid, data, chunk_points=400)
    _, alone = replay(DetectorConfig(), grid, data, chunk_points=400, only=LATENCY)
    assert alone.pages == together.pages


def test_series_rules_decide_what_is_tracked_and_bad_label_sets_are_refused():
    cfg = DetectorConfig(
        series=(SeriesRule(name="lat", match='{__name__="latency_seconds"}'),),
        limits=Limits(max_label_value_bytes=16),
    )
    grid, data = history(days=0.5, incident_at_h=6.0)
    long_value = (("__name__", "latency_seconds"), ("job", "x" * 40))
    data[long_value] = data[LATENCY]
    r, out = replay(cfg, grid, data, chunk_points=200)
    assert r.slot_of(QUIET) == UNTRACKED
    assert r.slot_of(long_value) == REFUSED
    assert r.slot_of(LATENCY) is not None and r.slot_of(LATENCY) >= 0
    assert (r.counts.series_tracked, r.counts.series_untracked, r.counts.series_refused) == (
        1,
        1,
        1,
    )
    assert [p.series for p in out.pages] == [LATENCY]


def test_a_series_that_falls_silent_while_firing_resolves_as_stale():
    grid, data = history(days=1.0, incident_at_h=20.0, incident_min=30)
    ts, vs = data[LATENCY]
    cut = 20 * 60 + 10  # the series stops ten minutes into its incident
    data[LATENCY] = (ts[:cut], vs[:cut])
    _, out = replay(DetectorConfig(), grid, data, chunk_points=100)
    (page,) = out.pages
    assert page.resolution is tally.Resolution.STALE
    last_ms = int(ts[cut - 1])
    # the sweep at each grid point: silent for max(5 intervals, 60 s) = 5 min
    assert page.ended_ms == last_ms + 6 * STEP_MS


# --- tally, from events --------------------------------------------------------------
def ev(kind, slot, ts_ms, *, level=1, peak=0.99995, adopted=None):
    return AlertEvent(
        slot=slot,
        kind=kind,
        level=level,
        ts_ms=ts_ms,
        since_ms=ts_ms - 60_000,
        score=0.99995,
        value=9.0,
        expected=1.0,
        lower=0.5,
        upper=1.5,
        peak=peak,
        adopted_after_s=adopted,
    )


def labels(pod: str, ns: str = "a") -> tuple:
    return (("__name__", "x"), ("namespace", ns), ("pod", pod))


def make_tally(rules, slots):
    return tally.Tally(
        rules,
        start_ms=10 * 86_400_000,
        end_ms=12 * 86_400_000 - 1,
        labels_of=lambda s: slots[s],
        rule_of=lambda s: 0,
    )


def test_pages_carry_their_resolution_severity_and_peak():
    day = 86_400_000
    t = make_tally((AlertRule(),), {0: labels("p0"), 1: labels("p1"), 2: labels("p2")})
    t.apply(
        [
            ev(EventKind.FIRE, 0, 10 * day + 1000),
            ev(EventKind.ESCALATE, 0, 10 * day + 2000, level=2, peak=0.9999999),
            ev(EventKind.RESOLVE, 0, 10 * day + 9000, peak=0.9999999, adopted=3600.0),
            ev(EventKind.FIRE, 1, 11 * day),
            ev(EventKind.STALE, 1, 11 * day + 5000),
            ev(EventKind.FIRE, 2, 11 * day + 7000),
        ]
    )
    out = t.outcome()
    first, second, third = out.pages
    assert (first.resolution, first.severity, first.peak_score, first.adopted_after_s) == (
        tally.Resolution.ADOPTED,
        "critical",
        0.9999999,
        3600.0,
    )
    assert second.resolution is tally.Resolution.STALE and second.severity == "warning"
    assert third.resolution is tally.Resolution.FIRING_AT_END and third.ended_ms is None
    assert (
        third.firing_s(start_ms=t.start_ms, end_ms=t.end_ms)
        == (12 * day - 1 - (11 * day + 7000)) / 1000
    )
    assert out.rules[0].per_day == {"1970-01-11": 1, "1970-01-12": 2}


def test_alerts_of_the_warm_up_are_listed_but_not_counted():
    day = 86_400_000
    t = make_tally((AlertRule(),), {0: labels("p0"), 1: labels("p1")})
    t.apply(
        [
            ev(EventKind.FIRE, 0, 9 * day),
            ev(EventKind.RESOLVE, 0, 9 * day + 5000),
            ev(EventKind.FIRE, 1, 9 * day + 10),
            ev(EventKind.RESOLVE, 1, 10 * day + 5000),
        ]
    )
    out = t.outcome()
    assert [(p.series, p.before_range) for p in out.pages] == [(labels("p1"), True)]
    assert out.n_pages == 0 and out.top[0].pages == 0


def test_a_by_rule_notifies_once_per_group_firing():
    day = 86_400_000
    rule = AlertRule(by=("namespace",))
    slots = {0: labels("p0"), 1: labels("p1"), 2: labels("p2", ns="b")}
    t = make_tally((rule,), slots)
    t.apply(
        [
            ev(EventKind.FIRE, 0, 10 * day),
            ev(EventKind.FIRE, 1, 10 * day + 10),
            ev(EventKind.FIRE, 2, 10 * day + 20),
            ev(EventKind.RESOLVE, 0, 10 * day + 30),
            ev(EventKind.RESOLVE, 1, 10 * day + 40),
            ev(EventKind.FIRE, 0, 10 * day + 50),
        ]
    )
    (figures,) = t.outcome().rules
    assert (figures.pages, figures.notifications, figures.series_paged) == (4, 3, 3)


def test_compare_lists_the_series_paging_under_one_config_only():
    day = 86_400_000

    def outcome(slots_firing):
        slots = {k: labels(f"p{k}") for k in range(4)}
        t = make_tally((AlertRule(),), slots)
        t.apply([ev(EventKind.FIRE, s, 10 * day + s) for s in slots_firing])
        return t.outcome()

    c = tally.compare(outcome([0, 1, 2]), outcome([1, 3]))
    assert [s.series for s in c.only_a] == [labels("p0"), labels("p2")]
    assert [s.series for s in c.only_b] == [labels("p3")]
    assert (c.both, c.pages_a, c.pages_b) == (1, 3, 2)
    assert c.per_rule == {"VigilAnomaly": (3, 2)}


def test_two_rules_of_one_name_are_counted_apart_and_once_each():
    day = 86_400_000
    rules = (AlertRule(match='{pod="p0"}'), AlertRule(match='{pod="p1"}'))
    slots = {0: labels("p0"), 1: labels("p1")}
    t = tally.Tally(
        rules,
        start_ms=10 * day,
        end_ms=12 * day - 1,
        labels_of=lambda s: slots[s],
        rule_of=lambda s: s,
    )
    t.apply([ev(EventKind.FIRE, 0, 10 * day), ev(EventKind.FIRE, 1, 10 * day + 5)])
    out = t.outcome()
    assert [r.pages for r in out.rules] == [1, 1] and out.n_pages == 2
    assert sorted(s.rule_index for s in out.top) == [0, 1]
    assert tally.compare(out, out).per_rule == {"VigilAnomaly": (2, 2)}

"""A weekly series found from its own history: period detection that prefers the shorter
period unless the longer repeats clearly better, counters judged by their rate, the move
to a weekly profile of the same bin width, the longer history's query, and a checkpoint
that brings a weekly series back to its weekly profile."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from detector import checkpoint
from detector.config import EnsembleParams, WarmStartConfig
from detector.detectors.ensemble import EnsembleFamily, params_for_period
from detector.detectors.router import DetectorSet
from detector.warmstart.periods import correlations, detect_period, rate_of
from detector.warmstart.prometheus import history_query, merge_history, period_history_query
from tests.unit.detector.test_checkpoint import Detector

DAY, WEEK = 86_400.0, 604_800.0
EPOCH_MONDAY_MS = 1_700_438_400_000  # 2023-11-20 00:00 UTC, a Monday


def _traffic(
    days: float, step_s: float, weekend_share: float, seed: int = 0
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Daily traffic (20 at night, 100 in the afternoon), weekends at ``weekend_share``."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, days * DAY, step_s)
    curve = 20 + 80 * (0.5 - 0.5 * np.cos(2 * np.pi * ((t % DAY) / 3600 - 4) / 24))
    level = np.where((t // DAY) % 7 >= 5, weekend_share * curve, curve)
    x = level + (1 + 0.04 * level) * rng.standard_normal(t.shape[0])
    return (EPOCH_MONDAY_MS + t * 1000).astype(np.int64), x


def test_a_weekday_weekend_series_is_weekly_and_a_daily_one_stays_daily():
    weekly = _traffic(15, 300, 0.35)
    daily = _traffic(15, 300, 1.0)
    r = correlations(*daily, (DAY, WEEK))
    assert abs(r[DAY] - r[WEEK]) < 0.05  # a daily series repeats as well a week apart
    assert detect_period(*daily, (DAY, WEEK)) == DAY  # ... and keeps the shorter period
    assert detect_period(*weekly, (DAY, WEEK)) == WEEK
    assert detect_period(*_traffic(13, 300, 0.35), (DAY, WEEK)) == DAY  # a week not seen twice


def _running_total(rate: NDArray[np.float64], step_s: float, reset_every: int) -> NDArray:
    total = np.cumsum(rate * step_s)
    for start in range(reset_every, total.shape[0], reset_every):
        total[start:] -= total[start - 1]  # the process restarted: the total starts over
    return total


def test_a_counter_is_judged_by_its_rate_not_its_running_total():
    ts, rate = _traffic(15, 300, 0.35)
    total = _running_total(np.maximum(rate, 0.0), 300.0, reset_every=900)
    r_ts, r = rate_of(ts, total)
    assert np.allclose(r[r_ts < ts[900]], np.maximum(rate, 0.0)[1:900])  # before a reset
    assert detect_period(ts, total, (DAY, WEEK), counter=True) == WEEK
    # a noise rate's running total is a ramp with resets: no period in the rate
    noise = np.abs(np.random.default_rng(3).normal(50, 5, ts.shape[0]))
    assert detect_period(ts, _running_total(noise, 300.0, 2000), (DAY, WEEK), counter=True) is None


def test_a_weekly_period_gets_the_same_bin_width_over_the_week():
    daily = EnsembleParams()
    weekly = params_for_period(daily, WEEK * 1000)
    assert weekly is not None
    assert (weekly.season_period_s, weekly.season_bins) == (WEEK, 336)
    assert weekly.model_copy(update={"season_period_s": DAY, "season_bins": 48}) == daily
    assert params_for_period(daily, DAY * 1000) is None  # the family's own period
    assert params_for_period(EnsembleParams(season_bins=0), WEEK * 1000) is None
    family = EnsembleFamily(weekly, capacity=1)
    assert family.bytes_per_series() <= 4096


def test_a_weekly_series_moves_to_its_own_family_and_others_stay():
    dets = DetectorSet()
    dets.configure(0, EnsembleParams())
    dets.configure(1, EnsembleParams())
    assert dets.set_period(0, WEEK * 1000)
    assert dets.set_period(1, DAY * 1000)
    assert dets.period_of(0) == WEEK * 1000 and dets.period_of(1) == DAY * 1000
    assert int(dets.family_of[0]) != int(dets.family_of[1])
    weekly = dets.params[int(dets.family_of[0])]
    assert isinstance(weekly, EnsembleParams) and weekly.season_bins == 336
    # a third weekly series joins the same weekly family
    dets.configure(2, EnsembleParams())
    dets.set_period(2, WEEK * 1000)
    assert dets.family_of[2] == dets.family_of[0] and len(dets.families) == 2


def test_the_longer_history_is_a_subquery_of_raw_samples_merged_before_the_recent_one():
    sel = '{__name__="x"}'
    assert history_query(sel, 6 * 3600) == sel + "[6h]"
    cfg = WarmStartConfig()
    assert period_history_query(sel, cfg) == sel + "[360h:300s]"
    assert period_history_query(sel, cfg.model_copy(update={"detect_period": False})) is None
    short = cfg.model_copy(update={"period_history_s": 3600.0})
    assert period_history_query(sel, short) is None  # history_s covers it already
    old_ts = np.array([0, 300, 600, 900], np.int64)
    ts = np.array([700, 715], np.int64)
    merged_ts, merged_bits, sparse = merge_history(
        old_ts, old_ts.astype(np.float64).view(np.uint64), ts, ts.astype(np.float64).view(np.uint64)
    )
    assert merged_ts.tolist() == [0, 300, 600, 700, 715] and sparse == 3
    assert merged_bits.view(np.float64).tolist() == [0, 300, 600, 700, 715]
    only_old = merge_history(old_ts, old_ts.view(np.uint64), ts[:0], ts[:0].view(np.uint64))
    assert only_old[0].tolist() == old_ts.tolist() and only_old[2] == 4


@pytest.mark.parametrize("weekly_first", [True, False])
def test_a_checkpoint_brings_a_weekly_series_back_to_its_weekly_profile(tmp_path, weekly_first):
    d = Detector()
    names = ["a", "b", "c"]
    d.feed(names, 1000)
    dets = d.pipeline.detectors
    weekly_slot = 0 if weekly_first else 2
    dets.set_period(weekly_slot, WEEK * 1000)
    for t in range(2, 60):
        d.feed(names, t * 1000)
    checkpoint.write(tmp_path, checkpoint.snapshot(d.registry, d.pipeline, now_ms=60_000))
    back = Detector()
    result = checkpoint.restore(tmp_path, back.registry, back.pipeline)
    assert result.restored == 3
    bdets = back.pipeline.detectors
    for slot in range(3):
        assert bdets.period_of(slot) == dets.period_of(slot), slot
        f, bf = int(dets.family_of[slot]), int(bdets.family_of[slot])
        for name, arr in dets.families[f].arrays().items():
            got = bdets.families[bf].arrays()[name][int(bdets.row_of[slot])]
            assert np.array_equal(got, arr[int(dets.row_of[slot])], equal_nan=True), (slot, name)


def test_warm_start_history_teaches_but_never_pages():
    """An incident inside the history (or a weekend the profile has not learned yet) is
    learned from, not paged for; the live samples after it page as usual."""
    from prometheus_client import CollectorRegistry

    from detector.alerting.state import AlertState, EventKind
    from detector.config import DetectorConfig
    from detector.metrics import build_metrics
    from detector.pipeline.ingest import Ingestor
    from detector.pipeline.worker import Batch, Pipeline
    from detector.remote_write import encode
    from detector.series.registry import SeriesRegistry

    cfg = DetectorConfig()
    events: list = []
    pipeline = Pipeline(
        build_metrics(CollectorRegistry()), alerts=AlertState(cfg.alerts), on_events=events.extend
    )
    ingestor = Ingestor(SeriesRegistry(cfg), max_decompressed_bytes=1 << 24, warm_start=True)
    live_t0 = EPOCH_MONDAY_MS + 2 * 86_400_000
    first = encode.Series(labels=(("__name__", "latency"),), samples=[(live_t0, 100.0)])
    batch = ingestor.ingest(encode.compress(encode.encode_v1([first])), 1).batch
    pipeline.process([batch])  # the first live sample is held while the history is read
    slot = int(batch.slots[0])
    rng = np.random.default_rng(5)
    hist_ts = EPOCH_MONDAY_MS + np.arange(0, 2 * 86_400_000, 15_000, dtype=np.int64)
    hist = 100 + rng.normal(0, 1, hist_ts.shape[0])
    hist[-2000:-1000] += 40  # a four-hour incident, long over
    pipeline.process(
        [
            Batch(
                slots=np.full(hist_ts.shape[0], slot, np.int32),
                ts=hist_ts,
                bits=hist.view(np.uint64),
                warmed=(slot,),
            )
        ]
    )
    assert [e for e in events if e.kind is EventKind.FIRE] == []
    live_ts = live_t0 + 15_000 * np.arange(1, 40, dtype=np.int64)
    live = np.full(live_ts.shape[0], 160.0)
    for t, x in zip(live_ts, live, strict=True):
        one = np.array([x])
        pipeline.process(
            [Batch(slots=np.array([slot], np.int32), ts=np.array([t]), bits=one.view(np.uint64))]
        )
    fires = [e for e in events if e.kind is EventKind.FIRE]
    assert len(fires) == 1 and fires[0].ts_ms >= live_t0


@pytest.mark.parametrize("counter", [False, True])
def test_a_counter_learns_only_the_full_resolution_history(counter):
    """The period comes from the whole history either way; a counter's sparse part (its
    rate between samples 5 minutes apart is a 5-minute average, much smoother than the
    rate between scrapes) is not learned, a gauge's is."""
    from detector.warmstart.prometheus import prepare_history

    ts, rate = _traffic(15, 300, 0.35)
    values = _running_total(np.maximum(rate, 0.0), 300.0, 10**9) if counter else rate
    sparse = ts.shape[0] - 72  # the last 6 h at 5 minutes stand for the full-resolution part
    kept_ts, kept_bits, period_ms = prepare_history(
        ts, values.view(np.uint64), sparse, counter=counter, cfg=WarmStartConfig()
    )
    assert period_ms == WEEK * 1000
    assert kept_ts.tolist() == (ts[sparse:] if counter else ts).tolist()
    assert kept_bits.tolist() == values.view(np.uint64)[-kept_ts.shape[0] :].tolist()


def test_one_day_long_incident_does_not_make_a_daily_series_weekly():
    """A day at three times the traffic lowers the correlation a day apart on both of its
    neighbours and a week apart only once; its day has no twin a week later, so the
    whole-day check refuses the week (it used to pass, and then paged every week)."""
    for seed in range(5):
        ts, x = _traffic(15, 300, 1.0, seed=seed)
        day = (ts - ts[0]) // 86_400_000
        x = np.where(day == 5, 3.0 * x, x)
        assert detect_period(ts, x, (DAY, WEEK)) == DAY, seed
    assert detect_period(*_traffic(15, 300, 0.35), (DAY, WEEK)) == WEEK


def test_a_constant_or_dense_history_is_cheap_and_periodless():
    n = 15 * 86_400  # a sample a second for 15 days
    ts = EPOCH_MONDAY_MS + np.arange(n, dtype=np.int64) * 1000
    assert detect_period(ts, np.full(n, 1e6), (DAY, WEEK)) is None
    assert detect_period(ts, np.full(n, 5.0), (DAY, WEEK)) is None
    assert correlations(ts, np.sin(np.arange(n) / 8000.0), (DAY, WEEK))  # a 20k-point grid


def test_only_the_exact_series_is_learned_from_an_answer():
    from detector.warmstart.prometheus import parse_matrix

    result: list[dict[str, object]] = [
        {"metric": {"__name__": "x", "a": "1", "b": "2"}, "values": [[1, "9"], [2, "9"]]},
        {"metric": {"__name__": "x", "a": "1"}, "values": [[1, "1"], [3, "3"]]},
    ]
    ts, bits = parse_matrix(result, (("__name__", "x"), ("a", "1")))
    assert ts.tolist() == [1000, 3000] and bits.view(np.float64).tolist() == [1.0, 3.0]
    assert parse_matrix(result)[0].shape[0] == 4


def test_an_alert_names_the_weekly_settings_a_series_is_scored_with():
    from detector.runtime import TableFacts

    d = Detector()
    d.feed(["a", "b"], 1000)
    facts = TableFacts(d.registry, d.pipeline)
    assert facts.detector_of(0)[1]["season_bins"] == 48
    d.pipeline.detectors.set_period(0, WEEK * 1000)
    kind, settings = facts.detector_of(0)
    assert kind == "ensemble"
    assert (settings["season_bins"], settings["season_period_s"]) == (336, WEEK)
    assert facts.detector_of(1)[1]["season_bins"] == 48

"""The seasonal re-check of live series: when a series is looked at (its schedule, from
how far back its history goes), what it makes of a history, the pacing and the pause for
warm starts, failures that are counted and retried without losing the schedule, and the
worker's move of a live series (fresh weekly state, history learned, alert state kept,
nobody paged). Time is a stand-in clock advanced by a stand-in sleep: nothing sleeps."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from detector.alerting.state import FIRING, AlertState, EventKind
from detector.config import DetectorConfig, EnsembleParams, WarmStartConfig
from detector.metrics import build_metrics
from detector.pipeline.worker import Batch, Pipeline, SlotSpec
from detector.warmstart import recheck
from detector.warmstart.prometheus import SeriesHistory

DAY_MS, WEEK_MS, HOUR_MS = 86_400_000, 604_800_000, 3_600_000
T0 = 1_700_438_400_000  # 2023-11-20 00:00 UTC, a Monday
EMPTY = (np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.uint64))


def _history(first_ms: int | None, last_ms: int | None, period_ms: float | None) -> SeriesHistory:
    ts = np.empty(0, np.int64) if first_ms is None else np.array([first_ms, last_ms], np.int64)
    return SeriesHistory(ts, ts.astype(np.float64).view(np.uint64), period_ms, first_ms, last_ms)


# ---------------------------------------------------------------- schedule


def _schedule() -> recheck.Schedule:
    return recheck.Schedule(interval_ms=DAY_MS, span_ms=2 * WEEK_MS + HOUR_MS)


def test_a_new_series_without_history_is_due_once_its_history_can_show_a_week_twice():
    s = _schedule()
    s.after_read(0, T0, _history(None, None, None))  # a new deployment: empty history
    s.after_read(1, T0, _history(T0 - 3 * DAY_MS, T0, DAY_MS))  # three days of it
    s.after_read(2, T0, _history(T0 - 15 * DAY_MS, T0, DAY_MS))  # 15 days, still daily
    s.after_read(3, T0, None)  # the read failed: unknown, try again an interval later
    assert s.due[:4].tolist() == [
        T0 + 2 * WEEK_MS + HOUR_MS,
        T0 - 3 * DAY_MS + 2 * WEEK_MS + HOUR_MS,
        T0 + DAY_MS,
        T0 + DAY_MS,
    ]
    assert s.pick(T0 + DAY_MS - 1, 10) == []
    assert s.pick(T0 + DAY_MS, 10) == [2, 3]
    assert s.next_due_ms() == T0 + DAY_MS


def test_pick_takes_the_longest_due_first_and_at_most_the_limit():
    s = _schedule()
    for slot, due in enumerate([50, 10, 30, 20, 99]):
        s._at(slot, due)
    assert s.pick(60, 3) == [1, 3, 2]
    assert s.pick(60, 10) == [1, 3, 2, 0]
    s.later(1, 60)
    assert s.due[1] == 60 + DAY_MS


def test_series_restored_from_a_checkpoint_are_due_at_once_others_keep_their_time():
    s = _schedule()
    s.after_read(1, T0, None)
    s.add_unknown(4, T0 - 5)
    assert s.due[:4].tolist() == [T0 - 5, T0 + DAY_MS, T0 - 5, T0 - 5]
    assert s.due[4:].tolist() == [recheck.NEVER_MS] * (s.due.shape[0] - 4)
    assert recheck.Schedule(interval_ms=1, span_ms=1).next_due_ms() is None


def test_judge_moves_only_a_longer_period_that_moves_the_series():
    need = 2 * WEEK_MS
    weekly = _history(T0 - 15 * DAY_MS, T0, WEEK_MS)
    assert recheck.judge(weekly, moves=True, span_needed=need) == "moved"
    assert recheck.judge(weekly, moves=False, span_needed=need) == "kept"  # weekly already
    daily = _history(T0 - 15 * DAY_MS, T0, DAY_MS)
    assert recheck.judge(daily, moves=False, span_needed=need) == "kept"
    young = _history(T0 - 9 * DAY_MS, T0, DAY_MS)
    assert recheck.judge(young, moves=False, span_needed=need) == "short"
    assert recheck.judge(_history(None, None, None), moves=False, span_needed=need) == "short"


def test_the_recheck_is_on_by_default_and_off_when_it_could_never_see_a_week_twice():
    assert recheck.is_enabled(WarmStartConfig())
    assert WarmStartConfig(recheck_interval_s="12h").recheck_interval_s == 43_200.0
    assert not recheck.is_enabled(WarmStartConfig(recheck_interval_s=0))
    assert not recheck.is_enabled(WarmStartConfig(detect_period=False))
    assert not recheck.is_enabled(WarmStartConfig(enabled=False))
    assert not recheck.is_enabled(WarmStartConfig(period_history_s=10 * 86_400.0))
    assert recheck.span_needed_ms(WarmStartConfig()) == 2 * WEEK_MS


# ---------------------------------------------------------------- the loop task


class FakeTime:
    """A clock that only the stand-in sleep moves."""

    def __init__(self, t_s: float) -> None:
        self.t = t_s
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


class FakeSeries:
    def __init__(self, n: int, candidates: set[int]) -> None:
        self.n = n
        self.candidates = candidates

    def n_tracked(self) -> int:
        return self.n

    def labels_of(self, slot: int):
        return (("__name__", "orders"), ("slot", str(slot)))

    def is_counter(self, slot: int) -> bool:
        return False

    def is_candidate(self, slot: int, period_ms: float) -> bool:
        return slot in self.candidates and period_ms > DAY_MS


class FakeQueue:
    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def offer(self, batch: Batch) -> bool:
        self.batches.append(batch)
        return True


def _checker(answers, *, n=3, candidates=None, busy=lambda: False, rate=2.0):
    time = FakeTime(T0 / 1000)
    registry = CollectorRegistry()
    reads: list[int] = []

    def read(client, labels, cfg, *, counter, what):
        slot = int(dict(labels)["slot"])
        reads.append(slot)
        answer = answers[slot]
        if isinstance(answer, Exception):
            raise answer
        return answer

    checker = recheck.ReChecker(
        cfg=WarmStartConfig(recheck_per_s=rate),
        client=None,  # the stand-in read never uses it
        queue=FakeQueue(),  # type: ignore[arg-type]
        series=FakeSeries(n, set(range(n)) if candidates is None else candidates),
        metrics=build_metrics(registry),
        clock=time.clock,
        sleep=time.sleep,
        busy=busy,
        read=read,
    )
    return checker, time, registry, reads


def _count(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_a_weekly_history_queues_a_move_and_a_daily_one_is_looked_at_a_day_later(caplog):
    weekly = _history(T0 - 15 * DAY_MS, T0, WEEK_MS)
    daily = _history(T0 - 15 * DAY_MS, T0, DAY_MS)
    checker, time, registry, reads = _checker({0: weekly, 1: daily, 2: daily})
    checker.schedule.add_unknown(3, T0)
    with caplog.at_level(logging.INFO, logger="detector.warmstart.recheck"):
        wait = asyncio.run(checker.step())
    assert wait == 0.0 and reads == [0, 1, 2]
    assert "series 0 repeats every 1w over its last 2w1d" in caplog.text
    moves = [b for b in checker.queue.batches if b.move is not None]
    assert [b.move for b in moves] == [(0, WEEK_MS)]
    assert moves[0].slots.tolist() == [0, 0] and moves[0].ts.tolist() == [T0 - 15 * DAY_MS, T0]
    assert _count(registry, "vigil_seasonal_rechecks_total", result="moved") == 1
    assert _count(registry, "vigil_seasonal_rechecks_total", result="kept") == 2
    assert _count(registry, "vigil_seasonal_periods_detected_total", period="weekly") == 1
    assert time.sleeps == [0.5, 0.5]  # recheck_per_s 2: half a second between queries
    # nothing is due until a day after each read
    assert asyncio.run(checker.step()) == pytest.approx(recheck.IDLE_S)
    assert reads == [0, 1, 2]
    assert checker.schedule.next_due_ms() == pytest.approx(T0 + DAY_MS, abs=2000)


def test_a_failed_read_is_logged_counted_and_tried_again_an_interval_later(caplog):
    boom = ConnectionError("connection refused")
    checker, _time, registry, _reads = _checker({0: boom}, n=1)
    checker.schedule.add_unknown(1, T0)
    with caplog.at_level(logging.WARNING, logger="detector.warmstart.recheck"):
        assert asyncio.run(checker.check(0)) is None
    assert "seasonal re-check of series 0 failed" in caplog.text and "1d" in caplog.text
    assert _count(registry, "vigil_seasonal_rechecks_total", result="error") == 1
    assert checker.schedule.due[0] == T0 + DAY_MS
    assert checker.queue.batches == []


def test_a_pass_that_fails_unexpectedly_does_not_end_the_task_or_lose_the_schedule(caplog):
    checker, time, registry, _reads = _checker({}, n=2)
    calls = 0

    async def step() -> float:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        if calls == 3:
            raise asyncio.CancelledError
        return 7.0

    checker.step = step
    with caplog.at_level(logging.ERROR), pytest.raises(asyncio.CancelledError):
        asyncio.run(checker.run())
    assert "seasonal re-check pass failed" in caplog.text
    assert time.sleeps == [recheck.IDLE_S, 7.0]
    assert _count(registry, "vigil_seasonal_rechecks_total", result="error") == 1
    assert checker.schedule.due[:2].tolist() == [T0, T0]  # restored series: due at once


def test_warm_starts_waiting_pause_the_rechecks():
    waiting = [True]
    weekly = _history(T0 - 15 * DAY_MS, T0, WEEK_MS)
    checker, _time, _registry, reads = _checker({0: weekly}, n=1, busy=lambda: waiting[0])
    checker.schedule.add_unknown(1, T0)
    assert asyncio.run(checker.step()) == recheck.BUSY_S and reads == []
    waiting[0] = False
    asyncio.run(checker.step())
    assert reads == [0]


def test_series_that_cannot_move_are_not_queried_and_are_looked_at_later():
    weekly = _history(T0 - 15 * DAY_MS, T0, WEEK_MS)
    checker, _time, _registry, reads = _checker({0: weekly, 1: weekly}, n=2, candidates={1})
    checker.schedule.add_unknown(2, T0)
    asyncio.run(checker.step())
    assert reads == [1]
    assert checker.schedule.due[0] == T0 + DAY_MS


def test_a_short_history_is_looked_at_when_it_spans_two_weeks():
    young = _history(T0 - 3 * DAY_MS, T0, None)
    checker, _time, _registry, _reads = _checker({0: young}, n=1)
    checker.schedule.add_unknown(1, T0)
    assert asyncio.run(checker.check(0)) == "short"
    assert checker.schedule.due[0] == T0 - 3 * DAY_MS + 2 * WEEK_MS + recheck.SPAN_MARGIN_MS


def test_a_warm_start_schedules_the_series_it_read():
    checker, _time, _registry, _reads = _checker({}, n=1)
    checker.after_warm_start(0, _history(None, None, None))
    assert checker.schedule.due[0] == T0 + 2 * WEEK_MS + recheck.SPAN_MARGIN_MS


# ---------------------------------------------------------------- the worker's move


def _weekly_history(end_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """15 days every 5 minutes up to ``end_ms``: 100 on weekdays, 35 at weekends."""
    ts = np.arange(end_ms - 15 * DAY_MS, end_ms, 300_000, dtype=np.int64)
    weekend = ((ts - T0) // DAY_MS) % 7 >= 5
    x = np.where(weekend, 35.0, 100.0) + np.random.default_rng(1).normal(0, 1, ts.shape[0])
    return ts, x


def _firing_pipeline():
    """One live daily series at 100, then at 160 until its alert fires."""
    cfg = DetectorConfig()
    events: list = []
    metrics_registry = CollectorRegistry()
    p = Pipeline(
        build_metrics(metrics_registry),
        alerts=AlertState(cfg.alerts),
        on_events=events.extend,
    )
    p.process([Batch(*EMPTY, new_slots=[SlotSpec(0, EnsembleParams(), alert_rule=0)])])
    start = T0 + 15 * DAY_MS  # a Monday
    rng = np.random.default_rng(2)
    ts = start + 15_000 * np.arange(400, dtype=np.int64)
    x = 100.0 + rng.normal(0, 1, ts.shape[0])
    x[-20:] = 160.0
    for lo in range(0, ts.shape[0], 50):
        p.process(
            [
                Batch(
                    np.zeros(len(ts[lo : lo + 50]), np.int32),
                    ts[lo : lo + 50],
                    x[lo : lo + 50].view(np.uint64),
                )
            ]
        )
    assert p.al_state[0] == FIRING
    return p, events, metrics_registry, int(ts[-1])


def test_a_move_keeps_a_firing_alert_and_pages_nobody():
    p, events, registry, last = _firing_pipeline()
    fires = [e for e in events if e.kind is EventKind.FIRE]
    assert len(fires) == 1
    n_events = len(events)
    alert_before = {
        name: getattr(p, name)[0].copy() for name in ("al_state", "al_since", "al_peak")
    }
    dets = p.detectors
    daily_family, daily_row = int(dets.family_of[0]), int(dets.row_of[0])
    ts, x = _weekly_history(last + 10 * 60_000)  # ten minutes past the last live sample
    p.process([Batch(np.zeros(ts.shape[0], np.int32), ts, x.view(np.uint64), move=(0, WEEK_MS))])
    assert len(events) == n_events  # no event: not resolved, not paged again
    for name, before in alert_before.items():
        assert getattr(p, name)[0] == before, name
    assert dets.period_of(0) == WEEK_MS and int(dets.family_of[0]) != daily_family
    assert dets.free[daily_family] == [daily_row]  # its daily row is free for the next
    # the history after the last live sample is left to come live
    assert p.last_ts[0] <= last
    assert _count(registry, "vigil_seasonal_moves_total", result="moved") == 1
    # the incident goes on: still firing, no second page
    more = last + 15_000 * np.arange(1, 9, dtype=np.int64)
    p.process([Batch(np.zeros(8, np.int32), more, np.full(8, 160.0).view(np.uint64))])
    assert p.al_state[0] == FIRING
    assert len([e for e in events if e.kind is EventKind.FIRE]) == 1


def test_a_move_for_a_series_warming_up_or_moved_already_is_refused():
    p, _events, registry, last = _firing_pipeline()
    ts, x = _weekly_history(last)
    move = Batch(np.zeros(ts.shape[0], np.int32), ts, x.view(np.uint64), move=(0, WEEK_MS))
    p.process([move])
    dets = p.detectors
    weekly_family, row = int(dets.family_of[0]), int(dets.row_of[0])
    family = dets.families[weekly_family]
    learned = {name: arr[row].copy() for name, arr in family.arrays().items()}
    p.process([move])  # weekly already: nothing to move to, and nothing learned again
    assert (int(dets.family_of[0]), int(dets.row_of[0])) == (weekly_family, row)
    for name, arr in family.arrays().items():
        assert np.array_equal(arr[row], learned[name], equal_nan=True), name
    p.process([Batch(*EMPTY, new_slots=[SlotSpec(1, EnsembleParams())])])
    p.warming[1], p.n_warming = 1, 1  # its warm start under way decides its period
    p.process([Batch(np.ones(1, np.int32), ts[:1], x[:1].view(np.uint64), move=(1, WEEK_MS))])
    assert dets.period_of(1) == DAY_MS
    assert _count(registry, "vigil_seasonal_moves_total", result="refused") == 2


def test_a_move_among_live_batches_is_applied_between_them():
    """Live samples queued before the move are scored by the daily profile, those after
    it by the weekly one, and none of them is dropped as out of order."""
    p, _events, registry, last = _firing_pipeline()
    before = np.array([last + 15_000], np.int64)
    after = np.array([last + 30_000], np.int64)
    ts, x = _weekly_history(last)
    accepted = _count(registry, "vigil_samples_accepted_total")
    p.process(
        [
            Batch(np.zeros(1, np.int32), before, np.full(1, 160.0).view(np.uint64)),
            Batch(np.zeros(ts.shape[0], np.int32), ts, x.view(np.uint64), move=(0, WEEK_MS)),
            Batch(np.zeros(1, np.int32), after, np.full(1, 160.0).view(np.uint64)),
        ]
    )
    assert p.detectors.period_of(0) == WEEK_MS
    assert p.last_ts[0] == after[0]
    assert _count(registry, "vigil_samples_accepted_total") == accepted + 2 + ts.shape[0]
    assert _count(registry, "vigil_samples_dropped_total", reason="out_of_order") == 0


# ---------------------------------------------------------------- rows (L9)


def test_moves_and_resets_reuse_rows_instead_of_growing_the_tables():
    from detector.detectors.ensemble import EnsembleFamily
    from detector.detectors.router import DetectorSet

    dets = DetectorSet()
    daily = EnsembleParams()
    for slot in range(3):
        dets.configure(slot, daily)
    row1 = int(dets.row_of[1])
    dets.families[0].arrays()["state"][row1] = 7.0  # what slot 1 learned
    dets.set_period(1, WEEK_MS)  # slot 1 moves to the weekly family: its daily row is free
    assert dets.free[0] == [row1] and dets.rows_in_use(0) == 2
    dets.configure(3, daily)  # the next daily series takes it, with fresh state
    assert int(dets.row_of[3]) == row1 and dets.sizes[0] == 3
    fresh = EnsembleFamily(daily, capacity=1)
    fresh.configure(0)
    for name, arr in dets.families[0].arrays().items():
        assert np.array_equal(arr[row1], fresh.arrays()[name][0]), name
    # a reload resetting a series in its own family keeps its row; moving back and forth
    # (reset to daily, weekly again) leaves both tables at their size
    for _ in range(50):
        dets.configure(0, daily)
        dets.configure(1, daily)
        dets.set_period(1, WEEK_MS)
    assert dets.sizes == [4, 1] and dets.rows_in_use(0) == 3 and dets.rows_in_use(1) == 1
    rows = {(int(dets.family_of[s]), int(dets.row_of[s])) for s in range(4)}
    assert len(rows) == 4  # no two series share a row


def test_a_checkpoint_after_moves_restores_every_series_from_its_own_row(tmp_path):
    from detector import checkpoint
    from tests.unit.detector.test_checkpoint import Detector

    d = Detector()
    names = ["a", "b", "c", "d"]
    d.feed(names, 1000)
    dets = d.pipeline.detectors
    dets.set_period(1, WEEK_MS)  # frees b's daily row...
    for t in range(2, 40):
        d.feed(names, t * 1000)
    dets.configure(0, dets.params[0])  # ... a reset keeps a's row
    for t in range(40, 80):
        d.feed(names, t * 1000)
    checkpoint.write(tmp_path, checkpoint.snapshot(d.registry, d.pipeline, now_ms=80_000))
    back = Detector()
    assert checkpoint.restore(tmp_path, back.registry, back.pipeline).restored == 4
    bdets = back.pipeline.detectors
    for slot in range(4):
        assert bdets.period_of(slot) == dets.period_of(slot), slot
        f, bf = int(dets.family_of[slot]), int(bdets.family_of[slot])
        for name, arr in dets.families[f].arrays().items():
            got = bdets.families[bf].arrays()[name][int(bdets.row_of[slot])]
            assert np.array_equal(got, arr[int(dets.row_of[slot])], equal_nan=True), (slot, name)


# ---------------------------------------------------------------- warm start -> schedule


class StubPrometheus:
    """Answers the warm start's two queries from one series' samples (or fails)."""

    def __init__(self, labels, ts_s: np.ndarray, values: np.ndarray, fail: bool = False):
        self.metric = dict(labels)
        self.ts_s, self.values, self.fail = ts_s, values, fail
        self.queries: list[str] = []

    def custom_query(self, query: str, timeout: float):
        self.queries.append(query)
        if self.fail:
            raise ConnectionError("connection refused")
        pairs = [[float(t), repr(float(v))] for t, v in zip(self.ts_s, self.values, strict=True)]
        return [{"metric": self.metric, "values": pairs}]


def _starter(client, *, max_backlog: int = 10):
    from detector.pipeline.worker import SampleQueue
    from detector.warmstart.prometheus import WarmStarter

    heard: list = []
    registry = CollectorRegistry()
    starter = WarmStarter(
        cfg=WarmStartConfig(max_backlog=max_backlog),
        prometheus_url="http://127.0.0.1:9",  # never reached: the stub answers
        queue=SampleQueue(1 << 20),
        labels_of=lambda slot: (("__name__", "orders"),),
        metrics=build_metrics(registry),
        on_read=lambda slot, history: heard.append((slot, history)),
    )
    starter.client = client
    return starter, heard, registry


def test_each_warm_start_tells_the_schedule_how_far_back_the_history_goes():
    labels = (("__name__", "orders"),)
    ts_s = (T0 - 3 * DAY_MS) / 1000 + 300.0 * np.arange(864)  # three days every 5 min
    ok = StubPrometheus(labels, ts_s, 50.0 + 10.0 * np.sin(2 * np.pi * ts_s / 86_400))
    starter, heard, registry = _starter(ok)
    asyncio.run(starter._one(4))
    assert len(ok.queries) == 2  # the recent history and the 15-day subquery
    slot, history = heard[0]
    assert slot == 4 and history.first_ms == T0 - 3 * DAY_MS and history.period_ms == DAY_MS
    assert _count(registry, "vigil_warm_starts_total", result="ok") == 1

    failing = StubPrometheus(labels, ts_s, ts_s, fail=True)
    starter, heard, registry = _starter(failing)
    asyncio.run(starter._one(5))
    assert heard == [(5, None)]
    assert _count(registry, "vigil_warm_starts_total", result="error") == 1

    starter, heard, registry = _starter(ok, max_backlog=0)
    starter.request([6])  # no room: it starts cold, its history unknown
    assert heard == [(6, None)]
    assert _count(registry, "vigil_warm_starts_total", result="skipped") == 1


def test_prometheus_down_for_hours_backs_off_and_logs_a_few_lines(caplog):
    # before: every due series was tried at recheck_per_s, two failed queries and two
    # warnings a second for as long as Prometheus was down
    n = 5000
    down = ConnectionError("connection refused")
    daily = _history(T0 - 15 * DAY_MS, T0, DAY_MS)
    answers: dict[int, object] = dict.fromkeys(range(n), down)
    checker, time, registry, reads = _checker(answers, n=n)
    checker.schedule.add_unknown(n, T0)
    with caplog.at_level(logging.WARNING, logger="detector.warmstart.recheck"):
        while time.t < T0 / 1000 + 10 * 3600:  # ten hours down
            asyncio.run(time.sleep(asyncio.run(checker.step())))
    failed = len(reads)
    assert 50 < failed < 80  # 10 h at 600 s once backed off
    assert _count(registry, "vigil_seasonal_rechecks_total", result="error") == failed
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert 1 <= len(warnings) <= 8 and "(1 in a row)" in warnings[0].getMessage()
    assert max(time.sleeps) == recheck.BACKOFF_MAX_S
    # only the series tried meanwhile wait an interval; the others are still due
    assert int((checker.schedule.due[:n] > time.t * 1000).sum()) == failed
    answers.update(dict.fromkeys(range(n), daily))  # Prometheus is back
    with caplog.at_level(logging.INFO, logger="detector.warmstart.recheck"):
        assert asyncio.run(checker.step()) == 0.0
    assert f"reading again after {failed} failed reads" in caplog.text
    assert checker.failures == 0 and len(reads) == failed + recheck.BATCH


def test_a_pass_skips_many_series_that_cannot_move_and_reads_at_most_a_batch():
    # before: 64 looked at per pass, each pass a scan and sort of everything due: a
    # million restored weekly series took 15,625 passes (~140 s of event loop)
    n = 3 * recheck.SCAN
    daily = _history(T0 - 15 * DAY_MS, T0, DAY_MS)
    candidates = set(range(0, n, 20))  # one in 20 still daily
    checker, _time, _registry, reads = _checker(
        dict.fromkeys(range(n), daily), n=n, candidates=candidates
    )
    checker.schedule.add_unknown(n, T0)
    assert asyncio.run(checker.step()) == 0.0
    assert reads == sorted(candidates)[: recheck.BATCH]  # lowest slots first, at one due time
    looked_at = int((checker.schedule.due[:n] > T0).sum())
    assert recheck.BATCH < looked_at <= recheck.SCAN
    passes = 1
    while asyncio.run(checker.step()) == 0.0:
        passes += 1
    assert sorted(reads) == sorted(candidates) and passes <= len(candidates) // recheck.BATCH + 2


def test_pick_is_a_partial_sort_that_keeps_the_order():
    s = _schedule()
    rng = np.random.default_rng(3)
    due = rng.integers(0, 50, 5000)
    for slot, t in enumerate(due.tolist()):
        s._at(slot, t)
    expected = sorted(range(5000), key=lambda slot: (due[slot], slot))
    assert s.pick(49, 100) == expected[:100]
    assert s.pick(10, 10_000) == [x for x in expected if due[x] <= 10]


def test_warm_starts_waiting_without_end_still_let_one_recheck_a_minute_through():
    # before: a cluster whose new series keep the warm start busy re-checked nothing, ever
    daily = _history(T0 - 15 * DAY_MS, T0, DAY_MS)
    checker, time, _registry, reads = _checker(dict.fromkeys(range(100), daily), n=100)
    checker.schedule.add_unknown(100, T0)
    checker.busy = lambda: True
    while time.t < T0 / 1000 + 600:  # ten minutes of warm starts waiting
        asyncio.run(time.sleep(asyncio.run(checker.step())))
    assert 9 <= len(reads) <= 11


def test_a_move_whose_history_ends_early_leaves_a_firing_alert_firing():
    # the history read from a store that lags the live samples (an hour here) ended the
    # series' last sample an hour back: the next sweep resolved the alert as stale and
    # the next live sample paged again
    p, events, _registry, last = _firing_pipeline()
    n_events = len(events)
    ts, x = _weekly_history(last - 3_600_000)
    p.process([Batch(np.zeros(ts.shape[0], np.int32), ts, x.view(np.uint64), move=(0, WEEK_MS))])
    assert p.last_ts[0] == last
    p.sweep(last + 60_000)
    assert p.al_state[0] == FIRING and len(events) == n_events
    more = last + 15_000 * np.arange(1, 9, dtype=np.int64)
    p.process([Batch(np.zeros(8, np.int32), more, np.full(8, 160.0).view(np.uint64))])
    assert p.al_state[0] == FIRING
    assert len([e for e in events if e.kind is EventKind.FIRE]) == 1


def test_a_read_that_times_out_says_how_long_it_waited(caplog):
    checker, _time, _registry, _reads = _checker({0: TimeoutError()}, n=1)
    with caplog.at_level(logging.WARNING, logger="detector.warmstart.recheck"):
        assert asyncio.run(checker.check(0)) is None
    # before: "failed: TimeoutError: ; trying it again"
    assert "no answer within 21s (2 x warm_start.timeout_s + 1 s)" in caplog.text


def test_the_rechecks_client_asks_once_per_query_where_the_default_asks_four_times():
    # an overloaded Prometheus answers 503: prometheus-api-client's default retries sent
    # each query four times (and a read could outlive its budget, still querying)
    import http.server
    import threading

    import requests
    from prometheus_api_client import PrometheusConnect

    from detector.warmstart.prometheus import read_history

    hits: list[str] = []

    class Overloaded(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Overloaded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    cfg = WarmStartConfig(timeout_s=5)
    labels = (("__name__", "orders"),)
    try:
        with requests.Session() as session:
            client = recheck.build_client(url, session)
            with pytest.raises(Exception, match="503"):
                read_history(client, labels, cfg, counter=False, what="re-check")
        assert len(hits) == 1
        hits.clear()
        with requests.Session() as session:
            default = PrometheusConnect(url=url, session=session)
            session.adapters[url].max_retries.backoff_factor = 0  # type: ignore[attr-defined]
            with pytest.raises(Exception):  # noqa: B017 - what it raises differs by version
                read_history(default, labels, cfg, counter=False, what="warm start")
        assert len(hits) == 4
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_lag_gauge_says_how_long_the_longest_waiting_series_is_overdue():
    """More due series than the rate reads in time: the lag shows it, then clears."""
    daily = _history(T0 - 15 * DAY_MS, T0, DAY_MS)
    checker, time, registry, reads = _checker(dict.fromkeys(range(200), daily), n=200)
    checker.schedule.add_unknown(200, T0 - 3_600_000)  # due an hour ago
    asyncio.run(checker.step())
    assert _count(registry, "vigil_seasonal_recheck_lag_seconds") == pytest.approx(3600.0)
    # one pass reads a batch (half a second apart): the rest still wait, longer now
    assert len(reads) == recheck.BATCH
    asyncio.run(checker.step())
    assert _count(registry, "vigil_seasonal_recheck_lag_seconds") == pytest.approx(
        3600.0 + recheck.BATCH * 0.5, abs=1.0
    )
    while len(reads) < 200:
        asyncio.run(checker.step())
    asyncio.run(checker.step())
    assert _count(registry, "vigil_seasonal_recheck_lag_seconds") == 0.0
    assert time.t > T0 / 1000

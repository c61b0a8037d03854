"""detector.pipeline.history: which samples are kept, for how long, and within what bounds."""

import numpy as np
from numpy.typing import NDArray

from detector.alerting.state import FIRING, NORMAL, PENDING, AlertEvent, EventKind
from detector.detectors.base import Scores
from detector.pipeline.history import History, TrackView


def _scores(n, score=0.5):
    return Scores(
        score=np.full(n, score), expected=np.ones(n), lower=np.zeros(n), upper=np.full(n, 2.0)
    )


def _batch(slots, ts) -> tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.float64]]:
    slots = np.asarray(slots, dtype=np.int32)
    return slots, np.asarray(ts, dtype=np.int64), np.arange(len(slots), dtype=np.float64)


def _track(h: History, slot: int) -> TrackView:
    view = h.history(slot)
    assert view is not None, f"series {slot} has no recorded history"
    return view


def _event(slot, kind, ts_ms, since_ms=0, level=1, peak=0.99999):
    nan = float("nan")
    return AlertEvent(
        slot=slot,
        kind=kind,
        level=level,
        ts_ms=ts_ms,
        since_ms=since_ms,
        score=peak,
        value=nan,
        expected=nan,
        lower=nan,
        upper=nan,
        peak=peak,
    )


def test_series_in_normal_state_are_not_recorded():
    h = History()
    state = np.full(4, NORMAL, dtype=np.uint8)
    slots, ts, values = _batch([0, 1, 2, 3], [1000] * 4)
    h.record(slots, ts, values, _scores(4), state)
    assert h.n_series == 0 and h.tracks(now_ms=1000) == []


def test_pending_series_is_recorded_with_its_samples_in_order():
    h = History(samples_per_series=8)
    state = np.array([NORMAL, PENDING, NORMAL], dtype=np.uint8)
    slots, ts, values = _batch([0, 1, 2, 1], [1000, 1000, 1000, 2000])
    h.record(slots, ts, values, _scores(4, 0.99999), state)
    [view] = h.tracks(now_ms=2000)
    assert view.slot == 1 and view.is_active and view.peak == 0.99999
    got = h.history(1)
    assert got is not None
    assert got.ts.tolist() == [1000, 2000]
    assert got.data[0].tolist() == [1.0, 3.0]  # values of slot 1, in sample order
    assert h.history(0) is None


def test_ring_keeps_the_newest_samples_only():
    h = History(samples_per_series=8)
    state = np.array([FIRING], dtype=np.uint8)
    for start in range(0, 20, 3):  # batches of 3 samples, 21 in all
        ts = [1000 * (start + i) for i in range(3)]
        slots, ts_a, _ = _batch([0, 0, 0], ts)
        h.record(slots, ts_a, ts_a.astype(np.float64), _scores(3), state)
    got = _track(h, 0)
    assert got.ts.tolist() == [1000 * i for i in range(13, 21)]
    assert got.data[0].tolist() == [1000.0 * i for i in range(13, 21)]
    big = np.arange(30, dtype=np.int64) * 1000 + 100_000  # a batch larger than the ring
    h.record(np.zeros(30, np.int32), big, big.astype(np.float64), _scores(30), state)
    assert _track(h, 0).ts.tolist() == big[-8:].tolist()


def test_recording_goes_on_after_the_anomaly_for_the_window_then_stops():
    h = History(record_after_s=5.0)
    firing = np.array([FIRING], dtype=np.uint8)
    normal = np.array([NORMAL], dtype=np.uint8)
    for t in (1000, 2000):
        h.record(*_batch([0], [t]), _scores(1), firing)
    for t in range(3000, 12000, 1000):
        h.record(*_batch([0], [t]), _scores(1), normal)
    kept = _track(h, 0).ts.tolist()
    assert kept == list(range(1000, 9000, 1000))  # 5 s after the last anomalous sample
    assert h.tracks(now_ms=12_000)[0].is_active is False


def test_stretches_come_from_the_alert_events():
    h = History()
    h.observe([_event(3, EventKind.FIRE, ts_ms=5000, since_ms=3000)])
    h.observe([_event(3, EventKind.ESCALATE, ts_ms=6000, since_ms=3000, level=2)])
    [view] = h.tracks(now_ms=6000)
    assert view.stretches == ((3000, None),) and view.level == 2
    h.observe([_event(3, EventKind.RESOLVE, ts_ms=9000, since_ms=3000)])
    [view] = h.tracks(now_ms=9000)
    assert view.stretches == ((3000, 9000),) and not view.is_active
    h.observe([_event(4, EventKind.RESOLVE, ts_ms=9000)])  # never seen: nothing to end
    assert h.n_series == 1


def test_tracks_expire_keep_s_after_their_last_anomalous_sample():
    h = History(keep_s=60.0)
    h.record(*_batch([0], [1000]), _scores(1), np.array([FIRING], dtype=np.uint8))
    h.record(*_batch([0], [2000]), _scores(1), np.array([NORMAL], dtype=np.uint8))
    assert len(h.tracks(now_ms=61_000)) == 1
    assert h.tracks(now_ms=61_001) == [] and h.history(0) is None


def test_a_full_history_evicts_the_longest_quiet_series_never_an_active_one():
    h = History(max_series=2)
    state = np.array([FIRING, FIRING, FIRING], dtype=np.uint8)
    h.record(*_batch([0], [1000]), _scores(1), state)
    h.record(*_batch([1], [2000]), _scores(1), state)
    h.record(*_batch([2], [3000]), _scores(1), state)  # both others active: not kept
    assert {v.slot for v in h.tracks(now_ms=3000)} == {0, 1}
    state[0] = NORMAL
    h.record(*_batch([0], [4000]), _scores(1), state)
    h.record(*_batch([2], [5000]), _scores(1), state)
    assert {v.slot for v in h.tracks(now_ms=5000)} == {1, 2}


def test_history_off_records_nothing():
    h = History(max_series=0)
    h.record(*_batch([0], [1000]), _scores(1), np.array([FIRING], dtype=np.uint8))
    h.observe([_event(0, EventKind.FIRE, ts_ms=1000)])
    assert h.n_series == 0

import struct

import numpy as np
from prometheus_client import CollectorRegistry

from detector.alerting import book
from detector.alerting.state import AlertEvent, AlertState, EventKind
from detector.config import AlertRule, EnsembleParams, RobustParams
from detector.metrics import build_metrics
from detector.pipeline.worker import Batch, Pipeline, SampleQueue, SlotSpec

STALE_BITS = 0x7FF0000000000002


def _bits(values):
    return np.array(values, dtype=np.float64).view(np.uint64)


def _batch(slots, ts, values, new=()):
    return Batch(
        slots=np.array(slots, np.int32),
        ts=np.array(ts, np.int64),
        bits=_bits(values),
        new_slots=new,
    )


def _state(p, slot):
    """The robust family's state row of ``slot``: (n, level, scale)."""
    return p.detectors.families[0].state[p.detectors.row_of[slot]]


def _pipeline():
    return Pipeline(build_metrics(CollectorRegistry()), capacity=4)


def test_out_of_order_and_duplicates_are_dropped_idempotently():
    p = _pipeline()
    p.process([_batch([0, 0, 0], [10, 20, 20], [1.0, 2.0, 3.0], new=[SlotSpec(0, RobustParams())])])
    p.process([_batch([0, 0], [15, 30], [9.0, 4.0])])
    assert int(p.last_ts[0]) == 30
    assert p.last_value[0] == 4.0
    assert int(p.n_samples[0]) == 3


def test_staleness_marker_marks_stale_and_is_not_learned():
    p = _pipeline()
    stale = struct.unpack("<d", struct.pack("<Q", STALE_BITS))[0]
    p.process([_batch([0, 0], [1, 2], [5.0, stale], new=[SlotSpec(0, RobustParams())])])
    assert p.stale[0] == 1
    assert p.last_value[0] == 5.0
    assert _state(p, 0)[0] == 1.0
    p.process([_batch([0], [3], [6.0])])
    assert p.stale[0] == 0


def test_nan_and_inf_are_kept_as_values_but_not_learned():
    p = _pipeline()
    spec = SlotSpec(0, RobustParams())
    p.process([_batch([0, 0, 0], [1, 2, 3], [5.0, np.nan, np.inf], new=[spec])])
    assert np.isinf(p.last_value[0])
    assert int(p.n_samples[0]) == 3
    assert _state(p, 0)[0] == 1.0
    assert np.isnan(p.last_score[0])


def test_queue_refuses_past_its_bound_but_never_loses_new_slots():
    q = SampleQueue(max_samples=3)
    assert q.offer(_batch([0, 0], [1, 2], [1.0, 2.0]))
    assert not q.offer(_batch([0, 0], [3, 4], [1.0, 2.0]))
    assert q.offer(_batch([1, 1], [3, 4], [1.0, 2.0], new=[SlotSpec(1, RobustParams())]))
    taken = q.take(0.0)
    assert len(taken) == 2 and q.depth == 0 and q.pending == 4
    q.done(taken)
    assert q.pending == 0


def test_counters_are_scored_as_rates_with_resets():
    p = _pipeline()
    spec = SlotSpec(0, RobustParams(warmup_samples=2), counter=True)
    p.process([_batch([0, 0, 0], [0, 10_000, 20_000], [100.0, 150.0, 250.0], new=[spec])])
    # first sample: no rate yet; then 5/s and 10/s
    assert p.last_expected[0] == 5.0  # the robust level after learning 5/s, before 10/s
    assert p.last_value[0] == 250.0  # the raw value stays the series' value
    p.process([_batch([0], [30_000], [30.0])])  # a reset: 30 counted since
    assert p.rate_prev[0] == 30.0
    assert _state(p, 0)[1] != 0.0


def test_staleness_restarts_a_counter_rate():
    p = _pipeline()
    stale = struct.unpack("<d", struct.pack("<Q", STALE_BITS))[0]
    spec = SlotSpec(0, RobustParams(), counter=True)
    p.process([_batch([0, 0, 0], [0, 10_000, 20_000], [1.0, 2.0, stale], new=[spec])])
    n_before = _state(p, 0)[0]
    p.process([_batch([0], [30_000], [1000.0])])  # first sample after staleness: not scored
    assert _state(p, 0)[0] == n_before
    p.process([_batch([0], [40_000], [1010.0])])  # then 1/s: scored again
    assert _state(p, 0)[0] == n_before + 1


def test_warm_start_applies_history_before_the_held_live_samples():
    p = _pipeline()
    spec = SlotSpec(0, RobustParams(warmup_samples=5), warm=True)
    p.process([_batch([0, 0], [1000, 1001], [50.0, 51.0], new=[spec])])
    assert int(p.n_samples[0]) == 0  # held while the history is fetched
    history = Batch(
        slots=np.zeros(4, np.int32),
        ts=np.array([10, 20, 30, 1000], np.int64),
        bits=_bits([10.0, 11.0, 12.0, 13.0]),
        warmed=(0,),
    )
    p.process([history])
    # history, then the held samples; the held sample at 1000 collides with history: dropped
    assert int(p.n_samples[0]) == 5
    assert int(p.last_ts[0]) == 1001 and p.last_value[0] == 51.0
    assert p.n_warming == 0
    p.process([_batch([0], [1002], [52.0])])  # live again
    assert int(p.n_samples[0]) == 6


def test_an_empty_history_just_releases_held_samples():
    p = _pipeline()
    p.process([_batch([0], [5], [1.0], new=[SlotSpec(0, RobustParams(), warm=True)])])
    p.process(
        [
            Batch(
                slots=np.zeros(0, np.int32),
                ts=np.zeros(0, np.int64),
                bits=np.zeros(0, np.uint64),
                warmed=(0,),
            )
        ]
    )
    assert int(p.n_samples[0]) == 1


def _shift_events(params, *, n_shift, n_after):
    """The alert events of a level shift through the pipeline: 600 normal samples at 1 s,
    ``n_shift`` samples 50 sigmas up, then ``n_after`` back at the old level."""
    events: list[AlertEvent] = []
    p = Pipeline(
        build_metrics(CollectorRegistry()),
        capacity=4,
        alerts=AlertState([AlertRule()]),
        on_events=events.extend,
    )
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [10 + rng.normal(0, 1, 600), 60 + rng.normal(0, 1, n_shift), 10 + rng.normal(0, 1, n_after)]
    )
    ts = np.arange(1, values.shape[0] + 1, dtype=np.int64) * 1000
    p.process(
        [
            _batch(
                np.zeros(values.shape[0], np.int32),
                ts,
                values,
                new=[SlotSpec(0, params, alert_rule=0)],
            )
        ]
    )
    return events


def test_a_lasting_shift_resolves_as_the_adopted_new_level():
    events = _shift_events(EnsembleParams(adopt_after_s=60.0), n_shift=600, n_after=0)
    kinds = [e.kind for e in events]
    assert kinds == [EventKind.FIRE, EventKind.RESOLVE]
    assert events[-1].adopted_after_s == 60.0
    assert book.resolution(events[-1]) == "new level adopted after 1 min"


def test_a_shift_that_ends_resolves_back_inside_its_band():
    events = _shift_events(EnsembleParams(adopt_after_s=3600.0), n_shift=120, n_after=600)
    assert [e.kind for e in events] == [EventKind.FIRE, EventKind.RESOLVE]
    assert events[-1].adopted_after_s is None
    assert book.resolution(events[-1]) == "back inside its band"


def test_families_that_never_adopt_never_report_an_adoption():
    p = _pipeline()
    p.process([_batch([0, 0], [1000, 2000], [1.0, 2.0], new=[SlotSpec(0, RobustParams())])])
    assert p.detectors.adopted_after_s(0, since_ms=0) is None

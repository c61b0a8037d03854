import struct

import numpy as np
from prometheus_client import CollectorRegistry

from detector.config import PresenceConfig, RobustParams
from detector.metrics import build_metrics
from detector.pipeline import presence
from detector.pipeline.worker import Batch, Pipeline, SlotSpec

RULES = PresenceConfig(
    warmup_samples=5,
    stuck_min_samples=10,
    stuck_factor=3.0,
    absent_intervals=5.0,
    absent_min_s=60.0,
)
STEP = 15_000
STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def _pipeline(n=2):
    p = Pipeline(build_metrics(CollectorRegistry()), capacity=4)
    p.process(
        [
            Batch(
                slots=np.empty(0, np.int32),
                ts=np.empty(0, np.int64),
                bits=np.empty(0, np.uint64),
                new_slots=[SlotSpec(s, RobustParams()) for s in range(n)],
            )
        ]
    )
    return p


def _feed(p, slot, t0, values):
    ts = t0 + np.arange(len(values), dtype=np.int64) * STEP
    p.process(
        [
            Batch(
                slots=np.full(len(values), slot, np.int32),
                ts=ts,
                bits=np.array(values, dtype=np.float64).view(np.uint64),
            )
        ]
    )
    return int(ts[-1]) + STEP


def test_a_value_repeated_far_longer_than_usual_is_stuck():
    p = _pipeline()
    rng = np.random.default_rng(0)
    t = _feed(p, 0, 0, list(rng.normal(0, 1, 100)))
    t = _feed(p, 0, t, [3.0] * 9)
    assert not presence.stuck(p, 1, RULES)[0]  # under stuck_min_samples
    _feed(p, 0, t, [3.0] * 5)
    assert presence.stuck(p, 1, RULES)[0]
    assert int(p.run_same[0]) == 13


def test_a_series_that_is_often_flat_is_judged_by_its_own_runs():
    p = _pipeline()
    t = _feed(p, 0, 0, ([1.0] * 20 + [2.0]) * 5)  # runs of 20 equal values are normal here
    t = _feed(p, 0, t, [5.0] * 30)
    assert not presence.stuck(p, 1, RULES)[0]
    _feed(p, 0, t, [5.0] * 40)
    assert presence.stuck(p, 1, RULES)[0]


def test_silence_beyond_several_intervals_is_absent_unless_stale():
    p = _pipeline()
    t = _feed(p, 0, 0, [float(v) for v in range(20)])
    _feed(p, 1, 0, [float(v) for v in range(19)] + [STALE])
    assert p.interval_ms[0] == STEP
    assert not presence.absent(p, 2, t + 60_000, RULES).any()  # 60 s: under both limits
    assert presence.absent(p, 2, t + 100_000, RULES).tolist() == [True, False]

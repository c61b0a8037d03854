import struct

import numpy as np
from prometheus_client import CollectorRegistry

from detector.config import RobustParams
from detector.detectors.base import Scores
from detector.detectors.robust import RobustFamily
from detector.metrics import build_metrics
from detector.pipeline import Batch, Pipeline, SampleQueue

STALE_BITS = 0x7FF0000000000002


def _bits(values):
    return np.array(values, dtype=np.float64).view(np.uint64)


def _batch(slots, ts, values, new=()):
    return Batch(slots=np.array(slots, np.int32), ts=np.array(ts, np.int64),
                 bits=_bits(values), new_slots=new)


def _pipeline():
    return Pipeline(build_metrics(CollectorRegistry()), capacity=4)


def test_out_of_order_and_duplicates_are_dropped_idempotently():
    p = _pipeline()
    p.process([_batch([0, 0, 0], [10, 20, 20], [1.0, 2.0, 3.0], new=[(0, RobustParams())])])
    p.process([_batch([0, 0], [15, 30], [9.0, 4.0])])
    assert int(p.last_ts[0]) == 30
    assert p.last_value[0] == 4.0
    assert int(p.n_samples[0]) == 3


def test_staleness_marker_marks_stale_and_is_not_learned():
    p = _pipeline()
    stale = struct.unpack("<d", struct.pack("<Q", STALE_BITS))[0]
    p.process([_batch([0, 0], [1, 2], [5.0, stale], new=[(0, RobustParams())])])
    assert p.stale[0] == 1
    assert p.last_value[0] == 5.0
    assert p.robust.arrays["n"][0] == 1.0
    p.process([_batch([0], [3], [6.0])])
    assert p.stale[0] == 0


def test_nan_and_inf_are_kept_as_values_but_not_learned():
    p = _pipeline()
    p.process([_batch([0, 0, 0], [1, 2, 3], [5.0, np.nan, np.inf], new=[(0, RobustParams())])])
    assert np.isinf(p.last_value[0])
    assert int(p.n_samples[0]) == 3
    assert p.robust.arrays["n"][0] == 1.0
    assert np.isnan(p.last_score[0])


def test_robust_scores_level_shift_above_noise_and_is_chunk_invariant():
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.normal(10, 1, 300), rng.normal(20, 1, 20)])
    slots = np.zeros(x.shape[0], np.int32)
    whole, parts = RobustFamily(2), RobustFamily(2)
    whole.configure(0, RobustParams())
    parts.configure(0, RobustParams())
    out = Scores.empty(x.shape[0])
    whole.score_learn(slots, x, out)
    pieces = [Scores.empty(n) for n in (1, 99, 150, 70)]
    start = 0
    for piece in pieces:
        n = piece.score.shape[0]
        parts.score_learn(slots[start:start + n], x[start:start + n], piece)
        start += n
    joined = np.concatenate([p.score for p in pieces])
    assert np.array_equal(out.score, joined)
    for key in ("n", "level", "scale"):
        assert np.array_equal(whole.arrays[key], parts.arrays[key])
    assert out.score[:30].max() == 0.0  # warming up
    assert np.quantile(out.score[30:300], 0.99) < 0.999
    assert out.score[300] > 0.999999
    assert out.lower[299] < 10 < out.upper[299]


def test_queue_refuses_past_its_bound_but_never_loses_new_slots():
    q = SampleQueue(max_samples=3)
    assert q.offer(_batch([0, 0], [1, 2], [1.0, 2.0]))
    assert not q.offer(_batch([0, 0], [3, 4], [1.0, 2.0]))
    assert q.offer(_batch([1, 1], [3, 4], [1.0, 2.0], new=[(1, RobustParams())]))
    taken = q.take(0.0)
    assert len(taken) == 2 and q.depth == 0 and q.pending == 4
    q.done(taken)
    assert q.pending == 0

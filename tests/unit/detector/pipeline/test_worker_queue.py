"""SampleQueue's batching: the worker takes several requests at once, waiting briefly."""

import threading

import numpy as np

from detector.pipeline.worker import Batch, SampleQueue


def _batch(n: int) -> Batch:
    return Batch(
        slots=np.zeros(n, np.int32), ts=np.arange(n, dtype=np.int64), bits=np.zeros(n, np.uint64)
    )


def _take_in_thread(q: SampleQueue) -> tuple[threading.Thread, list[list[Batch]]]:
    got: list[list[Batch]] = []
    t = threading.Thread(target=lambda: got.append(q.take(30.0)), daemon=True)
    t.start()
    return t, got


def test_take_returns_as_soon_as_enough_samples_are_queued():
    # a linger far longer than the test's deadline: only the threshold can end the wait
    q = SampleQueue(100, batch_samples=4, linger_s=60.0)
    assert q.offer(_batch(2))
    t, got = _take_in_thread(q)
    assert q.offer(_batch(2))  # reaches batch_samples: wakes the lingering consumer
    t.join(timeout=10.0)
    assert not t.is_alive()
    assert [b.n_samples for b in got[0]] == [2, 2]
    assert q.depth == 0 and q.pending == 4


def test_an_idle_consumer_is_woken_by_the_first_batch_and_lingers_for_more():
    q = SampleQueue(100, batch_samples=4, linger_s=60.0)
    t, got = _take_in_thread(q)
    assert q.offer(_batch(1))  # wakes the idle consumer, which then lingers
    assert q.offer(_batch(1))
    assert q.offer(_batch(2))
    t.join(timeout=10.0)
    assert not t.is_alive()
    # whenever the consumer woke, it waited (linger) until the threshold: one take
    assert [b.n_samples for b in got[0]] == [1, 1, 2]


def test_close_ends_a_lingering_take():
    q = SampleQueue(100, batch_samples=1000, linger_s=60.0)
    assert q.offer(_batch(3))
    t, got = _take_in_thread(q)
    q.close()
    t.join(timeout=10.0)
    assert not t.is_alive()
    assert [b.n_samples for b in got[0]] == [3]


def test_without_linger_a_take_returns_what_is_queued():
    q = SampleQueue(100, batch_samples=1000, linger_s=0.0)
    assert q.offer(_batch(3))
    assert [b.n_samples for b in q.take(0.0)] == [3]
    assert q.take(0.0) == []

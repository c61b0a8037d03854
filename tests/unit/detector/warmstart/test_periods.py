import numpy as np
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry

from detector.config import EnsembleParams
from detector.detectors._kernels import ensemble as k
from detector.detectors.ensemble import EnsembleFamily
from detector.metrics import build_metrics
from detector.pipeline.worker import Batch, Pipeline, SlotSpec
from detector.warmstart.periods import detect_period

DAY, WEEK = 86_400.0, 604_800.0
CANDIDATES = (DAY, WEEK)


def _history(
    days: float, step_s: float, shape, seed=0
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    ts = (np.arange(0, days * DAY, step_s) * 1000).astype(np.int64) + 1_700_000_000_000
    return ts, shape(ts / 1000.0) + rng.normal(0, 0.3, ts.shape[0])


def test_daily_weekly_and_none_are_told_apart():
    daily = _history(4, 300, lambda t: np.sin(2 * np.pi * t / DAY))
    weekly = _history(21, 900, lambda t: np.where((t // DAY) % 7 < 5, 3.0, 0.0))
    noise = _history(4, 300, lambda t: 0.0 * t)
    assert detect_period(*daily, CANDIDATES) == DAY
    assert detect_period(*weekly, CANDIDATES) == WEEK
    assert detect_period(*noise, CANDIDATES) is None


def test_too_little_history_detects_nothing():
    short = _history(1.5, 300, lambda t: np.sin(2 * np.pi * t / DAY))
    assert detect_period(*short, CANDIDATES) is None
    ts, x = _history(4, 300, lambda t: np.sin(2 * np.pi * t / DAY))
    assert detect_period(ts[:10], x[:10], CANDIDATES) is None


def test_a_history_batch_gives_its_series_its_own_period():
    p = Pipeline(build_metrics(CollectorRegistry()), capacity=2)
    p.process(
        [
            Batch(
                slots=np.empty(0, np.int32),
                ts=np.empty(0, np.int64),
                bits=np.empty(0, np.uint64),
                new_slots=[SlotSpec(0, EnsembleParams(), warm=True)],
            )
        ]
    )
    p.process(
        [
            Batch(
                slots=np.zeros(1, np.int32),
                ts=np.ones(1, np.int64),
                bits=np.ones(1).view(np.uint64),
                warmed=(0,),
                periods=[(0, WEEK * 1000)],
            )
        ]
    )
    # a week is seven of the family's days: the series moves to a weekly profile of the
    # same 30-minute bins (its own family); a period that fits the family stays there
    assert p.detectors.period_of(0) == WEEK * 1000
    family = p.detectors.families[int(p.detectors.family_of[0])]
    assert isinstance(family, EnsembleFamily)
    assert (family.params.season_period_s, family.params.season_bins) == (WEEK, 336)
    assert family.state[p.detectors.row_of[0], k.S_PERIOD] == 0.0  # the family's own


def test_a_period_for_a_series_no_longer_warming_is_ignored():
    """A reload reset the series (fresh, not warming) before its warm start answered:
    the late period would wipe what it has learned live since, so it is dropped."""
    p = Pipeline(build_metrics(CollectorRegistry()), capacity=2)
    spec = SlotSpec(0, EnsembleParams())
    empty = (np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.uint64))
    p.process([Batch(*empty, new_slots=[spec])])
    ts = np.arange(1, 101, dtype=np.int64) * 15_000
    values = 5.0 + np.sin(np.arange(100.0))
    p.process([Batch(np.zeros(100, np.int32), ts, values.view(np.uint64))])
    family = p.detectors.families[0]
    assert isinstance(family, EnsembleFamily)
    learned = family.state[p.detectors.row_of[0]].copy()
    p.process([Batch(*empty, warmed=(0,), periods=[(0, WEEK * 1000)])])
    assert len(p.detectors.families) == 1 and p.detectors.period_of(0) == DAY * 1000
    assert np.array_equal(family.state[p.detectors.row_of[0]], learned, equal_nan=True)


def test_a_series_a_reload_resets_is_warmed_up_again():
    """A reload that changes a series' detector gives it fresh state; with warm starts on,
    its live samples are held until its history (and period) arrives, as for a new series,
    so it is neither cold nor back on the daily profile if its history is weekly."""
    import numpy as np

    from detector.pipeline.worker import Reconfigure

    p = Pipeline(build_metrics(CollectorRegistry()), capacity=2)
    empty = (np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.uint64))
    p.process([Batch(*empty, new_slots=[SlotSpec(0, EnsembleParams())])])
    ts = np.arange(1, 41, dtype=np.int64) * 15_000
    p.process([Batch(np.zeros(40, np.int32), ts, np.full(40, 5.0).view(np.uint64))])
    assert int(p.n_samples[0]) == 40
    fresh = SlotSpec(0, EnsembleParams(alpha_fast=0.01), warm=True)
    rc = Reconfigure(
        generation=1,
        alerts=None,
        reset=[fresh],
        alert_rule=np.full(1, -1, np.int16),
        alert_changed=np.zeros(1, np.bool_),
        respec=lambda slot: fresh,
    )
    p.process([Batch(*empty, reconfigure=rc)])
    live = np.arange(41, 45, dtype=np.int64) * 15_000
    p.process([Batch(np.zeros(4, np.int32), live, np.full(4, 5.0).view(np.uint64))])
    assert int(p.n_samples[0]) == 0  # held while its history is read
    history = np.arange(-100, 0, dtype=np.int64) * 300_000 + int(live[0])
    p.process(
        [
            Batch(
                np.zeros(100, np.int32),
                history,
                np.full(100, 5.0).view(np.uint64),
                warmed=(0,),
                periods=[(0, WEEK * 1000)],
            )
        ]
    )
    assert int(p.n_samples[0]) == 104  # the history, then the held live samples
    assert p.detectors.period_of(0) == WEEK * 1000

"""Detectors as NAB sees them: one fresh detector per file, fed in file order.

The detectors are the service's own families and kernels (``detector.detectors``) with
their default parameters; this module only adapts a NAB file (timestamps as text,
values) to a one-series stream. ``default`` is what ``vigil-detector serve`` runs when a
rule names no detector.

Two outputs. ``alert_starts`` (the default of ``python -m bench.nab run``) is what pages
people: the family's scores go through the lifecycle of the default alert rule
(``detector.alerting.state``, the service's own kernel), and a row carries the score of the
sample on which an alert fires (never earlier), 0 on every other row; NAB's threshold sweep
then picks the severity that pages. ``raw`` is every sample's own score.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from detector.alerting import state
from detector.config import (
    AlertRule,
    DetectorConfig,
    DetectorParams,
    EnsembleParams,
    RobustParams,
    SeriesRule,
    SpotParams,
)
from detector.detectors.base import Scores
from detector.detectors.kinds import build_family

DETECTORS: dict[str, DetectorParams] = {
    "default": SeriesRule(name="default").detector,
    "ensemble": EnsembleParams(),
    "robust": RobustParams(),
    "spot": SpotParams(),
}


def epoch_ms(stamps: Sequence[str]) -> NDArray[np.int64]:
    return np.array(
        [
            int(datetime.strptime(s, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000)
            for s in stamps
        ],
        dtype=np.int64,
    )


class _AlertSlot:
    """The lifecycle's alert tables (``state.ALERT_TABLES``) for one series: all that
    ``AlertState.step`` reads and writes."""

    al_rule: NDArray[np.int16]

    def __init__(self) -> None:
        for name, dtype, fill in state.ALERT_TABLES:
            setattr(self, name, np.full(1, fill, dtype=dtype))
        self.al_rule[0] = 0


def alert_starts(
    ts_ms: NDArray[np.int64], values: NDArray[np.float64], out: Scores, rule: AlertRule
) -> NDArray[np.float64]:
    """The score of each sample on which ``rule`` fires an alert (FIRE events), 0 elsewhere.

    The samples of one series in time order, with the family's scores and bands in ``out``.
    An escalation of a firing alert is not a new page, so it leaves its row at 0.
    """
    alerts = state.AlertState([rule])
    slot = _AlertSlot()
    # type: ignore: step reads only the al_* tables, not the pipeline's last-sample ones
    events = alerts.step(
        slot,  # type: ignore[arg-type]
        np.zeros(ts_ms.shape[0], np.int32),
        ts_ms,
        out.score,
        values,
        out.expected,
        out.lower,
        out.upper,
    )
    starts = np.zeros(ts_ms.shape[0])
    stamps = ts_ms.tolist()
    row = 0  # events come in sample order, at most one per sample
    for e in events:
        while stamps[row] != e.ts_ms:
            row += 1
        if e.kind is state.EventKind.FIRE:
            starts[row] = e.score
        row += 1
    return starts


class OneSeries:
    """A fresh family holding one series."""

    def __init__(self, params: DetectorParams) -> None:
        self.family = build_family(params, capacity=1)
        self.family.configure(0)

    def score_stream(
        self, stamps: Sequence[str], values: Sequence[float], *, output: str = "raw"
    ) -> NDArray[np.float64]:
        """Per row: its score (``raw``) or the score of an alert starting on it
        (``alerts``, through the default alert rule)."""
        x = np.asarray(values, dtype=np.float64)
        ts = epoch_ms(stamps)
        out = Scores.empty(x.shape[0])
        self.family.score_learn(np.zeros(x.shape[0], np.int32), ts, x, out)
        if output == "alerts":
            return alert_starts(ts, x, out, DetectorConfig().alerts[0])
        return np.nan_to_num(out.score, nan=0.0)


def build_detector(name: str) -> OneSeries:
    if name not in DETECTORS:
        raise SystemExit(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}")
    return OneSeries(DETECTORS[name])

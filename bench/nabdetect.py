"""Detectors as NAB sees them: one fresh detector per file, fed in file order.

The detectors are the service's own families and kernels (``detector.detectors``) with
their default parameters; this module only adapts a NAB file (timestamps as text,
values) to a one-series stream. ``default`` is what ``vigil-detector serve`` runs when a
rule names no detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from detector.config import (
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
    return np.array([int(datetime.strptime(s, "%Y-%m-%d %H:%M:%S")
                         .replace(tzinfo=UTC).timestamp() * 1000) for s in stamps],
                    dtype=np.int64)


class OneSeries:
    """A fresh family holding one series."""

    def __init__(self, params: DetectorParams) -> None:
        self.family = build_family(params, capacity=1)
        self.family.configure(0)

    def score_stream(self, stamps: Sequence[str], values: Sequence[float]) -> NDArray[np.float64]:
        x = np.asarray(values, dtype=np.float64)
        out = Scores.empty(x.shape[0])
        self.family.score_learn(np.zeros(x.shape[0], np.int32), epoch_ms(stamps), x, out)
        return np.nan_to_num(out.score, nan=0.0)


def build_detector(name: str) -> OneSeries:
    if name not in DETECTORS:
        raise SystemExit(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}")
    return OneSeries(DETECTORS[name])

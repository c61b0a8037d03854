"""Detectors as NAB sees them: one fresh detector per file, fed row by row in file order.

The detectors are the service's own families and kernels (``detector.detectors``); this
module only adapts a NAB file (timestamps as text, values) to a one-series stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import numpy as np
from numpy.typing import NDArray

from detector.config import RobustParams
from detector.detectors.base import Scores
from detector.detectors.robust import RobustFamily


def epoch_ms(stamps: Sequence[str]) -> NDArray[np.int64]:
    return np.array([int(datetime.strptime(s, "%Y-%m-%d %H:%M:%S")
                         .replace(tzinfo=timezone.utc).timestamp() * 1000) for s in stamps],
                    dtype=np.int64)


class RobustStream:
    """The robust-level family on one series."""

    def __init__(self, params: RobustParams) -> None:
        self.family = RobustFamily(1)
        self.family.configure(0, params)

    def score_stream(self, stamps: Sequence[str], values: Sequence[float]) -> NDArray[np.float64]:
        x = np.asarray(values, dtype=np.float64)
        out = Scores.empty(x.shape[0])
        self.family.score_learn(np.zeros(x.shape[0], np.int32), x, out)
        return np.nan_to_num(out.score, nan=0.0)


DETECTORS: dict[str, Callable[[], RobustStream]] = {
    "robust": lambda: RobustStream(RobustParams()),
    "default": lambda: RobustStream(RobustParams()),
}


def build_detector(name: str) -> RobustStream:
    try:
        return DETECTORS[name]()
    except KeyError:
        raise SystemExit(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}")

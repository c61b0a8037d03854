"""What every detector family provides, and the per-sample output they share.

A family keeps the state of all the series it watches in one struct-of-arrays table and
updates a whole batch in one kernel call. This module owns the shared output type
``Scores`` and the family protocol; it holds no state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class Scores:
    """Per-sample outputs: score in [0, 1] (NaN for non-finite input), expected value, band."""

    score: NDArray[np.float64]
    expected: NDArray[np.float64]
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]

    @classmethod
    def empty(cls, n: int) -> Scores:
        return cls(*(np.empty(n, dtype=np.float64) for _ in range(4)))


class Family(Protocol):
    """One detector family: the state of every series it watches, in one table."""

    def ensure(self, n_slots: int) -> None:
        """Grow the table to hold at least ``n_slots`` series."""

    def configure(self, slot: int, params: object) -> None:
        """Give slot ``slot`` fresh state and the given parameters."""

    def score_learn(self, slots: NDArray[np.int32], values: NDArray[np.float64],
                    out: Scores) -> None:
        """Score each sample against the state before it, then learn it."""

"""What every detector family provides, the per-sample output they share, and the table
of families (``KINDS``).

A family keeps the state of all the series it watches, for one parameter set, in
struct-of-arrays tables, and updates a whole batch in one kernel call. This module holds
no state.
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

    def take(self, index: NDArray[np.intp]) -> Scores:
        return Scores(self.score[index], self.expected[index], self.lower[index],
                      self.upper[index])

    def put(self, index: NDArray[np.intp], part: Scores) -> None:
        self.score[index] = part.score
        self.expected[index] = part.expected
        self.lower[index] = part.lower
        self.upper[index] = part.upper


class Family(Protocol):
    """One detector family with one parameter set: the state of every series it watches."""

    capacity: int

    def ensure(self, n_slots: int) -> None:
        """Grow the tables to hold at least ``n_slots`` series."""

    def configure(self, slot: int) -> None:
        """Give slot ``slot`` fresh state."""

    def arrays(self) -> dict[str, NDArray[np.float64] | NDArray[np.float32]]:
        """The state tables by name, one row per slot (for checkpoints and tests)."""

    def bytes_per_series(self) -> int:
        """State bytes per series."""

    def score_learn(self, slots: NDArray[np.int32], ts_ms: NDArray[np.int64],
                    values: NDArray[np.float64], out: Scores) -> None:
        """Score each sample against the state before it, then learn it."""

"""What every detector family provides, the per-sample output they share, and the table
of families (``KINDS``).

A family keeps the state of all the series it watches, for one parameter set, in
struct-of-arrays tables, and updates a whole batch in one kernel call. This module holds
no state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

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
        return Scores(self.score[index], self.expected[index], self.lower[index], self.upper[index])

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

    def score_learn(
        self,
        slots: NDArray[np.int32],
        ts_ms: NDArray[np.int64],
        values: NDArray[np.float64],
        out: Scores,
    ) -> None:
        """Score each sample against the state before it, then learn it."""


class TableFamily:
    """What every family's table does the same way: named 2-D arrays with one row per
    slot, grown together, cleared per slot, and the checks done before a kernel call.
    A subclass sets ``KIND`` and ``TABLES`` (attribute names) and allocates them with
    zero rows in ``__init__`` before calling ``ensure``."""

    KIND = "family"
    TABLES: tuple[str, ...] = ()

    capacity = 0

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {name: getattr(self, name) for name in self.TABLES}

    def bytes_per_series(self) -> int:
        return sum(a.itemsize * (a.size // max(a.shape[0], 1)) for a in self.arrays().values())

    def ensure(self, n_slots: int) -> None:
        if n_slots <= self.capacity:
            return
        size = max(n_slots, 2 * self.capacity, 1024)
        for name, arr in self.arrays().items():
            grown = np.zeros((size, *arr.shape[1:]), dtype=arr.dtype)
            grown[: arr.shape[0]] = arr
            setattr(self, name, grown)
        self.capacity = size

    def configure(self, slot: int) -> None:
        """Fresh (all-zero) state for ``slot``; subclasses set non-zero initial values."""
        self.ensure(slot + 1)
        for arr in self.arrays().values():
            arr[slot] = 0

    def check(
        self,
        slots: NDArray[np.int32],
        ts_ms: NDArray[np.int64],
        values: NDArray[np.float64],
        out: Scores,
    ) -> None:
        """ValueError (naming the family) unless the arrays fit each other and the table."""
        n = slots.shape[0]
        if ts_ms.shape[0] != n or values.shape[0] != n or out.score.shape[0] != n:
            raise ValueError(
                f"{self.KIND}: {n} slots, {ts_ms.shape[0]} timestamps, "
                f"{values.shape[0]} values and {out.score.shape[0]} outputs "
                "must have one length"
            )
        if n and int(slots.max()) >= self.capacity:
            raise ValueError(
                f"{self.KIND}: slot {int(slots.max())} is beyond the table "
                f"({self.capacity}); call ensure() first"
            )

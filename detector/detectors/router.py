"""``DetectorSet``: every family instance of the service and which series each one holds.

This module owns the mapping slot -> (family, row in that family's tables). Series that
share a parameter set share one family instance, so one kernel call covers them all;
a batch is split by family only when several are in use. A slot given fresh state again
(a reload's reset) keeps its row; one that moves to another family (a weekly period, a
reload that changed its parameters) frees its old row for the next slot that family
takes, so moves and resets do not grow the tables. One writer: the detector worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from detector.config import DetectorParams
from detector.detectors.base import Family, Scores
from detector.detectors.kinds import build_family


class DetectorSet:
    def __init__(self) -> None:
        self.families: list[Family] = []
        self.params: list[DetectorParams] = []
        self.sizes: list[int] = []  # rows in use or free, per family
        self.free: list[list[int]] = []  # per family: rows no slot holds any more
        self._index: dict[DetectorParams, int] = {}
        self.family_of = np.full(1024, -1, dtype=np.int16)
        self.row_of = np.zeros(1024, dtype=np.int32)
        # (detector kind, samples, seconds) after each family's kernel call: metrics
        self.on_scored: Callable[[str, int, float], None] | None = None

    def configure(self, slot: int, params: DetectorParams) -> None:
        """Give ``slot`` fresh state in the family for ``params`` (created on first use):
        in its own row if it is in that family already; otherwise its old row (if any) is
        freed and it takes a free row of the new family, or a new one."""
        f = self._index.get(params)
        if f is None:
            f = len(self.families)
            self._index[params] = f
            self.families.append(build_family(params))
            self.params.append(params)
            self.sizes.append(0)
            self.free.append([])
        if slot >= self.family_of.shape[0]:
            size = max(slot + 1, 2 * self.family_of.shape[0])
            family_of = np.full(size, -1, dtype=np.int16)
            family_of[: self.family_of.shape[0]] = self.family_of
            self.family_of = family_of
            self.row_of = np.resize(self.row_of, size)
        old = int(self.family_of[slot])
        if old == f:
            self.families[f].configure(int(self.row_of[slot]))
            return
        if old >= 0:
            self.free[old].append(int(self.row_of[slot]))
        if self.free[f]:
            row = self.free[f].pop()
        else:
            row = self.sizes[f]
            self.sizes[f] += 1
        self.families[f].configure(row)
        self.row_of[slot] = row
        self.family_of[slot] = f

    def rows_in_use(self, f: int) -> int:
        """Rows of family ``f`` that a slot holds."""
        return self.sizes[f] - len(self.free[f])

    def set_period(self, slot: int, period_ms: float) -> bool:
        """Give ``slot`` its own seasonal period if its family has a seasonal profile.

        A period several times the family's (a week for a daily profile) moves the series,
        with fresh state, to the family of the same parameters over that period
        (``params_for_period``: a weekly profile of the same bin width), created on first
        use; a shorter one stays in its family with its own period."""
        longer = self.params_for_period(slot, period_ms)
        if longer is not None:
            self.configure(slot, longer)
            return True
        set_period = getattr(self.families[int(self.family_of[slot])], "set_period", None)
        if set_period is None:
            return False
        set_period(int(self.row_of[slot]), period_ms)
        return True

    def params_for_period(self, slot: int, period_ms: float) -> DetectorParams | None:
        """The parameters ``slot`` moves to for a period several times its family's (see
        ``set_period``), or None when the period fits its family or it has no profile."""
        family = self.families[int(self.family_of[slot])]
        for_period = getattr(family, "params_for_period", None)
        return None if for_period is None else for_period(period_ms)

    def period_of(self, slot: int) -> float | None:
        """The seasonal period (ms) of ``slot``'s detector, or None if it has none."""
        f = int(self.family_of[slot]) if slot < self.family_of.shape[0] else -1
        period_of = getattr(self.families[f], "period_of", None) if f >= 0 else None
        if period_of is None:
            return None
        try:  # read from the event loop while the worker may be moving the slot
            return float(period_of(int(self.row_of[slot])))
        except IndexError:
            return None

    def adopted_after_s(self, slot: int, since_ms: int) -> float | None:
        """``adopt_after_s`` of ``slot``'s detector if it adopted a new level at or after
        ``since_ms``; None if it did not (or its family never adopts). Called per
        resolving series, never per sample."""
        f = int(self.family_of[slot]) if slot < self.family_of.shape[0] else -1
        adopted_at = getattr(self.families[f], "adopted_at", None) if f >= 0 else None
        if adopted_at is None:
            return None
        t = adopted_at(int(self.row_of[slot]))
        if t is None or t < since_ms:
            return None
        return float(getattr(self.params[f], "adopt_after_s", 0.0))

    def score_learn(
        self,
        slots: NDArray[np.int32],
        ts_ms: NDArray[np.int64],
        values: NDArray[np.float64],
        out: Scores,
    ) -> None:
        rows = self.row_of[slots]
        if len(self.families) == 1:
            start = time.perf_counter()
            self.families[0].score_learn(rows, ts_ms, values, out)
            if self.on_scored is not None:
                self.on_scored(
                    self.params[0].kind, int(slots.shape[0]), time.perf_counter() - start
                )
            return
        fams = self.family_of[slots]
        for f, family in enumerate(self.families):
            index = np.flatnonzero(fams == f)
            if index.shape[0] == 0:
                continue
            start = time.perf_counter()
            part = Scores.empty(int(index.shape[0]))
            family.score_learn(rows[index], ts_ms[index], values[index], part)
            out.put(index, part)
            if self.on_scored is not None:
                self.on_scored(
                    self.params[f].kind, int(index.shape[0]), time.perf_counter() - start
                )

"""The series registry: exact label set -> slot, selection rules and series limits.

This module owns which series are tracked, in which slot, under which rule, and the
bounded memory of series that are not tracked. Lookups of known series run in the
compiled index (``_index``); Python sees a series' labels only the first time it arrives.
It must be used from one thread (the event loop); it knows nothing of detectors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from detector import _index
from detector.config import DetectorConfig, SeriesRule
from detector.errors import DecodeError
from detector.remote_write.decode import DecodedRequest
from detector.selector import Selector

log = logging.getLogger(__name__)

UNKNOWN = _index.UNKNOWN  # -1: not in the index yet
UNTRACKED = -2  # known, matched no rule
OVER_LIMIT = -3  # known, matched a rule whose series limit (or the global one) was full

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where each series of one request goes: ``values[i]`` is a slot or a negative marker."""

    values: NDArray[np.int32]
    new_tracked: int
    new_untracked: int
    new_over_limit: int


class SeriesRegistry:
    """Assigns slots to label sets under the configured rules and limits."""

    def __init__(self, cfg: DetectorConfig) -> None:
        self.limits = cfg.limits
        self.rules: tuple[SeriesRule, ...] = cfg.series
        self._selectors: tuple[Selector | None, ...] = tuple(r.selector() for r in self.rules)
        self.rule_series = [0] * len(self.rules)
        self.labels: list[Labels] = []  # by slot
        self.slot_rule = np.empty(1024, dtype=np.int32)
        self.n_ignored = 0
        self._limit_logged: set[int] = set()
        self._ht = np.full(1024, -1, dtype=np.int32)
        self._entry_off = np.empty(512, dtype=np.int64)
        self._entry_len = np.empty(512, dtype=np.int32)
        self._entry_hash = np.empty(512, dtype=np.int64)
        self._entry_value = np.empty(512, dtype=np.int32)
        self._n_entries = 0
        self._arena = np.empty(1 << 16, dtype=np.uint8)
        self._arena_used = 0

    @property
    def n_tracked(self) -> int:
        return len(self.labels)

    def rule_of(self, slot: int) -> SeriesRule:
        return self.rules[int(self.slot_rule[slot])]

    def resolve(self, req: DecodedRequest) -> Resolution:
        """Find or assign the value of every series in ``req``.

        New label sets are validated first (UTF-8, label limits); if any is invalid the
        whole request is refused with DecodeError and nothing is added.
        """
        n = req.n_series
        hashes = np.empty(n, dtype=np.int64)
        values = np.empty(n, dtype=np.int32)
        _index.lookup(req.buf, req.lab_noff, req.lab_nlen, req.lab_voff, req.lab_vlen,
                      req.ser_first, req.ser_count, self._ht, self._entry_off,
                      self._entry_len, self._entry_hash, self._entry_value, self._arena,
                      hashes, values)
        unknown = np.flatnonzero(values == UNKNOWN)
        if unknown.shape[0] == 0:
            return Resolution(values, 0, 0, 0)
        return self._admit(req, hashes, values, unknown)

    def _check(self, req: DecodedRequest, series: int) -> Labels:
        count = int(req.ser_count[series])
        if count > self.limits.max_labels_per_series:
            raise DecodeError(
                f"series {series}: {count} labels, over the limit of "
                f"{self.limits.max_labels_per_series} (limits.max_labels_per_series)"
            )
        first = int(req.ser_first[series])
        if int(req.lab_nlen[first:first + count].max()) > self.limits.max_label_name_bytes:
            raise DecodeError(
                f"series {series}: a label name is over "
                f"{self.limits.max_label_name_bytes} bytes (limits.max_label_name_bytes)"
            )
        if int(req.lab_vlen[first:first + count].max()) > self.limits.max_label_value_bytes:
            raise DecodeError(
                f"series {series}: a label value is over "
                f"{self.limits.max_label_value_bytes} bytes (limits.max_label_value_bytes)"
            )
        return req.labels(series)

    def _choose(self, labels: Labels) -> int:
        """The value for a new label set: a fresh slot, UNTRACKED or OVER_LIMIT."""
        as_dict = dict(labels)
        for index, (rule, selector) in enumerate(zip(self.rules, self._selectors, strict=True)):
            if selector is not None and not selector.matches(as_dict):
                continue
            full_rule = rule.max_series is not None and self.rule_series[index] >= rule.max_series
            if full_rule or len(self.labels) >= self.limits.max_series:
                if index not in self._limit_logged:
                    self._limit_logged.add(index)
                    which = f"rule {rule.name!r} max_series" if full_rule else "limits.max_series"
                    log.warning("series limit reached (%s); new series of rule %r are dropped "
                                "and counted in vigil_series_dropped_total", which, rule.name)
                return OVER_LIMIT
            slot = len(self.labels)
            self.labels.append(labels)
            if slot >= self.slot_rule.shape[0]:
                self.slot_rule = np.resize(self.slot_rule, 2 * self.slot_rule.shape[0])
            self.slot_rule[slot] = index
            self.rule_series[index] += 1
            return slot
        return UNTRACKED

    def _admit(self, req: DecodedRequest, hashes: NDArray[np.int64], values: NDArray[np.int32],
               unknown: NDArray[np.intp]) -> Resolution:
        checked = [(int(s), self._check(req, int(s))) for s in unknown]  # may raise: adds nothing
        firsts: dict[Labels, int] = {}
        which: list[int] = []
        new_values: list[int] = []
        counts = {"tracked": 0, "untracked": 0, "over": 0}
        for s, labels in checked:
            if labels in firsts:  # the same series twice in one request
                values[s] = values[firsts[labels]]
                continue
            value = self._choose(labels)
            values[s] = value
            firsts[labels] = s
            key = "tracked" if value >= 0 else ("untracked" if value == UNTRACKED else "over")
            counts[key] += 1
            if value < 0:
                if self.n_ignored >= self.limits.max_ignored_series:
                    continue  # not remembered: it will be looked at again next time
                self.n_ignored += 1
            which.append(s)
            new_values.append(value)
        if which:
            self._insert(req, hashes, np.array(which, dtype=np.int32),
                         np.array(new_values, dtype=np.int32))
        return Resolution(values, counts["tracked"], counts["untracked"], counts["over"])

    def _insert(self, req: DecodedRequest, hashes: NDArray[np.int64], which: NDArray[np.int32],
                values: NDArray[np.int32]) -> None:
        k = which.shape[0]
        need_entries = self._n_entries + k
        if need_entries > self._entry_off.shape[0]:
            size = max(2 * self._entry_off.shape[0], need_entries)
            self._entry_off = np.resize(self._entry_off, size)
            self._entry_len = np.resize(self._entry_len, size)
            self._entry_hash = np.resize(self._entry_hash, size)
            self._entry_value = np.resize(self._entry_value, size)
        if 2 * need_entries > self._ht.shape[0]:
            size = self._ht.shape[0]
            while 2 * need_entries > size:
                size *= 2
            self._ht = np.full(size, -1, dtype=np.int32)
            _index.rehash(self._entry_hash, self._n_entries, self._ht)
        firsts = req.ser_first[which]
        counts = req.ser_count[which]
        bound = 0
        for f, c in zip(firsts.tolist(), counts.tolist(), strict=True):
            bound += int(req.lab_nlen[f:f + c].sum()) + int(req.lab_vlen[f:f + c].sum()) + 10 * c
        if self._arena_used + bound > self._arena.shape[0]:
            size = self._arena.shape[0]
            while self._arena_used + bound > size:
                size *= 2
            self._arena = np.resize(self._arena, size)
        self._arena_used = int(_index.insert(
            req.buf, req.lab_noff, req.lab_nlen, req.lab_voff, req.lab_vlen, req.ser_first,
            req.ser_count, hashes, which, values, self._ht, self._entry_off, self._entry_len,
            self._entry_value, self._entry_hash, self._arena, self._n_entries,
            self._arena_used))
        self._n_entries = need_entries

    def select(self, selectors: Sequence[Selector]) -> Iterator[int]:
        """Slots of tracked series matching any of ``selectors`` (all when none given)."""
        for slot, labels in enumerate(self.labels):
            if not selectors:
                yield slot
                continue
            as_dict = dict(labels)
            if any(sel.matches(as_dict) for sel in selectors):
                yield slot

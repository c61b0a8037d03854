"""Alert lifecycle of every tracked series: rule tables, state tables and events.

This module owns the per-series alert state (normal, pending, firing) and turns each
transition into an ``AlertEvent`` value. It runs on the detector worker thread, which is
the only writer of the state; it does no I/O and knows nothing of Alertmanager (that is
``detector.alerting.book`` and ``detector.alerting.delivery``). The kernel is
``detector.alerting._state_kernel``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from opentelemetry.trace import SpanContext

from detector.alerting import _state_kernel
from detector.config import AlertRule

NEVER = int(_state_kernel.NEVER)
NORMAL, PENDING, FIRING = _state_kernel.NORMAL, _state_kernel.PENDING, _state_kernel.FIRING
MAX_LEVELS = 4


class EventKind(enum.Enum):
    FIRE = "fire"  # anomalous for long enough
    ESCALATE = "escalate"  # a higher severity threshold was reached while firing
    RESOLVE = "resolve"  # normal for long enough
    STALE = "stale"  # the series went stale or silent while firing
    RESTORED = "restored"  # firing in the checkpoint the detector started from
    RECONFIGURED = "reconfigured"  # a config reload changed or removed its alert rule


_KINDS = {
    _state_kernel.EV_FIRE: EventKind.FIRE,
    _state_kernel.EV_ESCALATE: EventKind.ESCALATE,
    _state_kernel.EV_RESOLVE: EventKind.RESOLVE,
}


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One transition of one series, with the sample that caused it."""

    slot: int
    kind: EventKind
    level: int  # 1-based severity index into the rule's severities
    ts_ms: int  # timestamp of the deciding sample (or now, for STALE/RESTORED)
    since_ms: int  # first anomalous sample of the run
    score: float
    value: float
    expected: float
    lower: float
    upper: float
    peak: float
    trace: SpanContext | None = None  # the detect span that decided it, when traced
    # RESOLVE only: the detector adopted the run's level as the new normal, after this
    # many seconds (None: the series came back inside its band)
    adopted_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class RuleTables:
    """The alert rules as arrays indexed by rule number, for the kernel."""

    thresholds: NDArray[np.float64]  # (rules, MAX_LEVELS), ascending, padded with +inf
    for_samples: NDArray[np.int64]
    for_ms: NDArray[np.int64]
    normal_below: NDArray[np.float64]
    resolve_samples: NDArray[np.int64]
    resolve_ms: NDArray[np.int64]


def build_rule_tables(rules: Sequence[AlertRule]) -> RuleTables:
    n = max(1, len(rules))
    thresholds = np.full((n, MAX_LEVELS), math.inf)
    for r, rule in enumerate(rules):
        for k, level in enumerate(rule.severities):
            thresholds[r, k] = level.score

    def ints(values: list[int]) -> NDArray[np.int64]:
        return np.array(values + [0] * (n - len(values)), dtype=np.int64)

    return RuleTables(
        thresholds=thresholds,
        for_samples=ints([r.for_samples for r in rules]),
        for_ms=ints([round(r.for_s * 1000) for r in rules]),
        normal_below=np.array([r.normal_below for r in rules] + [0.0] * (n - len(rules))),
        resolve_samples=ints([r.resolve_samples for r in rules]),
        resolve_ms=ints([round(r.resolve_s * 1000) for r in rules]),
    )


# per-slot alert tables: name, dtype, value of a fresh slot (grown with the pipeline's)
ALERT_TABLES: tuple[tuple[str, type, float | int], ...] = (
    ("al_rule", np.int16, -1),  # alert rule of the series; -1 none (set at creation)
    ("al_state", np.uint8, NORMAL),
    ("al_level", np.uint8, 0),
    ("al_since", np.int64, NEVER),
    ("al_run", np.int64, 0),
    ("al_normal_since", np.int64, NEVER),  # start of the firing alert's normal run
    ("al_run_from", np.int64, NEVER),  # start of the pending run's first sample's interval
    ("al_prev_ts", np.int64, NEVER),  # the series' previous sample seen by the lifecycle
    ("al_peak", np.float64, 0.0),
    ("al_base_exp", np.float64, np.nan),  # expected value and band when the run started
    ("al_base_lo", np.float64, np.nan),
    ("al_base_hi", np.float64, np.nan),
)


class AlertTables(Protocol):
    """The pipeline's per-slot arrays this module reads and writes."""

    al_rule: NDArray[np.int16]
    al_state: NDArray[np.uint8]
    al_level: NDArray[np.uint8]
    al_since: NDArray[np.int64]
    al_run: NDArray[np.int64]
    al_normal_since: NDArray[np.int64]
    al_run_from: NDArray[np.int64]
    al_prev_ts: NDArray[np.int64]
    al_peak: NDArray[np.float64]
    al_base_exp: NDArray[np.float64]
    al_base_lo: NDArray[np.float64]
    al_base_hi: NDArray[np.float64]
    last_ts: NDArray[np.int64]
    stale: NDArray[np.uint8]
    interval_ms: NDArray[np.float64]
    last_input: NDArray[np.float64]
    last_score: NDArray[np.float64]
    last_expected: NDArray[np.float64]
    last_lower: NDArray[np.float64]
    last_upper: NDArray[np.float64]


class AlertState:
    """The kernel's rule tables and the calls that advance or sweep the state."""

    def __init__(
        self, rules: Sequence[AlertRule], *, stale_intervals: float = 5.0, stale_min_s: float = 60.0
    ) -> None:
        self.tables = build_rule_tables(rules)
        self.n_rules = len(rules)
        self.stale_intervals = stale_intervals
        self.stale_min_ms = stale_min_s * 1000.0

    def step(
        self,
        p: AlertTables,
        slots: NDArray[np.int32],
        ts: NDArray[np.int64],
        score: NDArray[np.float64],
        value: NDArray[np.float64],
        expected: NDArray[np.float64],
        lower: NDArray[np.float64],
        upper: NDArray[np.float64],
    ) -> list[AlertEvent]:
        """Advance the state with one batch's scores; the events it caused, in order."""
        n = int(slots.shape[0])
        if n == 0 or self.n_rules == 0:
            return []
        ev_index = np.empty(n, dtype=np.int32)
        ev_kind = np.empty(n, dtype=np.uint8)
        ev_level = np.empty(n, dtype=np.uint8)
        ev_since = np.empty(n, dtype=np.int64)
        ev_peak = np.empty(n, dtype=np.float64)
        ev_exp = np.empty(n, dtype=np.float64)
        ev_lo = np.empty(n, dtype=np.float64)
        ev_hi = np.empty(n, dtype=np.float64)
        t = self.tables
        n_ev = _state_kernel.step(
            slots,
            ts,
            score,
            value,
            lower,
            upper,
            p.al_rule,
            t.thresholds,
            t.for_samples,
            t.for_ms,
            t.normal_below,
            t.resolve_samples,
            t.resolve_ms,
            p.al_state,
            p.al_level,
            p.al_since,
            p.al_run,
            p.al_normal_since,
            p.al_peak,
            ev_index,
            ev_kind,
            ev_level,
            ev_since,
            ev_peak,
            expected,
            p.al_base_exp,
            p.al_base_lo,
            p.al_base_hi,
            ev_exp,
            ev_lo,
            ev_hi,
            p.al_prev_ts,
            p.al_run_from,
        )
        events = []
        for e in range(int(n_ev)):
            i = int(ev_index[e])
            s = int(slots[i])
            since = int(ev_since[e])
            events.append(
                AlertEvent(
                    slot=s,
                    kind=_KINDS[int(ev_kind[e])],
                    level=int(ev_level[e]),
                    ts_ms=int(ts[i]),
                    since_ms=since if since != NEVER else int(ts[i]),
                    score=float(score[i]),
                    value=float(value[i]),
                    expected=float(ev_exp[e]),
                    lower=float(ev_lo[e]),
                    upper=float(ev_hi[e]),
                    peak=float(ev_peak[e]),
                )
            )
        return events

    def latest(self, p: AlertTables, s: int, kind: EventKind, ts_ms: int) -> AlertEvent:
        """An event of ``kind`` for series ``s`` from its latest state (no sample)."""
        return self._latest(p, s, kind, ts_ms)

    def _latest(self, p: AlertTables, s: int, kind: EventKind, ts_ms: int) -> AlertEvent:
        since = int(p.al_since[s])
        return AlertEvent(
            slot=s,
            kind=kind,
            level=int(p.al_level[s]),
            ts_ms=ts_ms,
            since_ms=since if since != NEVER else ts_ms,
            score=float(p.last_score[s]),
            value=float(p.last_input[s]),
            expected=float(p.al_base_exp[s]),
            lower=float(p.al_base_lo[s]),
            upper=float(p.al_base_hi[s]),
            peak=float(p.al_peak[s]),
        )

    def sweep(self, p: AlertTables, n: int, now_ms: int) -> list[AlertEvent]:
        """Resolve firing series that went stale or silent (STALE events); forget the
        pending run of those. Called by the worker between batches.

        A staleness marker alone resolves nothing: the series must then stay without a
        sample for ``stale_intervals`` of its usual interval (at least ``stale_min_s``),
        as a series that simply stops does. One failed scrape in the middle of an incident
        (Prometheus marks the series stale, the next scrape brings it back) would otherwise
        resolve the alert and page again a minute later."""
        active = np.flatnonzero(p.al_state[:n] != NORMAL)
        if active.shape[0] == 0:
            return []
        limit = np.maximum(p.interval_ms[active] * self.stale_intervals, self.stale_min_ms)
        silent = now_ms - p.last_ts[active] > limit  # last_ts: the last sample or marker
        events = []
        for s in active[silent].tolist():
            if p.al_state[s] == FIRING:
                events.append(self._latest(p, s, EventKind.STALE, now_ms))
            p.al_state[s] = NORMAL
            p.al_level[s] = 0
            p.al_run[s] = 0
            p.al_since[s] = NEVER
            p.al_normal_since[s] = NEVER
        return events

    def firing(self, p: AlertTables, n: int, now_ms: int) -> list[AlertEvent]:
        """A RESTORED event for every series firing now (after a checkpoint restore)."""
        return [
            self._latest(p, s, EventKind.RESTORED, now_ms)
            for s in np.flatnonzero(p.al_state[:n] == FIRING).tolist()
        ]

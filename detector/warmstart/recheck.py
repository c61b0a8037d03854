"""Seasonal re-check: the period of live series still on a daily profile, judged again
from their history in Prometheus, so a series that started without two weeks of history
(a new deployment, or Vigil started before its history existed) moves to a weekly profile
once that history repeats weekly, instead of paging every weekend for good.

This module owns the schedule (``Schedule``: when each series is looked at next; pure,
times passed in) and ``ReChecker``, the event-loop task that picks the due series, reads
each one's history with the warm start's own queries and period detection
(``prometheus.read_history``, in a thread, one query at a time, at most
``warm_start.recheck_per_s`` a second; while warm starts wait, one a minute) and queues a move
for the detector worker (``Batch.move``: the worker gives the series fresh state in the
weekly family, learns the history without alerting, keeps its alert state). It never
writes the detector's tables; a failed query is logged, counted and tried again an
interval later. Reads that fail in a row (Prometheus down or slow) end the pass and back
off, doubling up to ``BACKOFF_MAX_S``, and are logged at 1, 2, 4, 8, ... in a row: an
outage of hours costs a few dozen queries and log lines, not two a second.

When a series is looked at: a warm start tells the schedule how far back its history
goes (``Schedule.after_read``); a week can be told from a day once the history spans two
(``periods.correlations`` needs the period twice; ``weekdays_repeat`` five day pairs a
week apart), so a series is due when its history will span two of the longest candidate
period plus an hour, and then every ``recheck_interval_s`` while it stays daily. Series
restored from a checkpoint (their history unknown) are due at once, paced by the rate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import numpy as np
import requests
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from detector.config import WarmStartConfig
from detector.metrics import IngestMetrics
from detector.pipeline.worker import Batch, Pipeline, SampleQueue
from detector.series.registry import Labels, SeriesRegistry
from detector.warmstart.prometheus import (
    SeriesHistory,
    period_label,
    read_history,
    reads_period_history,
)
from servicekit import tls
from servicekit.durations import format_duration

log = logging.getLogger(__name__)

NEVER_MS = np.iinfo(np.int64).max
SPAN_MARGIN_MS = 3_600_000  # beyond two periods: late scrapes, a partial first day
BATCH = 64  # due series read per pass of the schedule
SCAN = 4096  # due series looked at per pass (most may be weekly already: no read)
IDLE_S = 60.0  # the longest wait between passes
BUSY_S = 5.0  # the wait while warm starts are waiting (they hold live samples)
STARVED_S = 60.0  # warm starts waiting without end still let one read through this often
BACKOFF_MAX_S = 600.0  # the longest wait after reads that failed in a row

Verdict = Literal["moved", "kept", "short"]


def build_client(url: str, session: requests.Session) -> PrometheusConnect:
    """The re-check's own client: no retries within a read. prometheus-api-client retries
    a query 3 times (and on 5xx), so a read outlived its ``wait_for`` budget in a thread
    that went on querying while the next read started (not one at a time any more), and
    a Prometheus answering 503 got each query four times. The re-check retries a series
    an interval later and backs off (``ReChecker``)."""
    return PrometheusConnect(url=url, session=session, retry=Retry(total=0))


def longest_ms(cfg: WarmStartConfig) -> float:
    """The longest candidate period, in ms (0 without candidates)."""
    return max(cfg.period_candidates_s, default=0.0) * 1000.0


def span_needed_ms(cfg: WarmStartConfig) -> int:
    """How far back a history must go for the longest candidate to be judged: twice
    that period (``periods.correlations``)."""
    return round(2 * longest_ms(cfg))


def is_enabled(cfg: WarmStartConfig) -> bool:
    """Whether series are re-checked: periods detected, an interval set, and the history
    the warm start reads long enough to see the longest candidate twice."""
    read_s = cfg.period_history_s if reads_period_history(cfg) else cfg.history_s
    return (
        cfg.enabled
        and cfg.detect_period
        and cfg.recheck_interval_s > 0
        and longest_ms(cfg) > 0
        and read_s * 1000.0 >= 2 * longest_ms(cfg)
    )


def judge(history: SeriesHistory, *, moves: bool, span_needed: int) -> Verdict:
    """What a re-check makes of a history: ``moved`` if its period moves the series to a
    longer profile (``moves``: the detector's answer for that period), ``short`` if it
    spans too little to tell, else ``kept``."""
    if history.period_ms is not None and moves:
        return "moved"
    return "short" if history.span_ms < span_needed else "kept"


def move_batch(slot: int, history: SeriesHistory) -> Batch:
    """The batch that moves ``slot`` to the profile of its history's period and learns
    that history (``Pipeline._move``)."""
    assert history.period_ms is not None
    return Batch(
        slots=np.full(history.ts.shape[0], slot, dtype=np.int32),
        ts=history.ts,
        bits=history.bits,
        move=(slot, history.period_ms),
    )


class Schedule:
    """When each slot's period is judged next (epoch ms; ``NEVER_MS``: not scheduled).
    Pure: every time is passed in. One writer: the event loop."""

    def __init__(self, *, interval_ms: int, span_ms: int) -> None:
        self.interval_ms = interval_ms
        self.span_ms = span_ms
        self.due = np.full(0, NEVER_MS, dtype=np.int64)

    def _grow(self, n: int) -> None:
        if n > self.due.shape[0]:
            grown = np.full(max(n, 2 * self.due.shape[0], 1024), NEVER_MS, np.int64)
            grown[: self.due.shape[0]] = self.due
            self.due = grown

    def _at(self, slot: int, due_ms: int) -> None:
        self._grow(slot + 1)
        self.due[slot] = due_ms

    def add_unknown(self, n: int, now_ms: int) -> None:
        """Slots below ``n`` not scheduled yet (restored from a checkpoint: how far back
        their history goes is unknown) are due now."""
        self._grow(n)
        head = self.due[: max(n, 0)]
        head[head == NEVER_MS] = now_ms

    def after_read(self, slot: int, now_ms: int, history: SeriesHistory | None) -> None:
        """``slot``'s history was read at ``now_ms`` (None: the read failed or was
        skipped): due again an interval later, or when its history spans enough to tell
        a week, whichever is later. An empty history starts now."""
        due = now_ms + self.interval_ms
        if history is not None:
            first = now_ms if history.first_ms is None else history.first_ms
            due = max(due, first + self.span_ms)
        self._at(slot, due)

    def later(self, slot: int, now_ms: int) -> None:
        """Look at ``slot`` again an interval from now."""
        self._at(slot, now_ms + self.interval_ms)

    def pick(self, now_ms: int, limit: int) -> list[int]:
        """Up to ``limit`` slots due at ``now_ms``, the longest due first (ties: the
        lowest slot first). One scan of the table and a partial sort: O(n + limit log
        limit), not a sort of everything due."""
        due = np.flatnonzero(self.due <= now_ms)
        if due.shape[0] > limit:
            times = self.due[due]
            kth = np.partition(times, limit - 1)[limit - 1]
            below = due[times < kth]
            due = np.sort(np.concatenate((below, due[times == kth][: limit - below.shape[0]])))
        first = np.argsort(self.due[due], kind="stable")
        return [int(s) for s in due[first]]

    def lag_s(self, now_ms: int) -> float:
        """Seconds the longest-waiting due slot is past its due time (0: none due)."""
        first = self.next_due_ms()
        return 0.0 if first is None or first >= now_ms else (now_ms - first) / 1000.0

    def next_due_ms(self) -> int | None:
        """The earliest due time, or None when nothing is scheduled."""
        if self.due.shape[0] == 0:
            return None
        first = int(self.due.min())
        return None if first == NEVER_MS else first


class Tracked(Protocol):
    """What the re-check asks about a series (answered from the registry and the
    pipeline on the event loop; the worker checks again when it applies a move)."""

    def n_tracked(self) -> int: ...

    def labels_of(self, slot: int) -> Labels: ...

    def is_counter(self, slot: int) -> bool: ...

    def is_candidate(self, slot: int, period_ms: float) -> bool:
        """Tracked, not warming up, and a move to ``period_ms`` would give it a longer
        profile than its family's."""
        ...


class LiveSeries:
    """``Tracked`` answered by the series registry and the pipeline."""

    def __init__(self, registry: SeriesRegistry, pipeline: Pipeline) -> None:
        self.registry = registry
        self.pipeline = pipeline

    def n_tracked(self) -> int:
        return self.registry.n_tracked

    def labels_of(self, slot: int) -> Labels:
        return self.registry.labels_of(slot)

    def is_counter(self, slot: int) -> bool:
        return self.registry.is_counter(slot)

    def is_candidate(self, slot: int, period_ms: float) -> bool:
        p = self.pipeline
        dets = p.detectors
        family_of = dets.family_of  # the worker may grow it: read the reference once
        if slot >= family_of.shape[0] or int(family_of[slot]) < 0:
            return False
        if self.registry.is_retired(slot) or (slot < p.warming.shape[0] and p.warming[slot]):
            return False
        return dets.params_for_period(slot, period_ms) is not None


class ReChecker:
    """Re-checks the seasonal period of live series on a daily profile (module doc)."""

    def __init__(
        self,
        *,
        cfg: WarmStartConfig,
        client: PrometheusConnect,
        queue: SampleQueue,
        series: Tracked,
        metrics: IngestMetrics,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        busy: Callable[[], bool] = lambda: False,
        read: Callable[..., SeriesHistory] = read_history,
    ) -> None:
        """``busy``: warm starts are waiting (re-checks give way); ``read`` is
        ``read_history`` (a stand-in in tests)."""
        self.cfg = cfg
        self.client = client
        self.queue = queue
        self.series = series
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep
        self.busy = busy
        self.read = read
        self.span_needed = span_needed_ms(cfg)
        self.schedule = Schedule(
            interval_ms=round(cfg.recheck_interval_s * 1000),
            span_ms=self.span_needed + SPAN_MARGIN_MS,
        )
        self._last_query_s = -float("inf")
        self.failures = 0  # reads failed in a row
        self._giving_way_since: float | None = None  # warm starts waiting since (clock)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def after_warm_start(self, slot: int, history: SeriesHistory | None) -> None:
        """A warm start of ``slot`` read its history (None: it failed or was skipped)."""
        self.schedule.after_read(slot, self.now_ms(), history)

    async def run(self) -> None:
        """Re-check until cancelled. A pass that fails unexpectedly is logged, counted
        and retried after ``IDLE_S``; the schedule is kept."""
        self.schedule.add_unknown(self.series.n_tracked(), self.now_ms())
        while True:
            try:
                wait_s = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("seasonal re-check pass failed; retrying in %.0f s", IDLE_S)
                self.metrics.rechecks.labels("error").inc()
                wait_s = IDLE_S
            await self.sleep(wait_s)

    async def step(self) -> float:
        """One pass: look at up to ``SCAN`` due series and re-check up to ``BATCH`` of
        them, paced; the seconds to wait before the next pass. Series that cannot move
        cost no query and no pacing: a million restored weekly series take ~250 passes."""
        if self._gives_way():
            return BUSY_S
        now = self.now_ms()
        self.metrics.recheck_lag.set(self.schedule.lag_s(now))
        due = self.schedule.pick(now, SCAN)
        if not due:
            # a series scheduled meanwhile is due an interval from its read at the soonest
            idle = min(IDLE_S, self.cfg.recheck_interval_s)
            nxt = self.schedule.next_due_ms()
            return idle if nxt is None else min(idle, max(1.0, (nxt - now) / 1000.0))
        longest = longest_ms(self.cfg)
        read = 0
        for slot in due:
            if not self.series.is_candidate(slot, longest):
                self.schedule.later(slot, self.now_ms())  # weekly already, warming, ...
                continue
            if read == BATCH:
                return 0.0  # the rest stay due
            if read and self._gives_way():
                return BUSY_S  # the rest stay due
            read += 1
            wait_s = self._last_query_s + 1.0 / self.cfg.recheck_per_s - self.clock()
            if wait_s > 0:
                await self.sleep(wait_s)
            self._last_query_s = self.clock()
            if await self.check(slot) is None:
                return self.backoff_s()  # the rest stay due
        return 0.0

    def _gives_way(self) -> bool:
        """Warm starts are waiting: give way, but after ``STARVED_S`` of giving way let
        one read through (under new series without end, one re-check a minute)."""
        if not self.busy():
            self._giving_way_since = None
            return False
        now = self.clock()
        if self._giving_way_since is None:
            self._giving_way_since = now
        elif now - self._giving_way_since >= STARVED_S:
            self._giving_way_since = now
            return False
        return True

    def backoff_s(self) -> float:
        """The wait after the latest of ``failures`` reads failed in a row."""
        step = 1.0 / self.cfg.recheck_per_s
        return min(BACKOFF_MAX_S, step * 2.0 ** min(self.failures, 32))

    async def check(self, slot: int) -> Verdict | None:
        """Read ``slot``'s history and judge it; queue the move if it repeats weekly.
        None: the read failed (logged, counted, tried again an interval later)."""
        queries = 2 if reads_period_history(self.cfg) else 1
        budget_s = queries * self.cfg.timeout_s + 1
        try:
            history = await asyncio.wait_for(
                asyncio.to_thread(
                    self.read,
                    self.client,
                    self.series.labels_of(slot),
                    self.cfg,
                    counter=self.series.is_counter(slot),
                    what=f"seasonal re-check of series {slot}",
                ),
                budget_s,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            if self.failures & (self.failures - 1) == 0:  # 1, 2, 4, 8, ... in a row
                why = (  # a bare TimeoutError says nothing
                    f"no answer within {format_duration(budget_s)} "
                    f"({queries} x warm_start.timeout_s + 1 s)"
                    if isinstance(exc, TimeoutError)
                    else tls.explain(exc)
                )
                log.warning(
                    "seasonal re-check of series %s failed (%d in a row): %s; trying it "
                    "again in %s, the next series in %s",
                    slot,
                    self.failures,
                    why,
                    format_duration(self.cfg.recheck_interval_s),
                    format_duration(self.backoff_s()),
                )
            self.metrics.rechecks.labels("error").inc()
            self.schedule.later(slot, self.now_ms())
            return None
        if self.failures:
            log.info("seasonal re-check: reading again after %d failed reads", self.failures)
            self.failures = 0
        moves = history.period_ms is not None and self.series.is_candidate(slot, history.period_ms)
        verdict = judge(history, moves=moves, span_needed=self.span_needed)
        self.metrics.rechecks.labels(verdict).inc()
        if verdict == "moved":
            assert history.period_ms is not None
            self.metrics.periods_detected.labels(period_label(history.period_ms)).inc()
            log.info(
                "seasonal re-check: series %s repeats every %s over its last %s; moving it "
                "to that profile",
                slot,
                format_duration(history.period_ms / 1000.0),
                format_duration(history.span_ms / 1000.0),
            )
            self.queue.offer(move_batch(slot, history))
            self.schedule.later(slot, self.now_ms())  # if the worker refuses it
        else:
            self.schedule.after_read(slot, self.now_ms(), history)
        return verdict

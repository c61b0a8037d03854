"""Routes decoded samples to the detector families and owns every per-series table.

The event loop hands each accepted request's samples over as a ``Batch`` through the
bounded ``SampleQueue``; one worker thread drains it and calls ``Pipeline.process``, so
every table has exactly one writer. This module does no network I/O.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from opentelemetry.trace import SpanContext, Tracer

from detector import stages
from detector.alerting.state import ALERT_TABLES, FIRING, AlertEvent, AlertState, EventKind
from detector.config import DetectorParams
from detector.detectors.base import Scores
from detector.detectors.router import DetectorSet
from detector.metrics import IngestMetrics
from detector.pipeline import _sample_rules
from detector.pipeline.history import History
from servicekit import telemetry

log = logging.getLogger(__name__)

REPORT_THRESHOLD = 0.999
MAX_HELD_SAMPLES = 10_000  # per series, while its warm start runs


@dataclass(frozen=True, slots=True)
class SlotSpec:
    """How a new slot is watched: its detector parameters, and whether it is a counter."""

    slot: int
    params: DetectorParams
    counter: bool = False
    warm: bool = False  # hold its live samples until its history from Prometheus arrives
    alert_rule: int = -1  # index of its alert rule; -1: it never alerts
    generation: int = 0  # the config reloads the registry had applied when it decided this


@dataclass(frozen=True, slots=True)
class Reconfigure:
    """A config reload, applied by the worker between two batches (so atomically).

    ``reset`` slots get fresh detector state under their new parameters; ``alert_rule``
    gives the first ``len(alert_rule)`` slots their alert rule (-1: retired or no rule);
    a firing series whose alert rule changed (``alert_changed``, per slot) or that lost
    its rule is resolved (``EventKind.RECONFIGURED``) and its alert state starts over.
    ``respec`` gives the current spec of a slot whose creation predates the reload but
    reaches the worker after it. ``on_applied`` runs on the worker afterwards.
    """

    generation: int
    alerts: AlertState | None
    reset: Sequence[SlotSpec]
    alert_rule: NDArray[np.int16]
    alert_changed: NDArray[np.bool_]
    respec: Callable[[int], SlotSpec]
    on_applied: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """Samples of tracked series from one request, plus the slots it created."""

    slots: NDArray[np.int32]
    ts: NDArray[np.int64]
    bits: NDArray[np.uint64]  # raw value bits: the staleness marker is one specific NaN
    new_slots: Sequence[SlotSpec] = field(default=())
    warmed: Sequence[int] = field(default=())  # history batch: these slots' warm start is done
    periods: Sequence[tuple[int, float]] = field(default=())  # (slot, seasonal period ms)
    # a re-check found that a live series repeats with a longer period than its family's:
    # (slot, period ms); the batch's samples are its history (``Pipeline._move``)
    move: tuple[int, float] | None = None
    trace: SpanContext | None = None  # the sampled request span its samples came with
    reconfigure: Reconfigure | None = None  # a config reload, applied before the rest

    @property
    def n_samples(self) -> int:
        return int(self.slots.shape[0])


# the worker takes at least this many samples at once, waiting up to LINGER_S for them
BATCH_SAMPLES = 8192
LINGER_S = 0.002


class SampleQueue:
    """A FIFO of batches bounded by the number of samples it holds; thread-safe.

    The consumer takes batches together: once one is queued it waits up to ``linger_s``
    for ``batch_samples`` (a few requests' worth). One wake-up, one hand-off of the GIL
    and one pass of the detector's per-batch Python then serve several requests; the
    price is at most ``linger_s`` of latency. Producers wake the consumer only when it
    waits for a first batch or when enough samples are queued.
    """

    def __init__(
        self, max_samples: int, *, batch_samples: int = BATCH_SAMPLES, linger_s: float = LINGER_S
    ) -> None:
        self.max_samples = max_samples
        self.batch_samples = batch_samples
        self.linger_s = linger_s
        self._items: deque[Batch] = deque()
        self._samples = 0
        self._in_flight = 0
        self._cond = threading.Condition()
        self._closed = False
        self._idle = False  # the consumer waits for a first batch

    @property
    def depth(self) -> int:
        """Samples waiting in the queue."""
        return self._samples

    @property
    def pending(self) -> int:
        """Samples waiting or taken but not yet marked done."""
        return self._samples + self._in_flight

    def offer(self, batch: Batch) -> bool:
        """Enqueue unless that would exceed the bound. Batches that create slots or finish a
        warm start always go in: the registry has already assigned the slots, and held
        samples wait for the history."""
        with self._cond:
            if self._closed:
                return False
            if (
                self._samples + batch.n_samples > self.max_samples
                and not batch.new_slots
                and not batch.warmed
                and batch.reconfigure is None
                and batch.move is None
            ):
                return False
            self._items.append(batch)
            self._samples += batch.n_samples
            if self._idle or self._samples >= self.batch_samples:
                self._cond.notify()
            return True

    def take(self, timeout_s: float) -> list[Batch]:
        """All queued batches, waiting up to ``timeout_s`` for the first and then up to
        ``linger_s`` for ``batch_samples``; [] when closed."""
        with self._cond:
            if not self._items and not self._closed:
                self._idle = True
                self._cond.wait(timeout_s)
                self._idle = False
            if self._items and self._samples < self.batch_samples and self.linger_s > 0:
                deadline = time.monotonic() + self.linger_s
                while self._samples < self.batch_samples and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            items = list(self._items)
            self._items.clear()
            self._in_flight += self._samples
            self._samples = 0
            return items

    def done(self, batches: Sequence[Batch]) -> None:
        """Mark batches returned by ``take`` as processed."""
        with self._cond:
            self._in_flight -= sum(b.n_samples for b in batches)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


# per-slot tables of the pipeline: name, dtype, value of a fresh slot
SLOT_TABLES: tuple[tuple[str, type, float | int], ...] = (
    ("last_ts", np.int64, _sample_rules.NEVER),
    ("last_value", np.float64, np.nan),
    ("n_samples", np.int64, 0),
    ("stale", np.uint8, 0),
    ("last_input", np.float64, np.nan),  # what the detectors saw last: value or rate
    ("last_score", np.float64, np.nan),
    ("last_expected", np.float64, np.nan),
    ("last_lower", np.float64, np.nan),
    ("last_upper", np.float64, np.nan),
    ("is_counter", np.uint8, 0),  # set from the registry when the slot is created
    ("rate_prev", np.float64, np.nan),
    ("rate_prev_ts", np.int64, _sample_rules.NEVER),
    ("warming", np.uint8, 0),  # set while a warm start holds the slot's samples
    ("interval_ms", np.float64, 0.0),  # typical time between samples
    ("run_same", np.int64, 0),  # current run of identical values
    ("run_max", np.float64, 0.0),  # fading memory of the longest past run
    *ALERT_TABLES,
)
ALERT_NAMES = frozenset(name for name, _, _ in ALERT_TABLES)
# what a checkpoint keeps; the others are set again when the slot is re-created
CHECKPOINTED = tuple(
    name for name, _, _ in SLOT_TABLES if name not in ("is_counter", "warming", "al_rule")
)


class Pipeline:
    """Per-series tables (last sample, staleness, latest score) and the detector families."""

    # the SLOT_TABLES, typed for mypy (they are created and grown from that list)
    last_ts: NDArray[np.int64]
    last_value: NDArray[np.float64]
    n_samples: NDArray[np.int64]
    stale: NDArray[np.uint8]
    last_input: NDArray[np.float64]
    last_score: NDArray[np.float64]
    last_expected: NDArray[np.float64]
    last_lower: NDArray[np.float64]
    last_upper: NDArray[np.float64]
    is_counter: NDArray[np.uint8]
    rate_prev: NDArray[np.float64]
    rate_prev_ts: NDArray[np.int64]
    warming: NDArray[np.uint8]
    interval_ms: NDArray[np.float64]
    run_same: NDArray[np.int64]
    run_max: NDArray[np.float64]
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

    def __init__(
        self,
        metrics: IngestMetrics,
        capacity: int = 1024,
        *,
        alerts: AlertState | None = None,
        on_events: Callable[[list[AlertEvent]], None] | None = None,
        history: History | None = None,
        tracer: Tracer | None = None,
        clock: stages.StageClock = stages.OFF,
    ) -> None:
        """``alerts`` advances each series' alert state after scoring; ``on_events`` gets
        the transitions (on the worker thread); ``history`` keeps the recent samples of
        the series in or just after an anomaly (the console's charts); with ``tracer``,
        batches that came with a sampled request span are processed in a ``detect``
        span, and the alert events they cause carry it; ``clock`` profiles the stages."""
        self.metrics = metrics
        self.stages = clock
        self.tracer = tracer
        self._trace: SpanContext | None = None
        self.alerts = alerts
        self.on_events = on_events
        self.history = history
        self.capacity = 0
        for name, dtype, _ in SLOT_TABLES:
            setattr(self, name, np.zeros(0, dtype=dtype))
        self.detectors = DetectorSet()
        self.detectors.on_scored = self._count_scored
        self._scored: dict[str, tuple[Any, Any]] = {}  # family kind -> its two counters
        self.n_warming = 0
        self._held: dict[int, list[tuple[NDArray[np.int64], NDArray[np.uint64]]]] = {}
        self._held_count: dict[int, int] = {}
        self.generation = 0  # of the newest Reconfigure applied
        self._respec: Callable[[int], SlotSpec] | None = None
        self._ensure(capacity)

    def _ensure(self, n: int) -> None:
        if n <= self.capacity:
            return
        size = max(n, 2 * self.capacity, 1024)
        for name, dtype, fill in SLOT_TABLES:
            grown: NDArray[Any] = np.full(size, fill, dtype=dtype)
            old = getattr(self, name)
            grown[: old.shape[0]] = old
            setattr(self, name, grown)
        self.capacity = size

    def _reset(self, slot: int) -> None:
        for name, _, fill in SLOT_TABLES:
            getattr(self, name)[slot] = fill

    def _segments(
        self, batch: Batch
    ) -> list[tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.uint64]]]:
        """The samples of ``batch`` to apply now, in order.

        Live samples of series still warming up are held back; a history batch is followed
        by the held samples of the series it warms, which then stop warming.
        """
        segments = []
        slots, ts, bits = batch.slots, batch.ts, batch.bits
        if self.n_warming and not batch.warmed and slots.shape[0]:
            held = self.warming[slots].view(np.bool_)
            if held.any():
                for slot in np.unique(slots[held]).tolist():
                    sel = slots == slot
                    count = self._held_count.get(slot, 0)
                    if count + int(sel.sum()) > MAX_HELD_SAMPLES:
                        self.metrics.samples_dropped.labels("warm_start_backlog").inc(
                            int(sel.sum())
                        )
                        continue
                    self._held.setdefault(slot, []).append((ts[sel], bits[sel]))
                    self._held_count[slot] = count + int(sel.sum())
                live = ~held
                slots, ts, bits = slots[live], ts[live], bits[live]
        segments.append((slots, ts, bits))
        for slot in batch.warmed:
            if slot >= self.warming.shape[0] or not self.warming[slot]:
                continue
            self.warming[slot] = 0
            self.n_warming -= 1
            self._held_count.pop(slot, None)
            for h_ts, h_bits in self._held.pop(slot, []):
                segments.append((np.full(h_ts.shape[0], slot, dtype=np.int32), h_ts, h_bits))
        return segments

    def process(self, batches: Sequence[Batch]) -> None:
        """Apply batches in order: new slots first, then one kernel pass over all samples."""
        traced = [b.trace for b in batches if b.trace is not None] if self.tracer else []
        run = self._process_moves if any(b.move is not None for b in batches) else self._process
        if self.tracer is None or not traced:
            run(batches)
            return
        with self.tracer.start_as_current_span(
            "detect", context=telemetry.parent_of(traced[0]), links=telemetry.links_to(traced[1:])
        ) as span:
            span.set_attribute("vigil.batches", len(batches))
            span.set_attribute("vigil.samples", sum(b.n_samples for b in batches))
            self._trace = span.get_span_context()
            try:
                run(batches)
            finally:
                self._trace = None

    def _process_moves(self, batches: Sequence[Batch]) -> None:
        """``batches`` with moves among them: each move after the batches before it and
        before those after it (it starts the series' sample rules over), its history
        learned as a warm start's is (never reaching the alert lifecycle)."""
        start = 0
        for i, batch in enumerate(batches):
            if batch.move is None:
                continue
            if i > start:
                self._process(batches[start:i])
            start = i + 1
            slot = batch.move[0]
            last_live = int(self.last_ts[slot]) if slot < self.capacity else _sample_rules.NEVER
            history = self._move(batch)
            if history is not None:
                self._process([history])
                # its last sample is still the last live one: a history that ends earlier
                # (read from a store that lags) made a firing series look silent to the
                # sweep, which resolved it, and its next live sample paged again
                self.last_ts[slot] = max(int(self.last_ts[slot]), last_live)
        if start < len(batches):
            self._process(batches[start:])

    def _process(self, batches: Sequence[Batch]) -> None:
        for batch in batches:
            if batch.reconfigure is not None:
                self._reconfigure(batch.reconfigure)
            for spec in batch.new_slots:
                if spec.generation < self.generation and self._respec is not None:
                    spec = self._respec(spec.slot)  # decided under the rules before a reload
                self._ensure(spec.slot + 1)
                self._reset(spec.slot)
                self.is_counter[spec.slot] = spec.counter
                self.al_rule[spec.slot] = spec.alert_rule
                self.detectors.configure(spec.slot, spec.params)
                if spec.warm and not self.warming[spec.slot]:
                    self.warming[spec.slot] = 1
                    self.n_warming += 1
            for slot, period_ms in batch.periods:
                # only for a series still warming: one a reload reset meanwhile has live
                # state that a period (fresh profile, maybe another family) would wipe
                if slot < self.warming.shape[0] and self.warming[slot]:
                    self.detectors.set_period(slot, period_ms)
        self.stages.lap(stages.RESOLVE)  # new series' state (nothing in the steady state)
        # warm-start history (a batch that warms its series) teaches the detectors but
        # never reaches the alert lifecycle: an old incident, or the first weekend of a
        # history a weekly profile has not learned yet, must not page at start-up
        warm_history: NDArray[np.bool_] | None = None
        if len(batches) == 1 and not self.n_warming and not batches[0].warmed:
            slots, ts, bits = batches[0].slots, batches[0].ts, batches[0].bits
        else:
            segments: list[tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.uint64]]] = []
            from_history: list[NDArray[np.bool_]] = []
            for b in batches:
                own, *held = self._segments(b)  # the batch's own samples, then held ones
                segments.append(own)
                from_history.append(np.full(own[0].shape[0], bool(b.warmed)))
                segments.extend(held)
                from_history.extend(np.zeros(seg[0].shape[0], np.bool_) for seg in held)
            slots = np.concatenate([seg[0] for seg in segments])
            ts = np.concatenate([seg[1] for seg in segments])
            bits = np.concatenate([seg[2] for seg in segments])
            warm_history = np.concatenate(from_history)
        self.stages.lap(stages.ROUTE)
        n = int(slots.shape[0])
        if n == 0:
            return
        keep = np.empty(n, dtype=np.uint8)
        counters = np.zeros(3, dtype=np.int64)
        values = np.empty(n, dtype=np.float64)
        _sample_rules.track(
            slots,
            ts,
            bits,
            self.last_ts,
            self.last_value,
            self.n_samples,
            self.stale,
            self.is_counter,
            self.rate_prev,
            self.rate_prev_ts,
            self.interval_ms,
            self.run_same,
            self.run_max,
            values,
            keep,
            counters,
        )
        if np.count_nonzero(keep) == n:  # the usual case: no copies
            k_slots, k_ts, k_values = slots, ts, values
        else:
            mask = keep.view(np.bool_)
            k_slots, k_ts, k_values = slots[mask], ts[mask], values[mask]
            if warm_history is not None:
                warm_history = warm_history[mask]
        out = Scores.empty(int(k_slots.shape[0]))
        self.detectors.score_learn(k_slots, k_ts, k_values, out)
        hits = _sample_rules.record(
            k_slots,
            k_values,
            out.score,
            out.expected,
            out.lower,
            out.upper,
            self.last_input,
            self.last_score,
            self.last_expected,
            self.last_lower,
            self.last_upper,
            REPORT_THRESHOLD,
        )
        self.stages.lap(stages.DETECT)
        if self.alerts is not None:
            if warm_history is None or not warm_history.any():
                events = self.alerts.step(
                    self, k_slots, k_ts, out.score, k_values, out.expected, out.lower, out.upper
                )
            else:
                live = ~warm_history
                events = self.alerts.step(
                    self,
                    k_slots[live],
                    k_ts[live],
                    out.score[live],
                    k_values[live],
                    out.expected[live],
                    out.lower[live],
                    out.upper[live],
                )
            history = self.history

            def record_history() -> None:
                assert history is not None
                self.stages.lap(stages.ALERTS)
                if warm_history is None or not warm_history.any():
                    history.record(k_slots, k_ts, k_values, out, self.al_state)
                else:  # the charts show live samples: a firing series' history that a
                    # move relearns would put weeks-old samples behind its latest
                    live = ~warm_history
                    history.record(
                        k_slots[live],
                        k_ts[live],
                        k_values[live],
                        out.take(np.flatnonzero(live)),
                        self.al_state,
                    )
                self.stages.lap(stages.HISTORY_METRICS)

            # the console's history holds these samples before anyone hears of the alert
            self._emit(events, before_send=None if history is None else record_history)
            self.stages.lap(stages.ALERTS)
        m = self.metrics
        m.samples_accepted.inc(int(counters[_sample_rules.C_ACCEPTED]))
        if counters[_sample_rules.C_OUT_OF_ORDER]:
            m.samples_dropped.labels("out_of_order").inc(
                int(counters[_sample_rules.C_OUT_OF_ORDER])
            )
        if hits:
            m.anomalous_samples.inc(hits)
        self.stages.lap(stages.HISTORY_METRICS)

    def _count_scored(self, kind: str, n: int, seconds: float) -> None:
        children = self._scored.get(kind)
        if children is None:  # labels() hashes and locks: once per family, not per batch
            children = self._scored[kind] = (
                self.metrics.detector_samples.labels(kind),
                self.metrics.detector_seconds.labels(kind),
            )
        children[0].inc(n)
        children[1].inc(seconds)

    def _emit(
        self, events: list[AlertEvent], before_send: Callable[[], None] | None = None
    ) -> None:
        """Record the events (history), run ``before_send``, then hand them on."""
        if events and self._trace is not None:  # inside a traced detect span
            events = [dataclasses.replace(e, trace=self._trace) for e in events]
        if events:  # why each resolve happened: read once per resolving series
            events = [self._resolution(e) if e.kind is EventKind.RESOLVE else e for e in events]
        if events and self.history is not None:
            self.history.observe(events)
        if before_send is not None:
            before_send()
        if events and self.on_events is not None:
            self.on_events(events)

    def _resolution(self, ev: AlertEvent) -> AlertEvent:
        """The resolve, marked when the detector adopted the new level during the run."""
        after_s = self.detectors.adopted_after_s(ev.slot, ev.since_ms)
        return ev if after_s is None else dataclasses.replace(ev, adopted_after_s=after_s)

    def _move(self, batch: Batch) -> Batch | None:
        """Move a live series to the family of the longer period its re-check found
        (``detector.warmstart.recheck``), before its history (the batch's samples) is
        learned; the batch to learn, or None. Its detector state starts fresh in that
        family and its sample rules start over (the history is older than its last live
        sample); its alert state is kept, and the history never reaches the alert
        lifecycle, so a firing alert stays firing and the move pages nobody. History
        after its last live sample is left out: those samples still come live, and must
        reach the alert lifecycle. Refused (None, counted) for a series that is warming
        up (its warm start decides its period), not configured, or whose family no
        longer has a shorter profile (moved already, or a reload changed its detector
        since the re-check read its history)."""
        assert batch.move is not None
        slot, period_ms = batch.move
        dets = self.detectors
        longer = None
        if slot < self.capacity and not self.warming[slot] and dets.family_of.shape[0] > slot:
            if int(dets.family_of[slot]) >= 0:
                longer = dets.params_for_period(slot, period_ms)
        if longer is None:
            self.metrics.period_moves.labels("refused").inc()
            return None
        last_live = int(self.last_ts[slot])
        dets.configure(slot, longer)
        for name, _, fill in SLOT_TABLES:
            if name not in ALERT_NAMES and name not in ("is_counter", "warming"):
                getattr(self, name)[slot] = fill
        self.metrics.period_moves.labels("moved").inc()
        if last_live == _sample_rules.NEVER:
            return Batch(slots=batch.slots, ts=batch.ts, bits=batch.bits, warmed=(slot,))
        keep = batch.ts <= last_live
        # learned as a warm start's history (``warmed`` of a series not warming releases
        # nothing): it teaches the detector, never the alert lifecycle
        return Batch(
            slots=batch.slots[keep], ts=batch.ts[keep], bits=batch.bits[keep], warmed=(slot,)
        )

    def _reconfigure(self, rc: Reconfigure) -> None:
        """Apply a config reload (see Reconfigure). Worker thread only."""
        n = min(self.capacity, int(rc.alert_rule.shape[0]))
        new_rule = rc.alert_rule[:n].astype(np.int16)
        reset = np.zeros(n, dtype=np.bool_)
        reset[[spec.slot for spec in rc.reset if spec.slot < n]] = True
        changed = rc.alert_changed[:n] | reset
        events = []
        if self.alerts is not None:
            for s in np.flatnonzero(changed & (self.al_state[:n] == FIRING)).tolist():
                events.append(
                    self.alerts.latest(self, s, EventKind.RECONFIGURED, int(self.last_ts[s]))
                )
        for name, _, fill in ALERT_TABLES:
            getattr(self, name)[:n][changed] = fill
        self.al_rule[:n] = new_rule
        for spec in rc.reset:
            if spec.slot < n:  # a slot beyond is configured when its creation arrives
                self._ensure(spec.slot + 1)
                for name, _, fill in SLOT_TABLES:
                    if name not in ALERT_NAMES:
                        getattr(self, name)[spec.slot] = fill
                self.is_counter[spec.slot] = spec.counter
                self.al_rule[spec.slot] = spec.alert_rule
                self.detectors.configure(spec.slot, spec.params)
                if self.warming[spec.slot]:
                    self.warming[spec.slot] = 0
                    self.n_warming -= 1
                self._held.pop(spec.slot, None)
                self._held_count.pop(spec.slot, None)
                if spec.warm:  # fresh, and warmed up again from its history
                    self.warming[spec.slot] = 1
                    self.n_warming += 1
        if rc.alerts is not None:
            self.alerts = rc.alerts
        self.generation = rc.generation
        self._respec = rc.respec
        self._emit(events)
        if rc.on_applied is not None:
            rc.on_applied()

    def sweep(self, now_ms: int) -> None:
        """Resolve the alerts of series that went stale or silent. Worker thread only."""
        if self.alerts is not None:
            self._emit(self.alerts.sweep(self, self.capacity, now_ms))

    def announce_firing(self, now_ms: int) -> None:
        """Emit RESTORED events for the series firing now (after a checkpoint restore)."""
        if self.alerts is not None:
            self._emit(self.alerts.firing(self, self.capacity, now_ms))


def run_worker(
    queue: SampleQueue,
    pipeline: Pipeline,
    *,
    on_idle: Callable[[], None] | None = None,
    perf_counter: Callable[[], float] = time.perf_counter,
) -> None:
    """Drain ``queue`` into ``pipeline`` until the queue is closed and empty.

    The only broad ``except`` of the detector worker: a batch that fails is logged,
    counted and dropped, and the worker goes on.
    """
    while True:
        batches = queue.take(0.5)
        pipeline.stages.lap(stages.ROUTE)  # the hand-off, and on_idle before it
        if not batches:
            if queue.closed:
                return
            if on_idle is not None:
                on_idle()
            continue
        start = perf_counter()
        try:
            pipeline.process(batches)
        except Exception:
            pipeline.metrics.worker_errors.inc()
            log.exception("detector worker failed on %d batches; they are dropped", len(batches))
        finally:
            queue.done(batches)
        pipeline.metrics.detect_seconds.observe(perf_counter() - start)
        pipeline.metrics.queue_samples.set(queue.depth)
        pipeline.stages.lap(stages.HISTORY_METRICS)
        if on_idle is not None:
            on_idle()

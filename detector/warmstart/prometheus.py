"""Warm start: a new series' recent history, read from Prometheus, is learned before its
live samples, so it is scored from its first sample instead of after a warm-up.

This module owns the queries (prometheus-api-client, a blocking client, run in threads
with a timeout and bounded concurrency) and turning their answers into history batches
(``read_history``, which the seasonal re-check of live series, ``recheck``, reads through
too). The pipeline holds the series' live samples meanwhile (``SlotSpec.warm``) and
applies them right after the history; a failed or empty query just releases them.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_api_client import PrometheusConnect

from detector.config import WarmStartConfig
from detector.errors import ConfigError
from detector.metrics import IngestMetrics
from detector.pipeline.worker import Batch, SampleQueue
from detector.series.registry import Labels
from detector.warmstart.periods import detect_period
from servicekit import tls
from servicekit.durations import format_duration

log = logging.getLogger(__name__)


def selector_of(labels: Labels) -> str:
    """An exact PromQL selector for one label set."""

    def quote(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ", ".join(f'{name}="{quote(value)}"' for name, value in labels) + "}"


def parse_matrix(
    result: Sequence[dict[str, object]], labels: Labels | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The samples of a range-vector answer for one series: (ts_ms, value bits), in order.
    With ``labels``, only the answer's series with exactly that label set: a selector
    pins the labels it names, so Prometheus also returns series with more labels."""
    ts: list[int] = []
    values: list[float] = []
    wanted = None if labels is None else dict(labels)
    for series in result:
        if wanted is not None and series.get("metric") != wanted:
            continue
        for stamp, text in series.get("values", []):  # type: ignore[attr-defined]
            ts.append(round(float(stamp) * 1000))
            values.append(float(text))
    order = np.argsort(np.array(ts, dtype=np.int64), kind="stable")
    ts_arr = np.array(ts, dtype=np.int64)[order]
    bits = np.array(values, dtype=np.float64)[order].view(np.uint64)
    return ts_arr, bits


def history_query(selector: str, history_s: float) -> str:
    """The recent history at full resolution: every sample of the last ``history_s``."""
    return f"{selector}[{max(1, math.ceil(history_s / 3600))}h]"


def reads_period_history(cfg: WarmStartConfig) -> bool:
    """Whether a warm start reads the longer history too (a second query)."""
    return cfg.detect_period and cfg.period_history_s > cfg.history_s


def period_history_query(selector: str, cfg: WarmStartConfig) -> str | None:
    """The longer history a seasonal period is judged and learned from (a subquery: the
    series' raw value every ``period_step_s``), or None when ``history_s`` already covers
    ``period_history_s`` or periods are not detected."""
    if not reads_period_history(cfg):
        return None
    hours = max(1, math.ceil(cfg.period_history_s / 3600))
    return f"{selector}[{hours}h:{max(1, round(cfg.period_step_s))}s]"


def merge_history(
    old_ts: np.ndarray, old_bits: np.ndarray, ts: np.ndarray, bits: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """The sparse longer history up to where the full-resolution one starts, then it; and
    how many samples come from the sparse part."""
    if ts.shape[0] == 0:
        return old_ts, old_bits, int(old_ts.shape[0])
    keep = old_ts < ts[0]
    merged = (np.concatenate((old_ts[keep], ts)), np.concatenate((old_bits[keep], bits)))
    return merged[0], merged[1], int(np.count_nonzero(keep))


def prepare_history(
    ts: np.ndarray, bits: np.ndarray, sparse: int, *, counter: bool, cfg: WarmStartConfig
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """What a warm start learns of a history whose first ``sparse`` samples are one every
    ``period_step_s``, and the seasonal period (ms) it repeats with, if any. A counter
    learns only the full-resolution part: its rate between samples five minutes apart is
    a five-minute average, far smoother than the rate between scrapes it is scored on."""
    period_ms = None
    if cfg.detect_period and ts.shape[0]:
        period_s = detect_period(
            ts, bits.view(np.float64), cfg.period_candidates_s, counter=counter
        )
        period_ms = None if period_s is None else period_s * 1000.0
    if counter and sparse:
        ts, bits = ts[sparse:], bits[sparse:]
    return ts, bits, period_ms


def period_label(period_ms: float) -> str:
    """The ``period`` label of ``vigil_seasonal_periods_detected_total``: daily, weekly or
    other (a configured candidate that is neither)."""
    if abs(period_ms - 86_400_000.0) < 1.0:
        return "daily"
    if abs(period_ms - 604_800_000.0) < 1.0:
        return "weekly"
    return "other"


@dataclass(frozen=True, slots=True)
class SeriesHistory:
    """A series' history as read from Prometheus: what to learn of it (``ts``, value
    ``bits``), the seasonal period (ms) it repeats with, and the span it covers (first
    and last timestamp read, before a counter's sparse part is dropped; None when
    nothing was read)."""

    ts: np.ndarray
    bits: np.ndarray
    period_ms: float | None
    first_ms: int | None
    last_ms: int | None

    @property
    def span_ms(self) -> int:
        if self.first_ms is None or self.last_ms is None:
            return 0
        return self.last_ms - self.first_ms


def read_history(
    client: PrometheusConnect, labels: Labels, cfg: WarmStartConfig, *, counter: bool, what: str
) -> SeriesHistory:
    """Blocking (run it in a thread): one series' history, read by the warm start's one
    or two queries, and its seasonal period. A failure of the longer history's query is
    logged (as ``what``'s, e.g. "warm start of series 12") and leaves the recent history;
    a failure of the recent one raises."""
    selector = selector_of(labels)
    ts, bits = parse_matrix(
        client.custom_query(history_query(selector, cfg.history_s), timeout=cfg.timeout_s),
        labels,
    )
    sparse = 0
    longer = period_history_query(selector, cfg)
    if longer is not None:
        try:
            old_ts, old_bits = parse_matrix(
                client.custom_query(longer, timeout=cfg.timeout_s), labels
            )
        except Exception as exc:  # the recent history is still worth learning
            log.warning(
                "%s: the %s history for its seasonal period could not be read (%s); "
                "using the last %s without it",
                what,
                format_duration(cfg.period_history_s),
                tls.explain(exc),
                format_duration(cfg.history_s),
            )
        else:
            ts, bits, sparse = merge_history(old_ts, old_bits, ts, bits)
    first, last = (int(ts[0]), int(ts[-1])) if ts.shape[0] else (None, None)
    learn_ts, learn_bits, period_ms = prepare_history(ts, bits, sparse, counter=counter, cfg=cfg)
    return SeriesHistory(learn_ts, learn_bits, period_ms, first, last)


class WarmStarter:
    """Fetches the history of new series and queues it for the detector worker."""

    def __init__(
        self,
        *,
        cfg: WarmStartConfig,
        prometheus_url: str,
        queue: SampleQueue,
        labels_of: Callable[[int], Labels],
        metrics: IngestMetrics,
        outgoing_tls: tls.OutgoingTLS | None = None,
        is_counter: Callable[[int], bool] = lambda slot: False,
        on_read: Callable[[int, SeriesHistory | None], None] | None = None,
    ) -> None:
        """``on_read`` hears, on the event loop, of each warm start's history (None: the
        query failed or the series was skipped); the seasonal re-check schedules by it."""
        self.cfg = cfg
        self.on_read = on_read
        self.queue = queue
        self.labels_of = labels_of
        self.is_counter = is_counter
        self.metrics = metrics
        self.client = PrometheusConnect(
            url=prometheus_url,
            session=tls.build_requests_session(
                outgoing_tls or tls.OutgoingTLS(), error=ConfigError
            ),
        )
        self._todo: asyncio.Queue[int] = asyncio.Queue()
        self.backlog = 0

    def request(self, slots: Sequence[int]) -> None:
        """Warm these new slots up (their live samples are being held)."""
        for slot in slots:
            if self.backlog >= self.cfg.max_backlog:
                self.metrics.warm_starts.labels("skipped").inc()
                self._release(slot)
                self._heard(slot, None)
                continue
            self.backlog += 1
            self._todo.put_nowait(slot)

    def _release(
        self,
        slot: int,
        ts: np.ndarray | None = None,
        bits: np.ndarray | None = None,
        period_ms: float | None = None,
    ) -> None:
        """Queue the history to learn and the period found in it (none: the held live
        samples are just released)."""
        ts = np.empty(0, np.int64) if ts is None else ts
        bits = np.empty(0, np.uint64) if bits is None else bits
        periods = [] if period_ms is None else [(slot, period_ms)]
        if period_ms is not None:
            self.metrics.periods_detected.labels(period_label(period_ms)).inc()
        self.queue.offer(
            Batch(
                slots=np.full(ts.shape[0], slot, dtype=np.int32),
                ts=ts,
                bits=bits,
                warmed=(slot,),
                periods=periods,
            )
        )

    def _heard(self, slot: int, history: SeriesHistory | None) -> None:
        if self.on_read is not None:
            self.on_read(slot, history)

    async def _one(self, slot: int) -> None:
        queries = 2 if reads_period_history(self.cfg) else 1
        try:
            history = await asyncio.wait_for(
                asyncio.to_thread(
                    read_history,
                    self.client,
                    self.labels_of(slot),
                    self.cfg,
                    counter=self.is_counter(slot),
                    what=f"warm start of series {slot}",
                ),
                queries * self.cfg.timeout_s + 1,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed query must release the held samples
            log.warning("warm start of series %s failed: %s", slot, tls.explain(exc))
            self.metrics.warm_starts.labels("error").inc()
            self._release(slot)
            self._heard(slot, None)
            return
        ts = history.ts
        self.metrics.warm_starts.labels("ok" if ts.shape[0] else "empty").inc()
        self.metrics.warm_start_samples.inc(int(ts.shape[0]))
        self._release(slot, ts, history.bits, history.period_ms)
        self._heard(slot, history)

    async def run(self) -> None:
        """Serve requests until cancelled, ``max_concurrent`` queries at a time."""
        limit = asyncio.Semaphore(self.cfg.max_concurrent)

        async def guarded(slot: int) -> None:
            try:
                await self._one(slot)
            finally:
                self.backlog -= 1
                limit.release()

        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                slot = await self._todo.get()
                await limit.acquire()
                task = asyncio.create_task(guarded(slot))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

"""Sends alerts to Alertmanager: per-Alertmanager queues, retries, re-sends, enrichment.

This module owns delivery. Each configured Alertmanager gets an ``AlertmanagerClient``
holding the *latest* version of every alert not yet accepted (keyed by its labels, so an
update replaces an older unsent one and a retry never sends stale news), posted in batches
with a timeout, retried with doubling back-off, bounded (overflow drops the oldest and is
counted; firing alerts come back at the next re-send). ``AlertDispatcher`` turns lifecycle
events into alerts through the book, re-sends firing alerts every ``resend_s`` with
``endsAt`` ahead, and runs the enrichers, each within its own time budget: an alert is
sent at once and sent again with its context when that arrives, so a slow or failing
enricher never delays or drops it. At shutdown ``AlertDispatcher.flush`` gives the queues
a bounded time to empty before the clients stop. The ClientSession is injected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from opentelemetry.trace import SpanContext, SpanKind, Tracer

from detector.alerting.book import Alert, AlertBook
from detector.alerting.state import AlertEvent
from detector.config import AlertingConfig
from detector.errors import EnrichmentError
from detector.metrics import AlertMetrics
from servicekit import telemetry, tls

log = logging.getLogger(__name__)

Payload = dict[str, Any]


def _identity(alert: Payload) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(alert["labels"].items()))


@dataclass
class _Entry:
    payload: Payload
    created: float  # perf_counter when the news it carries was made
    trace: SpanContext | None = None  # the alert span this news came from, when traced


class AlertmanagerClient:
    """One Alertmanager: the alerts waiting for it, and the loop that posts them."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        url: str,
        cfg: AlertingConfig,
        metrics: AlertMetrics,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tracer: Tracer | None = None,
    ) -> None:
        self.session = session
        self.tracer = tracer
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.name = url
        self.cfg = cfg
        self.metrics = metrics
        for counted in (metrics.sent, metrics.send_failures, metrics.rejected, metrics.dropped):
            counted.labels(url)  # 0 from the start: a rate over it is 0, not "no data"
        self._sleep = sleep
        self._pending: OrderedDict[tuple[tuple[str, str], ...], _Entry] = OrderedDict()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()  # set while nothing is pending
        self._drained.set()
        self.delivered = asyncio.Event()  # set after each accepted POST (tests wait on it)

    @property
    def n_pending(self) -> int:
        return len(self._pending)

    def offer(
        self, payloads: Sequence[Payload], created: float, traces: Sequence[SpanContext | None] = ()
    ) -> None:
        """Queue the latest version of each alert; ``traces`` (one per payload, when
        traced) joins the POST that delivers it to the trace that made the news."""
        for i, payload in enumerate(payloads):
            key = _identity(payload)
            old = self._pending.pop(key, None)
            trace = traces[i] if i < len(traces) else None
            if trace is None and old is not None:
                trace = old.trace  # the news it replaces was not delivered yet
            self._pending[key] = _Entry(payload, created, trace)
        overflow = len(self._pending) - self.cfg.max_pending
        for _ in range(max(0, overflow)):
            self._pending.popitem(last=False)
        if overflow > 0:
            self.metrics.dropped.labels(self.name).inc(overflow)
            log.warning(
                "alert queue for %s is full (%d); dropped the %d oldest updates",
                self.name,
                self.cfg.max_pending,
                overflow,
            )
        self.metrics.pending.labels(self.name).set(len(self._pending))
        if self._pending:
            self._drained.clear()
        self._wake.set()

    async def drained(self) -> None:
        """Return once nothing is pending (``run`` must be running to get there)."""
        await self._drained.wait()

    async def run(self) -> None:
        """Post whatever is pending, forever; back off while the Alertmanager fails."""
        backoff = self.cfg.retry_initial_s
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = list(self._pending.items())[: self.cfg.max_batch]
                accepted = await self._post_traced([entry for _, entry in batch])
                if accepted is None:
                    await self._sleep(backoff)
                    backoff = min(2 * backoff, self.cfg.retry_max_s)
                    continue
                backoff = self.cfg.retry_initial_s
                now = time.perf_counter()
                for (key, entry), ok in zip(batch, accepted, strict=True):
                    if self._pending.get(key) is entry:  # not replaced while in flight
                        del self._pending[key]
                    if ok:
                        self.metrics.delivery_seconds.labels(self.name).observe(now - entry.created)
                self.metrics.sent.labels(self.name).inc(sum(accepted))
                self.metrics.pending.labels(self.name).set(len(self._pending))
                self.delivered.set()
            self._drained.set()

    async def _post_traced(self, entries: list[_Entry]) -> list[bool] | None:
        """``_post``, in a span joining the traces of the news it carries (if any)."""
        payloads = [entry.payload for entry in entries]
        traces = [e.trace for e in entries if e.trace is not None] if self.tracer else []
        if self.tracer is None or not traces:
            return await self._post(payloads)
        with self.tracer.start_as_current_span(
            "alertmanager.post",
            context=telemetry.parent_of(traces[0]),
            links=telemetry.links_to(traces[1:]),
            kind=SpanKind.CLIENT,
        ) as span:
            span.set_attribute("server.address", self.name)
            span.set_attribute("vigil.alerts", len(payloads))
            accepted = await self._post(payloads)
            span.set_attribute("vigil.accepted", -1 if accepted is None else sum(accepted))
            return accepted

    async def _post(self, alerts: list[Payload]) -> list[bool] | None:
        """Per alert, True: accepted; False: refused for good (4xx, logged); or None: retry
        the whole batch later."""
        start = time.perf_counter()
        try:
            async with self.session.post(
                self.url, json=alerts, timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s)
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.metrics.send_failures.labels(self.name).inc()
            log.warning("alertmanager %s unreachable (%s); retrying", self.name, tls.explain(exc))
            return None
        finally:
            self.metrics.post_seconds.labels(self.name).observe(time.perf_counter() - start)
        if 200 <= status < 300:
            return [True] * len(alerts)
        if 400 <= status < 500 and status != 429:
            if len(alerts) > 1:  # find the bad one: the others must not pay for it
                accepted: list[bool] = []
                for a in alerts:
                    one = await self._post([a])
                    if one is None:
                        return None
                    accepted += one
                return accepted
            self.metrics.rejected.labels(self.name).inc()
            log.error(
                "alertmanager %s refused alert %s: %s %s",
                self.name,
                alerts[0].get("labels"),
                status,
                text[:500],
            )
            return [False]
        self.metrics.send_failures.labels(self.name).inc()
        log.warning("alertmanager %s answered %s; retrying", self.name, status)
        return None


class Enricher(Protocol):
    """Context for an alert: extra annotations, or EnrichmentError."""

    name: str
    budget_s: float

    async def __call__(self, alert: Alert) -> dict[str, str]: ...


class AlertDispatcher:
    """Lifecycle events → the book → every Alertmanager; re-sends; enrichment."""

    def __init__(
        self,
        *,
        book: AlertBook,
        clients: Sequence[AlertmanagerClient],
        cfg: AlertingConfig,
        metrics: AlertMetrics,
        rule_of: Callable[[int], int],
        clock: Callable[[], float] = time.time,
        enrichers: Sequence[Enricher] = (),
        tracer: Tracer | None = None,
    ) -> None:
        self.book = book
        self.tracer = tracer
        self.clients = list(clients)
        self.cfg = cfg
        self.metrics = metrics
        self.rule_of = rule_of
        self.clock = clock
        self.enrichers = list(enrichers)
        self._tasks: set[asyncio.Task[None]] = set()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def handle_events(self, events: list[AlertEvent], created: float | None = None) -> None:
        """Apply events (on the event loop) and send what changed at once."""
        created = time.perf_counter() if created is None else created
        for ev in events:
            self.metrics.events.labels(ev.kind.value).inc()
        changed = self.book.apply(events, self.rule_of, self.now_ms())
        traces = self._trace_changes(events, changed) if self.tracer is not None else {}
        self._send(changed, created, traces)
        for alert in changed:
            if alert.is_firing and not alert.enriching and self.enrichers:
                alert.enriching = True
                task = asyncio.create_task(self._enrich(alert))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        self.metrics.firing.set(len(self.book.alerts))

    def _trace_changes(
        self, events: list[AlertEvent], changed: Sequence[Alert]
    ) -> dict[int, SpanContext]:
        """An ``alert`` span per alert changed by traced events, child of the detect span
        that decided it; returns id(alert) -> that span's context (for the POST)."""
        assert self.tracer is not None
        by_slot = {ev.slot: ev for ev in events if ev.trace is not None}
        out: dict[int, SpanContext] = {}
        for alert in changed:
            ev = next((by_slot[s] for s in alert.members if s in by_slot), None)
            if ev is None or ev.trace is None:
                continue
            with self.tracer.start_as_current_span(
                "alert", context=telemetry.parent_of(ev.trace)
            ) as span:
                span.set_attribute("vigil.alertname", alert.rule.name)
                span.set_attribute("vigil.event", ev.kind.value)
                span.set_attribute("vigil.level", ev.level)
                span.set_attribute("vigil.score", ev.score)
                span.set_attribute("vigil.series", len(alert.members))
                out[id(alert)] = span.get_span_context()
        return out

    def _send(
        self, alerts: Sequence[Alert], created: float, traces: dict[int, SpanContext] | None = None
    ) -> None:
        if not alerts:
            return
        now = self.now_ms()
        payloads: list[Payload] = []
        payload_traces: list[SpanContext | None] = []
        for a in alerts:
            rendered = self.book.render(a, now_ms=now, resend_s=self.cfg.resend_s)
            payloads += rendered
            payload_traces += [(traces or {}).get(id(a))] * len(rendered)
        for client in self.clients:
            client.offer(payloads, created, payload_traces if traces else ())

    def resend(self) -> None:
        """Re-send every firing alert with fresh values and endsAt ahead."""
        alerts = self.book.firing()
        for alert in alerts:
            self.book.refresh(alert)
        self._send(alerts, time.perf_counter())

    async def resend_forever(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.resend_s)
            self.resend()

    async def _enrich(self, alert: Alert) -> None:
        results = await asyncio.gather(*(self._one(e, alert) for e in self.enrichers))
        for extra in results:
            alert.extra.update(extra)
        if alert.is_firing and any(results):
            self._send([alert], time.perf_counter())

    async def _one(self, enricher: Enricher, alert: Alert) -> dict[str, str]:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(enricher.budget_s):
                return await enricher(alert)
        except (EnrichmentError, TimeoutError) as exc:
            self.metrics.enrich_failures.labels(enricher.name).inc()
            log.warning(
                "enrichment %s of alert %s failed (%s); sent without it",
                enricher.name,
                alert.rule.name,
                str(exc) or "out of time",
            )
            return {}
        except Exception:  # an enricher bug must not stop the alert: count, log, go on
            self.metrics.enrich_failures.labels(enricher.name).inc()
            log.exception("enrichment %s crashed; the alert went without it", enricher.name)
            return {}
        finally:
            self.metrics.enrich_seconds.labels(enricher.name).observe(time.perf_counter() - start)

    async def flush(self, timeout_s: float) -> bool:
        """Give every Alertmanager up to ``timeout_s`` to accept what is queued (at
        shutdown, while the clients still run); True if all of it went out. What is left
        is logged: firing alerts come back from the checkpoint, resolves are lost and
        Alertmanager resolves those alerts itself at their ``endsAt``."""
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*(client.drained() for client in self.clients))
        except TimeoutError:
            for client in self.clients:
                if client.n_pending:
                    log.warning(
                        "%d alert updates for %s not delivered within "
                        "alerting.flush_timeout_s (%.1f s) at shutdown; firing alerts "
                        "are re-sent from the checkpoint at start, resolves expire at "
                        "their endsAt",
                        client.n_pending,
                        client.name,
                        timeout_s,
                    )
            return False
        return True

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

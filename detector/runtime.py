"""The live objects of one detector app, built in one place, and the config reload.

This module owns ``Runtime`` (the registry, pipeline, queue, ingestor, alert book, remote-write
handler, checkpointer and the rest one app serves with), ``build_runtime`` (the only place
they are constructed and wired to each other) and ``Runtime.reload`` (reading the config
file again and switching to it without dropping a request; the decisions are
``detector.reconfig``'s). It starts nothing: threads, tasks and HTTP sessions belong to the
cleanup contexts of ``detector.app``, and the handlers in ``detector.web`` reach the runtime
through the ``RUNTIME`` key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from detector import reconfig, stages
from detector.alerting.book import AlertBook, Labels, Links, Reading
from detector.alerting.delivery import AlertDispatcher, Enricher
from detector.alerting.state import FIRING, AlertState
from detector.checkpointer import SNAPSHOT_TIMEOUT_S, Checkpointer
from detector.config import DetectorConfig, load_config, read_bearer_token
from detector.errors import ConfigError
from detector.metrics import (
    AlertMetrics,
    IngestMetrics,
    StateMetrics,
    build_alert_metrics,
    build_checkpoint_metrics,
    build_metrics,
    build_state_metrics,
)
from detector.pipeline import presence
from detector.pipeline.entities import EntityTracker
from detector.pipeline.history import History
from detector.pipeline.ingest import Ingestor
from detector.pipeline.worker import Batch, Pipeline, SampleQueue
from detector.remote_write.handler import WriteHandler
from detector.series.registry import Reassignment, SeriesRegistry
from detector.warmstart import recheck
from detector.warmstart.prometheus import WarmStarter
from detector.writeback import WriteBack
from servicekit import tls

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The live objects of one app; built by ``build_runtime``, started by the cleanup
    contexts of ``detector.app``."""

    cfg: DetectorConfig  # the config in effect: a reload replaces it
    clock: Callable[[], float]
    metrics: IngestMetrics
    alert_metrics: AlertMetrics
    state_metrics: StateMetrics
    registry: SeriesRegistry
    pipeline: Pipeline
    queue: SampleQueue
    ingestor: Ingestor
    executor: ThreadPoolExecutor  # decodes requests (one thread: the ingest order)
    writer: WriteHandler  # the remote-write handler (load shedding)
    book: AlertBook
    links: Links  # external and Prometheus URLs of the alerts' links
    alertmanagers: tuple[str, ...]
    client_ssl: ssl.SSLContext | None  # every outgoing https:// connection
    writeback_token: str | None
    tracer: Tracer | None  # None: traces off (docs/observability.md)
    warm: WarmStarter | None  # None: no warm starts (no --prometheus, or turned off)
    entities: EntityTracker | None  # None: no entity rules
    checkpoints: Checkpointer | None  # None: started without --state-dir
    config_path: Path | None  # what a reload reads (None: started without --config)
    prometheus_url: str | None  # what /api/v1/verify queries (None: it answers 503)
    runbooks_dir: Path | None  # more runbooks, looked up before the packaged ones
    remediator_url: str | None  # the remediator console the anomalies link to
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # kernels warm
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set each worker idle
    lag_measured: asyncio.Event = field(default_factory=asyncio.Event)  # set each lag tick
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    background: set[asyncio.Task[Any]] = field(default_factory=set)  # SIGHUP reloads
    # Set by the cleanup contexts, not here: the worker thread's idle callback needs the
    # running loop, and the dispatcher, write-back and enrichment clients need the HTTP
    # session, which is opened on the running loop and closed with it.
    worker: threading.Thread | None = None
    dispatcher: AlertDispatcher | None = None
    writeback: WriteBack | None = None
    enrichment: tuple[Any, Any] = (None, None)  # (HTTP session, Kubernetes client)
    # None: no seasonal re-checks (no warm starts, or warm_start.recheck_interval_s 0)
    rechecker: recheck.ReChecker | None = None

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    @property
    def worker_running(self) -> bool:
        return self.worker is not None and self.worker.is_alive()

    async def write_checkpoint(self, reason: str) -> bool:
        """Write a checkpoint now (see ``Checkpointer.write``); True if written."""
        assert self.checkpoints is not None, "started without a state directory"
        return await self.checkpoints.write(reason, worker_running=self.worker_running)

    def refresh_presence(self) -> None:
        """Update the stuck/absent gauges."""
        n = min(self.registry.n_tracked, self.pipeline.capacity)
        rules = self.cfg.presence
        self.metrics.stuck_series.set(int(presence.stuck(self.pipeline, n, rules).sum()))
        self.metrics.absent_series.set(
            int(presence.absent(self.pipeline, n, self.now_ms(), rules).sum())
        )

    async def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Wait until the worker has processed everything queued so far."""
        async with asyncio.timeout(timeout_s):
            while True:
                self.idle.clear()
                if self.queue.pending == 0:
                    return
                await self.idle.wait()

    async def reload(self, reason: str) -> reconfig.ReloadResult:
        """Read the config file again and switch to it, or keep the running one.

        The whole file is validated first; a bad one is refused with every problem
        logged as ``file:line: path: message``. A good one is applied without dropping a
        request: the registry re-decides every series under the ingest lock, the worker
        applies the new detector and alert state between two batches, and the alert book
        follows on the event loop after the worker's resolves (see ``detector.reconfig``).
        """
        async with self.reload_lock:
            start = time.perf_counter()
            try:
                result = await self._reload()
            except Exception as exc:  # a bug, not a bad file: say so, keep serving
                log.exception("config reload failed unexpectedly")
                result = reconfig.ReloadResult(
                    False,
                    (
                        f"(root): the reload failed inside the detector ({type(exc).__name__}: "
                        f"{exc}); the log has the traceback, please report it",
                    ),
                )
            result = dataclasses.replace(result, seconds=time.perf_counter() - start)
        m = self.state_metrics
        if not result.ok:
            for problem in result.problems:
                log.error(
                    "config reload (%s) refused; the running config stays: %s", reason, problem
                )
            m.reload_successful.set(0)
            m.reloads.labels("failure").inc()
            return result
        m.reload_successful.set(1)
        m.reload_success_time.set(self.clock())
        m.reloads.labels("success").inc()
        m.resets.labels("config_changed").inc(result.reset)
        m.resets.labels("tracked_again").inc(result.retracked)
        log.info(
            "config reloaded from %s (%s) in %.2f s: %s",
            self.config_path,
            reason,
            result.seconds,
            result.summary(),
        )
        return result

    async def _reload(self) -> reconfig.ReloadResult:
        if self.config_path is None:
            return reconfig.ReloadResult(
                False,
                ("(root): the detector was started without --config; there is no file to reload",),
            )
        try:
            loaded = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            return reconfig.ReloadResult(False, tuple(str(exc).splitlines()))
        old = self.cfg
        new, pending = reconfig.effective(old, loaded)  # restart-only settings stay old's
        alerts = AlertState(
            new.alerts,
            stale_intervals=new.alerting.stale_intervals,
            stale_min_s=new.alerting.stale_min_s,
        )
        loop = asyncio.get_running_loop()
        applied = asyncio.Event()
        resolved = 0

        def follow(plan: Reassignment) -> None:  # on the loop, after the worker's resolves
            with self.ingestor.lock:
                self.registry.apply_alert_rules(plan.slot_alert)
            reconfig.follow(self.book, new, plan)
            if self.warm is not None:  # the fresh series hold their samples meanwhile
                self.warm.request(sorted(plan.reset + plan.retracked))
            applied.set()

        def reassign() -> Reassignment:  # the decode thread, between two requests
            nonlocal resolved
            with self.ingestor.lock:
                plan = self.registry.reconfigure(new, draft)
                changed = reconfig.alert_changed(self.registry, old, new, plan)
                n = min(plan.slot_alert.shape[0], self.pipeline.capacity)
                resolved = int(
                    np.count_nonzero(changed[:n] & (self.pipeline.al_state[:n] == FIRING))
                )

                def on_applied() -> None:  # the worker, right after it applied the reload,
                    # maybe before this thread returns ``plan`` to the loop: ``follow``
                    # gets it from here
                    loop.call_soon_threadsafe(follow, plan)

                rc = reconfig.reconfigure(
                    plan,
                    alerts=alerts,
                    changed=changed,
                    on_applied=on_applied,
                    warm=self.warm is not None,
                )
                # in the lock: a request resolved after this queues its batch after it
                self.queue.offer(
                    Batch(
                        slots=np.zeros(0, np.int32),
                        ts=np.zeros(0, np.int64),
                        bits=np.zeros(0, np.uint64),
                        reconfigure=rc,
                    )
                )
            return plan

        # the per-series decisions take seconds at a million series: made in a thread of
        # their own, so requests (even with new series) go on; only the series created
        # meanwhile and the index rebuild happen under the ingest lock
        draft = await asyncio.to_thread(self.registry.draft_reconfigure, new)
        plan = await loop.run_in_executor(self.executor, reassign)
        try:
            await asyncio.wait_for(applied.wait(), SNAPSHOT_TIMEOUT_S)
        except TimeoutError:
            log.error(
                "config reload: the detector worker did not apply the new rules "
                "within %.0f s; they apply when it gets to them",
                SNAPSHOT_TIMEOUT_S,
            )
        self.cfg = new
        self._follow_settings(old, new)
        return reconfig.ReloadResult(
            True,
            kept=plan.kept,
            reset=len(plan.reset),
            retired=len(plan.retired),
            retracked=len(plan.retracked),
            alerts_resolved=resolved,
            restart_needed=pending,
        )

    def _follow_settings(self, old: DetectorConfig, new: DetectorConfig) -> None:
        """The reloadable settings the loop's objects hold: delivery, enrichment,
        write-back, limits."""
        self.queue.max_samples = new.limits.queue_max_samples
        self.metrics.queue_capacity.set(new.limits.queue_max_samples)
        self.ingestor.max_decompressed_bytes = new.limits.max_decompressed_bytes
        self.book.links = dataclasses.replace(
            self.links,
            external_url=new.alerting.external_url or self.links.external_url,
            grafana_url=new.alerting.grafana_url,
            dashboard_uid=new.alerting.dashboard_uid,
        )
        if self.dispatcher is not None:
            self.dispatcher.cfg = new.alerting
            for client in self.dispatcher.clients:
                client.cfg = new.alerting
            if new.enrichment.loki != old.enrichment.loki:
                session, kube = self.enrichment
                self.dispatcher.enrichers = build_enrichers(new, session, kube)
        if self.writeback is not None:
            self.writeback.reconfigure(new.writeback)


RUNTIME = web.AppKey("runtime", Runtime)


def build_enrichers(cfg: DetectorConfig, session: Any, kube: Any) -> list[Enricher]:
    """The configured context enrichers (Kubernetes rollouts, Loki log lines)."""
    from detector.alerting import enrichers  # only here: it pulls in kubernetes_asyncio

    out: list[Enricher] = []
    if kube is not None:
        out.append(enrichers.RolloutEnricher(kube, cfg.enrichment.kubernetes))
    if cfg.enrichment.loki.url is not None:
        out.append(enrichers.LogEnricher(session, cfg.enrichment.loki))
    return out


@dataclass(frozen=True)
class TableFacts:
    """Answers the alert book's questions about a series from the registry and tables."""

    registry: SeriesRegistry
    pipeline: Pipeline

    def labels_of(self, slot: int) -> Labels:
        return list(self.registry.labels_of(slot))

    def is_rate(self, slot: int) -> bool:
        return self.registry.is_counter(slot)

    def detector_of(self, slot: int) -> tuple[str, dict[str, Any]]:
        """The settings the series is scored with: its rule's, or those of the family its
        history moved it to (a weekly profile; ``DetectorSet.set_period``)."""
        dets = self.pipeline.detectors
        family_of = dets.family_of  # the worker may grow it: read the reference once
        f = int(family_of[slot]) if slot < family_of.shape[0] else -1
        params = dets.params[f] if f >= 0 else self.registry.rule_of(slot).detector
        return params.kind, params.model_dump(mode="json", exclude={"kind"})

    def reading(self, slot: int) -> Reading:
        p = self.pipeline
        return Reading(
            int(p.last_ts[slot]),
            float(p.last_input[slot]),
            float(p.last_expected[slot]),
            float(p.last_lower[slot]),
            float(p.last_upper[slot]),
            float(p.last_score[slot]),
        )

    def weekly(self, slot: int) -> bool | None:
        period = self.pipeline.detectors.period_of(slot)
        return None if period is None else period >= 6 * 86400_000


def build_runtime(
    cfg: DetectorConfig,
    *,
    metrics: CollectorRegistry,
    token: str | None = None,
    state_dir: Path | None = None,
    prometheus_url: str | None = None,
    alertmanagers: tuple[str, ...] = (),
    external_url: str | None = None,
    runbooks_dir: Path | None = None,
    remediator_url: str | None = None,
    tracer: Tracer | None = None,
    clock: Callable[[], float] = time.time,
    stage_clock: stages.StageClock = stages.OFF,
    config_path: Path | None = None,
) -> Runtime:
    """Every live object of the app, wired to each other; ``build_app`` documents the
    arguments. Reads the bearer token files; starts nothing."""
    m = build_metrics(metrics)
    am = build_alert_metrics(metrics)
    cm = build_checkpoint_metrics(metrics)
    sm = build_state_metrics(metrics)
    registry = SeriesRegistry(cfg)
    warm = prometheus_url is not None and cfg.warm_start.enabled
    cc = cfg.console
    pipeline = Pipeline(
        m,
        alerts=AlertState(
            cfg.alerts,
            stale_intervals=cfg.alerting.stale_intervals,
            stale_min_s=cfg.alerting.stale_min_s,
        ),
        history=History(
            max_series=cc.history_series,
            samples_per_series=cc.history_samples,
            record_after_s=cc.history_after_s,
            keep_s=cc.history_keep_s,
        ),
        tracer=tracer,
        clock=stage_clock,
    )
    queue = SampleQueue(cfg.limits.queue_max_samples)
    ingestor = Ingestor(
        registry,
        max_decompressed_bytes=cfg.limits.max_decompressed_bytes,
        warm_start=warm,
        clock=stage_clock,
    )
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-decode")
    links = Links(
        external_url=cfg.alerting.external_url or external_url or "http://127.0.0.1:9420",
        prometheus_url=prometheus_url,
        grafana_url=cfg.alerting.grafana_url,
        dashboard_uid=cfg.alerting.dashboard_uid,
    )
    checkpoints = None
    if state_dir is not None:
        checkpoints = Checkpointer(
            state_dir=state_dir, registry=registry, pipeline=pipeline, metrics=cm, clock=clock
        )
    # the age is NaN until a checkpoint is written or restored, and without --state-dir
    cm.age.set_function(checkpoints.age_s if checkpoints is not None else lambda: math.nan)
    sm.reload_success_time.set(clock())
    m.queue_capacity.set(cfg.limits.queue_max_samples)
    warm_starter = None
    rechecker = None
    if warm:
        assert prometheus_url is not None
        warm_starter = WarmStarter(
            cfg=cfg.warm_start,
            prometheus_url=prometheus_url,
            queue=queue,
            labels_of=registry.labels_of,
            metrics=m,
            outgoing_tls=cfg.outgoing_tls,
            is_counter=registry.is_counter,
        )
        if recheck.is_enabled(cfg.warm_start):
            starter = warm_starter
            rechecker = recheck.ReChecker(
                cfg=cfg.warm_start,
                client=recheck.build_client(
                    prometheus_url,
                    tls.build_requests_session(
                        cfg.outgoing_tls or tls.OutgoingTLS(), error=ConfigError
                    ),
                ),
                queue=queue,
                series=recheck.LiveSeries(registry, pipeline),
                metrics=m,
                clock=clock,
                busy=lambda: starter.backlog > 0,
            )
            warm_starter.on_read = rechecker.after_warm_start
        elif cfg.warm_start.recheck_interval_s > 0 and cfg.warm_start.detect_period:
            log.warning(
                "warm_start: series on a daily profile are not re-checked for a weekly "
                "period: the history read (period_history_s, or history_s) must cover "
                "twice the longest of period_candidates_s"
            )
    entities = EntityTracker(cfg.entities, registry.labels_of) if cfg.entities else None

    def on_new_slots(slots: list[int]) -> None:
        """Slots just created by a request: warm them up, give them to their entities."""
        if warm_starter is not None:
            warm_starter.request(slots)
        if entities is not None:
            entities.add_slots(slots)

    return Runtime(
        cfg=cfg,
        clock=clock,
        metrics=m,
        alert_metrics=am,
        state_metrics=sm,
        registry=registry,
        pipeline=pipeline,
        queue=queue,
        ingestor=ingestor,
        executor=executor,
        writer=WriteHandler(
            ingestor=ingestor,
            queue=queue,
            metrics=m,
            executor=executor,
            token=read_bearer_token(cfg) if token is None else token,
            max_body_bytes=cfg.limits.max_body_bytes,
            on_new_slots=on_new_slots,
            tracer=tracer,
            clock=stage_clock,
        ),
        book=AlertBook(
            cfg.alerts,
            info=TableFacts(registry, pipeline),
            links=links,
            related_window_s=cfg.alerting.related_window_s,
            max_related=cfg.alerting.max_related,
        ),
        links=links,
        alertmanagers=alertmanagers,
        client_ssl=tls.build_client_context(cfg.outgoing_tls, error=ConfigError),
        writeback_token=_writeback_token(cfg),
        tracer=tracer,
        warm=warm_starter,
        rechecker=rechecker,
        entities=entities,
        checkpoints=checkpoints,
        config_path=config_path,
        prometheus_url=prometheus_url,
        runbooks_dir=runbooks_dir,
        remediator_url=remediator_url or cfg.console.remediator_url,
    )


def _writeback_token(cfg: DetectorConfig) -> str | None:
    if cfg.writeback.url is None or cfg.writeback.bearer_token_file is None:
        return None
    return cfg.writeback.bearer_token_file.read_text().strip()

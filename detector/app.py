"""build_app(): wires configuration, registry, pipeline, worker thread and routes.

No domain logic here: each resource is created in its own cleanup context and torn down
after ``yield``. App state lives only in the typed ``AppKey`` constants below.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import signal
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler
from pydantic import ValidationError

from detector import checkpoint, reconfig, stages
from detector.alerting.book import AlertBook, Labels, Links, Reading
from detector.alerting.delivery import AlertDispatcher, AlertmanagerClient, Enricher
from detector.alerting.state import FIRING, AlertEvent, AlertState
from detector.config import (
    DetectorConfig,
    EnsembleParams,
    RobustParams,
    load_config,
    read_bearer_token,
)
from detector.errors import ConfigError, UpstreamError
from detector.metrics import (
    AlertMetrics,
    CheckpointMetrics,
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
from detector.pipeline.worker import Batch, Pipeline, SampleQueue, SlotSpec, run_worker
from detector.remote_write import decode, encode
from detector.remote_write.handler import WriteHandler
from detector.series.registry import Reassignment, SeriesRegistry
from detector.verify import prometheus, verdict
from detector.warmstart.prometheus import WarmStarter
from detector.web import api, console
from detector.writeback import WriteBack
from servicekit import bearer, cli, mediatype, probes, tls

log = logging.getLogger(__name__)

LOOP_LAG_INTERVAL_S = 0.1
# writes are shed once the loop is late this many ticks in a row (one stall, a GC pause or
# a compile, is not overload)
SHED_AFTER_LATE_TICKS = 2
SWEEP_INTERVAL_S = 1.0
SNAPSHOT_TIMEOUT_S = 30.0  # the worker finishes its current batch first; longer: it is stuck
RUNBOOKS = Path(__file__).parent / "web" / "runbooks"


@dataclass
class Runtime:
    """The live objects of one app; built by build_app, started by its cleanup contexts."""

    cfg: DetectorConfig
    metrics: IngestMetrics
    registry: SeriesRegistry
    pipeline: Pipeline
    queue: SampleQueue
    ingestor: Ingestor
    executor: ThreadPoolExecutor
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    worker: threading.Thread | None = None
    state_dir: Path | None = None
    warm: WarmStarter | None = None
    entities: EntityTracker | None = None
    clock: Callable[[], float] = time.time
    alert_metrics: AlertMetrics | None = None
    book: AlertBook | None = None
    dispatcher: AlertDispatcher | None = None
    alertmanagers: Sequence[str] = ()
    tracer: Tracer | None = None  # None: traces off (docs/observability.md)
    writer: WriteHandler | None = None  # the remote-write handler (load shedding)
    lag_measured: asyncio.Event = field(default_factory=asyncio.Event)  # set each lag tick
    writeback_token: str | None = None
    client_ssl: ssl.SSLContext | None = None  # every outgoing https:// connection
    writeback: WriteBack | None = None
    checkpoint_metrics: CheckpointMetrics | None = None
    snapshots: checkpoint.SnapshotRequest = field(default_factory=checkpoint.SnapshotRequest)
    checkpointed: asyncio.Event = field(default_factory=asyncio.Event)  # set after each write
    last_checkpoint_s: float = math.nan  # when the newest checkpoint's state was taken
    restored: int = 0  # series restored from the checkpoint at start
    config_path: Path | None = None  # what a reload reads (None: started without --config)
    state_metrics: StateMetrics | None = None
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    links: Links | None = None  # external and Prometheus URLs of the alerts' links
    enrichment: tuple[Any, Any] = (None, None)  # (HTTP session, Kubernetes client)
    background: set[asyncio.Task[Any]] = field(default_factory=set)  # SIGHUP reloads

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def checkpoint_age_s(self) -> float:
        return self.clock() - self.last_checkpoint_s

    def take_snapshot(self) -> checkpoint.Snapshot:
        """Copy the state; only where no batch is half-applied (the worker between
        batches, or after it stopped)."""
        start = time.perf_counter()
        snap = checkpoint.snapshot(self.registry, self.pipeline, now_ms=self.now_ms())
        if self.checkpoint_metrics is not None:
            self.checkpoint_metrics.snapshot_seconds.observe(time.perf_counter() - start)
        return snap

    async def write_checkpoint(self, reason: str) -> bool:
        """Write a checkpoint of the state as it is between two batches; True if written.

        The worker copies the tables when it is next between batches (or, stopped, they are
        copied here); the copy is written in a thread. A failure is logged and counted and
        the previous checkpoint stays current. Once the write has begun it finishes even if
        this is cancelled, so two writes never overlap.
        """
        assert self.state_dir is not None and self.checkpoint_metrics is not None
        m, state_dir = self.checkpoint_metrics, self.state_dir
        try:
            if self.worker is not None and self.worker.is_alive():
                snap = await asyncio.wait_for(
                    asyncio.wrap_future(self.snapshots.ask()), SNAPSHOT_TIMEOUT_S
                )
            else:  # stopped: nothing writes the tables any more
                snap = await asyncio.to_thread(self.take_snapshot)
        except Exception as exc:  # the worker's error or timeout: log, count, keep serving
            m.failures.inc()
            log.error(
                "checkpoint not taken (%s: %s); the previous one stays current",
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, TimeoutError),
            )
            return False
        start = time.perf_counter()
        write = asyncio.ensure_future(asyncio.to_thread(checkpoint.write, state_dir, snap))
        try:
            where = await asyncio.shield(write)
        except asyncio.CancelledError:
            await asyncio.wait([write])  # let the thread finish: never two writers at once
            raise
        except Exception:  # disk full, permissions: log, count, keep serving
            m.failures.inc()
            log.exception(
                "checkpoint write to %s failed; the previous one stays current", state_dir
            )
            return False
        m.write_seconds.observe(time.perf_counter() - start)
        m.written.labels(reason).inc()
        m.series.set(snap.n_series)
        self.last_checkpoint_s = snap.taken_ms / 1000
        m.last_success.set(self.last_checkpoint_s)
        log.info(
            "checkpointed %d series to %s (%s, %.2f s)",
            snap.n_series,
            where,
            reason,
            time.perf_counter() - start,
        )
        self.checkpointed.set()
        return True

    def on_new_slots(self, slots: list[int]) -> None:
        """Slots just created by a request: warm them up, give them to their entities."""
        if self.warm is not None:
            self.warm.request(slots)
        if self.entities is not None:
            self.entities.add_slots(slots)

    def refresh_presence(self) -> None:
        """Update the stuck/absent gauges."""
        n = min(self.registry.n_tracked, self.pipeline.capacity)
        rules = self.cfg.presence
        self.metrics.stuck_series.set(int(presence.stuck(self.pipeline, n, rules).sum()))
        self.metrics.absent_series.set(
            int(presence.absent(self.pipeline, n, self.now_ms(), rules).sum())
        )

    async def reload(self, reason: str) -> reconfig.ReloadResult:
        """Read the config file again and switch to it, or keep the running one.

        The whole file is validated first; a bad one is refused with every problem
        logged as ``file:line: path: message``. A good one is applied without dropping a
        request: the registry re-decides every series under the ingest lock, the worker
        applies the new detector and alert state between two batches, and the alert book
        follows on the event loop after the worker's resolves (see ``detector.reload``).
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
            if m is not None:
                m.reload_successful.set(0)
                m.reloads.labels("failure").inc()
            return result
        if m is not None:
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
            assert self.book is not None
            with self.ingestor.lock:
                self.registry.apply_alert_rules(plan.slot_alert)
            reconfig.follow(self.book, new, plan)
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
                    plan, alerts=alerts, changed=changed, on_applied=on_applied
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
        if self.book is not None and self.links is not None:
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
                self.dispatcher.enrichers = _enrichers(self, session, kube)
        if self.writeback is not None:
            self.writeback.reconfigure(new.writeback)

    async def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Wait until the worker has processed everything queued so far."""
        async with asyncio.timeout(timeout_s):
            while True:
                self.idle.clear()
                if self.queue.pending == 0:
                    return
                await self.idle.wait()


RUNTIME = web.AppKey("runtime", Runtime)


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
        params = self.registry.rule_of(slot).detector
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


def _warm_up(pipeline_metrics: IngestMetrics) -> None:
    """Run every kernel once on tiny arrays so the first real request is not slow."""
    body = encode.compress(
        encode.encode_v1([encode.Series(labels=[("__name__", "w")], samples=[(1, 1.0)])])
    )
    raw = decode.decompress(body, max_decompressed_bytes=1 << 20)
    decode.decode_request(np.frombuffer(encode.encode_v2([]), dtype=np.uint8), 2)
    reg = SeriesRegistry(DetectorConfig())
    req = decode.decode_request(raw, 1)
    reg.resolve(req)
    reg.resolve_known(req)
    p = Pipeline(pipeline_metrics, capacity=4)
    p.process(
        [
            Batch(
                slots=np.arange(2, dtype=np.int32),
                ts=np.ones(2, np.int64),
                bits=np.zeros(2, np.uint64),
                new_slots=[
                    SlotSpec(0, RobustParams()),
                    SlotSpec(1, EnsembleParams(), counter=True),
                ],
            )
        ]
    )


def build_app(  # noqa: C901 (issue 24: split the handlers out)
    cfg: DetectorConfig,
    *,
    metrics: CollectorRegistry | None = None,
    token: str | None = None,
    state_dir: Path | None = None,
    prometheus_url: str | None = None,
    alertmanagers: Sequence[str] = (),
    external_url: str | None = None,
    runbooks_dir: Path | None = None,
    remediator_url: str | None = None,
    tracer: Tracer | None = None,
    clock: Callable[[], float] = time.time,
    profile_stages: bool = False,
    config_path: Path | None = None,
    reload_on_sighup: bool = False,
) -> web.Application:
    """The detector's aiohttp application. ``metrics`` None means a fresh registry;
    ``prometheus_url`` turns on warm starts (when the config allows) and links alerts to
    its graphs; alerts go to every URL of ``alertmanagers``; ``external_url`` is how people
    reach this service (runbook links); ``runbooks_dir`` holds more runbooks to serve at
    /runbooks/<name> (docs/runbooks/, which the rules' runbook_url point at), looked up
    before the packaged VigilAnomaly one; ``remediator_url`` (else console.remediator_url)
    is the remediator console the anomalies link to; ``tracer`` (None: off) traces
    remote-write requests, detection, alerts and their delivery; ``clock`` gives the wall
    time; ``profile_stages`` exports the CPU time of each ingest stage
    (``vigil_profile_stage_cpu_seconds_total``, docs/ingestion.md); ``config_path`` is
    what ``POST /-/reload`` (and SIGHUP, with ``reload_on_sighup``) reads again."""
    registry_metrics = metrics if metrics is not None else CollectorRegistry()
    stage_clock = stages.StageClock() if profile_stages else stages.OFF
    if profile_stages:
        registry_metrics.register(stages.StageCollector(stage_clock))
    m = build_metrics(registry_metrics)
    am = build_alert_metrics(registry_metrics)
    cm = build_checkpoint_metrics(registry_metrics)
    if token is None:
        token = read_bearer_token(cfg)
    registry = SeriesRegistry(cfg)
    warm = prometheus_url is not None and cfg.warm_start.enabled
    alert_state = AlertState(
        cfg.alerts,
        stale_intervals=cfg.alerting.stale_intervals,
        stale_min_s=cfg.alerting.stale_min_s,
    )
    cc = cfg.console
    pipeline = Pipeline(
        m,
        alerts=alert_state,
        history=History(
            max_series=cc.history_series,
            samples_per_series=cc.history_samples,
            record_after_s=cc.history_after_s,
            keep_s=cc.history_keep_s,
        ),
        tracer=tracer,
        clock=stage_clock,
    )
    rt = Runtime(
        cfg=cfg,
        metrics=m,
        registry=registry,
        pipeline=pipeline,
        queue=SampleQueue(cfg.limits.queue_max_samples),
        ingestor=Ingestor(
            registry,
            max_decompressed_bytes=cfg.limits.max_decompressed_bytes,
            warm_start=warm,
            clock=stage_clock,
        ),
        executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-decode"),
        state_dir=state_dir,
        clock=clock,
        alert_metrics=am,
        alertmanagers=tuple(alertmanagers),
        checkpoint_metrics=cm,
        tracer=tracer,
        config_path=config_path,
        state_metrics=build_state_metrics(registry_metrics),
    )
    assert rt.state_metrics is not None
    rt.state_metrics.reload_success_time.set(clock())
    cm.age.set_function(rt.checkpoint_age_s)
    links = Links(
        external_url=cfg.alerting.external_url or external_url or "http://127.0.0.1:9420",
        prometheus_url=prometheus_url,
        grafana_url=cfg.alerting.grafana_url,
        dashboard_uid=cfg.alerting.dashboard_uid,
    )
    rt.links = links
    rt.book = AlertBook(
        cfg.alerts,
        info=TableFacts(registry, pipeline),
        links=links,
        related_window_s=cfg.alerting.related_window_s,
        max_related=cfg.alerting.max_related,
    )
    if cfg.writeback.url is not None and cfg.writeback.bearer_token_file is not None:
        rt.writeback_token = cfg.writeback.bearer_token_file.read_text().strip()
    rt.client_ssl = tls.build_client_context(cfg.outgoing_tls, error=ConfigError)
    if warm:
        assert prometheus_url is not None
        rt.warm = WarmStarter(
            cfg=cfg.warm_start,
            prometheus_url=prometheus_url,
            queue=rt.queue,
            labels_of=registry.labels_of,
            metrics=m,
            outgoing_tls=cfg.outgoing_tls,
        )
    if cfg.entities:
        rt.entities = EntityTracker(cfg.entities, registry.labels_of)
    m.queue_capacity.set(cfg.limits.queue_max_samples)
    app = web.Application(client_max_size=cfg.limits.max_body_bytes)
    app[RUNTIME] = rt
    writer = WriteHandler(
        ingestor=rt.ingestor,
        queue=rt.queue,
        metrics=m,
        executor=rt.executor,
        token=token,
        max_body_bytes=cfg.limits.max_body_bytes,
        on_new_slots=rt.on_new_slots,
        tracer=tracer,
        clock=stage_clock,
    )
    rt.writer = writer

    async def handle_series(request: web.Request) -> web.Response:
        # a thread: with a million series the listing takes seconds of Python, which must
        # not hold up remote-write requests
        return await asyncio.to_thread(
            api.list_series,
            request,
            rt.registry,
            rt.pipeline,
            presence_rules=cfg.presence,
            now_ms=rt.now_ms(),
        )

    async def handle_entities(request: web.Request) -> web.Response:
        return api.list_entities(request, rt.entities)

    async def handle_anomalies(request: web.Request) -> web.Response:
        assert rt.book is not None
        return api.list_anomalies(request, rt.book, now_ms=rt.now_ms())

    async def handle_runbook(request: web.Request) -> web.Response:
        name = request.match_info["name"].removesuffix(".md")
        if name.replace("_", "").replace("-", "").isalnum():
            for folder in (*([runbooks_dir] if runbooks_dir else []), RUNBOOKS):
                path = folder / f"{name}.md"
                if path.is_file():
                    return web.Response(
                        text=path.read_text(encoding="utf-8"), content_type="text/markdown"
                    )
        raise web.HTTPNotFound(text=f"no runbook named {name!r}\n")

    async def handle_healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def handle_readyz(request: web.Request) -> web.Response:
        alive = rt.worker is not None and rt.worker.is_alive()
        if rt.ready.is_set() and alive:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="warming up\n" if alive else "worker stopped\n")

    async def handle_verify(request: web.Request) -> web.Response:
        if not writer.authorized(request):
            return web.json_response(
                {"error": "missing or wrong bearer token"},
                status=401,
                headers={"WWW-Authenticate": bearer.CHALLENGE},
            )
        if (problem := mediatype.json_problem(request.headers.get("Content-Type"))) is not None:
            return web.json_response({"error": problem}, status=415)
        if prometheus_url is None:
            return web.json_response(
                {
                    "error": "this detector runs without --prometheus; "
                    "verification reads its range queries there"
                },
                status=503,
            )
        try:
            req = verdict.VerifyRequest.model_validate_json(await request.read())
        except ValidationError as exc:
            return web.json_response(
                {
                    "error": "invalid verification request",
                    "problems": [
                        f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['msg']}"
                        for e in exc.errors()
                    ],
                },
                status=400,
            )
        try:
            doc = await prometheus.run(
                req, prometheus_url=prometheus_url, now_s=clock(), outgoing_tls=cfg.outgoing_tls
            )
        except UpstreamError as exc:
            return web.json_response({"error": str(exc)}, status=502)
        return web.json_response(doc)

    app.router.add_post("/api/v1/write", writer.handle_write)
    app.router.add_get("/api/v1/series", handle_series)
    app.router.add_get("/api/v1/entities", handle_entities)
    app.router.add_get("/api/v1/anomalies", handle_anomalies)

    async def handle_reload(request: web.Request) -> web.Response:
        if not writer.authorized(request):
            return web.json_response(
                {"error": "missing or wrong bearer token"},
                status=401,
                headers={"WWW-Authenticate": bearer.CHALLENGE},
            )
        result = await rt.reload("POST /-/reload")
        return web.json_response(result.as_json(), status=200 if result.ok else 422)

    app.router.add_post("/api/v1/verify", handle_verify)
    app.router.add_post("/-/reload", handle_reload)
    app.router.add_get("/runbooks/{name}", handle_runbook)
    app.router.add_get("/metrics", make_aiohttp_handler(registry_metrics))
    probes.add_routes(app.router, healthy=handle_healthz, ready=handle_readyz)
    assert pipeline.history is not None  # the console: /, its assets, recent anomalies
    console.add_routes(
        app,
        console.Sources(
            history=pipeline.history,
            registry=registry,
            pipeline=pipeline,
            book=rt.book,
            now_ms=rt.now_ms,
            alertmanagers=rt.alertmanagers,
            prometheus_url=prometheus_url,
            remediator_url=remediator_url or cfg.console.remediator_url,
        ),
    )
    # torn down in reverse: periodic checkpoints stop, the worker stops and the last
    # checkpoint is written, then queued alerts get alerting.flush_timeout_s to go out
    app.cleanup_ctx.append(_executor_ctx)
    app.cleanup_ctx.append(_restore_ctx)
    app.cleanup_ctx.append(_alerting_ctx)
    app.cleanup_ctx.append(_worker_ctx)
    app.cleanup_ctx.append(_checkpoint_ctx)
    app.cleanup_ctx.append(_loop_lag_ctx)
    if reload_on_sighup:
        app.cleanup_ctx.append(_sighup_ctx)
    app.cleanup_ctx.append(_presence_ctx)
    if rt.warm is not None:
        app.cleanup_ctx.append(_warm_start_ctx)
    if rt.entities is not None:
        app.cleanup_ctx.append(_entities_ctx)
    return app


def startup_facts(app: web.Application) -> list[str]:
    """What the started app loaded, for the startup line: rules, and series restored."""
    rt = app[RUNTIME]
    cfg = rt.cfg
    facts = [cli.plural(len(cfg.series), "series rule"), cli.plural(len(cfg.alerts), "alert rule")]
    if cfg.entities:
        facts.append(cli.plural(len(cfg.entities), "entity rule"))
    if rt.state_dir is not None:
        facts.append(f"{rt.restored} series restored from checkpoint")
    facts.append(f"alerts to {cli.plural(len(rt.alertmanagers), 'Alertmanager')}")
    return facts


@contextlib.asynccontextmanager
async def _running(coro: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``coro`` as a background task for the duration of the block; cancel it after."""
    task = asyncio.create_task(coro)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _presence_ctx(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]

    async def refresh() -> None:
        while True:
            rt.refresh_presence()
            await asyncio.sleep(rt.cfg.presence.check_interval_s)

    async with _running(refresh()):
        yield


async def _entities_ctx(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]
    tracker = rt.entities
    assert tracker is not None
    tracker.add_slots(range(rt.registry.n_tracked))  # series restored from a checkpoint

    async def evaluate_forever() -> None:
        while True:
            await asyncio.sleep(rt.cfg.entity_interval_s)
            start = time.perf_counter()
            try:
                done = await asyncio.to_thread(tracker.evaluate, rt.pipeline, rt.now_ms())
            except Exception:
                log.exception("entity evaluation failed; retrying next interval")
                continue
            rt.metrics.entity_evaluations.inc(done)
            rt.metrics.entities.set(tracker.n_entities)
            rt.metrics.entity_eval_seconds.observe(time.perf_counter() - start)

    async with _running(evaluate_forever()):
        yield


async def _warm_start_ctx(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]
    assert rt.warm is not None
    async with _running(rt.warm.run()):
        yield


async def _executor_ctx(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(rt.executor, _warm_up, build_metrics(CollectorRegistry()))
    rt.ready.set()
    yield
    rt.executor.shutdown(wait=True)


async def _worker_ctx(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]
    loop = asyncio.get_running_loop()

    next_sweep = time.monotonic() + SWEEP_INTERVAL_S

    def on_idle() -> None:
        nonlocal next_sweep
        if time.monotonic() >= next_sweep:
            next_sweep = time.monotonic() + SWEEP_INTERVAL_S
            rt.pipeline.sweep(rt.now_ms())
        rt.snapshots.serve(rt.take_snapshot)  # between batches: nothing is half-applied
        loop.call_soon_threadsafe(rt.idle.set)

    def work() -> None:
        run_worker(rt.queue, rt.pipeline, on_idle=on_idle)

    rt.worker = threading.Thread(target=work, name="vigil-detect", daemon=True)
    rt.worker.start()
    yield
    rt.queue.close()
    await asyncio.to_thread(rt.worker.join)
    if rt.state_dir is not None:
        await rt.write_checkpoint("shutdown")


async def _restore_ctx(app: web.Application) -> AsyncIterator[None]:
    """The state of the newest usable checkpoint, before alerting and the worker start."""
    rt = app[RUNTIME]
    if rt.state_dir is not None:
        assert rt.checkpoint_metrics is not None
        m = rt.checkpoint_metrics
        result = checkpoint.restore(rt.state_dir, rt.registry, rt.pipeline)
        for skipped in result.skipped:
            m.skipped.labels(skipped.reason).inc()
        if result.created_ms is not None:
            rt.last_checkpoint_s = result.created_ms / 1000
            m.last_success.set(rt.last_checkpoint_s)
            m.series.set(result.series)
        rt.metrics.active_series.set(rt.registry.n_tracked)
        rt.metrics.series_new.inc(result.restored)
        rt.restored = result.restored
        if rt.state_metrics is not None:
            for reason, n in result.reset.items():
                rt.state_metrics.resets.labels(reason).inc(n)
    yield


async def _checkpoint_ctx(app: web.Application) -> AsyncIterator[None]:
    """A checkpoint every checkpoint.interval_s while serving (the last one is written
    when the worker stops)."""
    rt = app[RUNTIME]
    interval_s = rt.cfg.checkpoint.interval_s
    if rt.state_dir is None or interval_s <= 0:
        yield
        return
    if rt.checkpoint_metrics is not None:  # VigilCheckpointStale compares the age with it
        rt.checkpoint_metrics.interval.set(interval_s)

    async def every_interval() -> None:
        while True:
            await asyncio.sleep(interval_s)
            await rt.write_checkpoint("periodic")

    async with _running(every_interval()):
        yield


async def _sighup_ctx(app: web.Application) -> AsyncIterator[None]:
    """SIGHUP reloads the config, as it does for Prometheus and Alertmanager."""
    rt = app[RUNTIME]
    loop = asyncio.get_running_loop()

    def on_sighup() -> None:
        task = loop.create_task(rt.reload("SIGHUP"))
        rt.background.add(task)
        task.add_done_callback(rt.background.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    yield
    loop.remove_signal_handler(signal.SIGHUP)
    for task in list(rt.background):
        task.cancel()
    await asyncio.gather(*rt.background, return_exceptions=True)


async def _loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]
    loop = asyncio.get_running_loop()

    async def measure() -> None:
        late = 0  # ticks in a row later than the limit
        while True:
            due = loop.time() + LOOP_LAG_INTERVAL_S
            await asyncio.sleep(LOOP_LAG_INTERVAL_S)
            lag = max(0.0, loop.time() - due)
            rt.metrics.loop_lag_seconds.observe(lag)
            late = late + 1 if lag > rt.cfg.limits.max_loop_lag_s else 0
            if rt.writer is not None:  # shed writes while the loop is late, not after one stall
                rt.writer.overloaded = late >= SHED_AFTER_LATE_TICKS
            rt.lag_measured.set()

    async with _running(measure()):
        yield


def _enrichers(rt: Runtime, session: Any, kube: Any) -> list[Enricher]:
    """The configured context enrichers (Kubernetes rollouts, Loki log lines)."""
    from detector.alerting import enrichers  # only here: it pulls in kubernetes_asyncio

    out: list[Enricher] = []
    cfg = rt.cfg.enrichment
    if kube is not None:
        out.append(enrichers.RolloutEnricher(kube, cfg.kubernetes))
    if cfg.loki.url is not None:
        out.append(enrichers.LogEnricher(session, cfg.loki))
    return out


async def _alerting_ctx(app: web.Application) -> AsyncIterator[None]:
    """Alert delivery, re-sends, enrichment and write-back; events arrive from the worker."""
    rt = app[RUNTIME]
    assert rt.book is not None and rt.alert_metrics is not None
    loop = asyncio.get_running_loop()
    acfg = rt.cfg.alerting
    async with contextlib.AsyncExitStack() as stack:
        import aiohttp

        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=rt.client_ssl or True))
        )
        kube = None
        if rt.cfg.enrichment.kubernetes.enabled:
            from detector.alerting import rollouts

            try:
                kube = await rollouts.build_api_client(
                    kubeconfig=rt.cfg.enrichment.kubernetes.kubeconfig,
                    context=rt.cfg.enrichment.kubernetes.context,
                )
                stack.push_async_callback(kube.close)
            except Exception as exc:  # enrichment is optional: say why and go on without
                log.warning("Kubernetes enrichment is off: %s", exc)
        clients = [
            AlertmanagerClient(
                session, url=url, cfg=acfg, metrics=rt.alert_metrics, tracer=rt.tracer
            )
            for url in rt.alertmanagers
        ]
        registry = rt.registry
        dispatcher = AlertDispatcher(
            book=rt.book,
            clients=clients,
            cfg=acfg,
            metrics=rt.alert_metrics,
            rule_of=registry.alert_rule_of,
            clock=rt.clock,
            enrichers=_enrichers(rt, session, kube),
            tracer=rt.tracer,
        )
        rt.dispatcher = dispatcher
        rt.enrichment = (session, kube)

        def on_events(events: list[AlertEvent]) -> None:
            loop.call_soon_threadsafe(dispatcher.handle_events, events, time.perf_counter())

        rt.pipeline.on_events = on_events
        # alerts firing at the restored checkpoint go on (the worker has not started yet,
        # so these events come before any new one)
        rt.pipeline.on_events = dispatcher.handle_events
        rt.pipeline.announce_firing(rt.now_ms())
        rt.pipeline.on_events = on_events
        for client in clients:
            await stack.enter_async_context(_running(client.run()))
        await stack.enter_async_context(_running(dispatcher.resend_forever()))
        if rt.cfg.writeback.url is not None:
            wb = WriteBack(
                session,
                cfg=rt.cfg.writeback,
                registry=registry,
                pipeline=rt.pipeline,
                metrics=rt.alert_metrics,
                token=rt.writeback_token,
            )
            rt.writeback = wb
            await stack.enter_async_context(_running(wb.run_forever()))
        stack.push_async_callback(dispatcher.close)
        yield
        rt.pipeline.on_events = None
        # the worker has stopped and the last checkpoint is written: what is queued (a
        # resolve, say) gets a bounded time to go out before the clients stop
        await dispatcher.flush(acfg.flush_timeout_s)

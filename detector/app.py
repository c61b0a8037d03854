"""build_app(): the detector's aiohttp application, its routes and its cleanup contexts.

No domain logic here: ``detector.runtime`` builds the live objects, the handlers live in
``detector.web``, and each resource (decode thread, worker thread, HTTP session, periodic
tasks) is started in its own cleanup context and torn down after ``yield``. App state lives
only in the typed ``RUNTIME`` key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from detector import stages
from detector.alerting.delivery import AlertDispatcher, AlertmanagerClient
from detector.alerting.state import AlertEvent
from detector.config import DetectorConfig, EnsembleParams, RobustParams
from detector.metrics import IngestMetrics, build_metrics
from detector.pipeline.worker import Batch, Pipeline, SlotSpec, run_worker
from detector.remote_write import decode, encode
from detector.runtime import RUNTIME, Runtime, build_enrichers, build_runtime
from detector.series.registry import SeriesRegistry
from detector.web import api, console, operations
from detector.writeback import WriteBack
from servicekit import cli

__all__ = ["RUNTIME", "Runtime", "build_app", "startup_facts"]

log = logging.getLogger(__name__)

LOOP_LAG_INTERVAL_S = 0.1
# writes are shed once the loop is late this many ticks in a row (one stall, a GC pause or
# a compile, is not overload)
SHED_AFTER_LATE_TICKS = 2
SWEEP_INTERVAL_S = 1.0


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


def build_app(
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
    rt = build_runtime(
        cfg,
        metrics=registry_metrics,
        token=token,
        state_dir=state_dir,
        prometheus_url=prometheus_url,
        alertmanagers=tuple(alertmanagers),
        external_url=external_url,
        runbooks_dir=runbooks_dir,
        remediator_url=remediator_url,
        tracer=tracer,
        clock=clock,
        stage_clock=stage_clock,
        config_path=config_path,
    )
    app = web.Application(client_max_size=cfg.limits.max_body_bytes)
    app[RUNTIME] = rt
    api.add_routes(app)
    operations.add_routes(app)
    app.router.add_get("/metrics", make_aiohttp_handler(registry_metrics))
    assert rt.pipeline.history is not None  # the console: /, its assets, recent anomalies
    console.add_routes(
        app,
        console.Sources(
            history=rt.pipeline.history,
            registry=rt.registry,
            pipeline=rt.pipeline,
            book=rt.book,
            now_ms=rt.now_ms,
            alertmanagers=rt.alertmanagers,
            prometheus_url=prometheus_url,
            remediator_url=rt.remediator_url,
        ),
    )
    # torn down in reverse: periodic checkpoints stop, the worker stops and the last
    # checkpoint is written, then queued alerts get alerting.flush_timeout_s to go out
    app.cleanup_ctx.extend(
        [_executor_ctx, _restore_ctx, _alerting_ctx, _worker_ctx, _checkpoint_ctx, _loop_lag_ctx]
    )
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
    if rt.checkpoints is not None:
        facts.append(f"{rt.checkpoints.restored} series restored from checkpoint")
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
        if rt.rechecker is None:
            yield
        else:  # the seasonal re-check reads through the warm start's client
            async with _running(rt.rechecker.run()):
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
        if rt.checkpoints is not None:  # between batches: nothing is half-applied
            rt.checkpoints.serve()
        loop.call_soon_threadsafe(rt.idle.set)

    def work() -> None:
        run_worker(rt.queue, rt.pipeline, on_idle=on_idle)

    rt.worker = threading.Thread(target=work, name="vigil-detect", daemon=True)
    rt.worker.start()
    yield
    rt.queue.close()
    await asyncio.to_thread(rt.worker.join)
    if rt.checkpoints is not None:
        await rt.checkpoints.write("shutdown", worker_running=False)


async def _restore_ctx(app: web.Application) -> AsyncIterator[None]:
    """The state of the newest usable checkpoint, before alerting and the worker start."""
    rt = app[RUNTIME]
    if rt.checkpoints is not None:
        rt.checkpoints.restore(rt.metrics, rt.state_metrics)
    yield


async def _checkpoint_ctx(app: web.Application) -> AsyncIterator[None]:
    """A checkpoint every checkpoint.interval_s while serving (the last one is written
    when the worker stops)."""
    rt = app[RUNTIME]
    if rt.checkpoints is None:
        yield
        return
    interval_s = rt.cfg.checkpoint.interval_s
    async with rt.checkpoints.periodic(interval_s, worker_running=lambda: rt.worker_running):
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


async def _alerting_ctx(app: web.Application) -> AsyncIterator[None]:
    """Alert delivery, re-sends, enrichment and write-back; events arrive from the worker."""
    rt = app[RUNTIME]
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
            enrichers=build_enrichers(rt.cfg, session, kube),
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

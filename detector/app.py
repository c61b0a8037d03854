"""build_app(): wires configuration, registry, pipeline, worker thread and routes.

No domain logic here: each resource is created in its own cleanup context and torn down
after ``yield``. App state lives only in the typed ``AppKey`` constants below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from detector import api, checkpoint, presence
from detector.config import DetectorConfig, EnsembleParams, RobustParams, read_bearer_token
from detector.entities import EntityTracker
from detector.ingest import Ingestor
from detector.metrics import IngestMetrics, build_metrics
from detector.pipeline import Batch, Pipeline, SampleQueue, SlotSpec, run_worker
from detector.remote_write import decode, encode
from detector.remote_write.handler import WriteHandler
from detector.series import SeriesRegistry
from detector.warmstart import WarmStarter

log = logging.getLogger(__name__)

LOOP_LAG_INTERVAL_S = 0.1


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

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

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
            int(presence.absent(self.pipeline, n, self.now_ms(), rules).sum()))

    async def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Wait until the worker has processed everything queued so far."""
        async with asyncio.timeout(timeout_s):
            while True:
                self.idle.clear()
                if self.queue.pending == 0:
                    return
                await self.idle.wait()


RUNTIME = web.AppKey("runtime", Runtime)


def _warm_up(pipeline_metrics: IngestMetrics) -> None:
    """Run every kernel once on tiny arrays so the first real request is not slow."""
    body = encode.compress(encode.encode_v1([encode.Series(labels=[("__name__", "w")],
                                                           samples=[(1, 1.0)])]))
    raw = decode.decompress(body, max_decompressed_bytes=1 << 20)
    decode.decode_request(np.frombuffer(encode.encode_v2([]), dtype=np.uint8), 2)
    reg = SeriesRegistry(DetectorConfig())
    req = decode.decode_request(raw, 1)
    reg.resolve(req)
    reg.resolve_known(req)
    p = Pipeline(pipeline_metrics, capacity=4)
    p.process([Batch(slots=np.arange(2, dtype=np.int32), ts=np.ones(2, np.int64),
                     bits=np.zeros(2, np.uint64),
                     new_slots=[SlotSpec(0, RobustParams()),
                                SlotSpec(1, EnsembleParams(), counter=True)])])


def build_app(cfg: DetectorConfig, *, metrics: CollectorRegistry | None = None,
              token: str | None = None, state_dir: Path | None = None,
              prometheus_url: str | None = None,
              clock: Callable[[], float] = time.time) -> web.Application:
    """The detector's aiohttp application. ``metrics`` None means a fresh registry;
    ``prometheus_url`` turns on warm starts (when the config allows); ``clock`` gives the
    wall time in seconds (absence is judged against it)."""
    registry_metrics = metrics if metrics is not None else CollectorRegistry()
    m = build_metrics(registry_metrics)
    if token is None:
        token = read_bearer_token(cfg)
    registry = SeriesRegistry(cfg)
    warm = prometheus_url is not None and cfg.warm_start.enabled
    rt = Runtime(
        cfg=cfg, metrics=m, registry=registry, pipeline=Pipeline(m),
        queue=SampleQueue(cfg.limits.queue_max_samples),
        ingestor=Ingestor(registry, max_decompressed_bytes=cfg.limits.max_decompressed_bytes,
                          warm_start=warm),
        executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-decode"),
        state_dir=state_dir, clock=clock,
    )
    if warm:
        assert prometheus_url is not None
        rt.warm = WarmStarter(cfg=cfg.warm_start, prometheus_url=prometheus_url,
                              queue=rt.queue, labels_of=registry.labels_of, metrics=m)
    if cfg.entities:
        rt.entities = EntityTracker(cfg.entities, registry.labels_of)
    m.queue_capacity.set(cfg.limits.queue_max_samples)
    app = web.Application(client_max_size=cfg.limits.max_body_bytes)
    app[RUNTIME] = rt
    writer = WriteHandler(ingestor=rt.ingestor, queue=rt.queue, metrics=m, executor=rt.executor,
                          token=token, max_body_bytes=cfg.limits.max_body_bytes,
                          on_new_slots=rt.on_new_slots)

    async def handle_series(request: web.Request) -> web.Response:
        # a thread: with a million series the listing takes seconds of Python, which must
        # not hold up remote-write requests
        return await asyncio.to_thread(api.list_series, request, rt.registry, rt.pipeline,
                                       presence_rules=cfg.presence, now_ms=rt.now_ms())

    async def handle_entities(request: web.Request) -> web.Response:
        return api.list_entities(request, rt.entities)

    async def handle_healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def handle_readyz(request: web.Request) -> web.Response:
        alive = rt.worker is not None and rt.worker.is_alive()
        if rt.ready.is_set() and alive:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="warming up\n" if alive else "worker stopped\n")

    app.router.add_post("/api/v1/write", writer.handle_write)
    app.router.add_get("/api/v1/series", handle_series)
    app.router.add_get("/api/v1/entities", handle_entities)
    app.router.add_get("/metrics", make_aiohttp_handler(registry_metrics))
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/readyz", handle_readyz)
    app.cleanup_ctx.append(_executor_ctx)
    app.cleanup_ctx.append(_worker_ctx)
    app.cleanup_ctx.append(_loop_lag_ctx)
    app.cleanup_ctx.append(_presence_ctx)
    if rt.warm is not None:
        app.cleanup_ctx.append(_warm_start_ctx)
    if rt.entities is not None:
        app.cleanup_ctx.append(_entities_ctx)
    return app


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

    def on_idle() -> None:
        loop.call_soon_threadsafe(rt.idle.set)

    def work() -> None:
        run_worker(rt.queue, rt.pipeline, on_idle=on_idle)

    if rt.state_dir is not None:
        restored = checkpoint.restore(rt.state_dir, rt.registry, rt.pipeline)
        rt.metrics.active_series.set(rt.registry.n_tracked)
        rt.metrics.series_new.inc(restored)
    rt.worker = threading.Thread(target=work, name="vigil-detect", daemon=True)
    rt.worker.start()
    yield
    rt.queue.close()
    await asyncio.to_thread(rt.worker.join)
    if rt.state_dir is not None:
        saved = checkpoint.save(rt.state_dir, rt.registry, rt.pipeline)
        log.info("checkpointed %d series to %s", saved, rt.state_dir)


async def _loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]
    loop = asyncio.get_running_loop()

    async def measure() -> None:
        while True:
            due = loop.time() + LOOP_LAG_INTERVAL_S
            await asyncio.sleep(LOOP_LAG_INTERVAL_S)
            rt.metrics.loop_lag_seconds.observe(max(0.0, loop.time() - due))

    async with _running(measure()):
        yield

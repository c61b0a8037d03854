"""When the running detector checkpoints its state, and what it counts about it.

This module owns the orchestration around ``detector.checkpoint`` (which owns the format,
``snapshot``, ``write`` and ``restore``): restoring once at start, a checkpoint every
``checkpoint.interval_s`` while serving, the last one when the worker has stopped, and the
``vigil_checkpoint*`` metrics of each. It holds no tables of its own: the worker hands it a
snapshot between two batches (``serve``), and the copy is written in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from detector import checkpoint
from detector.metrics import CheckpointMetrics, IngestMetrics, StateMetrics
from detector.pipeline.worker import Pipeline
from detector.series.registry import SeriesRegistry

log = logging.getLogger(__name__)

SNAPSHOT_TIMEOUT_S = 30.0  # the worker finishes its current batch first; longer: it is stuck


@dataclass
class Checkpointer:
    """The checkpoints of one app's state in ``state_dir``; built by build_app."""

    state_dir: Path
    registry: SeriesRegistry
    pipeline: Pipeline
    metrics: CheckpointMetrics
    clock: Callable[[], float]
    snapshots: checkpoint.SnapshotRequest = field(default_factory=checkpoint.SnapshotRequest)
    written: asyncio.Event = field(default_factory=asyncio.Event)  # set after each write
    last_s: float = math.nan  # when the newest checkpoint's state was taken
    restored: int = 0  # series restored from the checkpoint at start

    def age_s(self) -> float:
        return self.clock() - self.last_s

    def take_snapshot(self) -> checkpoint.Snapshot:
        """Copy the state; only where no batch is half-applied (the worker between
        batches, or after it stopped)."""
        start = time.perf_counter()
        snap = checkpoint.snapshot(self.registry, self.pipeline, now_ms=int(self.clock() * 1000))
        self.metrics.snapshot_seconds.observe(time.perf_counter() - start)
        return snap

    def serve(self) -> None:
        """Worker thread, between batches: take the snapshot a ``write`` asked for, if any."""
        self.snapshots.serve(self.take_snapshot)

    def restore(self, ingest: IngestMetrics, state: StateMetrics) -> None:
        """Load the newest usable checkpoint, before alerting and the worker start, and
        count what it brought back."""
        m = self.metrics
        result = checkpoint.restore(self.state_dir, self.registry, self.pipeline)
        for skipped in result.skipped:
            m.skipped.labels(skipped.reason).inc()
        if result.created_ms is not None:
            self.last_s = result.created_ms / 1000
            m.last_success.set(self.last_s)
            m.series.set(result.series)
        ingest.active_series.set(self.registry.n_tracked)
        ingest.series_new.inc(result.restored)
        self.restored = result.restored
        for reason, n in result.reset.items():
            state.resets.labels(reason).inc(n)

    async def write(self, reason: str, *, worker_running: bool) -> bool:
        """Write a checkpoint of the state as it is between two batches; True if written.

        With the worker running, it copies the tables when it is next between batches;
        stopped, they are copied here. The copy is written in a thread. A failure is logged
        and counted and the previous checkpoint stays current. Once the write has begun it
        finishes even if this is cancelled, so two writes never overlap.
        """
        m, state_dir = self.metrics, self.state_dir
        try:
            if worker_running:
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
        self.last_s = snap.taken_ms / 1000
        m.last_success.set(self.last_s)
        log.info(
            "checkpointed %d series to %s (%s, %.2f s)",
            snap.n_series,
            where,
            reason,
            time.perf_counter() - start,
        )
        self.written.set()
        return True

    @contextlib.asynccontextmanager
    async def periodic(
        self, interval_s: float, *, worker_running: Callable[[], bool]
    ) -> AsyncIterator[None]:
        """A checkpoint every ``interval_s`` (0: none) for the duration of the block."""
        if interval_s <= 0:
            yield
            return
        self.metrics.interval.set(interval_s)  # VigilCheckpointStale compares the age with it

        async def every_interval() -> None:
            while True:
                await asyncio.sleep(interval_s)
                await self.write("periodic", worker_running=worker_running())

        task = asyncio.create_task(every_interval())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

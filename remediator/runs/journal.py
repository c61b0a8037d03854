"""What a run leaves behind as it goes: its events and its end, in the audit log.

Every event passes ``redact`` on its way in (the last stop before the audit log and
``GET /api/v1/runs/{id}``: no secret passes). A run's end is recorded, counted, shared
with the other replicas, logged, and wakes whoever waits on ``settled``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from remediator import redaction
from remediator.audit.store import EventKind, RunState
from remediator.audit.thread import AuditThread
from remediator.metrics import RemediatorMetrics

log = logging.getLogger(__name__)

ShareFunc = Callable[[str, str, RunState], Awaitable[None]]


class Journal:
    """Records the events and ends of runs (``settled`` is set whenever a run stops)."""

    def __init__(
        self,
        *,
        audit: AuditThread,
        redact: Callable[[str], str],
        metrics: RemediatorMetrics,
        clock: Callable[[], float],
        share: ShareFunc,
    ) -> None:
        self.audit = audit
        self.redact = redact
        self.metrics = metrics
        self.clock = clock
        self.share = share
        self.settled: asyncio.Event = asyncio.Event()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def event(
        self,
        run_id: str,
        kind: EventKind,
        name: str,
        verdict: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        clean = redaction.redact_tree(detail or {}, self.redact)
        await self.audit.run(
            lambda db: db.add_event(
                run_id, kind=kind, name=name, verdict=verdict, detail=clean, now_ms=self.now_ms()
            )
        )

    async def finish(self, run_id: str, playbook: str, state: RunState, outcome: str) -> None:
        outcome = self.redact(outcome)  # recorded, logged and answered below
        await self.audit.run(
            lambda db: db.set_state(run_id, state, now_ms=self.now_ms(), outcome=outcome)
        )
        self.metrics.runs.labels(playbook, state.value).inc()
        await self.share(run_id, playbook, state)
        self.settled.set()
        log.info(
            "run %s of %s: %s (%s)",
            run_id,
            playbook,
            state.value,
            outcome,
            extra={"run_id": run_id, "playbook": playbook},
        )

    def stopped(self, playbook: str, state: RunState, *, run_id: str, reason: str) -> None:
        """A run the decision itself stopped (its state already recorded with it)."""
        self.metrics.runs.labels(playbook, state.value).inc()
        self.settled.set()
        log.info("run %s of %s: %s (%s)", run_id, playbook, state.value, reason)

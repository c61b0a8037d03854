"""Intake: which runs a notification calls for, each created at most once, ever.

Alertmanager repeats notifications, so a run is keyed on (playbook, fingerprint,
startsAt) in the audit log: a repeat is counted as a duplicate and goes no further. With
several replicas only the leader starts runs, and only once it has claimed each one in
the cluster; a follower's notifications are recorded and replayed if it comes to lead.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from remediator.audit.store import AuditLog, RunState
from remediator.audit.thread import AuditThread
from remediator.catalog.loader import Catalog, Entry
from remediator.cluster import targets
from remediator.metrics import RemediatorMetrics
from remediator.runs.journal import Journal
from remediator.runs.replicas import SharedRuns
from remediator.runs.tracing import current_trace_id
from remediator.webhook import Alert, Notification

StartFunc = Callable[[str, Entry, Alert, float], Awaitable[None]]


class Intake:
    def __init__(
        self,
        *,
        audit: AuditThread,
        catalog: Callable[[], Catalog],
        journal: Journal,
        shared: SharedRuns,
        metrics: RemediatorMetrics,
        clock: Callable[[], float],
        start: StartFunc,
        spawn: Callable[[Awaitable[None]], None],
        leading: bool,
    ) -> None:
        self.audit = audit
        self.catalog = catalog
        self.journal = journal
        self.shared = shared
        self.metrics = metrics
        self.clock = clock
        self.start = start
        self.spawn = spawn
        self.leading = leading

    async def handle(
        self, notification_id: int, notification: Notification, received: float
    ) -> None:
        """Create (at most once, ever) the runs a notification calls for and start them."""
        if not self.leading:
            return  # recorded; replayed if this replica becomes the leader
        catalog = self.catalog()
        for alert in notification.alerts:
            for entry in catalog.matching(dict(alert.labels), alert.status):
                pb = entry.playbook
                fields: dict[str, Any] = {
                    "playbook": pb.name,
                    "fingerprint": str(alert.fingerprint),
                    "starts_at": alert.starts_at,
                    "alertname": alert.labels.get("alertname", ""),
                    "alert": alert.to_json(),
                    "mode": pb.spec.mode.value,
                    "notification_id": notification_id,
                    "target": targets.target_of(alert.labels),
                    "now_ms": int(self.clock() * 1000),
                    "trace_id": current_trace_id(),
                }
                run = await self.audit.run(functools.partial(AuditLog.create_run, **fields))
                if run is None:
                    self.metrics.duplicates.labels(pb.name).inc()
                    continue
                refused = await self.shared.claim(run.id, pb, alert)
                if refused is not None:
                    await self.journal.finish(run.id, pb.name, RunState.REFUSED, refused)
                    continue
                self.spawn(self.start(run.id, entry, alert, received))

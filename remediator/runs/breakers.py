"""Circuit breakers: a playbook whose runs keep failing goes to shadow until a person
resets it. Tripped after ``circuit_breaker.failures`` failed verifications in its
window; the flag lives in the audit log and, with several replicas, the shared state."""

from __future__ import annotations

import logging
from collections.abc import Callable

from remediator.audit.store import EventKind
from remediator.audit.thread import AuditThread
from remediator.catalog.playbook import Playbook
from remediator.cluster.state import ClusterState
from remediator.errors import ActionError
from remediator.metrics import RemediatorMetrics
from remediator.runs.journal import Journal
from remediator.runs.replicas import SharedRuns

log = logging.getLogger(__name__)


class Breakers:
    def __init__(
        self,
        *,
        audit: AuditThread,
        journal: Journal,
        shared: SharedRuns,
        metrics: RemediatorMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.audit = audit
        self.journal = journal
        self.shared = shared
        self.metrics = metrics
        self.clock = clock

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    @property
    def cluster(self) -> ClusterState | None:
        return self.shared.shared

    async def trip(self, run_id: str, pb: Playbook) -> None:
        """Trip the playbook's breaker if its recent failures reach the limit."""
        cb = pb.spec.guards.circuit_breaker
        failures = await self.audit.run(
            lambda db: db.count_failed_verifications(
                pb.name, since_ms=self.now_ms() - int(cb.window_s * 1000)
            )
        )
        if failures >= cb.failures:
            await self.audit.run(
                lambda db: db.set_flag(f"breaker:{pb.name}", "tripped", now_ms=self.now_ms())
            )
            if self.cluster is not None:  # every replica's runs of it go to shadow
                try:
                    await self.cluster.set_flag(f"breaker:{pb.name}", "tripped")
                except ActionError as exc:
                    log.warning("breaker of %s not shared: %s", pb.name, exc)
            await self.journal.event(
                run_id,
                EventKind.NOTE,
                "circuit_breaker",
                "tripped",
                {"failures": failures, "window_s": cb.window_s},
            )
            self.metrics.breakers.labels(pb.name).inc()

    async def reset(self, playbook: str, *, by: str, claimed: str | None = None) -> bool:
        """Close a playbook's circuit breaker (here and in the shared state); recorded with
        ``by`` (from the caller's credential) and ``claimed`` (a name the request gave,
        unverified). False when it was not tripped."""
        name = f"breaker:{playbook}"
        was = await self.audit.run(lambda db: db.get_flag(name))
        shared = (await self.shared.flags()) or {}
        if was is None and name not in shared:
            return False
        await self.audit.run(lambda db: db.set_flag(name, None, now_ms=self.now_ms()))
        if self.cluster is not None:
            await self.cluster.set_flag(name, None)
        await self.audit.run(
            lambda db: db.add_event(
                None,
                kind=EventKind.NOTE,
                name="circuit_breaker",
                verdict="reset",
                detail={
                    "playbook": playbook,
                    "by": by,
                    **({"claimed": claimed} if claimed is not None else {}),
                },
                now_ms=self.now_ms(),
            )
        )
        log.warning("circuit breaker of %s reset by %s", playbook, by)
        return True

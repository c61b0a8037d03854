"""Verification: after a run's steps, poll each ``verify`` query until it holds or its
``within_s`` runs out. Each check's outcome is recorded and counted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from remediator.actions.registry import Services
from remediator.audit.store import EventKind
from remediator.catalog import templating
from remediator.catalog.playbook import Playbook
from remediator.errors import ActionError, TemplateError
from remediator.metrics import RemediatorMetrics
from remediator.runs.journal import Journal
from remediator.runs.plan import Scope
from remediator.runs.tracing import Spans


class Verifier:
    def __init__(
        self,
        *,
        services: Services,
        journal: Journal,
        metrics: RemediatorMetrics,
        spans: Spans,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.services = services
        self.journal = journal
        self.metrics = metrics
        self.spans = spans
        self.clock = clock
        self.sleep = sleep

    async def verify(self, run_id: str, pb: Playbook, scope: Scope) -> tuple[bool, str]:
        """(True, "verified") once every check held; else (False, why)."""
        with self.spans.span("verify", checks=len(pb.spec.verify)) as span:
            ok, detail = await self._checks(run_id, pb, scope)
            if span is not None:
                span.set_attribute("vigil.ok", ok)
                span.set_attribute("vigil.detail", detail)
            return ok, detail

    async def _checks(self, run_id: str, pb: Playbook, scope: Scope) -> tuple[bool, str]:
        for check in pb.spec.verify:
            try:
                query = templating.render_as(check.query, scope, templating.Context.PROMQL)
            except TemplateError as exc:
                what = check.description or check.query
                await self.journal.event(
                    run_id,
                    EventKind.VERIFY,
                    what,
                    "failed",
                    {"query": check.query, "detail": f"refused: {exc}"},
                )
                self.metrics.verifications.labels(pb.name, "failed").inc()
                return False, f"{what} cannot be checked: {exc}"
            deadline = self.clock() + check.within_s
            while True:
                try:
                    result = await self.services.prometheus_query(query)
                    detail = f"{len(result)} series"
                except ActionError as exc:
                    result, detail = [], f"query failed: {exc}"
                if result:
                    await self.journal.event(
                        run_id,
                        EventKind.VERIFY,
                        check.description or query,
                        "ok",
                        {"query": query, "detail": detail},
                    )
                    self.metrics.verifications.labels(pb.name, "ok").inc()
                    break
                if self.clock() + check.interval_s > deadline:
                    await self.journal.event(
                        run_id,
                        EventKind.VERIFY,
                        check.description or query,
                        "failed",
                        {"query": query, "detail": detail, "within_s": check.within_s},
                    )
                    self.metrics.verifications.labels(pb.name, "failed").inc()
                    return (
                        False,
                        f"{check.description or query} did not hold within "
                        f"{check.within_s:.0f} s ({detail})",
                    )
                await self.sleep(check.interval_s)
        return True, "verified"

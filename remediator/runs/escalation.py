"""Escalation: ``VigilRemediationFailed`` posted to Alertmanager when a run needs a person.

A dry run, or a playbook in ``dryRun``/``shadow`` mode, only records what would have been
posted: a trial playbook pages nobody.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from remediator.actions.basic import EscalateParams, escalation_alert
from remediator.actions.registry import Services
from remediator.audit.store import EventKind
from remediator.catalog.playbook import Mode, Playbook
from remediator.errors import ActionError
from remediator.metrics import RemediatorMetrics
from remediator.runs.journal import Journal
from remediator.runs.tracing import Spans, current_trace_id
from remediator.webhook import Alert


class Escalator:
    def __init__(
        self,
        *,
        services: Services,
        journal: Journal,
        metrics: RemediatorMetrics,
        spans: Spans,
        clock: Callable[[], float],
        run_url: Callable[[str], str],
    ) -> None:
        self.services = services
        self.journal = journal
        self.metrics = metrics
        self.spans = spans
        self.clock = clock
        self.run_url = run_url

    async def escalate(
        self, run_id: str, pb: Playbook, alert: Alert, reason: str, *, dry_run: bool = False
    ) -> None:
        """Post VigilRemediationFailed to Alertmanager, or, for a dry run or a playbook in
        ``dryRun``/``shadow`` mode, only record what would have been posted (verdict
        ``dry_run``, detail ``would_send``)."""
        esc = pb.spec.escalate
        if not esc.enabled:
            return
        reason = self.services.redact(reason)  # it goes to Alertmanager and the trace
        params = EscalateParams(
            alertname="VigilRemediationFailed",
            severity=esc.severity,
            labels={**esc.labels, "playbook": pb.name},
            summary=f"Playbook {pb.name} could not fix "
            f"{alert.labels.get('alertname', 'an alert')}: {reason}",
        )
        body = [
            escalation_alert(
                params,
                alert=alert,
                run_id=run_id,
                run_url=self.run_url(run_id),
                now=datetime.fromtimestamp(self.clock(), UTC),
            )
        ]
        trace_id = current_trace_id()
        if trace_id is not None:  # on-call opens the run's trace from the escalation
            body[0].setdefault("annotations", {})["trace_id"] = trace_id
        if dry_run or pb.spec.mode in (Mode.DRY_RUN, Mode.SHADOW):
            await self.journal.event(
                run_id,
                EventKind.ESCALATE,
                "VigilRemediationFailed",
                "dry_run",
                {
                    "reason": reason,
                    "would_send": {"method": "POST", "path": "/api/v2/alerts", "body": body},
                },
            )
            return  # not counted in vigil_escalations_total: nothing was sent
        with self.spans.span("escalate", reason=reason):
            try:
                status, _ = await self.services.alertmanager("POST", "/api/v2/alerts", body)
                verdict = "ok" if status == 200 else "failed"
                detail: dict[str, Any] = {"status": status, "reason": reason}
            except ActionError as exc:
                verdict, detail = "failed", {"error": str(exc), "reason": reason}
        await self.journal.event(
            run_id, EventKind.ESCALATE, "VigilRemediationFailed", verdict, detail
        )
        self.metrics.escalations.labels(pb.name, verdict).inc()

"""The facts the guards judge a run on.

``read_facts`` reads the counts from the audit log (on the audit thread, inside the
deciding transaction); ``FactSource`` fetches what needs the network first: matching
Alertmanager silences, pre-condition queries, the error budget, the shared flags. A fact
that cannot be read is one that refuses (an unknown silence, a failed pre-condition,
paused), never one that lets a run through.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from remediator import silences
from remediator.actions.registry import Services
from remediator.audit.store import AuditLog
from remediator.catalog.playbook import Playbook
from remediator.errors import ActionError, TemplateError
from remediator.runs import guards
from remediator.runs.plan import Scope, render_precondition, unrenderable_verifications
from remediator.runs.replicas import SharedRuns
from remediator.webhook import Alert

log = logging.getLogger(__name__)

Precondition = tuple[str, bool, str]  # (what, holds, detail)


@dataclass(frozen=True, slots=True)
class OutsideFacts:
    """What the network said, fetched before the deciding transaction."""

    silences: tuple[str, ...]
    preconditions: tuple[Precondition, ...]
    shared_flags: dict[str, Any] | None
    budget: float | None


def read_facts(
    db: AuditLog,
    *,
    pb: Playbook,
    key: str | None,
    now_ms: int,
    limits: guards.GlobalLimits,
    shared_flags: dict[str, Any] | None = None,
    silences: tuple[str, ...] = (),
    preconditions: tuple[Precondition, ...] = (),
    targets_total: int | None = None,
    budget: float | None = None,
    exclude_run: str | None = None,
) -> guards.Facts:
    """The guards' facts from the audit log (and, with several replicas, the shared
    flags); the network facts are passed in. Runs on the audit thread. Runs waiting for
    an approval count as in progress (an approval makes them act); ``exclude_run`` is the
    run being judged, which is not counted against itself."""
    g = pb.spec.guards
    rate_s = g.rate.window_s if g.rate else 3600.0
    global_s = limits.rate.window_s if limits.rate else 3600.0
    return guards.Facts(
        now_ms=now_ms,
        # several replicas: the shared flag is the kill switch (set and cleared through
        # any replica); one replica: its own audit log
        paused=("paused" in shared_flags)
        if shared_flags is not None
        else db.get_flag("paused") is not None,
        breaker_tripped=db.get_flag(f"breaker:{pb.name}") is not None
        or f"breaker:{pb.name}" in (shared_flags or {}),
        executed_playbook=db.count_executed(since_ms=now_ms - int(rate_s * 1000), playbook=pb.name),
        executed_all=db.count_executed(since_ms=now_ms - int(global_s * 1000)),
        active_playbook=db.count_active(playbook=pb.name, now_ms=now_ms, exclude=exclude_run),
        active_all=db.count_active(now_ms=now_ms, exclude=exclude_run),
        last_on_target_ms=db.last_executed_on_target(key, playbook=pb.name) if key else None,
        silences=silences,
        preconditions=preconditions,
        targets_in_flight=db.count_active(playbook=pb.name, now_ms=now_ms, exclude=exclude_run),
        targets_total=targets_total,
        budget_remaining=budget,
    )


class FactSource:
    """Fetches the facts that need the network."""

    def __init__(self, *, services: Services, shared: SharedRuns | None) -> None:
        """``shared`` None: no other replicas to ask for flags (a simulation)."""
        self.services = services
        self.shared = shared

    async def gather(self, pb: Playbook, alert: Alert, scope: Scope) -> OutsideFacts:
        g = pb.spec.guards
        muted = await self.silences(alert) if g.respect_silences else ()
        pre = [
            await self.precondition(p.query, scope, p.description or p.query)
            for p in g.preconditions
        ]
        pre += unrenderable_verifications(pb, scope)
        return OutsideFacts(
            silences=muted,
            preconditions=tuple(pre),
            shared_flags=await self.shared.flags() if self.shared is not None else None,
            budget=await self.budget_remaining(pb),
        )

    async def silences(self, alert: Alert) -> tuple[str, ...]:
        """Active Alertmanager silences whose matchers all hold for the alert's labels."""
        try:
            status, doc = await self.services.alertmanager("GET", "/api/v2/silences")
        except ActionError as exc:
            return (f"(unknown: {exc})",)  # cannot tell: refuse rather than act blind
        if status != 200 or not isinstance(doc, list):
            return (f"(unknown: Alertmanager answered {status})",)
        return silences.muting(doc, alert.labels)

    async def precondition(self, template: str, scope: Scope, what: str) -> Precondition:
        """(what, holds, detail); a query that cannot be rendered safely never holds."""
        try:
            query = render_precondition(template, scope)
        except TemplateError as exc:
            return what, False, f"refused: {exc}"
        try:
            result = await self.services.prometheus_query(query)
        except ActionError as exc:
            return what, False, f"cannot evaluate: {exc}"
        return what, bool(result), f"{len(result)} series"

    async def budget_remaining(self, pb: Playbook) -> float | None:
        """The remaining share of the playbook's error-budget SLO, or None if unknown."""
        eb = pb.spec.guards.error_budget
        if eb is None:
            return None
        query = f'slo:period_error_budget_remaining:ratio{{sloth_id="{eb.slo}"}}'
        try:
            result = await self.services.prometheus_query(query)
            return float(result[0]["value"][1]) if result else None
        except (ActionError, KeyError, IndexError, TypeError, ValueError) as exc:
            log.warning("error budget of %s unreadable: %s", eb.slo, exc)
            return None

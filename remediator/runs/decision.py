"""The decision: may this run act, and how (``auto``, ``dryRun``, ``shadow``, ``approval``)?

``Decider.start`` takes a new run from its alert to a decision: labels that cannot name
a Kubernetes object and namespaces the playbook refuses stop it before any lookup; then
the target is resolved and the plan built; then the facts are gathered and ``decide``
judges every guard and records the plan, each verdict and the decision in one audit
transaction. Runs are decided one at a time there, so two runs can never both pass a
limit only one of them fits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from remediator.actions.registry import ActionRegistry
from remediator.audit.store import AuditLog, EventKind, RunState
from remediator.audit.thread import AuditThread
from remediator.catalog.playbook import Mode, Playbook
from remediator.cluster import targets
from remediator.cluster.kube import Kube
from remediator.cluster.targets import Target
from remediator.errors import ActionError, TemplateError
from remediator.metrics import RemediatorMetrics
from remediator.runs import guards
from remediator.runs.awaiting import ApprovalNotice
from remediator.runs.escalation import Escalator
from remediator.runs.facts import FactSource, OutsideFacts, read_facts
from remediator.runs.journal import Journal
from remediator.runs.plan import PlannedStep, build_plan, plan_hash, query_scope, unsafe_queries
from remediator.runs.replicas import SharedRuns
from remediator.runs.tracing import Spans
from remediator.webhook import Alert


@dataclass(frozen=True, slots=True)
class Decision:
    verdicts: list[guards.Verdict]
    mode: Mode | None
    state: RunState | None  # where the run stopped; None: it goes on to act
    reason: str


@dataclass(frozen=True, slots=True)
class Go:
    """A run decided to act: its plan, the object it acts on, and whether in dry-run."""

    plan: list[PlannedStep]
    target: Target | None
    dry_run: bool


def judge(
    db: AuditLog,
    *,
    run_id: str,
    pb: Playbook,
    alert: Alert,
    target: Target | None,
    now_ms: int,
    limits: guards.GlobalLimits,
    facts: OutsideFacts,
    stage: str | None = None,
) -> list[guards.Verdict]:
    """Every guard's verdict on the run now, each recorded; on the audit thread, inside
    the caller's transaction. ``stage`` (e.g. ``approval``) marks a judgement made
    again later; the run itself is then not counted against its own limits."""
    key = target.key if target is not None else targets.target_of(alert.labels)
    read = read_facts(
        db,
        pb=pb,
        key=key,
        now_ms=now_ms,
        limits=limits,
        shared_flags=facts.shared_flags,
        silences=facts.silences,
        preconditions=facts.preconditions,
        targets_total=target.replicas if target is not None else None,
        budget=facts.budget,
        exclude_run=run_id if stage else None,
    )
    verdicts = guards.evaluate(
        pb.spec.guards, labels=alert.labels, facts=read, limits=limits, target=key
    )
    for v in verdicts:
        detail: dict[str, Any] = {"reason": v.reason, "shadow": v.shadow}
        if stage:
            detail["stage"] = stage
        db.add_event(
            run_id,
            kind=EventKind.GUARD,
            name=v.guard,
            verdict="allow" if v.allow else "refuse",
            detail=detail,
            now_ms=now_ms,
        )
    return verdicts


def decide(
    db: AuditLog,
    *,
    run_id: str,
    pb: Playbook,
    alert: Alert,
    plan: list[PlannedStep],
    target: Target | None,
    facts: OutsideFacts,
    limits: guards.GlobalLimits,
    clock: Callable[[], float],
) -> Decision:
    """On the audit thread, in one transaction: read the counts the guards need, judge,
    and record the plan, every verdict and the decision."""
    now = int(clock() * 1000)
    g = pb.spec.guards
    with db.atomic():
        digest = plan_hash(plan, target)
        steps = [s.to_json() for s in plan]
        identity = target.identity() if target is not None else None
        if target is not None:
            db.set_target(run_id, target.key, now_ms=now)
        db.set_plan(run_id, plan={"steps": steps, "target": identity}, plan_hash=digest, now_ms=now)
        db.add_event(
            run_id,
            kind=EventKind.PLAN,
            name="plan",
            detail={"steps": steps, "target": identity, "plan_hash": digest},
            now_ms=now,
        )
        verdicts = judge(
            db,
            run_id=run_id,
            pb=pb,
            alert=alert,
            target=target,
            now_ms=now,
            limits=limits,
            facts=facts,
        )
        allowed, shadow, reason = guards.decide(verdicts)
        if not allowed:
            db.add_event(
                run_id,
                kind=EventKind.DECISION,
                name="refuse",
                verdict="refuse",
                detail={"reason": reason},
                now_ms=now,
            )
            db.set_state(run_id, RunState.REFUSED, now_ms=now, outcome=reason)
            return Decision(verdicts, None, RunState.REFUSED, reason)
        mode = Mode.SHADOW if shadow else pb.spec.mode
        if mode is Mode.AUTO and guards.needs_approval(verdicts):
            mode = Mode.APPROVAL  # e.g. the error budget is low: a person decides
        db.add_event(
            run_id,
            kind=EventKind.DECISION,
            name="act",
            verdict=mode.value,
            detail={"reason": reason},
            now_ms=now,
        )
        if mode is Mode.SHADOW:
            why = (
                f"decided, not executed (shadow: {reason})"
                if shadow
                else "decided, not executed (shadow)"
            )
            db.set_state(run_id, RunState.SHADOW, now_ms=now, outcome=why)
            return Decision(verdicts, mode, RunState.SHADOW, why)
        if mode is Mode.APPROVAL:
            expires = now + int(g.approval_ttl_s * 1000)
            db.request_approval(run_id, plan_hash=digest, expires_ms=expires, now_ms=now)
            db.add_event(
                run_id,
                kind=EventKind.APPROVAL,
                name="requested",
                detail={"plan_hash": digest, "expires_ms": expires},
                now_ms=now,
            )
            return Decision(verdicts, mode, RunState.WAITING_APPROVAL, "waiting")
        db.mark_executing(run_id, now_ms=now)
        return Decision(verdicts, mode, None, reason)


class Decider:
    def __init__(
        self,
        *,
        audit: AuditThread,
        journal: Journal,
        escalator: Escalator,
        facts: FactSource,
        shared: SharedRuns,
        registry: ActionRegistry,
        kube: Kube | None,
        limits: guards.GlobalLimits,
        metrics: RemediatorMetrics,
        spans: Spans,
        clock: Callable[[], float],
        run_url: Callable[[str], str],
        notice: ApprovalNotice | None = None,
    ) -> None:
        """``notice`` (None: nobody is told) announces a run that starts waiting for an
        approval (``VigilRemediationAwaitingApproval``)."""
        self.notice = notice
        self.audit = audit
        self.journal = journal
        self.escalator = escalator
        self.facts = facts
        self.shared = shared
        self.registry = registry
        self.kube = kube
        self.limits = limits
        self.metrics = metrics
        self.spans = spans
        self.clock = clock
        self.run_url = run_url

    def scope(self, alert: Alert, run_id: str) -> dict[str, dict[str, str]]:
        return query_scope(alert, run_id=run_id, run_url=self.run_url(run_id))

    def needs_cluster(self, pb: Playbook) -> bool:
        steps = pb.spec.steps + (pb.spec.undo if isinstance(pb.spec.undo, tuple) else ())
        return any(
            (spec := self.registry.get(s.action)) is not None and spec.needs_cluster for s in steps
        )

    async def resolve_target(self, pb: Playbook, alert: Alert) -> Target | None:
        """The Kubernetes object a cluster playbook acts on (None without a cluster)."""
        if self.kube is None or not self.needs_cluster(pb):
            return None
        return await targets.resolve(self.kube, alert.labels)

    async def start(self, run_id: str, pb: Playbook, alert: Alert) -> Go | None:
        """Decide a new run; None when it stopped here (refused, shadow, waiting for an
        approval, or escalated because it cannot even be planned)."""
        problems = targets.label_problems(alert.labels)
        if problems:  # before any guard, query or Kubernetes request: recorded, escalated
            why = "refused before any guard: " + "; ".join(problems)
            self.metrics.refusals.labels(pb.name, "target_labels").inc()
            await self.journal.event(
                run_id, EventKind.DECISION, "target_labels", "refuse", {"problems": problems}
            )
            await self.escalator.escalate(run_id, pb, alert, why)
            await self.journal.finish(run_id, pb.name, RunState.ESCALATED, why)
            return None
        early = [v for v in guards.label_verdicts(pb.spec.guards, alert.labels) if not v.allow]
        if early:  # a namespace the playbook refuses is not even looked up in the cluster
            refusal = Decision(
                early, None, RunState.REFUSED, f"{early[0].guard}: {early[0].reason}"
            )
            await self.journal.event(
                run_id,
                EventKind.GUARD,
                early[0].guard,
                "refuse",
                {"reason": early[0].reason, "shadow": False},
            )
            await self.journal.event(
                run_id, EventKind.DECISION, "refuse", "refuse", {"reason": refusal.reason}
            )
            await self.after_verdicts(run_id, pb, alert, refusal)
            await self.journal.finish(run_id, pb.name, RunState.REFUSED, refusal.reason)
            return None
        try:
            target = await self.resolve_target(pb, alert)
            plan = build_plan(
                pb.spec.steps,
                alert,
                self.registry,
                run_id=run_id,
                run_url=self.run_url(run_id),
                target=target,
            )
        except ActionError as exc:
            await self._cannot(
                run_id, pb, alert, "target", f"cannot resolve the target: {exc}", exc
            )
            return None
        except TemplateError as exc:
            await self._cannot(run_id, pb, alert, "plan", f"cannot plan: {exc}", exc)
            return None
        facts = await self.facts.gather(pb, alert, self.scope(alert, run_id))
        decision = await self.audit.run(
            functools.partial(
                decide,
                run_id=run_id,
                pb=pb,
                alert=alert,
                plan=plan,
                target=target,
                facts=facts,
                limits=self.limits,
                clock=self.clock,
            )
        )
        await self.after_verdicts(run_id, pb, alert, decision)
        refused = [v.guard for v in decision.verdicts if not v.allow]
        if (
            refused
            and refused[0] not in pb.spec.escalate.on_refused
            and (unsafe := unsafe_queries(pb, self.scope(alert, run_id)))
        ):
            await self.escalator.escalate(
                run_id,
                pb,
                alert,
                "refused: the alert's labels "
                "cannot be written safely into its queries: " + "; ".join(unsafe),
            )
        if decision.state is not None:
            self.journal.stopped(pb.name, decision.state, run_id=run_id, reason=decision.reason)
            if decision.state is RunState.WAITING_APPROVAL:
                await self._announce(run_id, pb, alert, plan)
            return None
        if decision.mode is not Mode.DRY_RUN:
            await self.shared.share(run_id, pb.name, RunState.RUNNING)
        return Go(plan, target, dry_run=decision.mode is Mode.DRY_RUN)

    async def _announce(
        self, run_id: str, pb: Playbook, alert: Alert, plan: list[PlannedStep]
    ) -> None:
        run = await self.audit.run(lambda db: db.get_run(run_id))
        if (
            self.notice is None
            or run is None
            or run.plan_hash is None
            or run.approval_expires_ms is None
        ):
            return
        await self.notice.announce(
            run_id,
            playbook=pb.name,
            alert_labels=alert.labels,
            extra=pb.spec.escalate.labels,
            plan=plan,
            target=run.target,
            plan_hash=run.plan_hash,
            approvers=pb.spec.approvers,
            expires_ms=run.approval_expires_ms,
        )
        # decided while the announcement was on its way: its resolve found nothing to
        # resolve then, so it is resolved now
        after = await self.audit.run(lambda db: db.get_run(run_id))
        if after is not None and after.state is not RunState.WAITING_APPROVAL:
            await self.notice.resolve(run_id, outcome=f"{after.state.value}: {after.outcome}")

    async def _cannot(
        self, run_id: str, pb: Playbook, alert: Alert, name: str, why: str, exc: Exception
    ) -> None:
        await self.journal.event(run_id, EventKind.DECISION, name, "failed", {"error": str(exc)})
        await self.escalator.escalate(run_id, pb, alert, why)
        await self.journal.finish(run_id, pb.name, RunState.ESCALATED, why)

    async def after_verdicts(
        self, run_id: str, pb: Playbook, alert: Alert, decision: Decision
    ) -> None:
        """Count and trace the verdicts; escalate a refusal the playbook escalates."""
        for v in decision.verdicts:
            if not v.allow:
                self.metrics.refusals.labels(pb.name, v.guard).inc()
            with self.spans.span(
                f"guard {v.guard}", guard=v.guard, allow=v.allow, reason=v.reason, shadow=v.shadow
            ):
                pass  # a verdict is instant; its span records it in the run's trace
        refused = [v.guard for v in decision.verdicts if not v.allow]
        if refused and refused[0] in pb.spec.escalate.on_refused:
            await self.escalator.escalate(
                run_id,
                pb,
                alert,
                f"refused by {decision.reason}; the playbook escalates instead of acting again",
            )

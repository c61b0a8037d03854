"""Approval: a person approves a waiting run, and the run is judged again before it acts.

The approval holds only for the plan the approver saw (its hash) and only while every
guard still allows the run, judged again now as for a new run (kill switch, freeze,
silences, cooldown, rate, concurrency, blast radius, breaker, pre-conditions). A refusal
then ends the run. Approvals are decided one at a time on the audit thread, so two can
never both pass a limit only one of them fits.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from remediator import identity
from remediator.actions.registry import ActionRegistry
from remediator.audit.store import AuditLog, EventKind, RunRecord, RunState
from remediator.audit.thread import AuditThread
from remediator.catalog.loader import Catalog
from remediator.catalog.playbook import Mode, Playbook
from remediator.cluster import targets
from remediator.cluster.targets import Target
from remediator.errors import ActionError, ApprovalError, ApproverError, AuditError
from remediator.identity import Identity
from remediator.runs import guards
from remediator.runs.awaiting import ApprovalNotice
from remediator.runs.decision import Decider, Decision, judge
from remediator.runs.facts import OutsideFacts
from remediator.runs.journal import Journal
from remediator.runs.plan import PlannedStep, build_plan, plan_hash
from remediator.runs.replicas import SharedRuns
from remediator.webhook import Alert, alert_from_json

log = logging.getLogger(__name__)

ActFunc = Callable[[str, Playbook, Alert, list[PlannedStep], Target | None], Awaitable[None]]


def approvable(run: RunRecord, plan_hash_seen: str, *, now_ms: int) -> bool:
    """Whether ``AuditLog.approve`` would approve the run now (it stays the authority)."""
    expires = run.approval_expires_ms
    return (
        run.state is RunState.WAITING_APPROVAL
        and run.plan_hash == plan_hash_seen
        and (expires is None or now_ms < expires)
    )


def decide_approval(
    db: AuditLog,
    *,
    run_id: str,
    pb: Playbook,
    alert: Alert,
    target: Target | None,
    plan_hash_seen: str,
    who: Identity,
    claimed: str | None,
    facts: OutsideFacts,
    limits: guards.GlobalLimits,
    clock: Callable[[], float],
) -> Decision:
    """On the audit thread, in one transaction: judge the waiting run again and record
    it; approve and start it, or refuse it."""
    now = int(clock() * 1000)
    error: ApprovalError | None = None
    with db.atomic():
        run = db.get_run(run_id)
        if run is None or not approvable(run, plan_hash_seen, now_ms=now):
            try:  # approve() says why not (and expires an overdue run)
                db.approve(run_id, plan_hash=plan_hash_seen, by=who.name, now_ms=now)
            except ApprovalError as exc:
                error = exc  # caught inside the transaction, so an expiry is kept
            else:  # leaving by an exception rolls this approval back
                raise AuditError(
                    f"run {run_id}: approvable after all; not approved "
                    "without judging its guards, try again"
                )
        else:
            by: dict[str, Any] = who.audit()
            if claimed is not None:
                by["claimed"] = claimed  # what the request said; not verified
            verdicts = judge(
                db,
                run_id=run_id,
                pb=pb,
                alert=alert,
                target=target,
                now_ms=now,
                limits=limits,
                facts=facts,
                stage="approval",
            )
            allowed, shadow, reason = guards.decide(verdicts)
            if allowed and shadow:  # an approval never acts past a tripped breaker
                allowed = False
                reason = next(f"{v.guard}: {v.reason}" for v in verdicts if v.shadow)
            if not allowed:
                db.add_event(
                    run_id,
                    kind=EventKind.APPROVAL,
                    name="refused",
                    verdict="refuse",
                    detail={**by, "reason": reason},
                    now_ms=now,
                )
                db.add_event(
                    run_id,
                    kind=EventKind.DECISION,
                    name="refuse",
                    verdict="refuse",
                    detail={"reason": reason, "stage": "approval"},
                    now_ms=now,
                )
                db.set_state(
                    run_id, RunState.REFUSED, now_ms=now, outcome=f"approval refused: {reason}"
                )
                return Decision(verdicts, None, RunState.REFUSED, reason)
            db.approve(run_id, plan_hash=plan_hash_seen, by=who.name, now_ms=now)
            db.add_event(
                run_id,
                kind=EventKind.APPROVAL,
                name="approved",
                verdict="ok",
                detail=by,
                now_ms=now,
            )
            db.add_event(
                run_id,
                kind=EventKind.DECISION,
                name="act",
                verdict=Mode.APPROVAL.value,
                detail={"reason": reason, "stage": "approval"},
                now_ms=now,
            )
            # acting from here: the rate and cooldown of the next decision count it
            db.mark_executing(run_id, now_ms=now)
            return Decision(verdicts, Mode.APPROVAL, None, reason)
    assert error is not None
    raise error


class Approvals:
    def __init__(
        self,
        *,
        audit: AuditThread,
        catalog: Callable[[], Catalog],
        registry: ActionRegistry,
        journal: Journal,
        decider: Decider,
        shared: SharedRuns,
        limits: guards.GlobalLimits,
        clock: Callable[[], float],
        run_url: Callable[[str], str],
        act: ActFunc,
        spawn: Callable[[Awaitable[None]], None],
        notice: ApprovalNotice | None = None,
    ) -> None:
        self.notice = notice
        self.audit = audit
        self.catalog = catalog
        self.registry = registry
        self.journal = journal
        self.decider = decider
        self.shared = shared
        self.limits = limits
        self.clock = clock
        self.run_url = run_url
        self.act = act
        self.spawn = spawn

    async def _waiting(self, run_id: str, who: Identity, action: str) -> tuple[RunRecord, Playbook]:
        """The run and its playbook, once ``who`` may decide on it; ApproverError (and an
        audit event) when the playbook's approvers do not include them."""
        run = await self.audit.run(lambda db: db.get_run(run_id))
        if run is None:
            raise ApprovalError(f"run {run_id} does not exist")
        entry = self.catalog().by_name(run.playbook)
        if entry is None:
            raise ApprovalError(f"run {run_id}: playbook {run.playbook} is no longer loaded")
        pb = entry.playbook
        names = pb.spec.approvers
        why = identity.refusal(
            who,
            users=names.users if names else (),
            groups=names.groups if names else (),
            playbook=pb.name,
        )
        if why is not None:
            await self.journal.event(
                run_id,
                EventKind.APPROVAL,
                "forbidden",
                "refuse",
                {**who.audit(), "action": action, "reason": why},
            )
            log.warning(
                "run %s of %s: %s by %s (%s) refused: not an approver",
                run_id,
                pb.name,
                action,
                who.name,
                who.via.value,
            )
            raise ApproverError(f"run {run_id}: {why}")
        return run, pb

    async def refused_credential(self, run_id: str, *, action: str, reason: str) -> None:
        """Audit an approval or rejection refused before anyone was identified (the trusted
        proxy's headers came twice, or named ``admin-token``): a ``forbidden`` event on the
        run, when it exists, with ``via`` and no ``by``."""
        run = await self.audit.run(lambda db: db.get_run(run_id))
        log.warning("run %s: %s refused: %s", run_id, action, reason)
        if run is not None:
            await self.journal.event(
                run_id,
                EventKind.APPROVAL,
                "forbidden",
                "refuse",
                {"via": identity.Via.TRUSTED_HEADER.value, "action": action, "reason": reason},
            )

    async def _settled(self, run_id: str) -> None:
        """Resolve the awaiting-approval alert of a run that no longer waits."""
        run = await self.audit.run(lambda db: db.get_run(run_id))
        if (
            self.notice is not None
            and run is not None
            and run.state is not RunState.WAITING_APPROVAL
        ):
            await self.notice.resolve(run_id, outcome=f"{run.state.value}: {run.outcome}")

    async def approve(
        self, run_id: str, *, plan_hash_seen: str, who: Identity, claimed: str | None = None
    ) -> dict[str, Any]:
        """Approve a waiting run if ``who`` is one of its playbook's approvers, its plan is
        still the one the approver saw and every guard still allows it; then act.
        ApproverError when ``who`` may not; ApprovalError says why not otherwise; a
        guard's refusal also ends the run (``refused``, with the guard's reason).
        ``who``: from the request's credential; ``claimed``: a name the request itself
        gave, recorded as a note only."""
        run, pb = await self._waiting(run_id, who, "approve")
        try:
            return await self._approve(
                run, pb, plan_hash_seen=plan_hash_seen, who=who, claimed=claimed
            )
        finally:
            await self._settled(run_id)

    async def reject(self, run_id: str, *, who: Identity, reason: str) -> dict[str, Any]:
        """``who`` says no: the run ends ``refused`` (outcome ``rejected by <who>``) and
        never acts. The same approvers rule as ``approve``; ApprovalError when the run is
        not waiting (or its approval expired)."""
        run, pb = await self._waiting(run_id, who, "reject")
        now_ms = int(self.clock() * 1000)
        try:
            done = await self.audit.run(
                lambda db: db.reject(run_id, by=who.audit(), reason=reason, now_ms=now_ms)
            )
        finally:
            await self._settled(run_id)
        self.journal.metrics.runs.labels(pb.name, RunState.REFUSED.value).inc()
        await self.shared.share(run_id, pb.name, RunState.REFUSED)
        self.journal.settled.set()
        log.info("run %s of %s: rejected by %s (%s)", run_id, pb.name, who.name, who.via.value)
        return {"id": run.id, "state": "rejected", "by": who.name, "outcome": done.outcome}

    async def expired(self, run_ids: list[str]) -> None:
        """Resolve the awaiting-approval alerts of runs whose approval expired."""
        for run_id in run_ids:
            await self._settled(run_id)

    async def _approve(
        self,
        run: RunRecord,
        pb: Playbook,
        *,
        plan_hash_seen: str,
        who: Identity,
        claimed: str | None,
    ) -> dict[str, Any]:
        run_id, by = run.id, who.name
        alert = alert_from_json(json.loads(run.alert) if isinstance(run.alert, str) else run.alert)
        problems = targets.label_problems(alert.labels)
        if problems and run.state is RunState.WAITING_APPROVAL:  # a run from before intake
            why = "approval refused: " + "; ".join(problems)
            await self.journal.finish(run_id, pb.name, RunState.REFUSED, why)
            raise ApprovalError(f"run {run_id}: {why}")
        try:
            target = await self.decider.resolve_target(pb, alert)
        except ActionError as exc:
            raise ApprovalError(
                f"run {run_id}: cannot resolve the target now ({exc}); try again"
            ) from exc
        plan = build_plan(
            pb.spec.steps,
            alert,
            self.registry,
            run_id=run_id,
            run_url=self.run_url(run_id),
            target=target,
        )
        if plan_hash(plan, target) != plan_hash_seen:
            raise ApprovalError(
                f"run {run_id}: the plan changed since approval was requested "
                "(or the hash is wrong); look at the run again"
            )
        facts = await self.decider.facts.gather(pb, alert, self.decider.scope(alert, run_id))
        decision = await self.audit.run(
            functools.partial(
                decide_approval,
                run_id=run_id,
                pb=pb,
                alert=alert,
                target=target,
                plan_hash_seen=plan_hash_seen,
                who=who,
                claimed=claimed,
                facts=facts,
                limits=self.limits,
                clock=self.clock,
            )
        )
        await self.decider.after_verdicts(run_id, pb, alert, decision)
        if decision.state is RunState.REFUSED:
            self.journal.metrics.runs.labels(pb.name, decision.state.value).inc()
            await self.shared.share(run_id, pb.name, decision.state)
            self.journal.settled.set()
            log.info(
                "run %s of %s: approval by %s refused (%s)", run_id, pb.name, by, decision.reason
            )
            raise ApprovalError(
                f"run {run_id}: approval refused by {decision.reason}; "
                "the run is refused and will not act"
            )
        log.info("run %s of %s: approved by %s", run_id, pb.name, by)
        await self.shared.share(run_id, pb.name, RunState.RUNNING)
        self.spawn(self._approved(run_id, pb, alert, plan, target))
        return {"id": run_id, "state": "approved", "by": by}

    async def _approved(
        self,
        run_id: str,
        pb: Playbook,
        alert: Alert,
        plan: list[PlannedStep],
        target: Target | None,
    ) -> None:
        try:
            await self.act(run_id, pb, alert, plan, target)
        except Exception as exc:  # task root
            log.exception("approved run %s failed", run_id)
            await self.journal.finish(run_id, pb.name, RunState.FAILED, f"unexpected error: {exc}")

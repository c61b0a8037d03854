"""Execution: a decided run's steps, then verification, undo or escalation as the outcome
asks.

With a cluster, a run first takes a Lease on its target so no two runs touch one object at
once. Each step's action is called with a timeout; only ``ActionTemporaryError`` is
retried, with backoff up to the step's ``retries``; every request and response is
recorded. A step that fails for good, or a verification that does not hold, undoes what
was done and escalates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from remediator.actions.registry import (
    ActionContext,
    ActionFunc,
    ActionRegistry,
    DryRun,
    Executed,
    Failed,
    Outcome,
    Services,
    Skipped,
)
from remediator.audit.store import EventKind, RunState
from remediator.audit.thread import AuditThread
from remediator.catalog.playbook import Playbook
from remediator.cluster.kube import Kube
from remediator.cluster.leases import LeaseLock, target_lease_name
from remediator.cluster.targets import Target
from remediator.errors import ActionError, ActionPermanentError, ActionTemporaryError, TemplateError
from remediator.metrics import RemediatorMetrics
from remediator.runs.breakers import Breakers
from remediator.runs.escalation import Escalator
from remediator.runs.journal import Journal
from remediator.runs.plan import PlannedStep, query_scope, undo_plan
from remediator.runs.tracing import Spans
from remediator.runs.verification import Verifier
from remediator.webhook import Alert

log = logging.getLogger(__name__)

MAX_RETRY_DELAY_S = 30.0


def outcome_detail(outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, Executed | DryRun):
        return dict(outcome.detail)
    if isinstance(outcome, Skipped):
        return {"reason": outcome.reason}
    return {"error": outcome.error, "temporary": outcome.temporary}


async def attempts(
    step: PlannedStep,
    func: ActionFunc,
    ctx: ActionContext,
    *,
    record: Callable[[EventKind, dict[str, Any], str | None], Awaitable[None]],
    observe: Callable[[str, float], None],
    sleep: Callable[[float], Awaitable[None]],
) -> Outcome:
    """Call the action, retrying temporary failures with backoff up to its retries.
    ``record`` writes each request and response, ``observe`` times each attempt."""
    dry_run = ctx.dry_run
    attempt = 0
    while True:
        await record(
            EventKind.ACTION_REQUEST,
            {
                "action": step.action,
                "request": step.request,
                "dry_run": dry_run,
                "attempt": attempt,
            },
            None,
        )
        start = time.perf_counter()
        try:
            async with asyncio.timeout(step.timeout_s):
                outcome = await func(ctx, step.params)
        except TimeoutError:
            outcome = Failed(f"timed out after {step.timeout_s:.0f} s", temporary=False)
        except ActionTemporaryError as exc:
            outcome = Failed(str(exc), temporary=True, delay_s=exc.delay_s)
        except ActionPermanentError as exc:
            outcome = Failed(str(exc))
        kind = type(outcome).__name__.lower()
        observe(kind, time.perf_counter() - start)
        await record(EventKind.ACTION_RESPONSE, outcome_detail(outcome), kind)
        if isinstance(outcome, Failed) and outcome.temporary and attempt < step.retries:
            attempt += 1
            await sleep(min(MAX_RETRY_DELAY_S, outcome.delay_s * 2 ** (attempt - 1)))
            continue
        return outcome


class Executor:
    def __init__(
        self,
        *,
        audit: AuditThread,
        journal: Journal,
        registry: ActionRegistry,
        services: Services,
        kube: Kube | None,
        lock_namespace: str | None,
        verifier: Verifier,
        escalator: Escalator,
        breakers: Breakers,
        metrics: RemediatorMetrics,
        spans: Spans,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        run_url: Callable[[str], str],
    ) -> None:
        self.audit = audit
        self.journal = journal
        self.registry = registry
        self.services = services
        self.kube = kube
        self.lock_namespace = lock_namespace
        self.verifier = verifier
        self.escalator = escalator
        self.breakers = breakers
        self.metrics = metrics
        self.spans = spans
        self.clock = clock
        self.sleep = sleep
        self.run_url = run_url
        self.first_action: asyncio.Event = asyncio.Event()  # tests and the bench wait on it

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def act(
        self,
        run_id: str,
        pb: Playbook,
        alert: Alert,
        plan: list[PlannedStep],
        *,
        dry_run: bool,
        received: float | None = None,
        started: bool = False,
        target: Target | None = None,
    ) -> None:
        """Run the steps; then verify, undo or escalate as the outcome asks. ``started``:
        the run was already marked as acting (with its decision)."""
        lock = None
        if self.kube is not None and target is not None and self.lock_namespace and not dry_run:
            lock = LeaseLock(
                self.kube,
                namespace=self.lock_namespace,
                name=target_lease_name(target.key),
                clock=self.clock,
            )
            budget = sum(st.timeout_s for st in plan) + sum(v.within_s for v in pb.spec.verify)
            holder: str | None = None
            try:
                got = await lock.acquire(
                    run_id, duration_s=budget + 60.0, annotations={"vigil.dev/target": target.key}
                )
            except ActionError as exc:
                got, holder = False, f"unknown ({exc})"
            else:
                holder = lock.holder(await lock.read()) if not got else None
            if not got:
                await self.journal.finish(
                    run_id, pb.name, RunState.REFUSED, f"{target.key} is locked by run {holder}"
                )
                return
        try:
            await self._act(
                run_id,
                pb,
                alert,
                plan,
                dry_run=dry_run,
                received=received,
                started=started,
                target=target,
            )
        finally:
            if lock is not None:
                try:
                    await lock.release(run_id)
                except ActionError as exc:
                    log.warning(
                        "run %s: lease on %s not released (%s); it expires by itself",
                        run_id,
                        lock.name,
                        exc,
                    )

    async def _act(
        self,
        run_id: str,
        pb: Playbook,
        alert: Alert,
        plan: list[PlannedStep],
        *,
        dry_run: bool,
        received: float | None,
        started: bool,
        target: Target | None,
    ) -> None:
        if not started:
            await self.audit.run(lambda db: db.mark_executing(run_id, now_ms=self.now_ms()))
        undo: list[tuple[str, dict[str, Any]]] = []
        for i, step in enumerate(plan):
            if i == 0 and received is not None:
                self.metrics.first_action_seconds.observe(time.perf_counter() - received)
                self.first_action.set()
            outcome = await self.step(run_id, alert, step, dry_run=dry_run)
            if isinstance(outcome, Executed) and outcome.inverse is not None:
                undo.append(outcome.inverse)
            if isinstance(outcome, Failed):
                if not dry_run:  # a step failing for good counts toward the breaker
                    await self.journal.event(
                        run_id,
                        EventKind.NOTE,
                        "step_failed",
                        "failed",
                        {"step": step.name, "error": outcome.error},
                    )
                    await self.breakers.trip(run_id, pb)
                await self.undo(run_id, pb, alert, undo, dry_run=dry_run, target=target)
                await self.escalator.escalate(
                    run_id, pb, alert, f"step {step.name} failed: {outcome.error}", dry_run=dry_run
                )
                await self.journal.finish(
                    run_id, pb.name, RunState.FAILED, f"step {step.name}: {outcome.error}"
                )
                return
        if dry_run:
            await self.journal.finish(
                run_id, pb.name, RunState.DRY_RUN, "every step accepted in dry-run"
            )
            return
        if not pb.spec.verify:
            await self.journal.finish(
                run_id, pb.name, RunState.SUCCEEDED, "steps done; nothing to verify"
            )
            return
        await self.audit.run(
            lambda db: db.set_state(run_id, RunState.VERIFYING, now_ms=self.now_ms())
        )
        scope = query_scope(alert, run_id=run_id, run_url=self.run_url(run_id))
        ok, why = await self.verifier.verify(run_id, pb, scope)
        if ok:
            await self.journal.finish(run_id, pb.name, RunState.SUCCEEDED, why)
            return
        await self.breakers.trip(run_id, pb)
        await self.undo(run_id, pb, alert, undo, dry_run=False, target=target)
        await self.escalator.escalate(run_id, pb, alert, f"verification failed: {why}")
        await self.journal.finish(
            run_id,
            pb.name,
            RunState.UNDONE if undo or isinstance(pb.spec.undo, tuple) else RunState.ESCALATED,
            f"verification failed: {why}",
        )

    async def step(self, run_id: str, alert: Alert, step: PlannedStep, *, dry_run: bool) -> Outcome:
        spec = self.registry.get(step.action)
        assert spec is not None  # the plan was built from the registry
        ctx = ActionContext(
            run_id=run_id,
            run_url=self.run_url(run_id),
            dry_run=dry_run,
            services=self.services,
            alert=alert,
            clock=self.clock,
            sleep=self.sleep,
            kube=self.kube,
            log=logging.LoggerAdapter(log, {"run_id": run_id, "step": step.name}),
        )

        async def record(kind: EventKind, detail: dict[str, Any], verdict: str | None) -> None:
            await self.journal.event(run_id, kind, step.name, verdict, detail)

        def observe(kind: str, seconds: float) -> None:
            self.metrics.action_seconds.labels(step.action, kind).observe(seconds)

        with self.spans.span(
            f"action {step.action}", step=step.name, action=step.action, dry_run=dry_run
        ) as span:
            outcome = await attempts(
                step, spec.func, ctx, record=record, observe=observe, sleep=self.sleep
            )
            if span is not None:
                span.set_attribute("vigil.outcome", type(outcome).__name__.lower())
            return outcome

    async def undo(
        self,
        run_id: str,
        pb: Playbook,
        alert: Alert,
        inverses: list[tuple[str, dict[str, Any]]],
        *,
        dry_run: bool,
        target: Target | None = None,
    ) -> None:
        """Undo what the run did: the playbook's ``undo`` steps, or the inverses of the
        steps it executed; each outcome recorded."""
        try:
            steps = undo_plan(
                pb,
                alert,
                self.registry,
                inverses=inverses,
                run_id=run_id,
                run_url=self.run_url(run_id),
                target=target,
            )
        except TemplateError as exc:
            await self.journal.event(run_id, EventKind.UNDO, "plan", "failed", {"error": str(exc)})
            return
        if steps is None:
            return
        with self.spans.span("undo", steps=len(steps)):
            for step in steps:
                outcome = await self.step(run_id, alert, step, dry_run=dry_run)
                await self.journal.event(
                    run_id,
                    EventKind.UNDO,
                    step.name,
                    type(outcome).__name__.lower(),
                    outcome_detail(outcome),
                )

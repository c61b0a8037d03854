"""The Runner: the parts of a run, composed, behind the few calls the app makes.

A run goes intake → decision → (approval) → execution → verification → undo/escalation;
each part is its own module in this package and takes what it needs. This module wires
them together, owns the run tasks, and is the root of each run task: the only broad
``except`` of a run. An unexpected error fails the run, is recorded and escalated, and
the service goes on. The audit database is reached through ``AuditThread`` (one thread).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from opentelemetry.trace import Tracer

from remediator.actions.registry import ActionRegistry, Services
from remediator.audit.store import EventKind, RunState
from remediator.audit.thread import AuditThread
from remediator.catalog.loader import Catalog, Entry
from remediator.catalog.playbook import Playbook
from remediator.cluster.kube import Kube
from remediator.cluster.state import ClusterState
from remediator.cluster.targets import Target
from remediator.errors import AuditError
from remediator.identity import Identity
from remediator.metrics import RemediatorMetrics
from remediator.runs import guards, recovery
from remediator.runs.approval import Approvals
from remediator.runs.awaiting import ApprovalNotice
from remediator.runs.breakers import Breakers
from remediator.runs.decision import Decider
from remediator.runs.escalation import Escalator
from remediator.runs.execution import Executor
from remediator.runs.facts import FactSource
from remediator.runs.intake import Intake
from remediator.runs.journal import Journal
from remediator.runs.plan import PlannedStep
from remediator.runs.replicas import SharedRuns, Takeover
from remediator.runs.tracing import Spans, detector_links
from remediator.runs.verification import Verifier
from remediator.webhook import Alert, Notification

log = logging.getLogger(__name__)


class Runner:
    """Turns notifications into runs and carries each run through to its end."""

    def __init__(
        self,
        *,
        audit: AuditThread,
        catalog: Callable[[], Catalog],
        registry: ActionRegistry,
        services: Services,
        metrics: RemediatorMetrics,
        limits: guards.GlobalLimits,
        external_url: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        kube: Kube | None = None,
        shared: ClusterState | None = None,
        identity: str = "vigil-remediator",
        lock_namespace: str | None = None,
        replay_s: float = 900.0,
        tracer: Tracer | None = None,
    ) -> None:
        """``shared`` (with ``kube``) makes this replica one of several: runs are claimed in
        the cluster before they act, and only the leader (``leading``) starts runs.
        ``tracer`` (None: off) traces each run: its guards, actions, verification, undo
        and escalation, in the trace of the webhook that started it."""
        self.audit = audit
        self.shared = shared
        self.identity = identity
        self.catalog = catalog
        self.metrics = metrics
        self.external_url = external_url.rstrip("/")
        self.tasks: set[asyncio.Task[None]] = set()
        self.spans = Spans(tracer)
        self.replicas = SharedRuns(
            shared=shared, audit=audit, identity=identity, metrics=metrics, clock=clock
        )
        self.journal = Journal(
            audit=audit,
            redact=services.redact,
            metrics=metrics,
            clock=clock,
            share=self.replicas.share,
        )
        self.escalator = Escalator(
            services=services,
            journal=self.journal,
            metrics=metrics,
            spans=self.spans,
            clock=clock,
            run_url=self.run_url,
        )
        self.breakers = Breakers(
            audit=audit, journal=self.journal, shared=self.replicas, metrics=metrics, clock=clock
        )
        self.notice = ApprovalNotice(
            services=services,
            journal=self.journal,
            clock=clock,
            console_url=self.console_url,
            run_url=self.run_url,
        )
        self.decider = Decider(
            audit=audit,
            journal=self.journal,
            escalator=self.escalator,
            facts=FactSource(services=services, shared=self.replicas),
            shared=self.replicas,
            registry=registry,
            kube=kube,
            limits=limits,
            metrics=metrics,
            spans=self.spans,
            clock=clock,
            run_url=self.run_url,
            notice=self.notice,
        )
        self.executor = Executor(
            audit=audit,
            journal=self.journal,
            registry=registry,
            services=services,
            kube=kube,
            lock_namespace=lock_namespace,
            verifier=Verifier(
                services=services,
                journal=self.journal,
                metrics=metrics,
                spans=self.spans,
                clock=clock,
                sleep=sleep,
            ),
            escalator=self.escalator,
            breakers=self.breakers,
            metrics=metrics,
            spans=self.spans,
            clock=clock,
            sleep=sleep,
            run_url=self.run_url,
        )
        self.approvals = Approvals(
            audit=audit,
            catalog=catalog,
            registry=registry,
            journal=self.journal,
            decider=self.decider,
            shared=self.replicas,
            limits=limits,
            clock=clock,
            run_url=self.run_url,
            act=self._act_approved,
            spawn=self.spawn,
            notice=self.notice,
        )
        # a lone replica always leads
        self.intake = Intake(
            audit=audit,
            catalog=catalog,
            journal=self.journal,
            shared=self.replicas,
            metrics=metrics,
            clock=clock,
            start=self.execute,
            spawn=self.spawn,
            leading=shared is None,
        )
        self.takeover = Takeover(
            shared=shared,
            audit=audit,
            identity=identity,
            catalog=catalog,
            journal=self.journal,
            escalator=self.escalator,
            handle=self.handle,
            clock=clock,
            replay_s=replay_s,
        )

    @property
    def leading(self) -> bool:
        return self.intake.leading

    @property
    def settled(self) -> asyncio.Event:
        """Set whenever a run reaches a state (tests wait on it)."""
        return self.journal.settled

    @property
    def first_action(self) -> asyncio.Event:
        """Set when a run's first step starts (tests and the bench wait on it)."""
        return self.executor.first_action

    def run_url(self, run_id: str) -> str:
        return f"{self.external_url}/api/v1/runs/{run_id}"

    def set_limits(self, limits: guards.GlobalLimits) -> None:
        """The global guards of a reloaded config: decisions and approvals from now on."""
        self.decider.limits = limits
        self.approvals.limits = limits

    def console_url(self, run_id: str) -> str:
        """The run in the console (people open this; ``run_url`` is the API's JSON)."""
        return f"{self.external_url}/#run/{quote(run_id, safe='')}"

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def handle(
        self, notification_id: int, notification: Notification, received: float
    ) -> None:
        """Create (at most once, ever) the runs a notification calls for and start them."""
        await self.intake.handle(notification_id, notification, received)

    async def execute(self, run_id: str, entry: Entry, alert: Alert, received: float) -> None:
        """One run, from its decision to its end: the task root."""
        pb = entry.playbook
        try:
            with self.spans.span(
                "run",
                links=detector_links(alert),
                run_id=run_id,
                playbook=pb.name,
                fingerprint=str(alert.fingerprint),
                alertname=alert.labels.get("alertname"),
            ):
                go = await self.decider.start(run_id, pb, alert)
                if go is not None:
                    await self.executor.act(
                        run_id,
                        pb,
                        alert,
                        go.plan,
                        dry_run=go.dry_run,
                        received=received,
                        started=True,
                        target=go.target,
                    )
        except AuditError:
            log.exception("run %s: the audit log failed; the run stops here", run_id)
            self.metrics.errors.labels("audit").inc()
        except Exception as exc:  # the task root: record, escalate, go on
            log.exception("run %s of %s failed unexpectedly", run_id, pb.name)
            self.metrics.errors.labels("runner").inc()
            try:
                await self.journal.event(
                    run_id,
                    EventKind.NOTE,
                    "error",
                    "failed",
                    {"error": f"{type(exc).__name__}: {exc}"},
                )
                await self.escalator.escalate(run_id, pb, alert, f"unexpected error: {exc}")
                await self.journal.finish(
                    run_id, pb.name, RunState.ESCALATED, f"unexpected error: {exc}"
                )
            except Exception:
                log.exception("run %s: could not record its failure", run_id)

    async def _act_approved(
        self,
        run_id: str,
        pb: Playbook,
        alert: Alert,
        plan: list[PlannedStep],
        target: Target | None,
    ) -> None:
        await self.executor.act(run_id, pb, alert, plan, dry_run=False, started=True, target=target)

    async def approve(
        self, run_id: str, *, plan_hash_seen: str, who: Identity, claimed: str | None = None
    ) -> dict[str, Any]:
        """Approve a waiting run (``approval.Approvals.approve``); ApprovalError if not,
        ApproverError when ``who`` is not one of its playbook's approvers."""
        return await self.approvals.approve(
            run_id, plan_hash_seen=plan_hash_seen, who=who, claimed=claimed
        )

    async def reject(self, run_id: str, *, who: Identity, reason: str) -> dict[str, Any]:
        """Reject a waiting run (``approval.Approvals.reject``)."""
        return await self.approvals.reject(run_id, who=who, reason=reason)

    async def expired(self, run_ids: list[str]) -> None:
        """Runs whose approval expired: their awaiting-approval alerts resolve."""
        await self.approvals.expired(run_ids)

    async def recover(self) -> int:
        """At start: runs a crash interrupted are marked so and escalated, never repeated."""
        return await recovery.recover(
            audit=self.audit, catalog=self.catalog, journal=self.journal, escalator=self.escalator
        )

    async def reset_breaker(self, playbook: str, *, by: str, claimed: str | None = None) -> bool:
        """Close a playbook's circuit breaker; False when it was not tripped."""
        return await self.breakers.reset(playbook, by=by, claimed=claimed)

    async def on_leadership(self, leading: bool) -> None:
        """Called by the leader elector. A new leader first learns what the others did,
        then handles the notifications it recorded while it was following."""
        if leading:
            await self.takeover.sync_from_cluster()
        self.intake.leading = leading
        if leading:
            await self.takeover.replay()

    async def sync_from_cluster(self) -> int:
        return await self.takeover.sync_from_cluster()

    async def replay(self) -> None:
        await self.takeover.replay()

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

"""A run: plan → guards → (approval) → steps → verification → undo / escalation.

This module owns the order of a remediation and its record: every decision, verdict,
request, response, verification and undo goes to the audit log as it happens, so a run
can be followed (and questioned) while it runs and after. It is the only place with a
broad ``except``: an unexpected error fails the run, is recorded and escalated, and the
service goes on. The audit database is reached through ``AuditCalls`` (one thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pydantic
from opentelemetry import trace
from opentelemetry.trace import Span, Tracer

from remediator import guards, redaction, telemetry
from remediator.actions.basic import EscalateParams, escalation_alert
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
from remediator.audit.store import TERMINAL as TERMINAL_STATES
from remediator.audit.store import AuditLog, EventKind, RunRecord, RunState
from remediator.audit.thread import AuditThread
from remediator.catalog import templating
from remediator.catalog.loader import Catalog, Entry
from remediator.catalog.matchers import Matcher
from remediator.catalog.playbook import Mode, Playbook, Step
from remediator.cluster import targets
from remediator.cluster.kube import Kube
from remediator.cluster.leases import LeaseLock, target_lease_name
from remediator.cluster.state import ClusterState, run_key
from remediator.cluster.targets import Target
from remediator.errors import (
    ActionError,
    ActionPermanentError,
    ActionTemporaryError,
    ApprovalError,
    AuditError,
    TemplateError,
    WebhookError,
)
from remediator.metrics import RemediatorMetrics
from remediator.webhook import Alert, Notification, alert_from_json, parse_notification

log = logging.getLogger(__name__)

MAX_RETRY_DELAY_S = 30.0


@dataclass(frozen=True, slots=True)
class PlannedStep:
    name: str
    action: str
    params: pydantic.BaseModel
    request: dict[str, Any]
    retries: int
    timeout_s: float

    def to_json(self) -> dict[str, Any]:
        return {"step": self.name, "action": self.action,
                "params": self.params.model_dump(mode="json", by_alias=True),
                "request": self.request}


@dataclass(frozen=True, slots=True)
class _Decision:
    verdicts: list[guards.Verdict]
    mode: Mode | None
    state: RunState | None  # where the run stopped; None: it goes on to act
    reason: str


def plan_hash(plan: list[PlannedStep], target: Target | None = None) -> str:
    """The identity of a plan: its steps and the exact object they act on."""
    doc = {"steps": [s.to_json() for s in plan],
           "target": target.identity() if target else None}
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def target_of(alert: Alert) -> str | None:
    """What the run acts on, named from the alert's labels (refined by the Kubernetes
    target resolution when it exists): ``namespace/kind/name`` or ``node/name``."""
    labels = alert.labels
    ns = labels.get("namespace")
    for kind in ("pod", "deployment", "statefulset", "daemonset", "job", "service"):
        if labels.get(kind):
            return f"{ns or '-'}/{kind}/{labels[kind]}"
    if labels.get("node"):
        return f"node/{labels['node']}"
    if labels.get("instance"):
        return f"instance/{labels['instance']}"
    return None


def read_facts(db: AuditLog, *, pb: Playbook, key: str | None, now_ms: int,
               limits: guards.GlobalLimits, shared_flags: dict[str, Any] | None = None,
               silences: tuple[str, ...] = (),
               preconditions: tuple[tuple[str, bool, str], ...] = (),
               targets_total: int | None = None, budget: float | None = None,
               exclude_run: str | None = None) -> guards.Facts:
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
        paused=("paused" in shared_flags) if shared_flags is not None
        else db.get_flag("paused") is not None,
        breaker_tripped=db.get_flag(f"breaker:{pb.name}") is not None
        or f"breaker:{pb.name}" in (shared_flags or {}),
        executed_playbook=db.count_executed(since_ms=now_ms - int(rate_s * 1000),
                                            playbook=pb.name),
        executed_all=db.count_executed(since_ms=now_ms - int(global_s * 1000)),
        active_playbook=db.count_active(playbook=pb.name, now_ms=now_ms, exclude=exclude_run),
        active_all=db.count_active(now_ms=now_ms, exclude=exclude_run),
        last_on_target_ms=db.last_executed_on_target(key, playbook=pb.name) if key else None,
        silences=silences, preconditions=preconditions,
        targets_in_flight=db.count_active(playbook=pb.name, now_ms=now_ms,
                                          exclude=exclude_run),
        targets_total=targets_total, budget_remaining=budget)


def unrenderable_verifications(pb: Playbook, scope: dict[str, dict[str, str]]
                                ) -> list[tuple[str, bool, str]]:
    """Each verification query that cannot be rendered safely for the alert, as a failed
    pre-condition: such a run could never confirm its fix, so it must not act at all."""
    out = []
    for check in pb.spec.verify:
        try:
            templating.render_as(check.query, scope, templating.Context.PROMQL)
        except TemplateError as exc:
            out.append((check.description or check.query, False,
                        f"verification cannot be rendered: {exc}"))
    return out


def unsafe_queries(pb: Playbook, scope: dict[str, dict[str, str]]) -> list[str]:
    """Why each pre-condition or verification query cannot take the alert's values safely
    (a value that would leave its string literal, an empty one, ...): a sign of a hostile
    or broken alert, which the runner escalates on top of refusing the run."""
    out = []
    for query in [p.query for p in pb.spec.guards.preconditions] + \
            [v.query for v in pb.spec.verify]:
        try:
            templating.render_as(query, scope, templating.Context.PROMQL)
        except TemplateError as exc:
            out.append(str(exc))
    return out


def render_precondition(template: str, scope: dict[str, dict[str, str]]) -> str:
    """A pre-condition query for the alert, its values escaped; TemplateError if it
    cannot be rendered safely (the guard then refuses)."""
    return templating.render_as(template, scope, templating.Context.PROMQL)


def build_plan(steps: tuple[Step, ...], alert: Alert, registry: ActionRegistry, *,
               run_id: str, run_url: str, target: Target | None = None) -> list[PlannedStep]:
    """Render each step's params for the alert (and resolved target), each in the context
    its action declares (a query, URL or matcher escapes the values it takes), and
    validate them; TemplateError if any cannot be (names the step and the reason)."""
    scope = templating.scope_of(alert, run_id=run_id, run_url=run_url,
                                target=target.scope() if target else None)
    out = []
    for step in steps:
        spec = registry.get(step.action)
        if spec is None:
            raise TemplateError(f"step {step.name}: unknown action {step.action!r}")
        try:
            rendered = templating.render_params(step.params, scope, spec.templates)
        except TemplateError as exc:
            raise TemplateError(f"step {step.name}: {exc}") from exc
        try:
            params = spec.params.model_validate(rendered)
        except pydantic.ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise TemplateError(f"step {step.name}: params.{where}: {first['msg']} "
                                f"(rendered from the alert)") from exc
        out.append(PlannedStep(step.name, step.action, params, spec.describe(params),
                               step.retries, step.timeout_s))
    return out


class Runner:
    """Turns notifications into runs and carries each run through to its end."""

    def __init__(self, *, audit: AuditThread, catalog: Callable[[], Catalog],
                 registry: ActionRegistry, services: Services, metrics: RemediatorMetrics,
                 limits: guards.GlobalLimits, external_url: str,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 kube: Kube | None = None, shared: ClusterState | None = None,
                 identity: str = "vigil-remediator", lock_namespace: str | None = None,
                 replay_s: float = 900.0, tracer: Tracer | None = None) -> None:
        """``shared`` (with ``kube``) makes this replica one of several: runs are claimed in
        the cluster before they act, and only the leader (``leading``) starts runs.
        ``tracer`` (None: off) traces each run: its guards, actions, verification, undo
        and escalation, in the trace of the webhook that started it."""
        self.audit = audit
        self.tracer = tracer
        self.kube = kube
        self.shared = shared
        self.identity = identity
        self.lock_namespace = lock_namespace
        self.replay_s = replay_s
        self.leading = shared is None  # a lone replica always leads
        self.catalog = catalog
        self.registry = registry
        self.services = services
        self.metrics = metrics
        self.limits = limits
        self.external_url = external_url.rstrip("/")
        self.clock = clock
        self.sleep = sleep
        self.tasks: set[asyncio.Task[None]] = set()
        self.first_action: asyncio.Event = asyncio.Event()  # tests and the bench wait on it
        self.settled: asyncio.Event = asyncio.Event()  # set whenever a run reaches a state

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def run_url(self, run_id: str) -> str:
        return f"{self.external_url}/api/v1/runs/{run_id}"

    def _span(self, name: str, *, links: list[trace.Link] | None = None,
              **attributes: Any) -> contextlib.AbstractContextManager[Span | None]:
        """A child span of the current one, or nothing when traces are off."""
        if self.tracer is None:
            return contextlib.nullcontext()
        return self.tracer.start_as_current_span(name, links=links, attributes={
            f"vigil.{k}": v for k, v in attributes.items() if v is not None})

    @staticmethod
    def _current_trace_id() -> str | None:
        ctx = trace.get_current_span().get_span_context()
        return telemetry.hex_ids(ctx)[0] if ctx.is_valid and ctx.trace_flags.sampled else None

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- intake -----------------------------------------------------------------------
    async def handle(self, notification_id: int, notification: Notification,
                     received: float) -> None:
        """Create (at most once, ever) the runs a notification calls for and start them."""
        if not self.leading:
            return  # recorded; replayed if this replica becomes the leader
        catalog = self.catalog()
        for alert in notification.alerts:
            for entry in catalog.matching(dict(alert.labels), alert.status):
                pb = entry.playbook
                fields: dict[str, Any] = {
                    "playbook": pb.name, "fingerprint": str(alert.fingerprint),
                    "starts_at": alert.starts_at, "alertname": alert.labels.get("alertname", ""),
                    "alert": alert.to_json(), "mode": pb.spec.mode.value,
                    "notification_id": notification_id, "target": target_of(alert),
                    "now_ms": self.now_ms(), "trace_id": self._current_trace_id()}
                run = await self.audit.run(functools.partial(AuditLog.create_run, **fields))
                if run is None:
                    self.metrics.duplicates.labels(pb.name).inc()
                    continue
                if not await self._claim(run.id, pb, alert):
                    continue
                self.spawn(self.execute(run.id, entry, alert, received))

    async def _claim(self, run_id: str, pb: Playbook, alert: Alert) -> bool:
        """Claim the run in the cluster (several replicas); False if another replica has."""
        if self.shared is None:
            return True
        key = run_key(pb.name, str(alert.fingerprint), alert.starts_at)
        record = {"run_id": run_id, "replica": self.identity, "playbook": pb.name,
                  "mode": pb.spec.mode.value,
                  "fingerprint": str(alert.fingerprint), "starts_at": alert.starts_at,
                  "alert": alert.to_json(), "created_ms": self.now_ms(), "state": "planned"}
        try:
            claimed = await self.shared.claim(key, record)
        except ActionError as exc:
            await self._finish(run_id, pb.name, "refused", f"cannot claim the run in the "
                               f"cluster ({exc}); not acting without it")
            return False
        if not claimed:
            self.metrics.duplicates.labels(pb.name).inc()
            await self._finish(run_id, pb.name, "refused",
                               "already handled by another replica")
        return claimed

    async def _share(self, run_id: str, pb_name: str, state: str) -> None:
        """Tell the other replicas how a run ended (best effort: logged on failure)."""
        if self.shared is None:
            return
        run = await self.audit.run(lambda db: db.get_run(run_id))
        if run is None:
            return
        try:
            await self.shared.update(run_key(pb_name, run.fingerprint, run.starts_at),
                                     {"state": state, "executed_ms": run.executed_ms,
                                      "target": run.target})
        except ActionError as exc:
            log.warning("run %s: could not share its state %s: %s", run_id, state, exc)

    # --- one run ----------------------------------------------------------------------
    async def _event(self, run_id: str, kind: str, name: str, verdict: str | None = None,
                     detail: dict[str, Any] | None = None) -> None:
        ek = EventKind(kind)
        # the last stop before the audit log (and GET /api/v1/runs/{id}): no secret passes
        clean = redaction.redact_tree(detail or {}, self.services.redact)
        await self.audit.run(lambda db: db.add_event(run_id, kind=ek, name=name, verdict=verdict,
                              detail=clean, now_ms=self.now_ms()))

    async def _finish(self, run_id: str, playbook: str, state: str, outcome: str) -> None:
        rs = RunState(state)
        outcome = self.services.redact(outcome)  # recorded, logged and answered below
        await self.audit.run(lambda db: db.set_state(run_id, rs, now_ms=self.now_ms(),
                                                       outcome=outcome))
        self.metrics.runs.labels(playbook, state).inc()
        await self._share(run_id, playbook, state)
        self.settled.set()
        log.info("run %s of %s: %s (%s)", run_id, playbook, state, outcome,
                 extra={"run_id": run_id, "playbook": playbook})

    async def execute(self, run_id: str, entry: Entry, alert: Alert, received: float) -> None:
        pb = entry.playbook
        try:
            with self._span("run", links=_detector_links(alert), run_id=run_id,
                            playbook=pb.name, fingerprint=str(alert.fingerprint),
                            alertname=alert.labels.get("alertname")):
                await self._execute(run_id, pb, alert, received)
        except AuditError:
            log.exception("run %s: the audit log failed; the run stops here", run_id)
            self.metrics.errors.labels("audit").inc()
        except Exception as exc:  # the task root: record, escalate, go on
            log.exception("run %s of %s failed unexpectedly", run_id, pb.name)
            self.metrics.errors.labels("runner").inc()
            try:
                await self._event(run_id, "note", "error", "failed",
                                  {"error": f"{type(exc).__name__}: {exc}"})
                await self._escalate(run_id, pb, alert, f"unexpected error: {exc}")
                await self._finish(run_id, pb.name, "escalated", f"unexpected error: {exc}")
            except Exception:
                log.exception("run %s: could not record its failure", run_id)

    def needs_cluster(self, pb: Playbook) -> bool:
        steps = pb.spec.steps + (pb.spec.undo if isinstance(pb.spec.undo, tuple) else ())
        return any((spec := self.registry.get(s.action)) is not None and spec.needs_cluster
                   for s in steps)

    async def resolve_target(self, pb: Playbook, alert: Alert) -> Target | None:
        """The Kubernetes object a cluster playbook acts on (None without a cluster)."""
        if self.kube is None or not self.needs_cluster(pb):
            return None
        return await targets.resolve(self.kube, alert.labels)

    async def _execute(self, run_id: str, pb: Playbook, alert: Alert, received: float) -> None:
        url = self.run_url(run_id)
        problems = targets.label_problems(alert.labels)
        if problems:  # before any guard, query or Kubernetes request: recorded, escalated
            why = "refused before any guard: " + "; ".join(problems)
            self.metrics.refusals.labels(pb.name, "target_labels").inc()
            await self._event(run_id, "decision", "target_labels", "refuse",
                              {"problems": problems})
            await self._escalate(run_id, pb, alert, why)
            await self._finish(run_id, pb.name, "escalated", why)
            return
        early = [v for v in guards.label_verdicts(pb.spec.guards, alert.labels) if not v.allow]
        if early:  # a namespace the playbook refuses is not even looked up in the cluster
            refusal = _Decision(early, None, RunState.REFUSED, f"{early[0].guard}: "
                                f"{early[0].reason}")
            await self._event(run_id, "guard", early[0].guard, "refuse",
                              {"reason": early[0].reason, "shadow": False})
            await self._event(run_id, "decision", "refuse", "refuse",
                              {"reason": refusal.reason})
            await self._after_verdicts(run_id, pb, alert, refusal)
            await self._finish(run_id, pb.name, "refused", refusal.reason)
            return
        try:
            target = await self.resolve_target(pb, alert)
            plan = build_plan(pb.spec.steps, alert, self.registry, run_id=run_id, run_url=url,
                              target=target)
        except ActionError as exc:
            await self._event(run_id, "decision", "target", "failed", {"error": str(exc)})
            await self._escalate(run_id, pb, alert, f"cannot resolve the target: {exc}")
            await self._finish(run_id, pb.name, "escalated", f"cannot resolve the target: {exc}")
            return
        except TemplateError as exc:
            await self._event(run_id, "decision", "plan", "failed", {"error": str(exc)})
            await self._escalate(run_id, pb, alert, f"cannot plan: {exc}")
            await self._finish(run_id, pb.name, "escalated", f"cannot plan: {exc}")
            return
        silences, pre = await self._outside_facts(pb, alert, run_id)
        shared_flags = await self._shared_flags()
        budget = await self._budget_remaining(pb)
        decision = await self.audit.run(functools.partial(
            self._decide, run_id=run_id, pb=pb, alert=alert, plan=plan, silences=silences,
            preconditions=pre, target=target, shared_flags=shared_flags, budget=budget))
        await self._after_verdicts(run_id, pb, alert, decision)
        refused = [v.guard for v in decision.verdicts if not v.allow]
        if refused and refused[0] not in pb.spec.escalate.on_refused and (
                unsafe := unsafe_queries(pb, self._scope(alert, run_id))):
            await self._escalate(run_id, pb, alert, "refused: the alert's labels cannot be "
                                 "written safely into its queries: " + "; ".join(unsafe))
        if decision.state is not None:
            self.metrics.runs.labels(pb.name, decision.state.value).inc()
            self.settled.set()
            log.info("run %s of %s: %s (%s)", run_id, pb.name, decision.state.value,
                     decision.reason)
            return
        if decision.mode is not Mode.DRY_RUN:
            await self._share(run_id, pb.name, "running")
        await self.act(run_id, pb, alert, plan, dry_run=decision.mode is Mode.DRY_RUN,
                       received=received, started=True, target=target)

    def _decide(self, db: AuditLog, *, run_id: str, pb: Playbook, alert: Alert,
                plan: list[PlannedStep], silences: tuple[str, ...],
                preconditions: tuple[tuple[str, bool, str], ...],
                target: Target | None, shared_flags: dict[str, Any] | None = None,
                budget: float | None = None) -> _Decision:
        """On the audit thread, in one transaction: read the counts the guards need, judge,
        and record the plan, every verdict and the decision. Runs are decided one at a
        time here, so two runs can never both pass a limit only one of them fits."""
        now = self.now_ms()
        g = pb.spec.guards
        with db.atomic():
            digest = plan_hash(plan, target)
            steps = [s.to_json() for s in plan]
            identity = target.identity() if target is not None else None
            if target is not None:
                db.set_target(run_id, target.key, now_ms=now)
            db.set_plan(run_id, plan={"steps": steps, "target": identity}, plan_hash=digest,
                        now_ms=now)
            db.add_event(run_id, kind=EventKind.PLAN, name="plan",
                         detail={"steps": steps, "target": identity, "plan_hash": digest},
                         now_ms=now)
            verdicts = self._judge(db, run_id=run_id, pb=pb, alert=alert, target=target,
                                   now_ms=now, silences=silences, preconditions=preconditions,
                                   shared_flags=shared_flags, budget=budget)
            allowed, shadow, reason = guards.decide(verdicts)
            if not allowed:
                db.add_event(run_id, kind=EventKind.DECISION, name="refuse", verdict="refuse",
                             detail={"reason": reason}, now_ms=now)
                db.set_state(run_id, RunState.REFUSED, now_ms=now, outcome=reason)
                return _Decision(verdicts, None, RunState.REFUSED, reason)
            mode = Mode.SHADOW if shadow else pb.spec.mode
            if mode is Mode.AUTO and guards.needs_approval(verdicts):
                mode = Mode.APPROVAL  # e.g. the error budget is low: a person decides
            db.add_event(run_id, kind=EventKind.DECISION, name="act", verdict=mode.value,
                         detail={"reason": reason}, now_ms=now)
            if mode is Mode.SHADOW:
                why = f"decided, not executed (shadow: {reason})" if shadow \
                    else "decided, not executed (shadow)"
                db.set_state(run_id, RunState.SHADOW, now_ms=now, outcome=why)
                return _Decision(verdicts, mode, RunState.SHADOW, why)
            if mode is Mode.APPROVAL:
                expires = now + int(g.approval_ttl_s * 1000)
                db.request_approval(run_id, plan_hash=digest, expires_ms=expires, now_ms=now)
                db.add_event(run_id, kind=EventKind.APPROVAL, name="requested",
                             detail={"plan_hash": digest, "expires_ms": expires}, now_ms=now)
                return _Decision(verdicts, mode, RunState.WAITING_APPROVAL, "waiting")
            db.mark_executing(run_id, now_ms=now)
            return _Decision(verdicts, mode, None, reason)

    def _judge(self, db: AuditLog, *, run_id: str, pb: Playbook, alert: Alert,
               target: Target | None, now_ms: int, silences: tuple[str, ...],
               preconditions: tuple[tuple[str, bool, str], ...],
               shared_flags: dict[str, Any] | None, budget: float | None,
               stage: str | None = None) -> list[guards.Verdict]:
        """Every guard's verdict on the run now, each recorded; on the audit thread, inside
        the caller's transaction. ``stage`` (e.g. ``approval``) marks a judgement made
        again later; the run itself is then not counted against its own limits."""
        key = target.key if target is not None else target_of(alert)
        facts = read_facts(db, pb=pb, key=key, now_ms=now_ms, limits=self.limits,
                           shared_flags=shared_flags, silences=silences,
                           preconditions=preconditions,
                           targets_total=target.replicas if target is not None else None,
                           budget=budget, exclude_run=run_id if stage else None)
        verdicts = guards.evaluate(pb.spec.guards, labels=alert.labels, facts=facts,
                                   limits=self.limits, target=key)
        for v in verdicts:
            detail: dict[str, Any] = {"reason": v.reason, "shadow": v.shadow}
            if stage:
                detail["stage"] = stage
            db.add_event(run_id, kind=EventKind.GUARD, name=v.guard,
                         verdict="allow" if v.allow else "refuse", detail=detail,
                         now_ms=now_ms)
        return verdicts

    async def _after_verdicts(self, run_id: str, pb: Playbook, alert: Alert,
                              decision: _Decision) -> None:
        """Count and trace the verdicts; escalate a refusal the playbook escalates."""
        for v in decision.verdicts:
            if not v.allow:
                self.metrics.refusals.labels(pb.name, v.guard).inc()
            with self._span(f"guard {v.guard}", guard=v.guard, allow=v.allow,
                            reason=v.reason, shadow=v.shadow):
                pass  # a verdict is instant; its span records it in the run's trace
        refused = [v.guard for v in decision.verdicts if not v.allow]
        if refused and refused[0] in pb.spec.escalate.on_refused:
            await self._escalate(run_id, pb, alert, f"refused by {decision.reason}; the "
                                 "playbook escalates instead of acting again")

    async def _budget_remaining(self, pb: Playbook) -> float | None:
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

    async def _shared_flags(self) -> dict[str, Any] | None:
        """The kill switch and breakers as every replica sees them (several replicas);
        when the cluster cannot be read, act as if paused: refuse rather than guess."""
        if self.shared is None:
            return None
        try:
            return dict((await self.shared.load())["flags"])
        except ActionError as exc:
            log.warning("shared flags unreadable (%s); treating the remediator as paused", exc)
            return {"paused": f"unknown: {exc}"}

    def _scope(self, alert: Alert, run_id: str) -> dict[str, dict[str, str]]:
        """What the run's queries may name: the alert and the run (its id and URL)."""
        return templating.scope_of(alert, run_id=run_id, run_url=self.run_url(run_id))

    async def _outside_facts(self, pb: Playbook, alert: Alert, run_id: str
                             ) -> tuple[tuple[str, ...], tuple[tuple[str, bool, str], ...]]:
        """The facts that need the network: matching silences and pre-conditions."""
        g = pb.spec.guards
        silences = await self._silences(alert) if g.respect_silences else ()
        scope = self._scope(alert, run_id)
        pre = [await self._precondition(p.query, scope, p.description or p.query)
               for p in g.preconditions]
        pre += unrenderable_verifications(pb, scope)
        return silences, tuple(pre)

    async def _silences(self, alert: Alert) -> tuple[str, ...]:
        """Active Alertmanager silences whose matchers all hold for the alert's labels."""
        try:
            status, doc = await self.services.alertmanager("GET", "/api/v2/silences")
        except ActionError as exc:
            return (f"(unknown: {exc})",)  # cannot tell: refuse rather than act blind
        if status != 200 or not isinstance(doc, list):
            return (f"(unknown: Alertmanager answered {status})",)
        out = []
        labels = alert.labels
        for s in doc:
            if not isinstance(s, dict) or s.get("status", {}).get("state") != "active":
                continue
            if all(_silence_matcher_holds(m, labels) for m in s.get("matchers", [])):
                out.append(str(s.get("id")))
        return tuple(out)

    async def _precondition(self, template: str, scope: dict[str, dict[str, str]],
                            what: str) -> tuple[str, bool, str]:
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

    async def act(self, run_id: str, pb: Playbook, alert: Alert, plan: list[PlannedStep], *,
                  dry_run: bool, received: float | None = None, started: bool = False,
                  target: Target | None = None) -> None:
        """Run the steps; then verify, undo or escalate as the outcome asks. ``started``:
        the run was already marked as acting (with its decision)."""
        lock = None
        if self.kube is not None and target is not None and self.lock_namespace and not dry_run:
            lock = LeaseLock(self.kube, namespace=self.lock_namespace,
                             name=target_lease_name(target.key), clock=self.clock)
            budget = sum(st.timeout_s for st in plan) + sum(v.within_s for v in pb.spec.verify)
            holder: str | None = None
            try:
                got = await lock.acquire(run_id, duration_s=budget + 60.0,
                                         annotations={"vigil.dev/target": target.key})
            except ActionError as exc:
                got, holder = False, f"unknown ({exc})"
            else:
                holder = lock.holder(await lock.read()) if not got else None
            if not got:
                await self._finish(run_id, pb.name, "refused",
                                   f"{target.key} is locked by run {holder}")
                return
        try:
            await self._act(run_id, pb, alert, plan, dry_run=dry_run, received=received,
                            started=started, target=target)
        finally:
            if lock is not None:
                try:
                    await lock.release(run_id)
                except ActionError as exc:
                    log.warning("run %s: lease on %s not released (%s); it expires by "
                                "itself", run_id, lock.name, exc)

    async def _act(self, run_id: str, pb: Playbook, alert: Alert, plan: list[PlannedStep], *,
                   dry_run: bool, received: float | None, started: bool,
                   target: Target | None) -> None:
        if not started:
            await self.audit.run(lambda db: db.mark_executing(run_id, now_ms=self.now_ms()))
        undo: list[tuple[str, dict[str, Any]]] = []
        for i, step in enumerate(plan):
            if i == 0 and received is not None:
                self.metrics.first_action_seconds.observe(time.perf_counter() - received)
                self.first_action.set()
            outcome = await self._step(run_id, alert, step, dry_run=dry_run)
            if isinstance(outcome, Executed) and outcome.inverse is not None:
                undo.append(outcome.inverse)
            if isinstance(outcome, Failed):
                if not dry_run:  # a step failing for good counts toward the breaker
                    await self._event(run_id, "note", "step_failed", "failed",
                                      {"step": step.name, "error": outcome.error})
                    await self._trip_breaker(run_id, pb)
                await self._undo(run_id, pb, alert, undo, dry_run=dry_run, target=target)
                await self._escalate(run_id, pb, alert, f"step {step.name} failed: "
                                     f"{outcome.error}", dry_run=dry_run)
                await self._finish(run_id, pb.name, "failed", f"step {step.name}: "
                                   f"{outcome.error}")
                return
        if dry_run:
            await self._finish(run_id, pb.name, "dry_run", "every step accepted in dry-run")
            return
        if not pb.spec.verify:
            await self._finish(run_id, pb.name, "succeeded", "steps done; nothing to verify")
            return
        await self.audit.run(lambda db: db.set_state(run_id, RunState.VERIFYING,
                                                           now_ms=self.now_ms()))
        ok, why = await self._verify(run_id, pb, alert)
        if ok:
            await self._finish(run_id, pb.name, "succeeded", why)
            return
        await self._trip_breaker(run_id, pb)
        await self._undo(run_id, pb, alert, undo, dry_run=False, target=target)
        await self._escalate(run_id, pb, alert, f"verification failed: {why}")
        await self._finish(run_id, pb.name, "undone" if undo or isinstance(pb.spec.undo, tuple)
                           else "escalated", f"verification failed: {why}")

    async def _step(self, run_id: str, alert: Alert, step: PlannedStep, *,
                    dry_run: bool) -> Outcome:
        spec = self.registry.get(step.action)
        assert spec is not None  # the plan was built from the registry
        ctx = ActionContext(run_id=run_id, run_url=self.run_url(run_id), dry_run=dry_run,
                            services=self.services, alert=alert, clock=self.clock,
                            sleep=self.sleep, kube=self.kube,
                            log=logging.LoggerAdapter(log, {"run_id": run_id, "step": step.name}))
        with self._span(f"action {step.action}", step=step.name, action=step.action,
                        dry_run=dry_run) as span:
            outcome = await self._attempts(run_id, step, spec.func, ctx)
            if span is not None:
                span.set_attribute("vigil.outcome", type(outcome).__name__.lower())
            return outcome

    async def _attempts(self, run_id: str, step: PlannedStep, func: ActionFunc,
                        ctx: ActionContext) -> Outcome:
        """Call the action, retrying temporary failures with backoff up to its retries."""
        dry_run = ctx.dry_run
        attempt = 0
        while True:
            await self._event(run_id, "action_request", step.name, None,
                              {"action": step.action, "request": step.request,
                               "dry_run": dry_run, "attempt": attempt})
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
            self.metrics.action_seconds.labels(step.action, kind).observe(
                time.perf_counter() - start)
            await self._event(run_id, "action_response", step.name, kind,
                              _outcome_detail(outcome))
            if isinstance(outcome, Failed) and outcome.temporary and attempt < step.retries:
                attempt += 1
                await self.sleep(min(MAX_RETRY_DELAY_S, outcome.delay_s * 2 ** (attempt - 1)))
                continue
            return outcome

    async def _verify(self, run_id: str, pb: Playbook, alert: Alert) -> tuple[bool, str]:
        with self._span("verify", checks=len(pb.spec.verify)) as span:
            ok, detail = await self._verify_checks(run_id, pb, alert)
            if span is not None:
                span.set_attribute("vigil.ok", ok)
                span.set_attribute("vigil.detail", detail)
            return ok, detail

    async def _verify_checks(self, run_id: str, pb: Playbook,
                             alert: Alert) -> tuple[bool, str]:
        scope = self._scope(alert, run_id)
        for check in pb.spec.verify:
            try:
                query = templating.render_as(check.query, scope, templating.Context.PROMQL)
            except TemplateError as exc:
                what = check.description or check.query
                await self._event(run_id, "verify", what, "failed",
                                  {"query": check.query, "detail": f"refused: {exc}"})
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
                    await self._event(run_id, "verify", check.description or query, "ok",
                                      {"query": query, "detail": detail})
                    self.metrics.verifications.labels(pb.name, "ok").inc()
                    break
                if self.clock() + check.interval_s > deadline:
                    await self._event(run_id, "verify", check.description or query, "failed",
                                      {"query": query, "detail": detail,
                                       "within_s": check.within_s})
                    self.metrics.verifications.labels(pb.name, "failed").inc()
                    return False, f"{check.description or query} did not hold within " \
                                  f"{check.within_s:.0f} s ({detail})"
                await self.sleep(check.interval_s)
        return True, "verified"

    async def _trip_breaker(self, run_id: str, pb: Playbook) -> None:
        cb = pb.spec.guards.circuit_breaker
        failures = await self.audit.run(lambda db: db.count_failed_verifications(pb.name,
                                         since_ms=self.now_ms() - int(cb.window_s * 1000)))
        if failures >= cb.failures:
            await self.audit.run(lambda db: db.set_flag(f"breaker:{pb.name}", "tripped",
                                  now_ms=self.now_ms()))
            if self.shared is not None:  # every replica's runs of it go to shadow
                try:
                    await self.shared.set_flag(f"breaker:{pb.name}", "tripped")
                except ActionError as exc:
                    log.warning("breaker of %s not shared: %s", pb.name, exc)
            await self._event(run_id, "note", "circuit_breaker", "tripped",
                              {"failures": failures, "window_s": cb.window_s})
            self.metrics.breakers.labels(pb.name).inc()

    async def _undo(self, run_id: str, pb: Playbook, alert: Alert,
                    inverses: list[tuple[str, dict[str, Any]]], *, dry_run: bool,
                    target: Target | None = None) -> None:
        undo = pb.spec.undo
        if undo == "none":
            return
        if isinstance(undo, tuple):
            try:
                steps = build_plan(undo, alert, self.registry, run_id=run_id,
                                   run_url=self.run_url(run_id), target=target)
            except TemplateError as exc:
                await self._event(run_id, "undo", "plan", "failed", {"error": str(exc)})
                return
        else:
            steps = []
            for i, (name, params) in enumerate(reversed(inverses)):
                spec = self.registry.get(name)
                if spec is None:
                    continue
                model = spec.params.model_validate(params)
                steps.append(PlannedStep(f"undo-{i}-{name}", name, model,
                                         spec.describe(model), 2, 30.0))
        with self._span("undo", steps=len(steps)):
            for step in steps:
                outcome = await self._step(run_id, alert, step, dry_run=dry_run)
                await self._event(run_id, "undo", step.name, type(outcome).__name__.lower(),
                                  _outcome_detail(outcome))

    async def _escalate(self, run_id: str, pb: Playbook, alert: Alert, reason: str, *,
                        dry_run: bool = False) -> None:
        """Post VigilRemediationFailed to Alertmanager, or, for a dry run or a playbook in
        ``dryRun``/``shadow`` mode, only record what would have been posted (verdict
        ``dry_run``, detail ``would_send``): a trial playbook pages nobody."""
        esc = pb.spec.escalate
        if not esc.enabled:
            return
        reason = self.services.redact(reason)  # it goes to Alertmanager and the trace
        params = EscalateParams(alertname="VigilRemediationFailed", severity=esc.severity,
                                labels={**esc.labels, "playbook": pb.name},
                                summary=f"Playbook {pb.name} could not fix "
                                        f"{alert.labels.get('alertname', 'an alert')}: {reason}")
        body = [escalation_alert(params, alert=alert, run_id=run_id,
                                 run_url=self.run_url(run_id),
                                 now=datetime.fromtimestamp(self.clock(), UTC))]
        trace_id = self._current_trace_id()
        if trace_id is not None:  # on-call opens the run's trace from the escalation
            body[0].setdefault("annotations", {})["trace_id"] = trace_id
        if dry_run or pb.spec.mode in (Mode.DRY_RUN, Mode.SHADOW):
            await self._event(run_id, "escalate", "VigilRemediationFailed", "dry_run",
                              {"reason": reason, "would_send": {
                                  "method": "POST", "path": "/api/v2/alerts", "body": body}})
            return  # not counted in vigil_escalations_total: nothing was sent
        with self._span("escalate", reason=reason):
            try:
                status, doc = await self.services.alertmanager("POST", "/api/v2/alerts", body)
                verdict = "ok" if status == 200 else "failed"
                detail: dict[str, Any] = {"status": status, "reason": reason}
            except ActionError as exc:
                verdict, detail = "failed", {"error": str(exc), "reason": reason}
        await self._event(run_id, "escalate", "VigilRemediationFailed", verdict, detail)
        self.metrics.escalations.labels(pb.name, verdict).inc()

    # --- approvals and recovery -------------------------------------------------------
    async def approve(self, run_id: str, *, plan_hash_seen: str, by: str,
                      claimed: str | None = None) -> dict[str, Any]:
        """Approve a waiting run if its plan is still the one the approver saw and every
        guard still allows it, judged again now as for a new run (kill switch, freeze,
        silences, cooldown, rate, concurrency, blast radius, breaker, pre-conditions); then
        act. ApprovalError says why not; a guard's refusal also ends the run (``refused``,
        with the guard's reason). ``by``: who approves, from their credential; ``claimed``:
        a name the request itself gave, recorded as a note only."""
        run = await self.audit.run(lambda db: db.get_run(run_id))
        if run is None:
            raise ApprovalError(f"run {run_id} does not exist")
        entry = self.catalog().by_name(run.playbook)
        if entry is None:
            raise ApprovalError(f"run {run_id}: playbook {run.playbook} is no longer loaded")
        pb = entry.playbook
        alert = alert_from_json(json.loads(run.alert) if isinstance(run.alert, str)
                                else run.alert)
        problems = targets.label_problems(alert.labels)
        if problems and run.state is RunState.WAITING_APPROVAL:  # a run from before intake
            why = "approval refused: " + "; ".join(problems)
            await self._finish(run_id, pb.name, "refused", why)
            raise ApprovalError(f"run {run_id}: {why}")
        try:
            target = await self.resolve_target(pb, alert)
        except ActionError as exc:
            raise ApprovalError(f"run {run_id}: cannot resolve the target now ({exc}); "
                                "try again") from exc
        plan = build_plan(pb.spec.steps, alert, self.registry, run_id=run_id,
                          run_url=self.run_url(run_id), target=target)
        if plan_hash(plan, target) != plan_hash_seen:
            raise ApprovalError(f"run {run_id}: the plan changed since approval was requested "
                             "(or the hash is wrong); look at the run again")
        silences, pre = await self._outside_facts(pb, alert, run_id)
        shared_flags = await self._shared_flags()
        budget = await self._budget_remaining(pb)
        decision = await self.audit.run(functools.partial(
            self._decide_approval, run_id=run_id, pb=pb, alert=alert, target=target,
            plan_hash_seen=plan_hash_seen, by=by, claimed=claimed, silences=silences,
            preconditions=pre, shared_flags=shared_flags, budget=budget))
        await self._after_verdicts(run_id, pb, alert, decision)
        if decision.state is RunState.REFUSED:
            self.metrics.runs.labels(pb.name, decision.state.value).inc()
            await self._share(run_id, pb.name, decision.state.value)
            self.settled.set()
            log.info("run %s of %s: approval by %s refused (%s)", run_id, pb.name, by,
                     decision.reason)
            raise ApprovalError(f"run {run_id}: approval refused by {decision.reason}; "
                                "the run is refused and will not act")
        log.info("run %s of %s: approved by %s", run_id, pb.name, by)
        await self._share(run_id, pb.name, "running")
        self.spawn(self._approved(run_id, pb, alert, plan, target))
        return {"id": run_id, "state": "approved", "by": by}

    def _decide_approval(self, db: AuditLog, *, run_id: str, pb: Playbook, alert: Alert,
                         target: Target | None, plan_hash_seen: str, by: str,
                         claimed: str | None, silences: tuple[str, ...],
                         preconditions: tuple[tuple[str, bool, str], ...],
                         shared_flags: dict[str, Any] | None,
                         budget: float | None) -> _Decision:
        """On the audit thread, in one transaction, as ``_decide``: judge the waiting run
        again and record it; approve and start it, or refuse it. Approvals are decided one
        at a time here, so two can never both pass a limit only one of them fits."""
        now = self.now_ms()
        error: ApprovalError | None = None
        with db.atomic():
            run = db.get_run(run_id)
            if run is None or not _approvable(run, plan_hash_seen, now_ms=now):
                try:  # approve() says why not (and expires an overdue run)
                    db.approve(run_id, plan_hash=plan_hash_seen, by=by, now_ms=now)
                except ApprovalError as exc:
                    error = exc  # caught inside the transaction, so an expiry is kept
                else:  # leaving by an exception rolls this approval back
                    raise AuditError(f"run {run_id}: approvable after all; not approved "
                                     "without judging its guards, try again")
            else:
                who: dict[str, Any] = {"by": by}
                if claimed is not None:
                    who["claimed"] = claimed  # what the request said; not verified
                verdicts = self._judge(db, run_id=run_id, pb=pb, alert=alert, target=target,
                                       now_ms=now, silences=silences,
                                       preconditions=preconditions, shared_flags=shared_flags,
                                       budget=budget, stage="approval")
                allowed, shadow, reason = guards.decide(verdicts)
                if allowed and shadow:  # an approval never acts past a tripped breaker
                    allowed = False
                    reason = next(f"{v.guard}: {v.reason}" for v in verdicts if v.shadow)
                if not allowed:
                    db.add_event(run_id, kind=EventKind.APPROVAL, name="refused",
                                 verdict="refuse", detail={**who, "reason": reason},
                                 now_ms=now)
                    db.add_event(run_id, kind=EventKind.DECISION, name="refuse",
                                 verdict="refuse", detail={"reason": reason,
                                                           "stage": "approval"}, now_ms=now)
                    db.set_state(run_id, RunState.REFUSED, now_ms=now,
                                 outcome=f"approval refused: {reason}")
                    return _Decision(verdicts, None, RunState.REFUSED, reason)
                db.approve(run_id, plan_hash=plan_hash_seen, by=by, now_ms=now)
                db.add_event(run_id, kind=EventKind.APPROVAL, name="approved", verdict="ok",
                             detail=who, now_ms=now)
                db.add_event(run_id, kind=EventKind.DECISION, name="act",
                             verdict=Mode.APPROVAL.value,
                             detail={"reason": reason, "stage": "approval"}, now_ms=now)
                # acting from here: the rate and cooldown of the next decision count it
                db.mark_executing(run_id, now_ms=now)
                return _Decision(verdicts, Mode.APPROVAL, None, reason)
        assert error is not None
        raise error

    async def _approved(self, run_id: str, pb: Playbook, alert: Alert,
                        plan: list[PlannedStep], target: Target | None) -> None:
        try:
            await self.act(run_id, pb, alert, plan, dry_run=False, started=True,
                           target=target)
        except Exception as exc:  # task root
            log.exception("approved run %s failed", run_id)
            await self._finish(run_id, pb.name, "failed", f"unexpected error: {exc}")

    async def recover(self) -> int:
        """At start: runs a crash interrupted are marked so and escalated, never repeated."""
        n = 0
        for run in await self.audit.run(lambda db: db.non_terminal_runs()):
            if run.state == "waiting_approval":
                continue
            entry = self.catalog().by_name(run.playbook)
            await self._event(run.id, "note", "interrupted", "interrupted",
                              {"state": run.state})
            if entry is not None:
                alert = alert_from_json(json.loads(run.alert) if isinstance(run.alert, str)
                                        else run.alert)
                await self._escalate(run.id, entry.playbook, alert,
                                     f"interrupted by a restart while {run.state}; "
                                     "not repeated",  # a dry run pages nobody, even now
                                     dry_run=run.mode in (Mode.DRY_RUN, Mode.SHADOW))
            await self._finish(run.id, run.playbook, "interrupted",
                               f"interrupted while {run.state}; not repeated")
            n += 1
        return n

    async def reset_breaker(self, playbook: str, *, by: str,
                            claimed: str | None = None) -> bool:
        """Close a playbook's circuit breaker (here and in the shared state); recorded with
        ``by`` (from the caller's credential) and ``claimed`` (a name the request gave,
        unverified). False when it was not tripped."""
        name = f"breaker:{playbook}"
        was = await self.audit.run(lambda db: db.get_flag(name))
        shared = (await self._shared_flags()) or {}
        if was is None and name not in shared:
            return False
        await self.audit.run(lambda db: db.set_flag(name, None, now_ms=self.now_ms()))
        if self.shared is not None:
            await self.shared.set_flag(name, None)
        await self.audit.run(lambda db: db.add_event(
            None, kind=EventKind.NOTE, name="circuit_breaker", verdict="reset",
            detail={"playbook": playbook, "by": by,
                    **({"claimed": claimed} if claimed is not None else {})},
            now_ms=self.now_ms()))
        log.warning("circuit breaker of %s reset by %s", playbook, by)
        return True

    # --- several replicas ---------------------------------------------------------------
    async def on_leadership(self, leading: bool) -> None:
        """Called by the leader elector. A new leader first learns what the others did,
        then handles the notifications it recorded while it was following."""
        if leading:
            await self.sync_from_cluster()
        self.leading = leading
        if leading:
            await self.replay()

    async def sync_from_cluster(self) -> int:
        """Import the runs and flags other replicas shared; escalate the ones a crashed
        leader left unfinished. Returns how many runs were imported."""
        if self.shared is None:
            return 0
        doc = await self.shared.load()
        for name, value in doc["flags"].items():
            await self.audit.run(functools.partial(AuditLog.set_flag, name=name,
                                                   value=str(value), now_ms=self.now_ms()))
        imported = 0
        for key, rec in sorted(doc["runs"].items(), key=lambda kv: kv[1].get("created_ms", 0)):
            if rec.get("replica") == self.identity:
                continue
            fields: dict[str, Any] = {
                "playbook": rec["playbook"], "fingerprint": rec["fingerprint"],
                "starts_at": rec["starts_at"], "alertname": rec.get("alert", {}).get(
                    "labels", {}).get("alertname", ""), "alert": rec.get("alert", {}),
                "mode": rec.get("mode", "auto"), "notification_id": None,
                "target": rec.get("target"), "now_ms": int(rec.get("created_ms", 0))}
            run = await self.audit.run(functools.partial(AuditLog.create_run, **fields))
            if run is None:
                continue
            imported += 1
            await self._import(run.id, key, rec)
        return imported

    async def _import(self, run_id: str, key: str, rec: dict[str, Any]) -> None:
        state = str(rec.get("state", "planned"))
        executed = rec.get("executed_ms")
        origin = f"run {rec.get('run_id')} of replica {rec.get('replica')}"
        if executed is not None or state in ("running", "verifying"):
            when = int(executed if executed is not None else rec.get("created_ms", 0))
            await self.audit.run(lambda db: db.mark_executing(run_id, now_ms=when))
        if RunState(state) in TERMINAL_STATES:
            await self.audit.run(lambda db: db.set_state(
                run_id, RunState(state), now_ms=self.now_ms(), outcome=f"done by {origin}"))
            return
        # the leader that owned it stopped mid-run: never repeat, escalate
        await self._event(run_id, "note", "interrupted", "interrupted",
                          {"origin": origin, "state": state})
        entry = self.catalog().by_name(str(rec["playbook"]))
        if entry is not None and rec.get("alert"):
            await self._escalate(run_id, entry.playbook, alert_from_json(rec["alert"]),
                                 f"{origin} was interrupted while {state}; not repeated")
        await self.audit.run(lambda db: db.set_state(
            run_id, RunState.INTERRUPTED, now_ms=self.now_ms(),
            outcome=f"{origin} was interrupted while {state}; not repeated"))
        if self.shared is not None:
            await self.shared.update(key, {"state": "interrupted"})

    async def replay(self) -> None:
        """Handle the notifications recorded in the last ``replay_s`` (idempotent)."""
        since = self.now_ms() - int(self.replay_s * 1000)
        for note in await self.audit.run(lambda db: db.notifications_since(since)):
            if not note.is_replayable:  # over audit.max_stored_body_bytes, stored truncated
                log.warning("notification %d not replayed: its %s-byte body was stored "
                            "truncated", note.id, note.size_bytes)
                continue
            try:
                parsed = parse_notification(note.body.encode())
            except WebhookError:
                continue
            await self.handle(note.id, parsed, time.perf_counter())

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _outcome_detail(outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, Executed | DryRun):
        return dict(outcome.detail)
    if isinstance(outcome, Skipped):
        return {"reason": outcome.reason}
    return {"error": outcome.error, "temporary": outcome.temporary}


def _approvable(run: RunRecord, plan_hash_seen: str, *, now_ms: int) -> bool:
    """Whether ``AuditLog.approve`` would approve the run now (it stays the authority)."""
    expires = run.approval_expires_ms
    return run.state is RunState.WAITING_APPROVAL and run.plan_hash == plan_hash_seen \
        and (expires is None or now_ms < expires)


def _silence_matcher_holds(m: dict[str, Any], labels: Any) -> bool:
    try:
        return Matcher.from_silence(m).matches(labels)
    except re.error:  # a regex Alertmanager accepts but Python does not: assume it holds
        return True


def _detector_links(alert: Alert) -> list[trace.Link]:
    """A link to the trace that raised the alert (Vigil's detector writes it into the
    ``traceparent`` annotation), so the run's trace leads back to the detection."""
    ctx = telemetry.context_from_traceparent(str(alert.annotations.get("traceparent", "")))
    return [] if ctx is None else [trace.Link(ctx)]

"""``vigil-remediator simulate``: what would happen for an alert, with no side effect.

This module owns the simulation report: which playbooks match, each guard's verdict and
why, and the exact requests each step would make. It reads the audit database only if
one is given (for cooldowns, rate limits and the kill switch) and never writes anything.

``observe`` looks at the world first, read-only, where the caller can reach it: the
pre-conditions and the error budget through Prometheus, matching silences through
Alertmanager (GET only), and the target through the Kubernetes API (GET only, as a run
resolves it: pod → ReplicaSet → Deployment). What it could not look at is named in each
report's ``not_evaluated``, with what would have evaluated it; nothing is assumed to
hold silently.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from remediator.actions.registry import ActionRegistry, Services
from remediator.audit.store import AuditLog
from remediator.catalog import templating
from remediator.catalog.loader import Catalog
from remediator.catalog.playbook import Playbook
from remediator.cluster import targets
from remediator.cluster.kube import Kube, build_api_client
from remediator.cluster.targets import Target
from remediator.config import RemediatorConfig
from remediator.errors import ActionError, ConfigError, TemplateError, WebhookError
from remediator.runs import guards
from remediator.runs.facts import FactSource, OutsideFacts, read_facts
from remediator.runs.plan import (
    build_plan,
    plan_hash,
    render_precondition,
    unrenderable_verifications,
)
from remediator.services import LiveServices
from remediator.webhook import Alert, alert_from_json, parse_notification
from servicekit import tls


def parse_alerts(body: bytes, *, max_alerts: int = 1000) -> tuple[Alert, ...]:
    """The alerts of an alert, a webhook body or a recorded webhook request (JSON with the
    body under ``body``); WebhookError saying what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise WebhookError(f"not JSON: {exc}") from exc
    if isinstance(data, dict) and "body" in data:  # a recorded webhook request
        data = data["body"]
    if isinstance(data, dict) and "alerts" in data:
        return parse_notification(json.dumps(data).encode(), max_alerts=max_alerts).alerts
    return (alert_from_json(data),)


@dataclass(frozen=True, slots=True)
class Seen:
    """What the world said about one playbook for one alert, read-only."""

    facts: OutsideFacts | None = None  # None: neither Prometheus nor Alertmanager asked
    prometheus: bool = False  # pre-conditions and the error budget were evaluated
    alertmanager: bool = False  # silences were read
    kubernetes: bool = False  # the target was resolved through the API
    target: Target | None = None
    target_error: str | None = None  # the API could not say (a run would escalate)


def needs_cluster(pb: Playbook, registry: ActionRegistry) -> bool:
    steps = pb.spec.steps + (pb.spec.undo if isinstance(pb.spec.undo, tuple) else ())
    return any((spec := registry.get(s.action)) is not None and spec.needs_cluster for s in steps)


async def observe(
    alert: Alert,
    catalog: Catalog,
    registry: ActionRegistry,
    *,
    services: Services | None,
    prometheus: bool,
    alertmanager: bool,
    kube: Kube | None,
) -> dict[str, Seen]:
    """Per matching playbook, what Prometheus, Alertmanager and the Kubernetes API say,
    through read-only calls (``services`` answers the queries; a step is never called)."""
    out: dict[str, Seen] = {}
    scope = templating.scope_of(alert, run_id="<simulated>", run_url="<simulated>")
    for entry in catalog.matching(dict(alert.labels), alert.status):
        pb = entry.playbook
        facts = None
        if services is not None and (prometheus or alertmanager):
            source = FactSource(services=services, shared=None)
            g = pb.spec.guards
            pre = (
                [
                    await source.precondition(p.query, scope, p.description or p.query)
                    for p in g.preconditions
                ]
                if prometheus
                else []
            )
            muted = await source.silences(alert) if alertmanager and g.respect_silences else ()
            facts = OutsideFacts(
                silences=muted,
                shared_flags=None,
                preconditions=tuple(pre) + tuple(unrenderable_verifications(pb, scope)),
                budget=await source.budget_remaining(pb) if prometheus else None,
            )
        target, error = None, None
        looked = (
            kube is not None
            and needs_cluster(pb, registry)
            and not targets.label_problems(alert.labels)
        )
        if looked and kube is not None:
            try:
                target = await targets.resolve(kube, alert.labels)
            except ActionError as exc:
                error = f"cannot resolve the target: {exc}"
            else:
                if target is None:
                    error = "the alert's labels name no object that exists in the cluster"
        out[pb.name] = Seen(
            facts=facts,
            prometheus=prometheus,
            alertmanager=alertmanager,
            kubernetes=looked,
            target=target,
            target_error=error,
        )
    return out


async def observe_all(
    alerts: tuple[Alert, ...],
    catalog: Catalog,
    registry: ActionRegistry,
    cfg: RemediatorConfig,
    *,
    prometheus_url: str | None,
    alertmanager_url: str | None,
    kubeconfig: Path | None,
    kube_context: str | None = None,
) -> list[dict[str, Seen]]:
    """``observe`` for each alert with clients built from the command line's URLs and
    kubeconfig (the config's ``outgoing_tls`` and ``request_timeout_s``); nothing is
    built for what is not given. ConfigError for a kubeconfig that cannot be used."""
    kube = None
    if kubeconfig is not None:
        kube = Kube(
            await build_api_client(kubeconfig=kubeconfig, context=kube_context),
            timeout_s=cfg.request_timeout_s,
        )
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                ssl=tls.build_client_context(cfg.outgoing_tls, error=ConfigError)
            )
        ) as session:
            services = LiveServices(
                session,
                alertmanager_url=alertmanager_url,
                prometheus_url=prometheus_url,
                secrets_dir=None,
                allowed_urls=(),
                timeout_s=cfg.request_timeout_s,
                outgoing_tls=cfg.outgoing_tls,
            )
            return [
                await observe(
                    a,
                    catalog,
                    registry,
                    services=services,
                    prometheus=prometheus_url is not None,
                    alertmanager=alertmanager_url is not None,
                    kube=kube,
                )
                for a in alerts
            ]
    finally:
        if kube is not None:
            await kube.api.close()


def _not_evaluated(pb: Playbook, seen: Seen, *, cluster: bool) -> list[str]:
    """What this simulation did not look at, each with what would have looked at it."""
    g = pb.spec.guards
    out = []
    if not seen.prometheus:
        out += [
            f"precondition {p.query!r}: not evaluated (give --prometheus URL)"
            for p in g.preconditions
        ]
        if g.error_budget is not None:
            out.append(
                f"error_budget {g.error_budget.slo}: not read (give --prometheus "
                "URL); a run that cannot read it waits for an approval"
            )
    if g.respect_silences and not seen.alertmanager:
        out.append("silence: Alertmanager's silences not read (give --alertmanager URL)")
    if cluster and not seen.kubernetes:
        out.append(
            "target: named from the alert's labels only, not looked up in the "
            "cluster (give --kubeconfig FILE); blast radius by share of replicas "
            "not judged"
        )
    return out


def simulate(
    alert: Alert,
    catalog: Catalog,
    registry: ActionRegistry,
    cfg: RemediatorConfig,
    *,
    now_ms: int,
    audit_path: Path | None = None,
    audit_log: AuditLog | None = None,
    seen: Mapping[str, Seen] | None = None,
) -> dict[str, Any]:
    """The report for one alert (JSON-ready). Cooldowns, limits and the kill switch come
    from ``audit_log`` (the caller's, left open) or the database at ``audit_path``; what
    ``observe`` saw, per playbook, from ``seen`` (None: nothing was looked at)."""
    audit = (
        audit_log
        if audit_log is not None
        else AuditLog.open(audit_path)
        if audit_path is not None and audit_path.exists()
        else None
    )
    limits = guards.GlobalLimits(
        rate=cfg.guards.rate, max_concurrent=cfg.guards.max_concurrent, freeze=cfg.guards.freeze
    )
    out: list[dict[str, Any]] = []
    try:
        for entry in catalog.matching(dict(alert.labels), alert.status):
            pb = entry.playbook
            world = (seen or {}).get(pb.name, Seen())
            resolved = world.target
            target = resolved.key if resolved is not None else targets.target_of(alert.labels)
            report: dict[str, Any] = {
                "playbook": pb.name,
                "file": str(entry.path),
                "mode": pb.spec.mode.value,
                "target": target,
                "steps": [f"{s.name}: {s.action}" for s in pb.spec.steps],
            }
            if resolved is not None:
                report["resolved_target"] = resolved.identity()
            if world.target_error is not None:
                report["target_error"] = world.target_error
            try:
                plan = build_plan(
                    pb.spec.steps,
                    alert,
                    registry,
                    run_id="<simulated>",
                    run_url="<simulated>",
                    target=resolved,
                )
                report["plan"] = [s.to_json() for s in plan]
                report["plan_hash"] = plan_hash(plan, resolved)
            except TemplateError as exc:
                report["plan_error"] = str(exc)
            # the queries are rendered as a run renders them: one that cannot be rendered
            # safely (a label that would leave its string literal) refuses the guard
            scope = templating.scope_of(alert, run_id="<simulated>", run_url="<simulated>")
            rendered: list[str] = []
            refused: list[tuple[str, bool, str]] = []
            for p in pb.spec.guards.preconditions:
                try:
                    rendered.append(render_precondition(p.query, scope))
                except TemplateError as exc:
                    refused.append((p.description or p.query, False, f"refused: {exc}"))
            refused += unrenderable_verifications(pb, scope)
            outside = world.facts
            pre = (
                outside.preconditions
                if outside is not None and world.prometheus
                else tuple(refused)
            )
            muted = outside.silences if outside is not None else ()
            budget = outside.budget if outside is not None else None
            replicas = resolved.replicas if resolved is not None else None
            facts = (
                read_facts(
                    audit,
                    pb=pb,
                    key=target,
                    now_ms=now_ms,
                    limits=limits,
                    preconditions=pre,
                    silences=muted,
                    budget=budget,
                    targets_total=replicas,
                )
                if audit is not None
                else guards.Facts(
                    now_ms=now_ms,
                    preconditions=pre,
                    silences=muted,
                    budget_remaining=budget,
                    targets_total=replicas,
                )
            )
            verdicts = guards.evaluate(
                pb.spec.guards, labels=alert.labels, facts=facts, limits=limits, target=target
            )
            # as a run does at intake: a target label that is not a Kubernetes name refuses
            # the run before any guard (it is escalated, never acted on)
            problems = targets.label_problems(alert.labels)
            if problems:
                verdicts.insert(
                    0,
                    guards.Verdict(
                        "target_labels",
                        False,
                        "refused before any guard: " + "; ".join(problems),
                        False,
                    ),
                )
            elif world.target_error is not None:  # a run would escalate, not act
                verdicts.insert(0, guards.Verdict("target", False, world.target_error, False))
            report["guards"] = [
                {"guard": v.guard, "allow": v.allow, "reason": v.reason} for v in verdicts
            ]
            if pb.spec.guards.preconditions:
                report["rendered_preconditions"] = rendered  # as they are (or would be) sent
            if world.prometheus and outside is not None:
                report["preconditions"] = [
                    {"what": what, "holds": holds, "detail": detail}
                    for what, holds, detail in outside.preconditions
                ]
            report["not_evaluated"] = _not_evaluated(pb, world, cluster=needs_cluster(pb, registry))
            allowed, shadow, reason = guards.decide(verdicts)
            report["decision"] = {
                "act": allowed and "plan" in report,
                "shadow": shadow,
                "reason": reason if "plan" in report or problems else report["plan_error"],
            }
            out.append(report)
    finally:
        if audit is not None and audit_log is None:
            audit.close()
    return {"alert": alert.to_json(), "matches": out}

"""``vigil-remediator simulate``: what would happen for an alert, with no side effect.

This module owns the simulation report: which playbooks match, each guard's verdict and
why, and the exact requests each step would make. It reads the audit database only if
one is given (for cooldowns, rate limits and the kill switch) and never writes anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from remediator.actions.registry import ActionRegistry
from remediator.audit.store import AuditLog
from remediator.catalog import templating
from remediator.catalog.loader import Catalog
from remediator.cluster import targets
from remediator.config import RemediatorConfig
from remediator.errors import TemplateError, WebhookError
from remediator.runs import guards
from remediator.runs.facts import read_facts
from remediator.runs.plan import (
    build_plan,
    plan_hash,
    render_precondition,
    unrenderable_verifications,
)
from remediator.webhook import Alert, alert_from_json, parse_notification


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


def simulate(alert: Alert, catalog: Catalog, registry: ActionRegistry, cfg: RemediatorConfig,
             *, now_ms: int, audit_path: Path | None = None,
             audit_log: AuditLog | None = None) -> dict[str, Any]:
    """The report for one alert (JSON-ready). Cooldowns, limits and the kill switch come
    from ``audit_log`` (the caller's, left open) or the database at ``audit_path``."""
    audit = audit_log if audit_log is not None else AuditLog.open(audit_path) \
        if audit_path is not None and audit_path.exists() else None
    limits = guards.GlobalLimits(rate=cfg.guards.rate, max_concurrent=cfg.guards.max_concurrent,
                                 freeze=cfg.guards.freeze)
    out: list[dict[str, Any]] = []
    try:
        for entry in catalog.matching(dict(alert.labels), alert.status):
            pb = entry.playbook
            target = targets.target_of(alert.labels)
            report: dict[str, Any] = {"playbook": pb.name, "file": str(entry.path),
                                      "mode": pb.spec.mode.value, "target": target,
                                      "steps": [f"{s.name}: {s.action}" for s in pb.spec.steps]}
            try:
                plan = build_plan(pb.spec.steps, alert, registry, run_id="<simulated>",
                                  run_url="<simulated>")
                report["plan"] = [s.to_json() for s in plan]
                report["plan_hash"] = plan_hash(plan)
            except TemplateError as exc:
                report["plan_error"] = str(exc)
            # the queries are rendered as a run renders them: one that cannot be rendered
            # safely (a label that would leave its string literal) refuses the guard
            scope = templating.scope_of(alert, run_id="<simulated>", run_url="<simulated>")
            refused: list[tuple[str, bool, str]] = []
            rendered: list[str] = []
            for p in pb.spec.guards.preconditions:
                try:
                    rendered.append(render_precondition(p.query, scope))
                except TemplateError as exc:
                    refused.append((p.description or p.query, False, f"refused: {exc}"))
            refused += unrenderable_verifications(pb, scope)
            facts = read_facts(audit, pb=pb, key=target, now_ms=now_ms, limits=limits,
                               preconditions=tuple(refused)) \
                if audit is not None else guards.Facts(now_ms=now_ms,
                                                       preconditions=tuple(refused))
            verdicts = guards.evaluate(pb.spec.guards, labels=alert.labels, facts=facts,
                                       limits=limits, target=target)
            # as a run does at intake: a target label that is not a Kubernetes name refuses
            # the run before any guard (it is escalated, never acted on)
            problems = targets.label_problems(alert.labels)
            if problems:
                verdicts.insert(0, guards.Verdict("target_labels", False,
                                                  "refused before any guard: "
                                                  + "; ".join(problems), False))
            report["guards"] = [{"guard": v.guard, "allow": v.allow, "reason": v.reason}
                                for v in verdicts]
            if pb.spec.guards.preconditions:  # Prometheus is not asked in a simulation
                report["not_evaluated"] = [p.query for p in pb.spec.guards.preconditions]
                report["rendered_preconditions"] = rendered  # as they would be sent
            allowed, shadow, reason = guards.decide(verdicts)
            report["decision"] = {"act": allowed and "plan" in report, "shadow": shadow,
                                  "reason": reason if "plan" in report or problems
                                  else report["plan_error"]}
            out.append(report)
    finally:
        if audit is not None and audit_log is None:
            audit.close()
    return {"alert": alert.to_json(), "matches": out}

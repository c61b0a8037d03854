"""A run's plan: each step's params rendered for the alert, validated, and its identity.

Pure: rendering and validation only, nothing is sent or recorded here. A value that cannot
be written safely into its context (a query, a URL, a matcher) is a TemplateError that
names the step; the caller refuses or escalates.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pydantic

from remediator.actions.registry import ActionRegistry
from remediator.catalog import templating
from remediator.catalog.playbook import Playbook, Step
from remediator.cluster.targets import Target
from remediator.errors import TemplateError
from remediator.webhook import Alert
from servicekit import yamlsrc

Scope = dict[str, dict[str, str]]


@dataclass(frozen=True, slots=True)
class PlannedStep:
    name: str
    action: str
    params: pydantic.BaseModel
    request: dict[str, Any]
    retries: int
    timeout_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "action": self.action,
            "params": self.params.model_dump(mode="json", by_alias=True),
            "request": self.request,
        }


def plan_hash(plan: list[PlannedStep], target: Target | None = None) -> str:
    """The identity of a plan: its steps and the exact object they act on."""
    doc = {"steps": [s.to_json() for s in plan], "target": target.identity() if target else None}
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def query_scope(alert: Alert, *, run_id: str, run_url: str) -> Scope:
    """What the run's queries may name: the alert and the run (its id and URL)."""
    return templating.scope_of(alert, run_id=run_id, run_url=run_url)


def unrenderable_verifications(pb: Playbook, scope: Scope) -> list[tuple[str, bool, str]]:
    """Each verification query that cannot be rendered safely for the alert, as a failed
    pre-condition: such a run could never confirm its fix, so it must not act at all."""
    out = []
    for check in pb.spec.verify:
        try:
            templating.render_as(check.query, scope, templating.Context.PROMQL)
        except TemplateError as exc:
            out.append(
                (check.description or check.query, False, f"verification cannot be rendered: {exc}")
            )
    return out


def unsafe_queries(pb: Playbook, scope: Scope) -> list[str]:
    """Why each pre-condition or verification query cannot take the alert's values safely
    (a value that would leave its string literal, an empty one, ...): a sign of a hostile
    or broken alert, which the runner escalates on top of refusing the run."""
    out = []
    for query in [p.query for p in pb.spec.guards.preconditions] + [
        v.query for v in pb.spec.verify
    ]:
        try:
            templating.render_as(query, scope, templating.Context.PROMQL)
        except TemplateError as exc:
            out.append(str(exc))
    return out


def render_precondition(template: str, scope: Scope) -> str:
    """A pre-condition query for the alert, its values escaped; TemplateError if it
    cannot be rendered safely (the guard then refuses)."""
    return templating.render_as(template, scope, templating.Context.PROMQL)


def build_plan(
    steps: tuple[Step, ...],
    alert: Alert,
    registry: ActionRegistry,
    *,
    run_id: str,
    run_url: str,
    target: Target | None = None,
) -> list[PlannedStep]:
    """Render each step's params for the alert (and resolved target), each in the context
    its action declares (a query, URL or matcher escapes the values it takes), and
    validate them; TemplateError if any cannot be (names the step and the reason)."""
    scope = templating.scope_of(
        alert, run_id=run_id, run_url=run_url, target=target.scope() if target else None
    )
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
            raise TemplateError(
                f"step {step.name}: params.{where}: {yamlsrc.message(first)} "
                f"(rendered from the alert)"
            ) from exc
        out.append(
            PlannedStep(
                step.name, step.action, params, spec.describe(params), step.retries, step.timeout_s
            )
        )
    return out


def undo_plan(
    pb: Playbook,
    alert: Alert,
    registry: ActionRegistry,
    *,
    inverses: list[tuple[str, dict[str, Any]]],
    run_id: str,
    run_url: str,
    target: Target | None,
) -> list[PlannedStep] | None:
    """The steps that undo a run: the playbook's own ``undo`` steps rendered as
    ``build_plan`` does (TemplateError if they cannot be), or with ``undo: auto`` the
    inverses the executed steps returned, last first. None when the playbook says
    ``undo: none``."""
    undo = pb.spec.undo
    if undo == "none":
        return None
    if isinstance(undo, tuple):
        return build_plan(undo, alert, registry, run_id=run_id, run_url=run_url, target=target)
    steps = []
    for i, (name, params) in enumerate(reversed(inverses)):
        spec = registry.get(name)
        if spec is None:
            continue
        model = spec.params.model_validate(params)
        steps.append(PlannedStep(f"undo-{i}-{name}", name, model, spec.describe(model), 2, 30.0))
    return steps

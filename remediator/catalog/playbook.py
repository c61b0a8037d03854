"""The playbook schema (``apiVersion: vigil/v1``, ``kind: Playbook``): pydantic models only.

This module owns what a playbook file may say and checks everything that can be checked
without the action registry (that is ``catalog``'s job: action names and their params).
It must not load files or run anything.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from remediator.catalog.matchers import Matcher, parse_matcher
from servicekit.durations import Seconds

NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
STEP_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
PERSON_NAME = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$"  # approvers: users and groups
GUARD_NAMES = (
    "kill_switch",
    "namespace",
    "freeze",
    "silence",
    "cooldown",
    "rate",
    "rate:global",
    "concurrency",
    "blast_radius",
    "precondition",
    "circuit_breaker",
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Mode(StrEnum):
    DRY_RUN = "dryRun"  # actions are sent with the API's dry-run; nothing changes
    SHADOW = "shadow"  # decide and record; never call anything
    APPROVAL = "approval"  # wait for an approval bound to the exact plan; it expires
    AUTO = "auto"


class Metadata(_Model):
    name: str = Field(pattern=NAME, description="unique; the file is named <name>.yaml")
    description: str = ""
    owner: str | None = Field(None, description="team to ask about this playbook")


class Match(_Model):
    """Which alerts start this playbook: every matcher must hold on the alert's labels."""

    labels: dict[str, str] = Field(default_factory=dict, description="label: exact value")
    matchers: tuple[str, ...] = Field(
        (), description='Alertmanager-style: severity=~"warning|critical"'
    )
    status: Literal["firing", "resolved", "any"] = "firing"

    @field_validator("labels")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(LABEL_NAME, name):
                raise ValueError(f"{name!r} is not a label name")
        return value

    @field_validator("matchers")
    @classmethod
    def _parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            parse_matcher(text)  # raises ValueError with the reason
        return value

    @model_validator(mode="after")
    def _something(self) -> Match:
        if not self.labels and not self.matchers:
            raise ValueError(
                "match needs at least one label or matcher; a playbook that "
                "matches every alert is refused"
            )
        return self

    def compiled(self) -> tuple[Matcher, ...]:
        exact = tuple(Matcher(name, "=", value) for name, value in self.labels.items())
        return exact + tuple(parse_matcher(text) for text in self.matchers)


class AllowDeny(_Model):
    allow: tuple[str, ...] | None = Field(None, description="only these (None: any)")
    deny: tuple[str, ...] = ()


class RateLimit(_Model):
    max_runs: int = Field(ge=1, le=10_000)
    window_s: Seconds = Field(gt=0)


class BlastRadius(_Model):
    max_targets: int | None = Field(
        None, ge=1, description="targets acted on at once by this playbook"
    )
    max_percent: float | None = Field(
        None, gt=0, le=100, description="of a workload's replicas or the cluster's nodes"
    )


class Precondition(_Model):
    """A PromQL query that must return at least one sample (e.g. `ready / desired >= 0.8`)."""

    query: str = Field(
        min_length=1, description="template over the alert, e.g. {{ labels.namespace }}"
    )
    description: str = ""


class FreezeWindow(_Model):
    """No action between ``start`` and ``end`` (UTC, ``Sat 18:00`` or ``18:00`` daily)."""

    start: str = Field(pattern=r"^((Mon|Tue|Wed|Thu|Fri|Sat|Sun) )?([01][0-9]|2[0-3]):[0-5][0-9]$")
    end: str = Field(pattern=r"^((Mon|Tue|Wed|Thu|Fri|Sat|Sun) )?([01][0-9]|2[0-3]):[0-5][0-9]$")
    reason: str = ""

    @model_validator(mode="after")
    def _same_form(self) -> FreezeWindow:
        if (" " in self.start) != (" " in self.end):
            raise ValueError("start and end must both name a weekday or neither")
        return self


class CircuitBreaker(_Model):
    failures: int = Field(
        3,
        ge=1,
        description="failed verifications or failed steps (within window_s) that trip the playbook to shadow",
    )
    window_s: Seconds = Field(86400.0, gt=0)


class ErrorBudget(_Model):
    """Act automatically only while an SLO's remaining error budget is above a floor;
    below it (or when it cannot be read) the run waits for an approval instead."""

    slo: str = Field(
        pattern=r"^[A-Za-z0-9_.:-]+$", description="the SLO's sloth_id, e.g. demo-shop-availability"
    )
    min_remaining: float = Field(
        0.25, ge=0.0, le=1.0, description="share of the 30-day budget that must remain"
    )


class Guards(_Model):
    namespaces: AllowDeny = AllowDeny()
    labels: dict[str, AllowDeny] = Field(default_factory=dict, description="per alert label")
    cooldown_s: Seconds = Field(3600.0, ge=0, description="between runs on one target")
    rate: RateLimit | None = RateLimit(max_runs=10, window_s=3600.0)
    max_concurrent: int = Field(1, ge=1, le=100)
    blast_radius: BlastRadius = BlastRadius()
    preconditions: tuple[Precondition, ...] = ()
    respect_silences: bool = Field(
        True, description="refuse while an Alertmanager silence matches the alert"
    )
    freeze: tuple[FreezeWindow, ...] = ()
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    approval_ttl_s: Seconds = Field(1800.0, gt=0, description="an approval expires after this")
    error_budget: ErrorBudget | None = None


class Step(_Model):
    name: str = Field(pattern=STEP_NAME)
    action: str = Field(
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$",
        description="e.g. alertmanager.silence or notify",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="validated by the action's model; strings may be templates",
    )
    retries: int = Field(2, ge=0, le=10, description="retries of temporary faults")
    timeout_s: Seconds = Field(30.0, gt=0, le=3600)


class Verify(_Model):
    """PromQL that must return at least one sample within ``within_s`` of the last step."""

    query: str = Field(min_length=1)
    within_s: Seconds = Field(300.0, gt=0, le=86400)
    interval_s: Seconds = Field(15.0, gt=0)
    description: str = ""


class Escalate(_Model):
    enabled: bool = True
    severity: str = "critical"
    labels: dict[str, str] = Field(default_factory=dict)
    on_refused: tuple[str, ...] = Field(
        (),
        description="guards whose refusal escalates too, e.g. [cooldown]: act once, then escalate",
    )

    @field_validator("on_refused")
    @classmethod
    def _guard_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in GUARD_NAMES and not name.startswith("label:"):
                raise ValueError(
                    f"{name!r} is not a guard; known: {', '.join(GUARD_NAMES)}, label:<name>"
                )
        return value


class Approvers(_Model):
    """Who may approve or reject this playbook's runs: a listed user, or a member of a
    listed group (groups: ``auth.groups`` in the remediator config, or the users file)."""

    users: tuple[str, ...] = Field(
        (), description="user names of auth.users_file or the trusted proxy header"
    )
    groups: tuple[str, ...] = Field((), description="group names")

    @field_validator("users", "groups")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.fullmatch(PERSON_NAME, name):
                raise ValueError(
                    f"{name!r} is not a user or group name (letters, digits, "
                    ". _ @ + -, at most 128)"
                )
        return value

    @model_validator(mode="after")
    def _someone(self) -> Approvers:
        if not self.users and not self.groups:
            raise ValueError(
                "approvers needs at least one user or group; leave it out to "
                "let anyone with an approver credential decide"
            )
        return self


class Spec(_Model):
    match: Match
    mode: Mode = Mode.DRY_RUN
    guards: Guards = Guards()
    # not Field(min_length=1): pydantic counts a tuple's length after dropping the items
    # that failed, adding a false "at least 1 item" error to every invalid step
    steps: tuple[Step, ...] = Field(json_schema_extra={"minItems": 1})
    verify: tuple[Verify, ...] = ()
    undo: Literal["auto", "none"] | tuple[Step, ...] = Field(
        "auto", description="auto: the inverse of each executed step, newest first"
    )
    escalate: Escalate = Escalate()
    approvers: Approvers | None = Field(
        None,
        description="who may approve or reject its runs; none: anyone with an approver credential (docs/approvals.md)",
    )

    @field_validator("steps")
    @classmethod
    def _some_steps(cls, value: tuple[Step, ...]) -> tuple[Step, ...]:
        if not value:
            raise ValueError("at least one step is needed")
        return value

    @model_validator(mode="after")
    def _unique_steps(self) -> Spec:
        names = [s.name for s in self.steps]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"step names must be unique: {', '.join(dup)}")
        return self


class Playbook(_Model):
    apiVersion: Literal["vigil/v1"]  # the schema's key
    kind: Literal["Playbook"]
    metadata: Metadata
    spec: Spec

    @property
    def name(self) -> str:
        return self.metadata.name

"""Guard verdicts: may this playbook act on this alert now? Pure functions of facts.

This module owns the rules of every guard. The facts (counts from the audit database,
active silences, pre-condition query results, the clock) are gathered by the runner and
passed in, so each verdict is reproducible and testable with an injected time. Each guard
gives a ``Verdict`` with its reason, allow or not; all of them are recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from remediator.catalog.playbook import FreezeWindow, Guards, RateLimit

# every guard a verdict can name (metrics export a 0 for each before one refuses)
GUARD_NAMES = (
    "kill_switch",
    "namespace",
    "freeze",
    "silence",
    "cooldown",
    "rate",
    "rate:global",
    "concurrency",
    "circuit_breaker",
    "blast_radius",
    "precondition",
    "error_budget",
)

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class Verdict:
    guard: str
    allow: bool
    reason: str
    shadow: bool = False  # allowed, but only in shadow mode (circuit breaker)
    approval: bool = False  # allowed, but only with an approval (error budget low)


@dataclass(frozen=True, slots=True)
class Facts:
    """What the guards judge by, gathered just before the decision."""

    now_ms: int
    paused: bool = False
    breaker_tripped: bool = False
    executed_playbook: int = 0  # runs of this playbook that acted within its rate window
    executed_all: int = 0  # runs of any playbook that acted within the global window
    active_playbook: int = 0
    active_all: int = 0
    last_on_target_ms: int | None = None
    silences: tuple[str, ...] = ()  # active silences matching the alert
    preconditions: tuple[tuple[str, bool, str], ...] = ()  # (what, holds, detail)
    budget_remaining: float | None = None  # the error_budget SLO's remaining share
    targets_in_flight: int = 0  # this playbook's targets being acted on now
    targets_total: int | None = None  # replicas of the workload or nodes of the cluster


@dataclass(frozen=True, slots=True)
class GlobalLimits:
    """Limits over every playbook (from the remediator config)."""

    rate: RateLimit | None = None
    max_concurrent: int = 5
    freeze: tuple[FreezeWindow, ...] = ()


def _minute_of_week(ms: int) -> int:
    t = datetime.fromtimestamp(ms / 1000.0, UTC)
    return t.weekday() * 1440 + t.hour * 60 + t.minute


def _point(text: str) -> tuple[int | None, int]:
    day, _, clock = text.rpartition(" ")
    hours, minutes = clock.split(":")
    return (DAYS.index(day) if day else None), int(hours) * 60 + int(minutes)


def in_window(window: FreezeWindow, now_ms: int) -> bool:
    """Whether ``now_ms`` falls in the window (UTC; daily or weekly; may wrap around)."""
    now = _minute_of_week(now_ms)
    start_day, start = _point(window.start)
    end_day, end = _point(window.end)
    if start_day is None or end_day is None:
        now %= 1440  # a daily window
    else:
        start, end = start_day * 1440 + start, end_day * 1440 + end
    if start <= end:
        return start <= now < end
    return now >= start or now < end  # wraps past midnight / the week's end


def _allow_deny(value: str, allow: Sequence[str] | None, deny: Sequence[str]) -> str | None:
    if value in deny:
        return "is on the deny list"
    if allow is not None and value not in allow:
        return f"is not on the allow list ({', '.join(allow) or 'empty'})"
    return None


def label_verdicts(guards: Guards, labels: Mapping[str, str]) -> list[Verdict]:
    """The verdicts that need nothing but the alert's labels (the namespace and label
    allow/deny lists): judged again by ``evaluate``, and first of all before the target is
    resolved, so a refused namespace costs no request to the cluster."""
    out: list[Verdict] = []
    ns = labels.get("namespace", "")
    why = _allow_deny(ns, guards.namespaces.allow, guards.namespaces.deny)
    out.append(
        Verdict(
            "namespace",
            why is None,
            f"namespace {ns!r} {why}" if why else f"namespace {ns!r} allowed",
        )
    )
    for name, rule in sorted(guards.labels.items()):
        value = labels.get(name, "")
        why = _allow_deny(value, rule.allow, rule.deny)
        out.append(
            Verdict(
                f"label:{name}",
                why is None,
                f"label {name}={value!r} {why}" if why else f"label {name}={value!r} allowed",
            )
        )
    return out


def evaluate(
    guards: Guards,
    *,
    labels: Mapping[str, str],
    facts: Facts,
    limits: GlobalLimits,
    target: str | None,
) -> list[Verdict]:
    """Every guard's verdict, in a fixed order; the run may act only if all allow."""
    out: list[Verdict] = []

    def add(name: str, refusal: str | None, ok: str, *, shadow: bool = False) -> None:
        out.append(Verdict(name, refusal is None, refusal or ok, shadow))

    add(
        "kill_switch",
        "the remediator is paused (POST /api/v1/resume to resume)" if facts.paused else None,
        "not paused",
    )
    out.extend(label_verdicts(guards, labels))
    frozen = [w for w in (*guards.freeze, *limits.freeze) if in_window(w, facts.now_ms)]
    add(
        "freeze",
        f"freeze window {frozen[0].start}–{frozen[0].end} (UTC) holds"
        + (f": {frozen[0].reason}" if frozen[0].reason else "")
        if frozen
        else None,
        "no freeze window holds",
    )
    add(
        "silence",
        f"silenced by {', '.join(facts.silences)}"
        if guards.respect_silences and facts.silences
        else None,
        "no matching silence" if guards.respect_silences else "silences not consulted",
    )
    if target is not None and facts.last_on_target_ms is not None:
        ago_s = (facts.now_ms - facts.last_on_target_ms) / 1000.0
        add(
            "cooldown",
            f"{target} was acted on {ago_s:.0f} s ago (cooldown {guards.cooldown_s:.0f} s)"
            if ago_s < guards.cooldown_s
            else None,
            f"last action on {target} {ago_s:.0f} s ago",
        )
    else:
        add("cooldown", None, "no earlier action on this target")
    if guards.rate is not None:
        add(
            "rate",
            f"{facts.executed_playbook} runs in the last {guards.rate.window_s:.0f} s "
            f"(limit {guards.rate.max_runs})"
            if facts.executed_playbook >= guards.rate.max_runs
            else None,
            f"{facts.executed_playbook} of {guards.rate.max_runs} runs in the window",
        )
    if limits.rate is not None:
        add(
            "rate:global",
            f"{facts.executed_all} runs of all playbooks in the last "
            f"{limits.rate.window_s:.0f} s (limit {limits.rate.max_runs})"
            if facts.executed_all >= limits.rate.max_runs
            else None,
            f"{facts.executed_all} of {limits.rate.max_runs} runs overall",
        )
    add(
        "concurrency",
        f"{facts.active_playbook} runs of this playbook in progress (max {guards.max_concurrent})"
        if facts.active_playbook >= guards.max_concurrent
        else f"{facts.active_all} runs in progress overall (max {limits.max_concurrent})"
        if facts.active_all >= limits.max_concurrent
        else None,
        "below the concurrency limits",
    )
    out.append(_blast_radius(guards, facts))
    for what, holds, detail in facts.preconditions:
        add("precondition", None if holds else f"{what}: {detail}", f"{what}: {detail}")
    add(
        "circuit_breaker",
        None,
        "tripped: the playbook runs in shadow mode until reset"
        if facts.breaker_tripped
        else "closed",
        shadow=facts.breaker_tripped,
    )
    if guards.error_budget is not None:
        out.append(_budget(guards, facts))
    return out


def _budget(guards: Guards, facts: Facts) -> Verdict:
    assert guards.error_budget is not None
    slo, floor = guards.error_budget.slo, guards.error_budget.min_remaining
    left = facts.budget_remaining
    if left is None:
        return Verdict(
            "error_budget",
            True,
            f"the error budget of SLO {slo} cannot be read: approval required",
            approval=True,
        )
    if left < floor:
        return Verdict(
            "error_budget",
            True,
            f"{left:.0%} of SLO {slo}'s error budget remains "
            f"(floor {floor:.0%}): approval required",
            approval=True,
        )
    return Verdict(
        "error_budget", True, f"{left:.0%} of SLO {slo}'s error budget remains (floor {floor:.0%})"
    )


def needs_approval(verdicts: Sequence[Verdict]) -> bool:
    """Whether a guard asks for an approval before an automatic run acts."""
    return any(v.approval for v in verdicts)


def _blast_radius(guards: Guards, facts: Facts) -> Verdict:
    radius = guards.blast_radius
    after = facts.targets_in_flight + 1
    if radius.max_targets is not None and after > radius.max_targets:
        return Verdict(
            "blast_radius",
            False,
            f"{facts.targets_in_flight} targets already being acted on (max {radius.max_targets})",
        )
    if radius.max_percent is not None and facts.targets_total:
        share = 100.0 * after / facts.targets_total
        if share > radius.max_percent:
            return Verdict(
                "blast_radius",
                False,
                f"{after} of {facts.targets_total} "
                f"({share:.0f}%) would be affected (max {radius.max_percent:.0f}%)",
            )
    return Verdict("blast_radius", True, f"{after} target(s) affected")


def decide(verdicts: Sequence[Verdict]) -> tuple[bool, bool, str]:
    """(may act, shadow only, reason): the first refusal wins."""
    refused = [v for v in verdicts if not v.allow]
    if refused:
        return False, False, f"{refused[0].guard}: {refused[0].reason}"
    shadow = any(v.shadow for v in verdicts)
    return True, shadow, "circuit breaker tripped: shadow only" if shadow else "all guards allow"

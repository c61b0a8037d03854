"""Guard verdicts from hand-built facts: each guard refuses exactly when it should, and
says why in words an operator can act on. Time is an argument (``Facts.now_ms``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remediator.catalog.playbook import AllowDeny, BlastRadius, FreezeWindow, Guards, RateLimit
from remediator.runs.guards import (
    GUARD_NAMES,
    Facts,
    GlobalLimits,
    Verdict,
    decide,
    evaluate,
    in_window,
)

WED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday, noon UTC
NOW = int(WED.timestamp() * 1000)
DAYS = {"Mon": 23, "Tue": 24, "Wed": 25, "Thu": 26, "Fri": 27, "Sat": 28, "Sun": 29}


def at(day: str, hhmm: str, second: int = 0) -> int:
    """Milliseconds of ``day hh:mm:ss`` UTC in the week of 23-29 November 2026."""
    hours, minutes = hhmm.split(":")
    t = datetime(2026, 11, DAYS[day], int(hours), int(minutes), second, tzinfo=UTC)
    return int(t.timestamp() * 1000)


def verdicts(
    guards: Guards | None = None,
    *,
    labels: dict[str, str] | None = None,
    limits: GlobalLimits | None = None,
    target: str | None = "prod/pod/web-1",
    **facts: object,
) -> list[Verdict]:
    return evaluate(
        guards or Guards(),
        labels=labels or {"namespace": "prod"},
        facts=Facts(**{"now_ms": NOW, **facts}),  # type: ignore[arg-type]
        limits=limits or GlobalLimits(),
        target=target,
    )


def one(name: str, vs: list[Verdict]) -> Verdict:
    [v] = [v for v in vs if v.guard == name]
    return v


def refused(vs: list[Verdict]) -> list[tuple[str, str]]:
    return [(v.guard, v.reason) for v in vs if not v.allow]


# --- everything allowed -------------------------------------------------------------------
def test_defaults_allow_and_every_guard_gives_a_verdict_in_a_fixed_order() -> None:
    vs = verdicts(limits=GlobalLimits(rate=RateLimit(max_runs=30, window_s=3600)))
    assert [(v.guard, v.allow, v.reason) for v in vs] == [
        ("kill_switch", True, "not paused"),
        ("namespace", True, "namespace 'prod' allowed"),
        ("freeze", True, "no freeze window holds"),
        ("silence", True, "no matching silence"),
        ("cooldown", True, "no earlier action on this target"),
        ("rate", True, "0 of 10 runs in the window"),
        ("rate:global", True, "0 of 30 runs overall"),
        ("concurrency", True, "below the concurrency limits"),
        ("blast_radius", True, "1 target(s) affected"),
        ("circuit_breaker", True, "closed"),
    ]
    assert not any(v.shadow for v in vs)
    assert decide(vs) == (True, False, "all guards allow")
    # the metrics export a 0 per guard; a guard missing there would start as "no data"
    assert {v.guard for v in vs} | {"precondition", "error_budget"} == set(GUARD_NAMES)


def test_no_rate_limit_means_no_rate_verdicts() -> None:
    vs = verdicts(Guards(rate=None), executed_playbook=10_000, executed_all=10_000)
    assert [v.guard for v in vs if v.guard.startswith("rate")] == []


# --- kill switch --------------------------------------------------------------------------
def test_the_kill_switch_refuses_and_says_how_to_resume() -> None:
    assert refused(verdicts(paused=True)) == [
        ("kill_switch", "the remediator is paused (POST /api/v1/resume to resume)")
    ]


# --- namespace and label allow / deny lists -----------------------------------------------
@pytest.mark.parametrize(
    "rule,namespace,reason",
    [
        (
            AllowDeny(deny=("kube-system",)),
            "kube-system",
            "namespace 'kube-system' is on the deny list",
        ),
        (
            AllowDeny(allow=("batch", "jobs")),
            "prod",
            "namespace 'prod' is not on the allow list (batch, jobs)",
        ),
        (AllowDeny(allow=("batch",)), "", "namespace '' is not on the allow list (batch)"),
        (AllowDeny(allow=()), "prod", "namespace 'prod' is not on the allow list (empty)"),
        # deny wins over allow
        (
            AllowDeny(allow=("prod",), deny=("prod",)),
            "prod",
            "namespace 'prod' is on the deny list",
        ),
    ],
)
def test_namespace_refusals(rule: AllowDeny, namespace: str, reason: str) -> None:
    labels = {"namespace": namespace} if namespace else {"alertname": "X"}
    assert refused(verdicts(Guards(namespaces=rule), labels=labels)) == [("namespace", reason)]


@pytest.mark.parametrize(
    "rule,namespace",
    [
        (AllowDeny(), "anything"),
        (AllowDeny(deny=("kube-system",)), "prod"),
        (AllowDeny(allow=("batch", "prod")), "prod"),
    ],
)
def test_namespace_allowed(rule: AllowDeny, namespace: str) -> None:
    v = one("namespace", verdicts(Guards(namespaces=rule), labels={"namespace": namespace}))
    assert v.allow and v.reason == f"namespace {namespace!r} allowed"


def test_label_rules_judge_each_label_in_name_order() -> None:
    g = Guards(labels={"tier": AllowDeny(allow=("worker",)), "team": AllowDeny(deny=("payments",))})
    vs = verdicts(g, labels={"namespace": "prod", "tier": "worker", "team": "payments"})
    assert [v.guard for v in vs][1:4] == ["namespace", "label:team", "label:tier"]
    assert refused(vs) == [("label:team", "label team='payments' is on the deny list")]
    assert one("label:tier", vs).reason == "label tier='worker' allowed"
    vs = verdicts(g, labels={"namespace": "prod", "team": "web"})  # no tier label at all
    assert refused(vs) == [("label:tier", "label tier='' is not on the allow list (worker)")]


# --- freeze windows -----------------------------------------------------------------------
NIGHTLY = FreezeWindow(start="23:00", end="01:00", reason="nightly batch")
WEEKEND = FreezeWindow(start="Fri 18:00", end="Mon 06:00")
OFFICE = FreezeWindow(start="Tue 09:00", end="Tue 17:00")
LUNCH = FreezeWindow(start="12:00", end="13:00")


@pytest.mark.parametrize(
    "window,now,inside",
    [
        # daily, wrapping past midnight: [23:00, 01:00)
        (NIGHTLY, at("Wed", "22:59"), False),
        (NIGHTLY, at("Wed", "23:00"), True),
        (NIGHTLY, at("Wed", "23:59", 59), True),
        (NIGHTLY, at("Thu", "00:00"), True),
        (NIGHTLY, at("Thu", "00:59", 59), True),
        (NIGHTLY, at("Thu", "01:00"), False),
        (NIGHTLY, at("Sun", "23:30"), True),  # every day, the week's end included
        (NIGHTLY, at("Mon", "00:30"), True),
        # daily, not wrapping: [12:00, 13:00)
        (LUNCH, at("Sat", "11:59"), False),
        (LUNCH, at("Sat", "12:00"), True),
        (LUNCH, at("Sat", "12:59"), True),
        (LUNCH, at("Sat", "13:00"), False),
        # weekly, wrapping past Sunday -> Monday: [Fri 18:00, Mon 06:00)
        (WEEKEND, at("Fri", "17:59"), False),
        (WEEKEND, at("Fri", "18:00"), True),
        (WEEKEND, at("Sat", "03:00"), True),
        (WEEKEND, at("Sun", "23:59"), True),
        (WEEKEND, at("Mon", "00:00"), True),
        (WEEKEND, at("Mon", "05:59"), True),
        (WEEKEND, at("Mon", "06:00"), False),
        (WEEKEND, at("Wed", "18:00"), False),  # the weekday matters
        (WEEKEND, at("Thu", "23:00"), False),
        # weekly, within one day: [Tue 09:00, Tue 17:00)
        (OFFICE, at("Tue", "08:59"), False),
        (OFFICE, at("Tue", "09:00"), True),
        (OFFICE, at("Tue", "16:59"), True),
        (OFFICE, at("Tue", "17:00"), False),
        (OFFICE, at("Wed", "10:00"), False),
    ],
)
def test_in_window(window: FreezeWindow, now: int, inside: bool) -> None:
    assert in_window(window, now) is inside


def test_a_freeze_window_refuses_naming_the_window_and_its_reason() -> None:
    g = Guards(freeze=(LUNCH, NIGHTLY, WEEKEND))
    assert refused(verdicts(g, now_ms=at("Wed", "23:30"))) == [
        ("freeze", "freeze window 23:00–01:00 (UTC) holds: nightly batch")
    ]
    assert refused(verdicts(g, now_ms=at("Sun", "10:00"))) == [
        ("freeze", "freeze window Fri 18:00–Mon 06:00 (UTC) holds")
    ]
    # the first window that holds is named
    assert refused(verdicts(g, now_ms=at("Sat", "12:30"))) == [
        ("freeze", "freeze window 12:00–13:00 (UTC) holds")
    ]
    assert one("freeze", verdicts(g, now_ms=at("Wed", "15:00"))).allow


def test_global_freeze_windows_apply_to_every_playbook() -> None:
    limits = GlobalLimits(
        freeze=(FreezeWindow(start="Sat 00:00", end="Sun 00:00", reason="change freeze"),)
    )
    assert refused(verdicts(limits=limits, now_ms=at("Sat", "08:00"))) == [
        ("freeze", "freeze window Sat 00:00–Sun 00:00 (UTC) holds: change freeze")
    ]
    assert refused(verdicts(limits=limits, now_ms=at("Sun", "00:00"))) == []


MINUTES = st.integers(min_value=0, max_value=1439)
# 1970 .. 2100, in milliseconds, with sub-minute parts
INSTANTS = st.integers(min_value=0, max_value=4_102_444_800_000)


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@given(start=MINUTES, end=MINUTES, now_ms=INSTANTS)
def test_a_daily_window_is_minute_arithmetic(start: int, end: int, now_ms: int) -> None:
    minute_of_day = now_ms // 60_000 % 1440
    expected = (minute_of_day - start) % 1440 < (end - start) % 1440  # [start, end) mod a day
    window = FreezeWindow(start=hhmm(start), end=hhmm(end))
    assert in_window(window, now_ms) is expected


@given(start=st.integers(0, 7 * 1440 - 1), end=st.integers(0, 7 * 1440 - 1), now_ms=INSTANTS)
def test_a_weekly_window_is_minute_arithmetic(start: int, end: int, now_ms: int) -> None:
    names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    minute_of_week = (now_ms // 60_000 + 3 * 1440) % (7 * 1440)  # 1 January 1970: a Thursday
    expected = (minute_of_week - start) % (7 * 1440) < (end - start) % (7 * 1440)
    window = FreezeWindow(
        start=f"{names[start // 1440]} {hhmm(start % 1440)}",
        end=f"{names[end // 1440]} {hhmm(end % 1440)}",
    )
    assert in_window(window, now_ms) is expected


# --- silences -----------------------------------------------------------------------------
def test_an_active_silence_refuses_unless_silences_are_ignored() -> None:
    assert refused(verdicts(silences=("maint-1", "maint-2"))) == [
        ("silence", "silenced by maint-1, maint-2")
    ]
    v = one("silence", verdicts(Guards(respect_silences=False), silences=("maint-1",)))
    assert v.allow and v.reason == "silences not consulted"


# --- cooldown -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ago_ms,allow,reason",
    [
        (0, False, "prod/pod/web-1 was acted on 0 s ago (cooldown 600 s)"),
        (599_000, False, "prod/pod/web-1 was acted on 599 s ago (cooldown 600 s)"),
        (600_000, True, "last action on prod/pod/web-1 600 s ago"),
        (3_600_000, True, "last action on prod/pod/web-1 3600 s ago"),
    ],
)
def test_cooldown_boundary(ago_ms: int, allow: bool, reason: str) -> None:
    v = one("cooldown", verdicts(Guards(cooldown_s=600), last_on_target_ms=NOW - ago_ms))
    assert (v.allow, v.reason) == (allow, reason)


def test_no_cooldown_when_zero_or_never_acted() -> None:
    assert one("cooldown", verdicts(Guards(cooldown_s=0), last_on_target_ms=NOW)).allow
    v = one("cooldown", verdicts(Guards(cooldown_s=600)))
    assert v.allow and v.reason == "no earlier action on this target"


# --- rate limits --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "executed,allow,reason",
    [
        (0, True, "0 of 3 runs in the window"),
        (2, True, "2 of 3 runs in the window"),
        (3, False, "3 runs in the last 3600 s (limit 3)"),
        (4, False, "4 runs in the last 3600 s (limit 3)"),
    ],
)
def test_playbook_rate_at_the_limit(executed: int, allow: bool, reason: str) -> None:
    g = Guards(rate=RateLimit(max_runs=3, window_s=3600))
    v = one("rate", verdicts(g, executed_playbook=executed))
    assert (v.allow, v.reason) == (allow, reason)


@pytest.mark.parametrize(
    "executed,allow,reason",
    [
        (29, True, "29 of 30 runs overall"),
        (30, False, "30 runs of all playbooks in the last 600 s (limit 30)"),
    ],
)
def test_global_rate_at_the_limit(executed: int, allow: bool, reason: str) -> None:
    limits = GlobalLimits(rate=RateLimit(max_runs=30, window_s=600))
    v = one("rate:global", verdicts(limits=limits, executed_all=executed))
    assert (v.allow, v.reason) == (allow, reason)


# --- concurrency --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mine,everyone,reason",
    [
        (0, 4, None),
        (1, 1, "1 runs of this playbook in progress (max 1)"),
        (0, 5, "5 runs in progress overall (max 5)"),
        (2, 9, "2 runs of this playbook in progress (max 1)"),  # this playbook's limit first
    ],
)
def test_concurrency(mine: int, everyone: int, reason: str | None) -> None:
    v = one("concurrency", verdicts(active_playbook=mine, active_all=everyone))
    assert v.allow is (reason is None)
    assert v.reason == (reason or "below the concurrency limits")


# --- blast radius -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "radius,in_flight,total,allow,reason",
    [
        (BlastRadius(max_targets=2), 0, None, True, "1 target(s) affected"),
        (BlastRadius(max_targets=2), 1, None, True, "2 target(s) affected"),
        (BlastRadius(max_targets=2), 2, None, False, "2 targets already being acted on (max 2)"),
        (BlastRadius(max_percent=25), 1, 8, True, "2 target(s) affected"),  # exactly 25%
        (BlastRadius(max_percent=25), 2, 8, False, "3 of 8 (38%) would be affected (max 25%)"),
        (BlastRadius(max_percent=50), 0, 1, False, "1 of 1 (100%) would be affected (max 50%)"),
        (BlastRadius(max_percent=25), 5, None, True, "6 target(s) affected"),  # total unknown
        (BlastRadius(max_percent=25), 5, 0, True, "6 target(s) affected"),
        (
            BlastRadius(max_targets=5, max_percent=10),
            4,
            10,
            False,
            "5 of 10 (50%) would be affected (max 10%)",
        ),
    ],
)
def test_blast_radius(
    radius: BlastRadius, in_flight: int, total: int | None, allow: bool, reason: str
) -> None:
    v = one(
        "blast_radius",
        verdicts(Guards(blast_radius=radius), targets_in_flight=in_flight, targets_total=total),
    )
    assert (v.allow, v.reason) == (allow, reason)


# --- pre-conditions -----------------------------------------------------------------------
def test_each_precondition_is_a_verdict_and_a_failed_one_refuses() -> None:
    vs = verdicts(
        preconditions=(
            ("replicas ready", True, "1 series"),
            ("queue drained", False, "0 series"),
            ("prometheus", False, "cannot evaluate: timeout"),
        )
    )
    assert [(v.allow, v.reason) for v in vs if v.guard == "precondition"] == [
        (True, "replicas ready: 1 series"),
        (False, "queue drained: 0 series"),
        (False, "prometheus: cannot evaluate: timeout"),
    ]
    assert decide(vs) == (False, False, "precondition: queue drained: 0 series")


# --- circuit breaker ----------------------------------------------------------------------
def test_a_tripped_breaker_allows_but_only_in_shadow() -> None:
    vs = verdicts(breaker_tripped=True)
    v = one("circuit_breaker", vs)
    assert (v.allow, v.shadow) == (True, True)
    assert v.reason == "tripped: the playbook runs in shadow mode until reset"
    assert decide(vs) == (True, True, "circuit breaker tripped: shadow only")
    # a refusal still wins over shadow
    assert decide(verdicts(breaker_tripped=True, paused=True))[:2] == (False, False)


# --- decide -------------------------------------------------------------------------------
def test_decide_names_the_first_refusal_in_guard_order() -> None:
    vs = verdicts(
        Guards(cooldown_s=600),
        paused=True,
        silences=("s1",),
        last_on_target_ms=NOW - 1000,
        active_playbook=1,
    )
    assert [g for g, _ in refused(vs)] == ["kill_switch", "silence", "cooldown", "concurrency"]
    assert decide(vs) == (
        False,
        False,
        "kill_switch: the remediator is paused (POST /api/v1/resume to resume)",
    )
    vs = verdicts(Guards(cooldown_s=600), silences=("s1",), last_on_target_ms=NOW - 1000)
    assert decide(vs) == (False, False, "silence: silenced by s1")


def test_decide_on_hand_built_verdicts() -> None:
    ok = Verdict("a", True, "fine")
    assert decide([]) == (True, False, "all guards allow")
    assert decide([ok, Verdict("b", False, "no"), Verdict("c", False, "never")]) == (
        False,
        False,
        "b: no",
    )
    assert decide([ok, Verdict("cb", True, "tripped", shadow=True)]) == (
        True,
        True,
        "circuit breaker tripped: shadow only",
    )


def test_the_verdicts_depend_only_on_the_facts() -> None:
    g = Guards(freeze=(NIGHTLY,), cooldown_s=60)
    facts: dict[str, Any] = {"now_ms": at("Thu", "00:10"), "last_on_target_ms": at("Thu", "00:09")}
    assert verdicts(g, **facts) == verdicts(g, **facts)
    later = int(
        (datetime.fromtimestamp(facts["now_ms"] / 1000, UTC) + timedelta(hours=1)).timestamp()
        * 1000
    )
    assert refused(verdicts(g, **{**facts, "now_ms": later})) == []

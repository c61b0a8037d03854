"""``VigilRemediationAwaitingApproval``: tell people, through Alertmanager, that a run waits.

When a run starts waiting for an approval, an alert goes to Alertmanager with the plan's
summary, the console link, the run's API link, the plan hash, who may decide and the
expiry; its ``endsAt`` is the expiry, so Alertmanager resolves it by itself even if this
service is gone by then. When the run is approved, rejected, refused or expires, the same
labels are posted again with ``endsAt`` now: the alert resolves.

The labels come from the run (its id, playbook and the alert's name) and from a fixed set
of the alert's own labels, so that Alertmanager routes it to the team that owns the
workload. Everything taken from the alert is hostile: ``am_labels`` and ``am_text`` make
it valid for Alertmanager (label names of its classic charset, UTF-8 values without
control or format characters, bounded lengths) and never let a value choose a label name.
``awaiting_alert`` is pure; ``ApprovalNotice`` posts and records the outcome in the run's
journal. A failed post is recorded and logged, never fatal: the run waits all the same.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from remediator.actions.registry import Services
from remediator.audit.store import EventKind
from remediator.catalog.playbook import Approvers
from remediator.errors import ActionError
from remediator.runs.journal import Journal
from remediator.runs.plan import PlannedStep

log = logging.getLogger(__name__)

ALERTNAME = "VigilRemediationAwaitingApproval"
SEVERITY = "warning"
# the alert's labels that name where it happened: copied for routing and grouping
CONTEXT_LABELS = (
    "cluster",
    "namespace",
    "service",
    "job",
    "instance",
    "deployment",
    "statefulset",
    "daemonset",
    "pod",
    "node",
    "team",
)
LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_LABEL_VALUE = 256
MAX_TEXT = 2000
MAX_SUMMARY_STEPS = 10


def am_text(value: object, limit: int = MAX_TEXT, *, newlines: bool = False) -> str:
    """``value`` as Alertmanager text: valid UTF-8 (a lone surrogate becomes U+FFFD),
    control and format characters (bidi overrides, zero-width ones; newlines too unless
    ``newlines``) as U+FFFD, at most ``limit`` characters (an ellipsis marks a cut)."""
    # category C: control, format, surrogate (not UTF-8 at all), private use, unassigned
    text = "".join(
        c if not unicodedata.category(c).startswith("C") or (newlines and c == "\n") else "\ufffd"
        for c in str(value)
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def am_labels(pairs: Mapping[str, str]) -> dict[str, str]:
    """The pairs Alertmanager accepts as labels: names of the classic charset (others are
    dropped, never rewritten into another name), values cleaned by ``am_text``; an empty
    value is an absent label, as in Prometheus."""
    out = {}
    for name, value in pairs.items():
        if not LABEL_NAME.fullmatch(name):
            continue
        clean = am_text(value, MAX_LABEL_VALUE)
        if clean:
            out[name] = clean
    return out


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def notice_labels(
    *, run_id: str, playbook: str, alert_labels: Mapping[str, str], extra: Mapping[str, str]
) -> dict[str, str]:
    """The labels of a run's awaiting-approval alert: the same for its announce and its
    resolve (Alertmanager identifies an alert by them). ``extra``: the playbook's
    ``escalate.labels`` (routing it chose); the run's own labels win over both."""
    context = {k: alert_labels[k] for k in CONTEXT_LABELS if k in alert_labels}
    return am_labels(
        {
            **context,
            **extra,
            "alertname": ALERTNAME,
            "severity": SEVERITY,
            "playbook": playbook,
            "run_id": run_id,
            "original_alertname": alert_labels.get("alertname", ""),
        }
    )


def plan_summary(plan: Sequence[PlannedStep], target: str | None) -> str:
    """One line per step (``1. restart: kubernetes.rollout_restart``), then the target."""
    lines = [f"{i}. {s.name}: {s.action}" for i, s in enumerate(plan[:MAX_SUMMARY_STEPS], 1)]
    if len(plan) > MAX_SUMMARY_STEPS:
        lines.append(f"... and {len(plan) - MAX_SUMMARY_STEPS} more steps")
    if target:
        lines.append(f"on {target}")
    return "\n".join(lines)


def who_decides(approvers: Approvers | None) -> str:
    if approvers is None:
        return "anyone with an approver credential"
    parts = [
        f"users {', '.join(approvers.users)}" if approvers.users else "",
        f"groups {', '.join(approvers.groups)}" if approvers.groups else "",
    ]
    return "; ".join(p for p in parts if p)


def awaiting_alert(
    *,
    labels: dict[str, str],
    playbook: str,
    alertname: str,
    summary: str,
    plan_hash: str,
    console_url: str,
    run_url: str,
    approvers: str,
    now_ms: int,
    expires_ms: int,
) -> dict[str, Any]:
    """The alert Alertmanager holds while the run waits (``endsAt``: the expiry)."""
    annotations = {
        "summary": am_text(
            f"Playbook {playbook} waits for an approval to act on "
            f"{alertname or 'an alert'} (expires {_iso(expires_ms)})",
            500,
        ),
        "description": am_text(summary, newlines=True),
        "console_url": am_text(console_url, 1000),
        "run_url": am_text(run_url, 1000),
        "plan_hash": plan_hash,
        "approvers": am_text(approvers, 500),
        "expires_at": _iso(expires_ms),
    }
    return {
        "labels": labels,
        "annotations": annotations,
        "startsAt": _iso(now_ms),
        "endsAt": _iso(expires_ms),
        "generatorURL": am_text(console_url, 1000),
    }


def resolved_alert(labels: dict[str, str], *, now_ms: int, outcome: str) -> dict[str, Any]:
    """The same alert, ended now (Alertmanager resolves it)."""
    return {
        "labels": labels,
        "annotations": {"resolution": am_text(outcome, 500)},
        "startsAt": _iso(now_ms),
        "endsAt": _iso(now_ms),
    }


class ApprovalNotice:
    """Posts a run's awaiting-approval alert and its resolve; records both in the run."""

    def __init__(
        self,
        *,
        services: Services,
        journal: Journal,
        clock: Callable[[], float],
        console_url: Callable[[str], str],
        run_url: Callable[[str], str],
    ) -> None:
        self.services = services
        self.journal = journal
        self.clock = clock
        self.console_url = console_url
        self.run_url = run_url

    async def announce(
        self,
        run_id: str,
        *,
        playbook: str,
        alert_labels: Mapping[str, str],
        extra: Mapping[str, str],
        plan: Sequence[PlannedStep],
        target: str | None,
        plan_hash: str,
        approvers: Approvers | None,
        expires_ms: int,
    ) -> None:
        labels = notice_labels(
            run_id=run_id, playbook=playbook, alert_labels=alert_labels, extra=extra
        )
        body = awaiting_alert(
            labels=labels,
            playbook=playbook,
            alertname=alert_labels.get("alertname", ""),
            summary=plan_summary(plan, target),
            plan_hash=plan_hash,
            console_url=self.console_url(run_id),
            run_url=self.run_url(run_id),
            approvers=who_decides(approvers),
            now_ms=int(self.clock() * 1000),
            expires_ms=expires_ms,
        )
        await self._post(run_id, "announced", body)

    async def resolve(self, run_id: str, *, outcome: str) -> None:
        """Resolve the run's alert, with exactly the labels it was announced with (read
        back from the run's ``notice_announced`` event, so a reloaded playbook cannot change
        them); nothing when it was never announced or is resolved already."""
        events = await self.journal.audit.run(lambda db: db.events(run_id))
        names = [e.name for e in events if e.kind is EventKind.APPROVAL]
        announced = [
            e
            for e in events
            if e.kind is EventKind.APPROVAL
            and e.name == "notice_announced"
            and isinstance(e.detail.get("labels"), dict)
        ]
        if not announced or "notice_resolved" in names:
            return
        labels = {str(k): str(v) for k, v in announced[-1].detail["labels"].items()}
        await self._post(
            run_id,
            "resolved",
            resolved_alert(labels, now_ms=int(self.clock() * 1000), outcome=outcome),
        )

    async def _post(self, run_id: str, what: str, alert: dict[str, Any]) -> None:
        try:
            status, doc = await self.services.alertmanager("POST", "/api/v2/alerts", [alert])
        except ActionError as exc:
            status, doc = None, str(exc)
        verdict = "ok" if status == 200 else "failed"
        detail: dict[str, Any] = {
            "alertname": ALERTNAME,
            "status": status,
            "labels": alert["labels"],
            "endsAt": alert["endsAt"],
        }
        if verdict == "failed":
            detail["error"] = str(doc)[:500]
            log.warning(
                "run %s: could not post %s %s to Alertmanager: %s",
                run_id,
                ALERTNAME,
                what,
                detail["error"],
            )
        await self.journal.event(run_id, EventKind.APPROVAL, f"notice_{what}", verdict, detail)
